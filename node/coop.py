"""The co-op a repo belongs to, and its figures: the genesis on disk, tallies of a log.

    <repo>/genesis.bin   the co-op's signed genesis (ledger/genesis.py), byte for byte
    <repo>/config.json   "coop": the genesis CID (what `chorus daemon` joins)

Where a joining node gets the genesis: a file (`chorus coop create` writes one), or
by its CID from any member node (`chorus init --coop CID --from URL`, `chorus coop
join CID --from URL`): `fetch_genesis` asks URL's GET /api/chorus/v1/coop (a public
read, so a node's local API or its public gateway both answer) and keeps the bytes
only if they are a valid genesis whose CID is the one given. Trust is by hash: the
CID the user got from the co-op is the whole claim, the node that serves it is not
trusted for anything.

Why a file and a config key: the genesis is the co-op's rulebook (board, treasury,
prices, shares) and every figure the node shows is a pure function of it and the
ledger, so a node must hold the very bytes whose CID names its co-op. config.json
says which co-op the repo joined; genesis.bin is the document itself. They are
checked against each other whenever the genesis is loaded (`load_genesis`): a
missing or different genesis file is an error that names both, never a silent
fallback to no co-op, or a node would keep books by other rules than its peers.

Why one module for the CLI and the API: `chorus ledger tally`, `chorus wallet show`
... without a daemon and `GET /api/chorus/v1/tally` ... (node/coop_api.py) must
answer alike for the same log, so both call the views here (`tally_store`,
`tally_json`, `wallet_json`, `proposals_json`) and neither computes a figure itself.
`SCHEMAS` holds the JSON Schemas of those answers; node/chorus_api.py puts them in
its OpenAPI document.

Which entries a tally sees (docs/economics.md "Tallies"): the valid entries, a frozen
feed's only up to its freeze point. A node's own database holds only entries it
judged valid (fork evidence included) and records each freeze in its feeds table,
so `tally_store` reads the log and the freezes as they are. An export is somebody
else's claim, so `tally_export` replays it through `ledger.verify.LogVerifier`
(ids, signatures, feed rules, forks) and tallies only what that accepts.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from ledger.econ_kinds import CLASSES
from ledger.entry import EntryError, SignedEntry, decode_entry, decode_entry_checked_elsewhere
from ledger.export import Manifest, read_export
from ledger.genesis import (
    MAX_GENESIS_SIZE,
    PARAM_NAMES,
    Genesis,
    GenesisError,
    decode_genesis,
)
from ledger.jsonview import id_text
from ledger.tally import Tally, frozen_from_feeds, next_play, tally
from ledger.verify import LogVerifier
from protocol.cid import cid_to_text, parse_cid
from protocol.errors import ChorusError, InvalidCID

from .atomic_file import write_atomically
from .json_schema import object_schema
from .ledger_store import LedgerStore
from .repo import CONFIG_FILE, Repo, RepoConfig

__all__ = [
    "CONFIG_KEY",
    "GENESIS_FILE",
    "SCHEMAS",
    "CoopError",
    "CoopFetchError",
    "CoopMismatch",
    "GenesisFileError",
    "NotInCoop",
    "fetch_genesis",
    "find_genesis",
    "genesis_json",
    "invariants",
    "join_coop",
    "load_genesis",
    "proposals_json",
    "read_genesis",
    "repo_coop_id",
    "require_genesis",
    "store_entries",
    "tally_export",
    "tally_json",
    "tally_store",
    "wallet_json",
]

GENESIS_FILE = "genesis.bin"
#: The config.json key naming the co-op (its genesis CID); cli/daemon_cmds.py reads it too.
CONFIG_KEY = "coop"
_READ_SIZE = 1 << 20
#: How long `fetch_genesis` waits for a node (connect, and each read), in seconds.
FETCH_TIMEOUT = 10.0
#: The most `fetch_genesis` reads of an answer: a genesis is at most 64 KiB, its JSON
#: (base64 and the rules spelled out) a few times that.
MAX_FETCH_SIZE = 1 << 20
#: Where a node serves its co-op's genesis (node/coop_api.py), under its HTTP address.
COOP_PATH = "/api/chorus/v1/coop"


# -- errors -------------------------------------------------------------------------------


class CoopError(ChorusError):
    """Base of what this module refuses about a co-op."""


class NotInCoop(CoopError):
    """The repo joined no co-op, and the command needs one."""


class GenesisFileError(CoopError):
    """A genesis file that cannot be read, is not a valid genesis, or is not the one
    config.json names."""


class CoopMismatch(CoopError):
    """Two co-ops where there must be one: joining a second, a daemon started for
    another, an export made in another, a node serving another's genesis."""


