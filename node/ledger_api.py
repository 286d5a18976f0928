"""The ledger under `/api/chorus/v1/ledger`: read the log, write to it, prove it, audit it.

Rules of this file: it is the `ledger` tag of node/chorus_api.py's operation table and
follows that file's rules — every endpoint is an `Operation`, every answer has a JSON
Schema (node/ledger_views.py's `SCHEMAS`), every refusal is the chorus error object.
Reads are the views of node/ledger_views.py run in a worker thread, so the API and
`chorus ledger` without a daemon answer alike; writes go through the ledger's single
writer (`daemon.ledger`, node/ledger.py), which also announces new entries on the
co-op's gossip topic. GETs are public like the rest of the API; POSTs need the
node's API token from its own machine (node/auth.py).

How refusals map to statuses, so that clients can branch on them:

    400 bad_request      the request names nothing possible: a malformed id, key name,
                         page, size, peer id or JSON body
    404 not_found        no such entry, or no such member key
    409 conflict         the log cannot answer yet: no tree head backs the proof asked
                         for; the feed written to is frozen by an equivocation; or
                         (code `no_coop`) a sync on a node that is in no co-op
    409 refused          a submitted entry (POST /ledger/submit) the ledger refuses;
                         the message names the rule (format, signature, chain, time...)
    413                  a submitted entry over 64 KiB
    422 invalid          an entry to sign (POST /ledger/entries) whose kind or body the
                         ledger refuses; the message names the rule
    503 unavailable      a sync that could not complete (the peer's fault or the
                         network's); the message says which

Why a refused submission is 409 and not 422: the body of POST /ledger/submit is any
bytes (no schema can say "a validly signed entry"), so every body is a well-formed
request, and refusing it is the ledger's judgement of that entry against its rules
and its feeds, as for an entry from gossip. The OpenAPI contract test holds the API
to that: a request its document calls valid may be answered 2xx, 404 or 409.

`GET /ledger/export` is the one answer that is not JSON: the export CAR
(ledger/export.py), built in a worker thread into an unnamed temporary file in the
repo (never in memory, and gone whatever happens to the response), then streamed.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, BinaryIO

import multihash
import trio
from libp2p.peer.id import ID
from starlette.requests import Request
from starlette.responses import StreamingResponse

from ledger.entry import MAX_ENTRY_SIZE, EntryError, entry_id_bytes
from ledger.feed import rule_of
from ledger.jsonview import body_from_json, id_text
from protocol.errors import ChorusError

from . import ledger_views as views
from .audit import export_ledger, verify_store
from .chorus_api import ApiError, Operation
from .errors import RepoError
from .gossip import BatchDecodeError, BatchTooLarge, decode_batch
from .keystore import InvalidKeyName, KeyNotFound, Keystore
from .ledger_store import Outcome, UnknownEntry
from .sync import SyncFailed

if TYPE_CHECKING:
    from .daemon import Daemon

__all__ = ["CAR_MEDIA_TYPE", "ledger_operations"]

CAR_MEDIA_TYPE = "application/vnd.ipld.car"
_CHUNK = 1 << 20
_UINT = re.compile("[0-9]{1,16}")
_BOOLEANS = {"true": True, "false": False}
_NEW_ENTRY_KEYS = {"key", "kind", "body"}
#: Entries in one `/ledger/submit-batch` (one transaction), and its bytes.
MAX_BATCH = 1024
MAX_BATCH_BYTES = 1024 * 1024


def _submitted(outcome: Outcome) -> dict[str, str]:
    """A stored entry's answer (`Submitted`): its id and the ledger's verdict."""
    return {"id": id_text(outcome.entry.id_bytes), "verdict": outcome.verdict.value}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


# -- request parsing ------------------------------------------------------------------------


def _known_params(request: Request, *names: str) -> None:
    """400 for a query parameter the endpoint does not take (a typo is not ignored)."""
    unknown = sorted(set(request.query_params) - set(names))
    if unknown:
        takes = ", ".join(names) if names else "none"
        raise ApiError(
            400, f"unknown query parameter {unknown[0]!r} (this endpoint takes: {takes})"
        )


def _int_param(request: Request, name: str, default: int | None, low: int, high: int) -> int | None:
    """A decimal query parameter in low..high (digits only: no sign, space or `_`)."""
    text = request.query_params.get(name)
    if text is None:
        return default
    if _UINT.fullmatch(text) is None or not low <= int(text) <= high:
        raise ApiError(400, f"{name} must be an integer in {low}..{high}, not {text!r}")
    return int(text)


def _bool_param(request: Request, name: str) -> bool:
    text = request.query_params.get(name, "false")
    if text not in _BOOLEANS:
        raise ApiError(400, f"{name} must be true or false, not {text!r}")
    return _BOOLEANS[text]


def _refused(exc: ChorusError) -> ApiError:
    """The API error for what the ledger views and stores raise."""
    if isinstance(exc, views.LedgerRequestError | InvalidKeyName):
        return ApiError(400, str(exc))
    if isinstance(exc, UnknownEntry | KeyNotFound):
        return ApiError(404, str(exc))
    if isinstance(exc, views.NoTreeHead | views.FeedFrozen):
        return ApiError(409, str(exc))
    if isinstance(exc, EntryError):
        return ApiError(422, f"{rule_of(exc)}: {exc}")
    raise exc  # LedgerCorrupt and the like: the endpoint answers 500 and logs it


async def _view(function: Callable[..., Any], *args: Any) -> Any:
    """Run a ledger view in a worker thread, its refusals as API errors."""
    try:
        return await trio.to_thread.run_sync(function, *args)
    except (views.LedgerRequestError, views.NoTreeHead, views.FeedFrozen, UnknownEntry) as exc:
        raise _refused(exc) from None


def _peer_id(text: str) -> ID:
    """A libp2p peer ID from its base58 text; 400 unless it holds a valid multihash."""
    try:
        peer = ID.from_base58(text)
        multihash.decode(peer.to_bytes())
    except ValueError:
        raise ApiError(
            400, f"peer must be a libp2p peer ID (12D3KooW... or Qm...), not {text!r}"
        ) from None
    return peer


def _new_entry(raw: bytes) -> tuple[str, str, Any]:
    """(key, kind, body) of a POST /ledger/entries body; 400 for any other shape."""
    try:
        request = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"the body is not JSON: {exc}") from None
    if not isinstance(request, dict) or set(request) != _NEW_ENTRY_KEYS:
        raise ApiError(
            400, 'the body must be a JSON object with exactly "key", "kind" and "body"'
        )
    key, kind, body = request["key"], request["kind"], request["body"]
    if not isinstance(key, str) or not isinstance(kind, str):
        raise ApiError(400, '"key" and "kind" must be strings')
    if not isinstance(body, dict):
        raise ApiError(400, '"body" must be a JSON object')
    return key, kind, body


# -- the operations ---------------------------------------------------------------------------


def ledger_operations(daemon: Daemon) -> list[Operation]:
    """The ledger endpoints for `daemon`. Building them touches no daemon attribute,
    so the OpenAPI document can be made without a running node."""

    def store():  # the daemon's LedgerStore, looked up when a request needs it
        return daemon.repo.ledger

    async def ledger_status(request: Request) -> dict[str, Any]:
        _known_params(request)
        answer = await _view(views.status, store())
        sync, replication = daemon.sync, daemon.replication
        return {
            **answer,
            "pending": daemon.ledger.pending,
            "counters": dataclasses.asdict(daemon.ledger.counters),
            "sync": None if sync is None else dataclasses.asdict(sync.counters),
            "replication": (
                None if replication is None else dataclasses.asdict(replication.counters)
            ),
        }

    async def heads(request: Request) -> dict[str, Any]:
        _known_params(request, "after", "limit")
        limit = _int_param(request, "limit", views.DEFAULT_HEADS, 1, views.MAX_HEADS)
        return await _view(views.heads_page, store(), request.query_params.get("after"), limit)

    async def entry(request: Request) -> dict[str, Any]:
        _known_params(request)
        return await _view(views.entry_json, store(), request.path_params["id"])

    async def log_page(request: Request) -> dict[str, Any]:
        _known_params(request, "start", "limit")
        start = _int_param(request, "start", 0, 0, views.MAX_POSITION)
        limit = _int_param(request, "limit", views.DEFAULT_LOG, 1, views.MAX_LOG)
        return await _view(views.log_page, store(), start, limit)

    async def write(request: Request) -> dict[str, Any]:
        _known_params(request)
        name, kind, raw_body = _new_entry(await request.body())
        ledger = store()
        try:
            key = await trio.to_thread.run_sync(Keystore(daemon.repo.path).get, name)
            views.check_writable(ledger, kind)
            body = body_from_json(raw_body)
        except (InvalidKeyName, KeyNotFound, EntryError) as exc:
            raise _refused(exc) from None
        author = bytes(key.verify_key)
        await _view(views.check_feed_open, ledger, author)
        try:
            decision = await daemon.ledger.write(key, kind, body)
        except EntryError as exc:
            raise _refused(exc) from None
        except RepoError:
            # The store refuses a frozen feed too: a fork may have arrived just now.
            await _view(views.check_feed_open, ledger, author)
            raise
        return await _view(views.written_json, ledger, decision.entry)

    async def submit(request: Request) -> dict[str, Any]:
        _known_params(request)
        data = await request.body()
        if len(data) > MAX_ENTRY_SIZE:
            raise ApiError(
                413, f"an entry is at most {MAX_ENTRY_SIZE} bytes; this body is {len(data)}"
            )
        (outcome,) = await daemon.ledger.submit_bytes([data], publish=True)
        if isinstance(outcome, EntryError):
            raise ApiError(
                409,
                f"entry {id_text(entry_id_bytes(data))} refused: {rule_of(outcome)}: {outcome}",
                code="refused",
            )
        return _submitted(outcome)

    async def submit_batch(request: Request) -> dict[str, Any]:
        """Many entries in one request and one transaction: what a node's own client
        (a player writing receipts for its listeners) sends when it has many."""
        _known_params(request)
        data = await request.body()
        try:
            items = decode_batch(data, max_message_size=MAX_BATCH_BYTES, max_items=MAX_BATCH)
        except BatchTooLarge as exc:
            raise ApiError(413, f"batch refused: {exc}") from None
        except BatchDecodeError as exc:
            raise ApiError(400, f"not a batch of entries: {exc}") from None
        outcomes = await daemon.ledger.submit_bytes(items, publish=True)
        results: list[dict[str, Any]] = []
        for item, outcome in zip(items, outcomes, strict=True):
            if isinstance(outcome, EntryError):
                results.append({"id": id_text(entry_id_bytes(item)),
                                "refused": rule_of(outcome), "message": str(outcome)})
            else:
                results.append(_submitted(outcome))
        return {"results": results}

    async def tree_heads(request: Request) -> dict[str, Any]:
        _known_params(request, "limit")
        limit = _int_param(request, "limit", views.DEFAULT_TREE_HEADS, 1, views.MAX_TREE_HEADS)
        return await _view(views.tree_heads_json, store(), limit)

    async def sign_tree_head(request: Request) -> dict[str, Any]:
        _known_params(request, "force")
        force = _bool_param(request, "force")
        decision = await daemon.ledger.sign_tree_head(force=force)
        if decision is None:
            return {"tree_head": None}
        head = decision.entry
        return {"tree_head": views.tree_head_json(head, head.body["size"])}

    async def inclusion(request: Request) -> dict[str, Any]:
        _known_params(request, "size")
        size = _int_param(request, "size", None, 1, views.MAX_POSITION)
        return await _view(views.inclusion, store(), request.path_params["id"], size)

    async def consistency(request: Request) -> dict[str, Any]:
        _known_params(request, "old", "new")
        if "old" not in request.query_params:
            raise ApiError(400, "old (the smaller tree size) is required")
        old = _int_param(request, "old", None, 1, views.MAX_POSITION)
        new = _int_param(request, "new", None, 1, views.MAX_POSITION)
        return await _view(views.consistency, store(), old, new)

    async def export(request: Request) -> StreamingResponse:
        _known_params(request)
        ledger = store()

        def build() -> tuple[BinaryIO, int, int]:
            # Unnamed (unlinked at once on POSIX), next to the ledger rather than in a
            # /tmp that may be RAM: nothing is left behind, whatever the client does.
            handle = tempfile.TemporaryFile(  # noqa: SIM115 - the response closes it
                dir=daemon.repo.path, prefix=".ledger-export-"
            )
            try:
                manifest = export_ledger(ledger, handle, coop=daemon.options.coop)
                length = handle.tell()
                handle.seek(0)
            except BaseException:
                handle.close()
                raise
            return handle, manifest.size, length

        handle, size, length = await trio.to_thread.run_sync(build)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while piece := await trio.to_thread.run_sync(handle.read, _CHUNK):
                    yield piece
            finally:
                handle.close()

        name = f"ledger-{ledger.owner.hex()[:16]}-{size}.car"
        return StreamingResponse(
            chunks(),
            media_type=CAR_MEDIA_TYPE,
            headers={
                "Content-Disposition": f'attachment; filename="{name}"',
                "Content-Length": str(length),
            },
        )

    async def verify(request: Request) -> dict[str, Any]:
        _known_params(request)
        # One worker: a process pool forked from the daemon (threads, sockets) is not
        # safe; `chorus ledger verify` offline uses every core instead.
        report = await trio.to_thread.run_sync(lambda: verify_store(store(), workers=1))
        return report.to_json()

    async def sync(request: Request) -> dict[str, Any]:
        _known_params(request, "peer")
        if daemon.sync is None:
            raise ApiError(
                409,
                "this node is in no co-op, so it has no one to sync its ledger with "
                "(start the daemon with --coop GENESIS_CID)",
                code="no_coop",
            )
        peer = _peer_id(request.query_params.get("peer", ""))
        try:
            result = await daemon.sync.sync_with(peer)
        except SyncFailed as exc:
            raise ApiError(503, str(exc)) from None
        return dataclasses.asdict(result)

    limit = {"name": "limit", "in": "query", "required": False}
    entry_id = {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "the entry's id (its CID)",
        "schema": {"type": "string", "pattern": views.ENTRY_ID_PATTERN},
    }
    position = {"type": "integer", "minimum": 1, "maximum": views.MAX_POSITION}

    return [
        Operation(
            "GET", "/ledger", "getLedger", "The log: size, root, feeds, newest tree head, counters",
            ledger_status, _ref("LedgerStatus"), tag="ledger", errors=[400],
            description=(
                "Counters are since the daemon started; `sync` and `replication` are null "
                "when the node is in no co-op."
            ),
        ),
        Operation(
            "GET", "/ledger/heads", "getLedgerHeads", "Feed heads, a page at a time",
            heads, _ref("FeedHeads"), tag="ledger",
            parameters=[
                {
                    "name": "after",
                    "in": "query",
                    "required": False,
                    "description": "start after this author (the last of the previous page)",
                    "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                },
                {
                    **limit,
                    "schema": {
                        "type": "integer", "minimum": 1, "maximum": views.MAX_HEADS,
                        "default": views.DEFAULT_HEADS,
                    },
                },
            ],
            errors=[400],
        ),
        Operation(
            "GET", "/ledger/entries/{id}", "getLedgerEntry", "One entry, with its log index",
            entry, _ref("Entry"), tag="ledger", parameters=[entry_id], errors=[400, 404],
        ),
        Operation(
            "GET", "/ledger/log", "getLedgerLog", "The log in order, a page at a time",
            log_page, _ref("LogPage"), tag="ledger",
            parameters=[
                {
                    "name": "start",
                    "in": "query",
                    "required": False,
                    "description": "first log index",
                    "schema": {
                        "type": "integer", "minimum": 0, "maximum": views.MAX_POSITION,
                        "default": 0,
                    },
                },
                {
                    **limit,
                    "schema": {
                        "type": "integer", "minimum": 1, "maximum": views.MAX_LOG,
                        "default": views.DEFAULT_LOG,
                    },
                },
            ],
            errors=[400],
        ),
        Operation(
            "POST", "/ledger/entries", "postLedgerEntry",
            "Sign an entry with a member key, append it and announce it",
            write, _ref("Written"), tag="ledger",
            description=(
                "Signs `body` as the next entry of the key's feed (\"self\" is the node "
                "key; others are made with `chorus key new`). Bytes in the body are "
                'DAG-JSON ({"/": {"bytes": base64}}); floats are refused. Tree heads are '
                "signed with POST /ledger/tree-head instead."
            ),
            request_body={
                "required": True,
                "content": {"application/json": {"schema": _ref("NewEntry")}},
            },
            errors=[400, 404, 409, 422],
        ),
        Operation(
            "POST", "/ledger/submit", "postLedgerSubmit",
            "Submit an entry signed elsewhere, as its raw canonical bytes",
            submit, _ref("Submitted"), tag="ledger",
            description=(
                "The node judges the entry like one from gossip and announces it if it "
                f"stored it. At most {MAX_ENTRY_SIZE} bytes (413 beyond). `early`: its "
                "predecessors are missing, it waits for them; `frozen`: its feed is "
                "frozen by an equivocation; `fork`: it is the second entry its author "
                "signed for one seq, kept as evidence. An entry the node refuses is "
                "409 with code `refused`, its message naming the rule broken."
            ),
            request_body={
                "required": True,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            },
            errors=[400, 409, 413],
        ),
        Operation(
            "POST", "/ledger/submit-batch", "postLedgerSubmitBatch",
            "Submit many entries signed elsewhere in one request",
            submit_batch, _ref("SubmittedBatch"), tag="ledger",
            description=(
                "The body is a gossip batch (docs/gossip.md): canonical msgpack "
                "`{\"items\": [bin, ...], \"v\": 1}`, at most "
                f"{MAX_BATCH} entries and {MAX_BATCH_BYTES} bytes (413 beyond; 400 for "
                "anything else). The entries are judged in order in one transaction, like "
                "`/ledger/submit` one by one; each result is a verdict or, for an entry "
                "refused, the rule it broke. The stored entries are announced together."
            ),
            request_body={
                "required": True,
                "content": {
                    "application/msgpack": {"schema": {"type": "string", "format": "binary"}}
                },
            },
            errors=[400, 413],
        ),
        Operation(
            "GET", "/ledger/tree-heads", "getLedgerTreeHeads",
            "The node's newest signed tree heads, oldest first",
            tree_heads, _ref("TreeHeads"), tag="ledger",
            parameters=[
                {
                    **limit,
                    "schema": {
                        "type": "integer", "minimum": 1, "maximum": views.MAX_TREE_HEADS,
                        "default": views.DEFAULT_TREE_HEADS,
                    },
                }
            ],
            errors=[400],
        ),
        Operation(
            "POST", "/ledger/tree-head", "postLedgerTreeHead",
            "Sign a tree head over the whole log now",
            sign_tree_head, _ref("SignedTreeHead"), tag="ledger",
            description=(
                "Without force, only if the log grew (other than by tree heads) since the "
                "last one; the answer is then null."
            ),
            parameters=[
                {
                    "name": "force",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "boolean", "default": False},
                }
            ],
            errors=[400],
        ),
        Operation(
            "GET", "/ledger/proof/inclusion/{id}", "getLedgerInclusionProof",
            "Proof that an entry is in the log, backed by a signed tree head",
            inclusion, _ref("InclusionBundle"), tag="ledger",
            description=(
                "Verify offline with `chorus ledger proof verify`. Without size: the "
                "newest tree head; 409 if none covers the entry yet."
            ),
            parameters=[
                entry_id,
                {
                    "name": "size",
                    "in": "query",
                    "required": False,
                    "description": "the signed tree size to prove against",
                    "schema": position,
                },
            ],
            errors=[400, 404, 409],
        ),
        Operation(
            "GET", "/ledger/proof/consistency", "getLedgerConsistencyProof",
            "Proof that the log of one signed size is a prefix of a later one",
            consistency, _ref("ConsistencyBundle"), tag="ledger",
            description=(
                "Both sizes need signed tree heads (409 otherwise). Given in either "
                "order, the smaller is proved against the larger."
            ),
            parameters=[
                {"name": "old", "in": "query", "required": True, "schema": position},
                {
                    "name": "new",
                    "in": "query",
                    "required": False,
                    "description": "default: the newest tree head's size",
                    "schema": position,
                },
            ],
            errors=[400, 409],
        ),
        Operation(
            "GET", "/ledger/export", "getLedgerExport",
            "The whole log as an export CAR, for auditors",
            export, {"type": "string", "format": "binary"}, tag="ledger",
            media_type=CAR_MEDIA_TYPE, errors=[400],
            description=(
                "CARv1: a manifest block, then every entry in log order "
                "(ledger/export.py). Check it with `chorus ledger verify FILE`."
            ),
        ),
        Operation(
            "POST", "/ledger/verify", "postLedgerVerify",
            "Audit the node's own database: every entry, feed, tree head and table",
            verify, _ref("AuditReport"), tag="ledger", errors=[400],
        ),
        Operation(
            "POST", "/ledger/sync", "postLedgerSync", "Pull what a co-op peer has and we lack",
            sync, _ref("SyncResult"), tag="ledger",
            description=(
                "One /chorus/sync/1.0.0 session with the peer. 409 (code no_coop) on a "
                "node in no co-op; 503 if the session fails."
            ),
            parameters=[
                {
                    "name": "peer",
                    "in": "query",
                    "required": True,
                    "description": "the peer's libp2p peer ID",
                    "schema": {"type": "string", "pattern": "^[1-9A-HJ-NP-Za-km-z]{46,60}$"},
                }
            ],
            errors=[400, 409, 503],
        ),
    ]
