"""Ledger entries: ``{author, seq, prev, time, kind, body}`` in canonical msgpack, signed.

Why canonical: an entry's id is the CID of its signed bytes, and equivocation is
"two entries with the same author and seq". If one logical entry had two byte forms,
anyone relaying it could mint a second id for it (a fake fork proof, a duplicate in
every tally). So each entry has exactly one byte form, and `decode_entry` refuses any
other: it decodes strictly, checks every type, re-encodes canonically and demands
byte equality. The rules are written out in docs/ledger.md.

Rules of this file, as in ledger/merkle.py: pure and synchronous. No I/O, no clock
(``time`` is whatever the caller gives), bytes and values in, `SignedEntry` or a typed
error out. Nothing a peer sends can make `decode_entry` raise anything but an
`EntryError` subclass.

Canonical form (summary)
------------------------
* The signed envelope is a msgpack map of exactly the keys ``author body kind prev
  seq sig time``, in that order (sorted by UTF-8 key bytes); the unsigned form that
  is signed is the same map without ``sig``.
* ``author``: bin, 32 bytes (Ed25519 public key). ``sig``: bin, 64 bytes.
  ``prev``: nil when ``seq == 1``, else bin holding a binary CIDv1 (raw, sha2-256)
  entry id. ``seq``: int, 1..2**63-1. ``time``: int milliseconds, 0..2**63-1.
  ``kind``: str matching ``[a-z][a-z0-9_.]{0,31}``. ``body``: map.
* Body values are nil, bool, int (-2**63..2**64-1), str (UTF-8, ``str`` type), bin,
  array and map with str keys, sorted by UTF-8 bytes, nested at most 32 deep. No
  floats, no ext types (timestamps included), no duplicate keys.
* Integers and lengths take their smallest msgpack encoding (what msgpack-python
  writes). The whole signed encoding is at most 64 KiB, checked before decoding.
* Signature: Ed25519 over ``b"chorus/entry/v1\\x00" + unsigned encoding``. The domain
  prefix keeps an entry signature from ever being valid as any other chorus
  signature made by the same key (receipts, tree heads, genesis).
* Id: CIDv1, raw codec, sha2-256 of the signed encoding, so an entry is a block.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any

import msgpack
from nacl.exceptions import CryptoError
from nacl.signing import SigningKey, VerifyKey

from protocol.cid import CID, RAW, make_cid
from protocol.errors import ChorusError, DecodeError

__all__ = [
    "DOMAIN",
    "MAX_BODY_DEPTH",
    "MAX_ENTRY_SIZE",
    "BadSignature",
    "EntryError",
    "EntryTooLarge",
    "InvalidEntry",
    "MalformedEntry",
    "NonCanonicalEntry",
    "SignedEntry",
    "decode_entry",
    "decode_entry_checked_elsewhere",
    "entry_id_bytes",
    "sign_entry",
]

#: Prefix of every signed entry message: "what this signature is for", versioned.
DOMAIN = b"chorus/entry/v1\x00"
#: Largest signed encoding accepted or produced, far under the 2 MiB block limit so a
#: gossip message or a sync batch of entries stays small.
MAX_ENTRY_SIZE = 64 * 1024
#: Deepest nesting of arrays/maps inside ``body`` (body itself is depth 1); keeps the
#: recursive checks far from Python's recursion limit on hostile input.
MAX_BODY_DEPTH = 32

AUTHOR_SIZE = 32
SIGNATURE_SIZE = 64
_MAX_U63 = (1 << 63) - 1
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1  # what msgpack can represent
# Entry ids are always CIDv1 + raw + sha2-256 + 32-byte digest: one binary form.
_ID_PREFIX = bytes([0x01, RAW, 0x12, 0x20])
_ID_SIZE = len(_ID_PREFIX) + 32
_KIND = re.compile(r"[a-z][a-z0-9_.]{0,31}")
_SIGNED_KEYS = ("author", "body", "kind", "prev", "seq", "sig", "time")
_UNSIGNED_KEYS = tuple(key for key in _SIGNED_KEYS if key != "sig")


# --- errors -------------------------------------------------------------------------


class EntryError(ChorusError):
    """Base of everything refused about a ledger entry."""


class InvalidEntry(EntryError, ValueError):
    """Fields given to `sign_entry` that no valid entry can hold (the caller's bug)."""


class MalformedEntry(EntryError, DecodeError):
    """Bytes that are not an entry: bad msgpack, wrong keys or types, bad field values."""


class NonCanonicalEntry(EntryError, DecodeError):
    """A decodable entry in a byte form other than its one canonical form.

    Refused even when well signed: accepting it would give one entry a second id.
    """


class BadSignature(EntryError):
    """A canonical entry whose signature does not verify under its own author key."""


class EntryTooLarge(EntryError, ValueError):
    """A signed encoding larger than MAX_ENTRY_SIZE; refused before any decoding."""


# --- the entry ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedEntry:
    """A verified entry and its canonical signed bytes.

    Only `sign_entry` and `decode_entry` make valid ones. ``encoded`` is the truth;
    the other fields are its decoded view (do not mutate ``body``).
    """

    author: bytes
    seq: int
    prev: bytes | None
    time: int
    kind: str
    body: dict[str, Any]
    sig: bytes
    encoded: bytes = field(repr=False)

    @property
    def id(self) -> CID:
        """CIDv1 (raw, sha2-256) of the signed encoding: the entry as an IPFS block."""
        return make_cid(self.encoded, version=1, codec=RAW)

    @property
    def id_bytes(self) -> bytes:
        """The id in its 36-byte binary form (what ``prev`` holds), computed cheaply."""
        return entry_id_bytes(self.encoded)

    @property
    def signing_input(self) -> bytes:
        """The exact bytes the signature covers: DOMAIN + canonical unsigned entry."""
        return _signing_input(self.author, self.seq, self.prev, self.time, self.kind, self.body)


def entry_id_bytes(encoded: bytes) -> bytes:
    """Binary CIDv1 (raw, sha2-256) of signed entry bytes, without building a CID."""
    return _ID_PREFIX + sha256(encoded).digest()


# --- canonical encoding ---------------------------------------------------------------


def _pack(value: object) -> bytes:
    # use_bin_type: bytes -> bin, str -> str; strict_types: no subclass coercion.
    # Integers and lengths always come out in their smallest encoding.
    return msgpack.packb(value, use_bin_type=True, strict_types=True)


def _sorted_value(value: Any) -> Any:
    """`value` with every map's keys in UTF-8 byte order (== code point order)."""
    if type(value) is dict:
        return {key: _sorted_value(value[key]) for key in sorted(value)}
    if type(value) is list:
        return [_sorted_value(item) for item in value]
    return value


def _sorted_deep(value: Any) -> bool:
    """Whether every map in `value` has its keys in canonical (code point) order."""
    kind = type(value)
    if kind is dict:
        keys = list(value)
        for before, after in itertools.pairwise(keys):
            if before >= after:
                return False
        return all(_sorted_deep(item) for item in value.values())
    if kind is list:
        return all(_sorted_deep(item) for item in value)
    return True


def _unsigned_map(
    author: bytes, seq: int, prev: bytes | None, time: int, kind: str, body: dict[str, Any]
) -> dict[str, Any]:
    fields = {"author": author, "body": _sorted_value(body), "kind": kind,
              "prev": prev, "seq": seq, "time": time}
    return {key: fields[key] for key in _UNSIGNED_KEYS}


def _signing_input(
    author: bytes, seq: int, prev: bytes | None, time: int, kind: str, body: dict[str, Any]
) -> bytes:
    return DOMAIN + _pack(_unsigned_map(author, seq, prev, time, kind, body))


def _signed_encoding(
    author: bytes, seq: int, prev: bytes | None, time: int, kind: str,
    body: dict[str, Any], sig: bytes,
) -> bytes:
    fields = _unsigned_map(author, seq, prev, time, kind, body)
    fields["sig"] = sig
    return _pack({key: fields[key] for key in _SIGNED_KEYS})


# --- validation -----------------------------------------------------------------------


def _check_body_value(value: object, path: str, depth: int, error: type[EntryError]) -> None:
    """Refuse anything outside the body's value model (floats, ext, tuples, int keys...)."""
    kind = type(value)
    if value is None or kind is bool or kind is str or kind is bytes:
        if kind is str:
            try:
                value.encode("utf-8")  # type: ignore[union-attr]
            except UnicodeEncodeError:
                raise error(f"{path} is a string that is not valid UTF-8") from None
        return
    if kind is int:
        if not _INT_MIN <= value <= _INT_MAX:  # type: ignore[operator]
            raise error(f"{path} integer {value} is outside msgpack's -2**63..2**64-1")
        return
    if kind is list or kind is dict:
        if depth >= MAX_BODY_DEPTH:
            raise error(f"{path} nests deeper than {MAX_BODY_DEPTH} levels")
        if kind is list:
            for position, item in enumerate(value):  # type: ignore[arg-type]
                _check_body_value(item, f"{path}[{position}]", depth + 1, error)
            return
        for key, item in value.items():  # type: ignore[union-attr]
            if type(key) is not str:
                raise error(f"{path} has a map key of type {type(key).__name__}, not str")
            _check_body_value(key, f"{path} key", depth + 1, error)
            _check_body_value(item, f"{path}[{key!r}]", depth + 1, error)
        return
    raise error(f"{path} has a value of type {kind.__name__} (no floats or ext types)")


def _check_fields(
    author: object, seq: object, prev: object, time: object, kind: object, body: object,
    error: type[EntryError],
) -> None:
    """Every field rule that does not depend on the byte form, raising `error`."""
    if type(author) is not bytes or len(author) != AUTHOR_SIZE:
        raise error(f"author must be a {AUTHOR_SIZE}-byte Ed25519 public key")
    if type(seq) is not int or not 1 <= seq <= _MAX_U63:
        raise error(f"seq must be an integer in 1..2**63-1, got {seq!r}")
    if seq == 1:
        if prev is not None:
            raise error("prev must be nil for seq 1, the first entry of a feed")
    elif type(prev) is not bytes or len(prev) != _ID_SIZE or not prev.startswith(_ID_PREFIX):
        raise error(f"prev of seq {seq} must be a binary CIDv1 (raw, sha2-256) entry id")
    if type(time) is not int or not 0 <= time <= _MAX_U63:
        raise error(f"time must be integer milliseconds in 0..2**63-1, got {time!r}")
    if type(kind) is not str or not _KIND.fullmatch(kind):
        raise error(f"kind {kind!r} does not match [a-z][a-z0-9_.]{{0,31}}")
    if type(body) is not dict:
        raise error(f"body must be a map, got {type(body).__name__}")
    _check_body_value(body, "body", 1, error)


# --- the two ways in ------------------------------------------------------------------


def sign_entry(
    signing_key: SigningKey,
    seq: int,
    prev: bytes | CID | None,
    time_ms: int,
    kind: str,
    body: dict[str, Any],
) -> SignedEntry:
    """Sign an entry as `signing_key`'s feed entry number `seq`.

    `prev` is the id of entry seq-1 (a CID or its binary form), None for seq 1.
    Raises InvalidEntry for fields no entry may hold, EntryTooLarge if the signed
    encoding exceeds MAX_ENTRY_SIZE. Body maps may be in any order: they are sorted.
    """
    if not isinstance(signing_key, SigningKey):
        raise InvalidEntry(f"signing_key must be a nacl SigningKey, got {type(signing_key)}")
    if isinstance(prev, CID):
        prev = bytes(prev)
    author = bytes(signing_key.verify_key)
    _check_fields(author, seq, prev, time_ms, kind, body, InvalidEntry)
    message = _signing_input(author, seq, prev, time_ms, kind, body)
    sig = signing_key.sign(message).signature
    encoded = _signed_encoding(author, seq, prev, time_ms, kind, body, sig)
    if len(encoded) > MAX_ENTRY_SIZE:
        raise EntryTooLarge(f"entry is {len(encoded)} bytes; the limit is {MAX_ENTRY_SIZE}")
    # Hand back the decoded view of our own bytes, so a signed and a received entry
    # are indistinguishable (sorted body, fresh objects the caller does not share).
    return _parse(encoded)


def decode_entry(data: bytes) -> SignedEntry:
    """Parse and verify an entry from its signed bytes.

    Order of checks: size (EntryTooLarge), strict msgpack and field types
    (MalformedEntry), byte-for-byte canonical form (NonCanonicalEntry), then the
    signature (BadSignature). Nothing else escapes.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedEntry(f"entry must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_ENTRY_SIZE:
        raise EntryTooLarge(f"entry is {len(data)} bytes; the limit is {MAX_ENTRY_SIZE}")
    entry = _parse(data)
    # The signing input from the parsed fields as they are: `_parse` proved every map
    # already in canonical order, so `signing_input`'s sorted copy would be the same.
    unsigned = {key: getattr(entry, key) for key in _UNSIGNED_KEYS}
    try:
        VerifyKey(entry.author).verify(DOMAIN + _pack(unsigned), entry.sig)
    except CryptoError:
        raise BadSignature(
            f"signature of seq {entry.seq} does not verify under author {entry.author.hex()}"
        ) from None
    return entry


def decode_entry_checked_elsewhere(data: bytes) -> SignedEntry:
    """`decode_entry` without its checks, for bytes that already went through
    `decode_entry` (the parallel audit's workers; a node's own log, where only
    verified entries are stored; bytes whose id is that of a stored entry). Never use
    it on bytes that were not checked.

    Why a fast path: the canonical re-encoding and the field checks cost 30 µs an
    entry, most of a tally of a node's log (0.54 s of 0.7 s for 30,000 receipts). Bytes
    that do not unpack into an entry's fields (a damaged file) go through the full
    parse, which raises the typed error that names the damage.
    """
    if len(data) > MAX_ENTRY_SIZE:
        raise EntryTooLarge(f"entry is {len(data)} bytes; the limit is {MAX_ENTRY_SIZE}")
    data = bytes(data)
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=True, timestamp=0)
        if type(value) is dict and len(value) == len(_SIGNED_KEYS):
            entry = SignedEntry(
                value["author"], value["seq"], value["prev"], value["time"],
                value["kind"], value["body"], value["sig"], data,
            )
            # The field types every reader relies on (cheap; the rest is trusted).
            if (
                type(entry.author) is bytes
                and type(entry.seq) is int
                and type(entry.time) is int
                and type(entry.kind) is str
                and type(entry.body) is dict
                and type(entry.sig) is bytes
                and (entry.prev is None or type(entry.prev) is bytes)
            ):
                return entry
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError,
            msgpack.UnpackException):
        pass
    return _parse(data)


def _parse(data: bytes) -> SignedEntry:
    """Decode strictly, type-check, and require that re-encoding gives `data` back."""
    try:
        value = msgpack.unpackb(
            data,
            raw=False,  # str must be valid UTF-8 and stays distinct from bin
            strict_map_key=True,  # map keys only str/bin (bin is refused below)
            use_list=True,
            timestamp=0,  # ext -1 decodes to a Timestamp object, refused as a type
        )
    except msgpack.ExtraData:
        raise NonCanonicalEntry("trailing bytes after the entry map") from None
    except (ValueError, TypeError, OverflowError, RecursionError, msgpack.UnpackException) as exc:
        raise MalformedEntry(f"not msgpack: {type(exc).__name__}: {exc}") from None
    if type(value) is not dict:
        raise MalformedEntry(f"entry must be a msgpack map, got {type(value).__name__}")
    keys = set(value)
    if keys != set(_SIGNED_KEYS):
        missing = sorted(set(_SIGNED_KEYS) - keys)
        unknown = sorted(map(repr, keys - set(_SIGNED_KEYS)))
        raise MalformedEntry(f"entry keys wrong: missing {missing}, unknown {unknown}")
    author, seq, prev, time = value["author"], value["seq"], value["prev"], value["time"]
    kind, body, sig = value["kind"], value["body"], value["sig"]
    _check_fields(author, seq, prev, time, kind, body, MalformedEntry)
    if type(sig) is not bytes or len(sig) != SIGNATURE_SIZE:
        raise MalformedEntry(f"sig must be {SIGNATURE_SIZE} bytes of bin")
    # Canonical iff the keys came in canonical order at every level and packing the
    # decoded value gives the same bytes (integer and length widths; a repeated key
    # collapses on decoding and packs shorter). Same test as re-encoding the fields
    # with `_signed_encoding`, at half the cost: no sorted copy of the body is built.
    if tuple(value) != _SIGNED_KEYS or not _sorted_deep(body) or _pack(value) != data:
        # Same logical entry, other bytes: key order, wide ints, duplicate keys...
        raise NonCanonicalEntry(
            "entry is not in canonical form (key order, integer or length widths, "
            "or duplicate keys differ from the one canonical encoding)"
        )
    return SignedEntry(author, seq, prev, time, kind, body, sig, data)
