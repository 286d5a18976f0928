"""The co-op under `/api/chorus/v1`: its genesis, its tally, wallets and proposals.

Rules of this file: it is the `coop` tag of node/chorus_api.py's operation table and
follows that file's rules (every endpoint an `Operation` with the JSON Schema of its
answer, every refusal the chorus error object). The answers are node/coop.py's
views, the same `chorus ledger tally`, `chorus wallet show` and `chorus vote tally`
print without a daemon. All reads: figures change only through ledger entries, which
are written with POST /ledger/entries (the CLI's `member`, `wallet` and `vote`
commands build those bodies).

Why a cached tally: every answer here is a function of the whole log, and a tally
reads all of it. The daemon's `TallyCache` (node/tally_cache.py) keeps the last one
with the log size it was computed at, and computes the next ahead once the log is
quiet; a request that finds it stale computes it in a worker thread.

    400 bad_request   an epoch or wallet key that is not one
    409 no_coop       the node joined no co-op (`chorus init --coop`, `chorus coop join`)
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import trio
from starlette.requests import Request

from ledger.tally import Tally

from . import coop
from .chorus_api import ApiError, Operation
from .ledger_views import MAX_POSITION

if TYPE_CHECKING:
    from ledger.genesis import Genesis

    from .daemon import Daemon

__all__ = ["coop_operations"]

_UINT = re.compile("[0-9]{1,16}")
_KEY = re.compile("[0-9a-f]{64}")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _known_params(request: Request, *names: str) -> None:
    unknown = sorted(set(request.query_params) - set(names))
    if unknown:
        takes = ", ".join(names) if names else "none"
        raise ApiError(
            400, f"unknown query parameter {unknown[0]!r} (this endpoint takes: {takes})"
        )


def coop_operations(daemon: Daemon) -> list[Operation]:
    """The co-op endpoints for `daemon`. Building them touches no daemon attribute,
    so the OpenAPI document can be made without a running node."""

    def genesis() -> Genesis:
        found = daemon.genesis
        if found is None:
            raise ApiError(
                409,
                "this node is in no co-op: it has no genesis to tally by (join one with "
                "`chorus coop join GENESIS_FILE` and restart the daemon)",
                code="no_coop",
            )
        return found

    async def current(rules: Genesis) -> Tally:
        return await trio.to_thread.run_sync(daemon.tally_cache.get, daemon.repo.ledger, rules)

    async def show_coop(request: Request) -> dict[str, Any]:
        _known_params(request)
        return coop.genesis_json(genesis())

    async def show_tally(request: Request) -> dict[str, Any]:
        _known_params(request, "epoch")
        text = request.query_params.get("epoch")
        epoch = None
        if text is not None:
            if _UINT.fullmatch(text) is None or int(text) > MAX_POSITION:
                raise ApiError(400, f"epoch must be an integer in 0..{MAX_POSITION}, not {text!r}")
            epoch = int(text)
        rules = genesis()
        return coop.tally_json(await current(rules), rules, epoch)

    async def wallet(request: Request) -> dict[str, Any]:
        _known_params(request)
        text = request.path_params["key"]
        if _KEY.fullmatch(text) is None:
            raise ApiError(
                400, f"{text!r} is not a wallet key: 64 lowercase hex digits (Ed25519 public key)"
            )
        rules = genesis()
        return coop.wallet_json(await current(rules), bytes.fromhex(text))

    async def proposals(request: Request) -> dict[str, Any]:
        _known_params(request)
        rules = genesis()
        return coop.proposals_json(await current(rules))

    return [
        Operation(
            "GET", "/coop", "getCoop", "The co-op's genesis: name, board, treasury, parameters",
            show_coop, _ref("Genesis"), tag="coop", errors=[400, 409],
            description="`data` is the signed genesis itself, for `chorus coop join`.",
        ),
        Operation(
            "GET", "/tally", "getTally",
            "Every figure of the co-op: balances, plays, earnings, hosting pay, votes",
            show_tally, _ref("Tally"), tag="coop", errors=[400, 409],
            parameters=[
                {
                    "name": "epoch",
                    "in": "query",
                    "required": False,
                    "description": "show only this epoch's money (time // epoch_ms)",
                    "schema": {"type": "integer", "minimum": 0, "maximum": MAX_POSITION},
                }
            ],
            description=(
                "A pure function of the genesis and the node's log (docs/economics.md). "
                "Amounts are integer µc. Entries that are in the ledger but not counted "
                "are listed in `anomalies` with the reason."
            ),
        ),
        Operation(
            "GET", "/wallets/{key}", "getWallet",
            "One key's balance, earnings and plays, with the price of each next play",
            wallet, _ref("Wallet"), tag="coop", errors=[400, 409],
            parameters=[
                {
                    "name": "key",
                    "in": "path",
                    "required": True,
                    "description": "the wallet's Ed25519 public key, 64 hex digits",
                    "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                }
            ],
        ),
        Operation(
            "GET", "/proposals", "getProposals", "Proposals and their votes so far",
            proposals, _ref("Proposals"), tag="coop", errors=[400, 409],
        ),
    ]
