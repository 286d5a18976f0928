"""The node's ledger as JSON: read views over a `LedgerStore`, and the shapes they have.

Why one module for both front ends: `GET /api/chorus/v1/ledger/...` (node/ledger_api.py)
and `chorus ledger ...` without a daemon (cli/ledger.py) must print the same thing for
the same log, so both call these functions and neither formats an entry itself. The
daemon runs them in a worker thread (`NodeLedger.read`: SQLite blocks); the CLI calls
them directly on the repo it opened. They only read — writes go through the ledger's
single writer (node/ledger.py) or, offline, `LedgerStore.write` — except for the
checks a write needs first (`check_writable`, `check_feed_open`).

Everything is read through the store's reader connection, so one answer describes one
committed state of the log (WAL), never the writer's half-finished transaction: the
size is `log_size()`, and the root is recomputed from the stored Merkle nodes for that
size rather than taken from the writer's in-memory tree.

Errors say what to do: an id that is not an entry id or a page out of range is a
`LedgerRequestError` (the API's 400), an unknown entry `UnknownEntry` (404), a proof
no signed tree head can back `NoTreeHead` (409), a write to a feed frozen by an
equivocation `FeedFrozen` (409).

`SCHEMAS` holds the JSON Schemas of every shape here and of the API answers built on
them; node/chorus_api.py puts them in its OpenAPI document, and schemathesis checks
the daemon's answers against them (tests/node/test_chorus_api.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ledger.entry import SignedEntry, decode_entry
from ledger.jsonview import entry_to_json, id_text
from ledger.kinds import KINDS, TREE_HEAD
from ledger.proofs import consistency_bundle, inclusion_bundle
from ledger.schema import (
    Bool,
    Bytes,
    EntryId,
    Field,
    Int,
    ListOf,
    MapOf,
    Optional,
    Schema,
    SchemaError,
    Str,
    UnknownKind,
)
from protocol.cid import RAW, parse_cid
from protocol.errors import ChorusError, InvalidCID

from .json_schema import object_schema
from .keystore import KEY_NAME_RULE
from .ledger_store import LedgerCorrupt, LedgerStore, UnknownEntry

__all__ = [
    "DEFAULT_HEADS",
    "DEFAULT_LOG",
    "DEFAULT_TREE_HEADS",
    "ENTRY_ID_PATTERN",
    "MAX_HEADS",
    "MAX_LOG",
    "MAX_POSITION",
    "MAX_TREE_HEADS",
    "SCHEMAS",
    "FeedFrozen",
    "LedgerRequestError",
    "NoTreeHead",
    "check_feed_open",
    "check_writable",
    "consistency",
    "entry_json",
    "heads_page",
    "inclusion",
    "latest_tree_head",
    "log_page",
    "parse_author",
    "parse_entry_id",
    "status",
    "tree_head_json",
    "tree_heads_json",
    "writable_kinds",
    "written_json",
]

#: Feed heads per page of `heads_page`: at most, and when not asked.
MAX_HEADS, DEFAULT_HEADS = 4096, 1000
#: Entries per page of `log_page`: each is decoded and its signature checked again.
MAX_LOG, DEFAULT_LOG = 1000, 100
#: Tree heads per `tree_heads_json` answer.
MAX_TREE_HEADS, DEFAULT_TREE_HEADS = 1000, 20
#: Largest log position or size a request may name: exact in every JSON parser
#: (2**53 - 1) and far inside SQLite's 64-bit integers.
MAX_POSITION = 2**53 - 1
#: The text form of every entry id (CIDv1, raw, sha2-256, base32): "bafkrei" and 52
#: characters whose first and last carry fixed bits. The API documents ids with it.
ENTRY_ID_PATTERN = "^bafkrei[a-h][a-z2-7]{50}[aeimquy4]$"
_ENTRY_ID_PREFIX = bytes([0x01, RAW, 0x12, 0x20])
_AUTHOR = re.compile("[0-9a-f]{64}")


# -- errors -----------------------------------------------------------------------------


class LedgerRequestError(ChorusError, ValueError):
    """A request that names no possible entry, author, page or size (the API's 400)."""


class NoTreeHead(ChorusError):
    """A proof needs a signed tree head the node has not signed (yet)."""


class FeedFrozen(ChorusError):
    """A write to a feed frozen by an equivocation: its author signed two entries for
    one seq, and nothing of theirs after the fork is accepted any more."""


# -- parsing what a request names --------------------------------------------------------


def parse_entry_id(text: str) -> bytes:
    """The binary id of an entry given as CID text; LedgerRequestError otherwise."""
    try:
        cid = parse_cid(text)
    except InvalidCID as exc:
        raise LedgerRequestError(f"{text!r} is not an entry id: {exc}") from None
    raw = bytes(cid)
    if len(raw) != len(_ENTRY_ID_PREFIX) + 32 or not raw.startswith(_ENTRY_ID_PREFIX):
        raise LedgerRequestError(
            f"{text!r} is a CID but not an entry id: entry ids are CIDv1, raw, sha2-256 "
            "(bafkrei...)"
        )
    return raw


def parse_author(text: str) -> bytes:
    """A feed's author key from 64 lowercase hex digits; LedgerRequestError otherwise."""
    if not isinstance(text, str) or _AUTHOR.fullmatch(text) is None:
        raise LedgerRequestError(
            f"{text!r} is not an author key: 64 lowercase hex digits (an Ed25519 public key)"
        )
    return bytes.fromhex(text)


def _check_range(name: str, value: int, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise LedgerRequestError(f"{name} must be an integer in {low}..{high}, got {value!r}")
    return value


# -- reading ------------------------------------------------------------------------------


def _decode(index: int, data: bytes) -> SignedEntry:
    """An entry read back from the log; stored entries were verified, so a failure
    means the file changed under the node."""
    try:
        return decode_entry(data)
    except ChorusError as exc:
        raise LedgerCorrupt(f"the entry at log index {index} no longer decodes: {exc}") from None


def tree_head_json(entry: SignedEntry, index: int) -> dict[str, Any]:
    """A signed tree head as `TreeHead`: its id, log index, size, root and time."""
    return {
        "id": id_text(entry.id_bytes),
        "index": index,
        "size": entry.body["size"],
        "root": entry.body["root"].hex(),
        "time": entry.time,
    }


def latest_tree_head(store: LedgerStore) -> SignedEntry | None:
    """The node's newest signed tree head, or None if it signed none."""
    heads = store.tree_heads(limit=1)
    return heads[-1] if heads else None


def status(store: LedgerStore) -> dict[str, Any]:
    """Size, root, feed count, owner and newest tree head of the log as committed."""
    size = store.log_size()
    head = latest_tree_head(store)
    return {
        "size": size,
        "root": store.stored_root(size).hex(),
        "feeds": store.feed_count(),
        "owner": store.owner.hex(),
        "tree_head": None if head is None else tree_head_json(head, head.body["size"]),
    }


def heads_page(store: LedgerStore, after: str | None, limit: int = DEFAULT_HEADS) -> dict[str, Any]:
    """One page of feed heads in author order, strictly after author `after` (hex)."""
    start = None if after is None else parse_author(after)
    _check_range("limit", limit, 1, MAX_HEADS)
    rows = store.heads(start, limit + 1)  # one more than asked: is there another page?
    return {
        "feeds": [
            {
                "author": author.hex(),
                "seq": head.seq,
                "head": id_text(head.id),
                "time": head.time,
                "frozen_after": head.frozen_after,
            }
            for author, head in rows[:limit]
        ],
        "more": len(rows) > limit,
    }


def entry_json(store: LedgerStore, text: str) -> dict[str, Any]:
    """The entry with id `text` as `Entry`, with its log index; UnknownEntry if the
    node does not hold it."""
    entry_id = parse_entry_id(text)
    try:
        record = store.get(entry_id)
    except UnknownEntry:
        raise UnknownEntry(f"this node's log holds no entry {id_text(entry_id)}") from None
    return entry_to_json(_decode(record.index, record.data), index=record.index)


def log_page(store: LedgerStore, start: int = 0, limit: int = DEFAULT_LOG) -> dict[str, Any]:
    """Up to `limit` entries of the log from index `start`, and the log's size."""
    _check_range("start", start, 0, MAX_POSITION)
    _check_range("limit", limit, 1, MAX_LOG)
    entries = [
        entry_to_json(_decode(record.index, record.data), index=record.index)
        for record in store.iter_log(start, start + limit, page=limit)
    ]
    return {"entries": entries, "size": store.log_size()}


def tree_heads_json(store: LedgerStore, limit: int = DEFAULT_TREE_HEADS) -> dict[str, Any]:
    """The node's last `limit` signed tree heads, oldest first."""
    _check_range("limit", limit, 1, MAX_TREE_HEADS)
    return {
        "tree_heads": [tree_head_json(head, head.body["size"]) for head in store.tree_heads(limit)]
    }


def written_json(store: LedgerStore, entry: SignedEntry) -> dict[str, Any]:
    """What a write answers: the new entry's id, log index, seq and author."""
    record = store.get(entry.id_bytes)
    return {
        "id": id_text(entry.id_bytes),
        "index": record.index,
        "seq": entry.seq,
        "author": entry.author.hex(),
    }


# -- proofs --------------------------------------------------------------------------------


def _signed_head(store: LedgerStore, size: int) -> SignedEntry:
    try:
        return store.tree_head_for(size)
    except UnknownEntry:
        raise NoTreeHead(
            f"the node signed no tree head for size {size}; proofs are backed only by "
            "sizes it signed (see `chorus ledger tree-head`)"
        ) from None


def inclusion(store: LedgerStore, text: str, size: int | None = None) -> dict[str, Any]:
    """An inclusion bundle (ledger/proofs.py) for entry `text` in the log of `size`.

    Without `size`: the newest signed tree head, which must come after the entry.
    """
    entry_id = parse_entry_id(text)
    try:
        record = store.get(entry_id)
    except UnknownEntry:
        raise UnknownEntry(f"this node's log holds no entry {id_text(entry_id)}") from None
    if size is None:
        head = latest_tree_head(store)
        if head is None or head.body["size"] <= record.index:
            raise NoTreeHead(
                f"no tree head covers entry {id_text(entry_id)} (log index {record.index}) "
                "yet; sign one with `chorus ledger tree-head --sign`"
            )
        size = head.body["size"]
    else:
        _check_range("size", size, 1, MAX_POSITION)
        if size <= record.index:
            raise LedgerRequestError(
                f"entry {id_text(entry_id)} is at log index {record.index}; the log of "
                f"size {size} does not hold it yet"
            )
        head = _signed_head(store, size)
    hashes = store.inclusion_proof(record.index, size)
    return inclusion_bundle(record.data, record.index, size, hashes, head.encoded)


def consistency(store: LedgerStore, old: int, new: int | None = None) -> dict[str, Any]:
    """A consistency bundle: the log of size `old` is a prefix of the log of size
    `new` (default: the newest signed tree head). Both sizes need signed tree heads.

    The two sizes may come in either order: the bundle always proves the smaller one
    against the larger, which is the only thing a pair of sizes can mean.
    """
    _check_range("old", old, 1, MAX_POSITION)
    if new is None:
        head = latest_tree_head(store)
        if head is None:
            raise NoTreeHead(
                "the node has signed no tree head yet; sign one with "
                "`chorus ledger tree-head --sign`"
            )
        new = head.body["size"]
    else:
        _check_range("new", new, 1, MAX_POSITION)
    old, new = min(old, new), max(old, new)
    old_head, new_head = _signed_head(store, old), _signed_head(store, new)
    hashes = store.consistency_proof(old, new)
    return consistency_bundle(old, new, hashes, old_head.encoded, new_head.encoded)


# -- what may be written ---------------------------------------------------------------------


def writable_kinds(kinds: Mapping[str, Schema] = KINDS) -> dict[str, Schema]:
    """Kinds a member may write by hand: all but tree heads, which the node signs over
    its own log (a hand-made one would be a false statement about the log)."""
    return {kind: schema for kind, schema in kinds.items() if kind != TREE_HEAD.kind}


def check_writable(store: LedgerStore, kind: str) -> None:
    """SchemaError unless entries of `kind` may be written through the API or CLI."""
    if kind == TREE_HEAD.kind:
        raise SchemaError(
            "tree heads are signed by the node over its own log "
            "(`chorus ledger tree-head --sign`), not written by hand"
        )
    if kind not in store.kinds:
        raise UnknownKind(
            f"kind {kind!r} is not one this version of chorus knows "
            f"(known: {', '.join(sorted(writable_kinds(store.kinds)))})"
        )


def check_feed_open(store: LedgerStore, author: bytes) -> None:
    """FeedFrozen if `author`'s feed is frozen by an equivocation."""
    head = store.head(author)
    if head is not None and head.frozen_after is not None:
        raise FeedFrozen(
            f"the feed of {author.hex()} is frozen after seq {head.frozen_after}: its key "
            "signed two entries for one seq, so nothing more of it is accepted"
        )


# -- the JSON Schemas of these shapes (and of the API answers built on them) ----------------

_COUNT = {"type": "integer", "minimum": 0}
_HEX32 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_ENTRY_ID = {"type": "string", "pattern": ENTRY_ID_PATTERN, "description": "entry id (CID)"}
_BASE64 = {"type": "string", "pattern": "^[A-Za-z0-9+/]*={0,2}$"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _counters(*names: str, description: str) -> dict[str, Any]:
    return object_schema({name: _COUNT for name in names}, description=description)


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [{"type": "null"}, schema]}


_DAG_JSON_BYTES = object_schema(
    {"/": object_schema({"bytes": {"type": "string", "pattern": "^[A-Za-z0-9+/]*$"}})},
    description='bytes, the DAG-JSON way: {"/": {"bytes": unpadded base64}}',
)


def field_schema(spec: Field) -> dict[str, Any]:
    """The JSON Schema of a body field as the API takes it (ledger/jsonview.py's JSON).

    Exact for the field types ledger/schema.py has; a field type it does not know is
    described as "anything" (the node still checks it on write).
    """
    if isinstance(spec, Int):
        return {"type": "integer", "minimum": spec.minimum, "maximum": spec.maximum}
    if isinstance(spec, Str):
        schema: dict[str, Any] = {
            "type": "string", "minLength": spec.min_length, "maxLength": spec.max_length
        }
        if spec.choices is not None:
            schema["enum"] = sorted(spec.choices)
        return schema
    if isinstance(spec, Bool):
        return {"type": "boolean"}
    if isinstance(spec, Bytes | EntryId):
        return _DAG_JSON_BYTES
    if isinstance(spec, Optional):
        return _nullable(field_schema(spec.inner))
    if isinstance(spec, ListOf):
        return {
            "type": "array",
            "items": field_schema(spec.item),
            "minItems": spec.min_items,
            "maxItems": spec.max_items,
            "uniqueItems": spec.unique,
        }
    if isinstance(spec, MapOf):
        return _fields_schema(spec.fields)
    return {}


def _fields_schema(fields: Mapping[str, Field]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [name for name, spec in fields.items() if not isinstance(spec, Optional)],
        "additionalProperties": False,
        "properties": {name: field_schema(spec) for name, spec in fields.items()},
    }


def _new_entry_schema(kinds: Mapping[str, Schema]) -> dict[str, Any]:
    """`POST /ledger/entries`: one alternative per writable kind, with its body."""
    key = {
        "type": "string",
        "pattern": f"^{KEY_NAME_RULE}$",
        "description": 'the member key to sign with ("self": the node key)',
    }
    return {
        "description": "an entry to sign and append; cross-field rules of a kind are "
        "checked by the node and not described here",
        "oneOf": [
            object_schema(
                {"key": key, "kind": {"const": kind}, "body": _fields_schema(schema.fields)},
                description=schema.doc,
            )
            for kind, schema in sorted(writable_kinds(kinds).items())
        ],
    }


def _entry_schema() -> dict[str, Any]:
    return object_schema(
        {
            "id": _ENTRY_ID,
            "index": {"type": ["integer", "null"], "minimum": 0, "description": "log index"},
            "author": _HEX32,
            "seq": {"type": "integer", "minimum": 1},
            "prev": {"oneOf": [{"type": "null"}, _ENTRY_ID]},
            "time": {**_COUNT, "description": "milliseconds since 1970 (the signer's clock)"},
            "kind": {"type": "string"},
            "body": {"type": "object", "description": "the body, bytes as DAG-JSON"},
            "sig": {"type": "string", "pattern": "^[0-9a-f]{128}$"},
            "data": {**_BASE64, "description": "the signed canonical encoding, base64"},
        },
        description="a signed ledger entry (docs/ledger.md)",
    )


_TREE_HEAD = object_schema(
    {
        "id": _ENTRY_ID,
        "index": {**_COUNT, "description": "where the head sits in the log (= size)"},
        "size": {**_COUNT, "description": "entries the head covers"},
        "root": {**_HEX32, "description": "RFC 9162 Merkle root of those entries"},
        "time": {**_COUNT, "description": "when it was signed, ms"},
    },
    description="a tree head the node signed over its own log",
)

_HASHES = {"type": "array", "items": _HEX32}

SCHEMAS: dict[str, dict[str, Any]] = {
    "TreeHead": _TREE_HEAD,
    "LedgerCounters": _counters(
        "appended", "forks", "duplicates", "early", "frozen", "invalid", "tree_heads",
        "transactions", "pending_dropped",
        description="the ledger writer's work since the daemon started",
    ),
    "SyncCounters": _counters(
        "sessions", "failed", "served", "entries_fetched", "entries_stored",
        "entries_served", "refused", "busy", "hostile_replies",
        description="/chorus/sync/1.0.0 sessions since the daemon started",
    ),
    "ReplicationCounters": _counters(
        "received", "dropped_injected", "published", "refused",
        description="ledger entries on the co-op's gossip topic since the daemon started",
    ),
    "LedgerStatus": object_schema(
        {
            "size": {**_COUNT, "description": "entries in the log"},
            "root": {**_HEX32, "description": "Merkle root of the whole log"},
            "feeds": {**_COUNT, "description": "authors with a feed"},
            "owner": {**_HEX32, "description": "the node key: signer of the tree heads"},
            "pending": {**_COUNT, "description": "entries waiting for their predecessors"},
            "tree_head": _nullable(_ref("TreeHead")),
            "counters": _ref("LedgerCounters"),
            "sync": _nullable(_ref("SyncCounters")),
            "replication": _nullable(_ref("ReplicationCounters")),
        }
    ),
    "FeedHead": object_schema(
        {
            "author": _HEX32,
            "seq": {"type": "integer", "minimum": 1},
            "head": _ENTRY_ID,
            "time": _COUNT,
            "frozen_after": {
                "type": ["integer", "null"],
                "minimum": 0,
                "description": "set when the author equivocated: the last seq that counts",
            },
        }
    ),
    "FeedHeads": object_schema(
        {
            "feeds": {"type": "array", "items": _ref("FeedHead")},
            "more": {"type": "boolean", "description": "another page follows (after=last)"},
        }
    ),
    "Entry": _entry_schema(),
    "LogPage": object_schema(
        {
            "entries": {"type": "array", "items": _ref("Entry")},
            "size": {**_COUNT, "description": "entries in the whole log"},
        }
    ),
    "NewEntry": _new_entry_schema(KINDS),
    "Written": object_schema(
        {
            "id": _ENTRY_ID,
            "index": _COUNT,
            "seq": {"type": "integer", "minimum": 1},
            "author": _HEX32,
        }
    ),
    "Submitted": object_schema(
        {
            "id": _ENTRY_ID,
            "verdict": {"enum": ["append", "duplicate", "fork", "early", "frozen"]},
        }
    ),
    "SubmittedBatch": object_schema(
        {
            "results": {
                "type": "array",
                "items": {
                    "oneOf": [
                        _ref("Submitted"),
                        object_schema({
                            "id": _ENTRY_ID,
                            "refused": {"type": "string", "description": "the rule broken"},
                            "message": {"type": "string"},
                        }),
                    ]
                },
                "description": "one per entry, in the batch's order",
            }
        }
    ),
    "TreeHeads": object_schema({"tree_heads": {"type": "array", "items": _ref("TreeHead")}}),
    "SignedTreeHead": object_schema(
        {"tree_head": {**_nullable(_ref("TreeHead")), "description": "null: nothing new"}}
    ),
    "InclusionBundle": object_schema(
        {
            "type": {"const": "inclusion"},
            "index": _COUNT,
            "size": {"type": "integer", "minimum": 1},
            "entry": _BASE64,
            "hashes": _HASHES,
            "tree_head": _BASE64,
        },
        description="entry at index of the log of size, with the signed tree head",
    ),
    "ConsistencyBundle": object_schema(
        {
            "type": {"const": "consistency"},
            "old_size": {"type": "integer", "minimum": 1},
            "new_size": {"type": "integer", "minimum": 1},
            "hashes": _HASHES,
            "old_tree_head": _BASE64,
            "new_tree_head": _BASE64,
        },
        description="the log of old_size is a prefix of the log of new_size",
    ),
    "AuditReport": object_schema(
        {
            "ok": {"type": "boolean", "description": "no errors (forks are anomalies)"},
            "clean": {"type": "boolean", "description": "no errors and no anomalies"},
            "entries": _COUNT,
            "feeds": _COUNT,
            "root": {"type": "string", "pattern": "^([0-9a-f]{64})?$"},
            "log_owner": {"oneOf": [{"type": "null"}, _HEX32]},
            "kinds": {"type": "object", "additionalProperties": _COUNT},
            "tree_heads": {
                "type": "array",
                "items": object_schema(
                    {
                        "index": _COUNT,
                        "size": _COUNT,
                        "root": _HEX32,
                        "time": _COUNT,
                        "entry": {"type": "string"},
                    }
                ),
            },
            "uncovered": {**_COUNT, "description": "entries after the last tree head"},
            "forks": {
                "type": "array",
                "items": object_schema(
                    {
                        "author": _HEX32,
                        "seq": {"type": "integer", "minimum": 1},
                        "entries": {"type": "array", "items": {"type": "string"}},
                    }
                ),
            },
            "errors": _COUNT,
            "anomalies": _COUNT,
            "findings": {
                "type": "array",
                "items": object_schema(
                    {
                        "rule": {"type": "string"},
                        "severity": {"enum": ["error", "anomaly"]},
                        "index": {"type": ["integer", "null"], "minimum": 0},
                        "entry": {"type": ["string", "null"]},
                        "message": {"type": "string"},
                    }
                ),
            },
        },
        description="the auditor's replay of the log (ledger/verify.py)",
    ),
    "SyncResult": object_schema(
        {
            "peer": {"type": "string"},
            "feeds": {**_COUNT, "description": "feeds the peer advertised"},
            "ranges": {**_COUNT, "description": "ranges of entries asked for"},
            "fetched": _COUNT,
            "stored": _COUNT,
        }
    ),
}