class CoopFetchError(CoopError):
    """A genesis that could not be fetched from a node: unreachable, an error status,
    an answer that is not the co-op's JSON."""


# -- the genesis on disk ------------------------------------------------------------------


def read_genesis(path: Path | str) -> Genesis:
    """The genesis in file `path`, decoded and verified; GenesisFileError naming the
    file and the rule it breaks (size, format, canonical form, signatures)."""
    path = Path(path).expanduser()
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_GENESIS_SIZE + 1)
    except OSError as exc:
        raise GenesisFileError(f"cannot read the genesis {path}: {exc.strerror or exc}") from None
    return _decode(data, str(path))


def _decode(data: bytes, source: str) -> Genesis:
    try:
        return decode_genesis(data)
    except GenesisError as exc:
        raise GenesisFileError(
            f"{source} is not a valid co-op genesis ({type(exc).__name__}): {exc}"
        ) from None


def _read_config(repo_path: Path) -> dict[str, Any]:
    source = repo_path / CONFIG_FILE
    try:
        config = json.loads(source.read_text("utf-8"))
    except FileNotFoundError:
        raise NotInCoop(
            f"{repo_path} is not an initialised chorus repo (no {CONFIG_FILE}); run "
            "`chorus init --coop GENESIS_FILE`"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CoopError(f"cannot read {source}: {exc}") from None
    if not isinstance(config, dict):
        raise CoopError(f"{source} must hold a JSON object")
    return config


def repo_coop_id(repo_path: Path | str) -> str | None:
    """The genesis CID config.json names, or None (the repo joined no co-op)."""
    repo_path = Path(repo_path).expanduser()
    coop = _read_config(repo_path).get(CONFIG_KEY)
    if coop is not None and type(coop) is not str:
        raise CoopError(
            f"{repo_path / CONFIG_FILE}: {CONFIG_KEY!r} must be a genesis CID, not {coop!r}"
        )
    return coop


def load_genesis(repo_path: Path | str) -> Genesis | None:
    """The genesis of the co-op the repo joined, or None if it joined none.

    Reads files only and takes no lock, so it works while a daemon runs. Refuses
    (GenesisFileError) a config that names a co-op whose genesis file is missing,
    invalid or another co-op's: nothing may run on the wrong rules.
    """
    repo_path = Path(repo_path).expanduser()
    coop = repo_coop_id(repo_path)
    if coop is None:
        return None
    path = repo_path / GENESIS_FILE
    if not path.exists():
        raise GenesisFileError(
            f"{repo_path / CONFIG_FILE} names co-op {coop} but {path} is missing; "
            "copy the co-op's genesis back with `chorus coop join GENESIS_FILE`"
        )
    genesis = read_genesis(path)
    if genesis.id_text != coop:
        raise GenesisFileError(
            f"{path} is the genesis of co-op {genesis.id_text}, but "
            f"{repo_path / CONFIG_FILE} names co-op {coop}"
        )
    return genesis


def require_genesis(repo_path: Path | str) -> Genesis:
    """`load_genesis`, with NotInCoop when the repo joined no co-op."""
    genesis = load_genesis(repo_path)
    if genesis is None:
        raise NotInCoop(
            f"the repo {repo_path} is in no co-op: join one with "
            "`chorus coop join GENESIS_FILE` (or create one with `chorus coop create`)"
        )
    return genesis


def join_coop(repo_path: Path | str, data: bytes) -> Genesis:
    """Make the repo a node of the co-op whose signed genesis is `data`.

    The genesis is decoded and verified first (GenesisFileError says why not). Under
    the repo lock (so never behind a running daemon's back: stop it first), it is
    written to genesis.bin, then config.json names it — atomically each, in that
    order, so config.json never names a co-op whose genesis is not on disk. Joining
    the co-op the repo is already in is a no-op that restores a lost genesis file;
    joining another is refused (CoopMismatch): the ledger and the tallies of a node
    belong to one co-op.
    """
    genesis = _decode(bytes(data), "the genesis")
    with Repo.open(repo_path) as repo:
        current = repo.config.extra.get(CONFIG_KEY)
        if current is not None and current != genesis.id_text:
            raise CoopMismatch(
                f"the repo {repo.path} is already a node of co-op {current}; it cannot "
                f"also join {genesis.id_text} (a node's ledger belongs to one co-op: use "
                "another data directory)"
            )
        write_atomically(repo.path / GENESIS_FILE, genesis.encoded)
        config = RepoConfig(
            version=repo.config.version,
            quota=repo.config.quota,
            extra={**repo.config.extra, CONFIG_KEY: genesis.id_text},
        )
        write_atomically(repo.path / CONFIG_FILE, config.to_json())
    return genesis


# -- a genesis by its CID, from a member node -----------------------------------------------


def _parse_coop_cid(text: str) -> str:
    """`text` as a genesis CID in its canonical text (what `Genesis.id_text` prints)."""
    try:
        return cid_to_text(parse_cid(text.strip()))
    except InvalidCID as exc:
        raise CoopError(f"{text!r} is not a co-op CID: {exc}") from None


def _coop_url(url: str) -> str:
    base = url.strip()
    if "://" not in base:
        base = "http://" + base
    scheme = base.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise CoopFetchError(f"--from takes a node's http(s) address, not {url!r}")
    return base.rstrip("/") + COOP_PATH


def _read_capped(response: Any, source: str) -> bytes:
    body = response.read(MAX_FETCH_SIZE + 1)
    if len(body) > MAX_FETCH_SIZE:
        raise CoopFetchError(
            f"{source} answered with more than {MAX_FETCH_SIZE:,} bytes: not a co-op's genesis"
        )
    return body


def _http_refusal(exc: urllib.error.HTTPError, source: str) -> CoopFetchError:
    """The chorus error object of an error answer, said in words."""
    try:
        error = json.loads(_read_capped(exc, source))["error"]
        code, message = str(error["code"]), str(error["message"])
    except (CoopFetchError, OSError, ValueError, KeyError, TypeError):  # no error object
        code, message = "", ""
    finally:
        exc.close()
    if exc.code == 409 and code == "no_coop":
        return CoopFetchError(f"the node at {source} is in no co-op: it has no genesis to give")
    if exc.code == 404:
        return CoopFetchError(
            f"{source} answered 404 Not Found: is it a chorus node's HTTP address "
            "(its API or public gateway)?"
        )
    detail = f" ({code}: {message})" if code else f" {exc.reason}"
    return CoopFetchError(f"{source} answered HTTP {exc.code}{detail}")


def fetch_genesis(url: str, cid: str, *, timeout: float = FETCH_TIMEOUT) -> Genesis:
    """The genesis of co-op `cid`, fetched from the member node at `url`.

    `url` is the node's HTTP address (its API or its public gateway, e.g.
    http://127.0.0.1:8080; "host:port" means http). The answer of GET
    /api/chorus/v1/coop is read (at most MAX_FETCH_SIZE bytes, `timeout` seconds per
    step), its `data` decoded and verified as a genesis, and accepted only if its CID
    is `cid`: the bytes are trusted by their hash, never because of who served them.

    CoopError for a `cid` that is not one; CoopFetchError for a node that cannot be
    reached or does not answer with a co-op (409 no_coop: it joined none);
    GenesisFileError for bytes that are no valid genesis; CoopMismatch, naming both
    CIDs, for a valid genesis of another co-op.
    """
    wanted = _parse_coop_cid(cid)
    source = _coop_url(url)
    request = urllib.request.Request(source, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = _read_capped(response, source)
    except urllib.error.HTTPError as exc:
        raise _http_refusal(exc, source) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        text = getattr(reason, "strerror", None) or str(reason)
        raise CoopFetchError(f"cannot reach {source}: {text}") from None
    except OSError as exc:  # a timeout or a reset while reading
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise CoopFetchError(f"cannot fetch {source}: {reason}") from None
    except http.client.HTTPException as exc:
        raise CoopFetchError(
            f"{source} did not answer HTTP ({type(exc).__name__}): is it a node's address?"
        ) from None
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise CoopFetchError(
            f"{source} did not answer with JSON: is it a chorus node's HTTP address?"
        ) from None
    data = value.get("data") if isinstance(value, dict) else None
    if not isinstance(data, str):
        raise CoopFetchError(f"{source} answered JSON without the genesis (no \"data\" string)")
    try:
        encoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise CoopFetchError(f"{source} answered a \"data\" that is not base64") from None
    genesis = _decode(encoded, f"the genesis {source} served")
    if genesis.id_text != wanted:
        raise CoopMismatch(
            f"{source} serves the genesis of co-op {genesis.id_text}, not of {wanted}: "
            "refusing it (check the CID, or ask a node of that co-op)"
        )
    return genesis


def find_genesis(source: Path | str, url: str | None = None) -> Genesis:
    """The genesis a user named to join: with `url`, `source` is its CID and it is
    fetched from that node (`fetch_genesis`); without, `source` is a genesis file.
    A CID without `url` is refused with the way to pass one."""
    if url is not None:
        return fetch_genesis(url, str(source))
    path = Path(source).expanduser()
    if not path.exists():
        try:
            cid = _parse_coop_cid(str(source))
        except CoopError:
            pass
        else:
            raise CoopError(
                f"{cid} is a co-op CID, not a genesis file: pass --from URL, the HTTP address "
                "of any node of that co-op (e.g. --from http://127.0.0.1:8080), to fetch its "
                "genesis from there"
            )
    return read_genesis(path)


# -- the entries a tally sees -------------------------------------------------------------


def store_entries(
    store: LedgerStore, *, trusted: bool = True
) -> tuple[list[SignedEntry], dict[bytes, int]]:
    """Every entry of a node's log and the feeds' freeze points (author -> last seq
    that counts), as `tally` takes them.

    The freezes are read before the log, so an equivocation that arrives in between
    is in the entries, where `tally` finds it by itself. `trusted`: the node judged
    every stored entry when it accepted it, so the signature check is skipped; an
    auditor passes False and an entry that no longer verifies is left out (and is
    `verify_store`'s finding).
    """
    frozen: dict[bytes, int] = {}
    after = None
    while page := store.heads(after):
        for author, head in page:
            if head.frozen_after is not None:
                frozen[author] = head.frozen_after
        after = page[-1][0]
    decode = decode_entry_checked_elsewhere if trusted else decode_entry
    entries: list[SignedEntry] = []
    for record in store.iter_log(0, store.log_size()):
        try:
            entries.append(decode(record.data))
        except EntryError:
            continue
    return entries, frozen


def tally_store(store: LedgerStore, genesis: Genesis, *, trusted: bool = True) -> Tally:
    """The co-op's figures at this node's log (see `store_entries` for `trusted`)."""
    entries, frozen = store_entries(store, trusted=trusted)
    return tally(genesis, entries, frozen=frozen)


def _file_chunks(handle: BinaryIO) -> Iterator[bytes]:
    while chunk := handle.read(_READ_SIZE):
        yield chunk


def check_export_coop(manifest: Manifest, genesis: Genesis, source: str) -> None:
    """CoopMismatch if the export says it was made in another co-op than `genesis`'s."""
    if manifest.coop is not None and manifest.coop != genesis.id_text:
        raise CoopMismatch(
            f"{source} is an export of co-op {manifest.coop}, not of {genesis.id_text} "
            "(pass that co-op's genesis with --genesis FILE)"
        )


def tally_export(
    path: Path | str, genesis: Genesis, *, now_ms: int | None = None
) -> tuple[Manifest, Tally]:
    """The co-op's figures at an export file (`chorus ledger export`).

    Every entry is replayed through the auditor's `LogVerifier` (id, signature, feed
    rules, forks) and only what it accepts is tallied, with the freezes its feeds
    recorded. ExportError if the file is no export; CoopMismatch if its manifest
    names another co-op.
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    with open(path, "rb") as handle:
        manifest, records = read_export(_file_chunks(handle))
        check_export_coop(manifest, genesis, str(path))
        verifier = LogVerifier(log_owner=manifest.node, now_ms=now)
        entries = []
        for claimed, data in records:
            entry = verifier.add(data, claimed_id=claimed)
            if entry is not None:
                entries.append(entry)
    return manifest, tally(genesis, entries, frozen=frozen_from_feeds(verifier.feeds))


# -- JSON views ---------------------------------------------------------------------------


def genesis_json(genesis: Genesis) -> dict[str, Any]:
    """The genesis as `Genesis`: its CID, rules and the signed bytes (base64), so a
    node can hand it to one that wants to join."""
    return {
        "id": genesis.id_text,
        "name": genesis.name,
        "board": [key.hex() for key in genesis.board],
        "treasury": [key.hex() for key in genesis.treasury],
        "params": genesis.params.as_dict(),
        "time": genesis.time,
        "data": base64.b64encode(genesis.encoded).decode("ascii"),
    }


def _epoch_zero() -> dict[str, Any]:
    return {
        "coop": 0,
        "coop_retained": 0,
        "host_bytes": {},
        "host_pay": {},
        "hosting_pool": 0,
        "paid_plays": 0,
        "payees": 0,
    }


def tally_json(result: Tally, genesis: Genesis, epoch: int | None = None) -> dict[str, Any]:
    """`Tally.to_json()` with the co-op's id; with `epoch`, only that epoch's figures
    (zeros if nothing happened in it) — balances and votes are always the whole log's."""
    value = result.to_json()
    if epoch is not None:
        value["epochs"] = {str(epoch): value["epochs"].get(str(epoch), _epoch_zero())}
    return {"coop": genesis.id_text, "epoch": epoch, **value}


def wallet_json(result: Tally, key: bytes) -> dict[str, Any]:
    """One key's money: balance, top-ups, payee earnings, and per track its plays
    with the price of the next counted one (0 once owned)."""
    tracks = []
    for (listener, track), stats in sorted(result.plays.items()):
        if listener != key:
            continue
        price, _, _ = next_play(result, key, track)
        tracks.append({"track": track, **stats.to_json(), "next_price": price})
    return {
        "wallet": key.hex(),
        "balance": result.balances.get(key, 0),
        "topped_up": result.topups.get(key, 0),
        "earned": result.earnings.get(key, 0),
        "member": result.members.get(key),
        "plays_to_own": result.params.plays_to_own,
        "tracks": tracks,
    }


def proposals_json(result: Tally) -> dict[str, Any]:
    """Every counted proposal with its vote so far, oldest first."""
    ordered = sorted(result.votes.items(), key=lambda item: (item[1].opens, item[0]))
    return {"proposals": [{"id": id_text(pid), **vote.to_json()} for pid, vote in ordered]}


def invariants(value: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The books of a tally (its JSON) checked again, one line per rule, for a report.

    The same rules `Tally.check_invariants` enforces (docs/economics.md): per epoch,
    paid plays = payee parts + co-op retained + host pay, and host pay within the
    pool; overall, top-ups = balances + paid plays, and payee earnings = the epochs'
    payee parts. Computed from the JSON, so an auditor can run them on a tally the
    daemon served as well as on one computed here.
    """
    checks = []
    for epoch, figures in sorted(value["epochs"].items(), key=lambda item: int(item[0])):
        host_pay = sum(figures["host_pay"].values())
        out = figures["payees"] + figures["coop_retained"] + host_pay
        checks.append(
            {
                "rule": f"epoch {epoch}: paid plays = payees + co-op retained + host pay",
                "ok": figures["paid_plays"] == out and host_pay <= figures["hosting_pool"],
                "detail": (
                    f"{figures['paid_plays']} = {figures['payees']} + "
                    f"{figures['coop_retained']} + {host_pay} (pool {figures['hosting_pool']})"
                ),
            }
        )
    totals = value["totals"]
    topups, balances, paid = totals["topups"], totals["balances"], totals["paid_plays"]
    checks.append(
        {
            "rule": "top-ups = balances + paid plays",
            "ok": topups == balances + paid
            and topups == sum(value["topups"].values())
            and balances == sum(value["balances"].values()),
            "detail": f"{topups} = {balances} + {paid}",
        }
    )
    earned = sum(value["earnings"].values())
    checks.append(
        {
            "rule": "payee earnings = payee parts of paid plays",
            "ok": earned == totals["payees"] and all(v >= 0 for v in value["balances"].values()),
            "detail": f"{earned} = {totals['payees']}",
        }
    )
    return checks


# -- JSON Schemas of these views (the API's answers) ---------------------------------------

_COUNT = {"type": "integer", "minimum": 0}
_HEX32 = "^[0-9a-f]{64}$"
_ID = {"type": "string", "description": "entry id (CID)"}
_CLASS = {"enum": list(CLASSES)}


def _by_key(values: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "propertyNames": {"pattern": _HEX32},
        "additionalProperties": values,
        "description": description,
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_TRACK_PLAYS = {
    "counted": {**_COUNT, "description": "plays over the threshold: paid + free + unpaid"},
    "free": {**_COUNT, "description": "plays after ownership"},
    "owned": {"type": "boolean"},
    "paid": {**_COUNT, "description": "paid plays: they count toward ownership"},
    "spent": {**_COUNT, "description": "µc paid for this track"},
    "unpaid": {**_COUNT, "description": "counted plays the wallet could not cover"},
}

_PROPOSAL = {
    "author": {"type": "string", "pattern": _HEX32},
    "ballots": _by_key(_COUNT, "member -> the option of the ballot that counts"),
    "by_class": {"type": "object", "additionalProperties": {"type": "array", "items": _COUNT},
                 "description": "class -> votes per option"},
    "classes": {"type": "array", "items": _CLASS, "description": "the classes that vote"},
    "closes": {**_COUNT, "description": "ms; ballots count for opens <= time < closes"},
    "counted": {**_COUNT, "description": "ballots counted (one per member)"},
    "eligible": {**_COUNT, "description": "members admitted at opens, not left at closes"},
    "eligible_by_class": {"type": "object", "additionalProperties": _COUNT},
    "opens": {**_COUNT, "description": "ms"},
    "options": {"type": "array", "items": {"type": "string"}},
    "quorum_met": {"type": "boolean"},
    "title": {"type": "string"},
    "totals": {"type": "array", "items": _COUNT, "description": "votes per option"},
    "winner": {"type": ["integer", "null"], "minimum": 0,
               "description": "index of the winning option; null without quorum"},
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Genesis": object_schema(
        {
            "id": {"type": "string", "description": "the genesis CID: the co-op's name"},
            "name": {"type": "string", "minLength": 1, "maxLength": 128},
            "board": {"type": "array", "items": {"type": "string", "pattern": _HEX32},
                      "minItems": 1, "description": "keys that admit and remove members"},
            "treasury": {"type": "array", "items": {"type": "string", "pattern": _HEX32},
                         "minItems": 1, "description": "keys that top up wallets"},
            "params": object_schema({name: _COUNT for name in PARAM_NAMES},
                              description="docs/economics.md; money in µc, shares in bps"),
            "time": {**_COUNT, "description": "creation time, ms"},
            "data": {"type": "string", "pattern": "^[A-Za-z0-9+/]*={0,2}$",
                     "description": "the signed genesis (base64): `chorus coop join` takes it"},
        },
        description="the co-op's signed genesis: its rules",
    ),
    "TrackPlays": object_schema(_TRACK_PLAYS, description="one listener's plays of one track"),
    "EpochFigures": object_schema(
        {
            "coop": {**_COUNT, "description": "the co-op's part of the paid plays"},
            "coop_retained": {**_COUNT, "description": "kept by the co-op (with the pool's "
                              "unpaid remainder)"},
            "host_bytes": {"type": "object", "additionalProperties": _COUNT,
                           "description": "host peer id -> acknowledged bytes (after caps)"},
            "host_pay": {"type": "object", "additionalProperties": _COUNT,
                         "description": "host peer id -> µc"},
            "hosting_pool": _COUNT,
            "paid_plays": {**_COUNT, "description": "µc paid for plays"},
            "payees": {**_COUNT, "description": "µc to the releases' payees"},
        },
        description="money in and out of one epoch, µc",
    ),
    "Anomaly": object_schema(
        {
            "code": {"type": "string"},
            "entry": {"type": ["string", "null"], "description": "the entry's id, if one's"},
            "message": {"type": "string"},
        },
        description="an entry in the ledger that is not counted, and why",
    ),
    "ProposalResult": object_schema(
        _PROPOSAL, description="a proposal's vote: eligible members, counted ballots, totals"
    ),
    "Proposal": object_schema({"id": _ID, **_PROPOSAL}, description="a proposal and its vote"),
    "Tally": object_schema(
        {
            "coop": {"type": "string", "description": "the genesis CID"},
            "epoch": {"type": ["integer", "null"], "minimum": 0,
                      "description": "the one epoch shown in `epochs`, or null: all"},
            "anomalies": {"type": "array", "items": _ref("Anomaly")},
            "balances": _by_key(_COUNT, "wallet -> µc left"),
            "earnings": _by_key(_COUNT, "payee -> µc earned"),
            "entries": {**_COUNT, "description": "distinct entries counted in"},
            "epochs": {"type": "object", "propertyNames": {"pattern": "^[0-9]+$"},
                       "additionalProperties": _ref("EpochFigures")},
            "frozen": _by_key(_COUNT, "equivocating author -> last seq that counts"),
            "members": _by_key(_CLASS, "member -> class"),
            "plays": _by_key(
                {"type": "object", "additionalProperties": _ref("TrackPlays")},
                "listener -> track CID -> plays",
            ),
            "releases": {"type": "object", "additionalProperties": object_schema(
                {"earnings": _COUNT, "paid_plays": _COUNT})},
            "topups": _by_key(_COUNT, "wallet -> µc topped up by treasury keys"),
            "totals": {"type": "object", "additionalProperties": _COUNT},
            "unpaid_plays": _COUNT,
            "votes": {"type": "object", "additionalProperties": _ref("ProposalResult")},
        },
        description="every figure of the co-op at this node's log (docs/economics.md)",
    ),
    "Wallet": object_schema(
        {
            "wallet": {"type": "string", "pattern": _HEX32},
            "balance": {**_COUNT, "description": "µc"},
            "topped_up": {**_COUNT, "description": "µc from treasury keys"},
            "earned": {**_COUNT, "description": "µc earned as a payee of releases"},
            "member": {"oneOf": [{"type": "null"}, _CLASS], "description": "class, if a member"},
            "plays_to_own": {"type": "integer", "minimum": 1},
            "tracks": {"type": "array", "items": object_schema(
                {"track": {"type": "string"}, **_TRACK_PLAYS,
                 "next_price": {**_COUNT, "description": "µc of the next counted play"}})},
        },
        description="one key's money and plays",
    ),
    "Proposals": object_schema({"proposals": {"type": "array", "items": _ref("Proposal")}}),
}
