"""Bitswap messages (specs.ipfs.tech/bitswap-protocol), as Kubo (boxo) and Helia speak them.

Block exchange with Kubo and Helia peers rests on this file: it turns a Bitswap
message into bytes for one protocol version, bytes from any peer into a `Message`,
and a stream into length-prefixed frames. It does no I/O and keeps no clock;
`node/` owns the streams, the wantlists and the policy.

Wire format (proto3, boxo's bitswap/message/pb/message.proto; field numbers shown)
---------------------------------------------------------------------------------
    Message       { Wantlist wantlist = 1; repeated bytes blocks = 2;
                    repeated Block payload = 3; repeated BlockPresence blockPresences = 4;
                    int32 pendingBytes = 5; }
    Wantlist      { repeated Entry entries = 1; bool full = 2; }
    Entry         { bytes block = 1 (a binary CID); int32 priority = 2; bool cancel = 3;
                    WantType wantType = 4 (Block = 0, Have = 1); bool sendDontHave = 5; }
    Block         { bytes prefix = 1; bytes data = 2; }
    BlockPresence { bytes cid = 1; BlockPresenceType type = 2 (Have = 0, DontHave = 1); }

On a stream every message is `uvarint(length) || message`, at most 4 MiB (the spec's
"MUST be less than or equal to 4MiB"; go-libp2p's network.MessageSizeMax = 1 << 22;
Helia's DEFAULT_MAX_INCOMING_MESSAGE_SIZE).

Versions
--------
    protocol id          blocks travel as        want-have, sendDontHave,
                                                 presences, pendingBytes
    /ipfs/bitswap/1.2.0  payload {prefix, data}  yes
    /ipfs/bitswap/1.1.0  payload {prefix, data}  no (want-haves downgraded, see below)
    /ipfs/bitswap/1.0.0  blocks (raw, CIDv0)     no; only CIDv0 blocks can be sent
    /ipfs/bitswap        as 1.0.0 (boxo sends its 1.0.0 form on it)

A payload's prefix is the CID without its digest: `uvarint(version) uvarint(codec)
uvarint(hash code) uvarint(digest length)`; a CIDv0 block's prefix is 00 70 12 20.
The receiver hashes `data` to rebuild the CID, so a payload block always matches its
CID by construction: the node must still check that it is a block it asked for.

Encoding (what a peer of each version receives)
-----------------------------------------------
Fields are written in field-number order with proto3 defaults omitted, as boxo's
gogo-generated code and Helia's protons code do (boxo also writes an empty wantlist
as `0a 00`; chorus omits it, which decodes identically everywhere).
- 1.1.0 and 1.0.0 peers cannot answer a want-have. Following boxo's message queue,
  a want-have is sent as a want-block by default (what boxo does with broadcast
  want-haves), or left out with `want_have_fallback="drop"` (what boxo does with a
  targeted want-have). sendDontHave is never sent to them; a cancel stays a cancel.
  Presences and pendingBytes are not sent either (boxo sends them to 1.1 peers as
  fields they ignore; leaving them out is the same to the peer).
- 1.0.0 blocks carry no prefix and the receiver hashes them as CIDv0 (dag-pb,
  sha2-256), so only CIDv0 blocks can be sent; any other is a ValueError.
- Anything a peer would refuse (a block over MAX_BLOCK_SIZE, a message over
  MAX_MESSAGE_SIZE, an int32 out of range) is a ValueError: it is the caller's bug.

Decoding (what chorus accepts from anyone)
------------------------------------------
Liberal in structure, as protobuf is: fields in any order, unknown fields skipped
(varint, fixed32, fixed64 and length-delimited), a repeated scalar's last value wins,
a repeated wantlist merges, explicit default values accepted (Helia writes
`cancel: false`). Strict about everything else; every refusal is a `BitswapError`
naming the field and the offset, and no other exception escapes for any input:
- varints: the strict, minimal uvarints of `protocol.varint`; groups and wire types
  6 and 7 refused; a known field with the wrong wire type refused (as boxo does);
- int32 fields must hold a real int32 (negatives are 10-byte varints); enums must be
  0 or 1; bools are any varint (nonzero is true, as in every protobuf runtime);
- a wantlist entry or presence without a CID, a CID that does not parse or is longer
  than MAX_CID_SIZE (boxo's MaximumAllowedCid), a payload block without a prefix;
- a block over MAX_BLOCK_SIZE; more than MAX_WANTLIST_ENTRIES entries,
  MAX_BLOCK_PRESENCES presences or MAX_BLOCKS blocks in one message;
- a malformed prefix: bad varints, trailing bytes, a version other than 0 or 1, a v0
  prefix other than dag-pb/sha2-256/32.
A well-formed prefix chorus cannot hash (a hash other than sha2-256, a sha2-256
digest length other than 32, a codec multiformats does not know) is not the peer's
fault: that block is skipped and listed in `Message.skipped`, the rest of the message
is kept (Helia does the same; boxo fails the whole message). A negative pendingBytes
is read as 0: it is advice about the sender's queue, not worth dropping a message over.
The decoder reads the same fields whatever the protocol version (as boxo does): a
1.0.0 `blocks` entry is taken as CIDv0, the only CID 1.0.0 has.

The limits bound the work one message can cost: a 4 MiB frame of tiny entries or
empty blocks would otherwise mean ~100,000 CIDs or hashes. MAX_WANTLIST_ENTRIES is 8x
boxo's per-peer queue (MaxQueuedWantlistEntriesPerPeer = 1024, which boxo enforces by
truncating, not refusing), so an honest full wantlist is never refused; the node
should truncate what it keeps per peer the same way. Decoding cost per entry is ~30 us
for the sha2-256 dag-pb/raw CIDs `cid_from_bytes` builds directly, but ~0.4 ms for any
other CID (multiformats' validating constructor): 8192 dag-cbor CIDs, 330 KB on the
wire, take ~3 s. `decode_message` takes the limits as arguments for a node that wants
them tighter.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final, Literal

from multiformats import CID

from .cid import (
    DAG_PB,
    MAX_BLOCK_SIZE,
    SHA2_256,
    cid_from_bytes,
    cid_from_digest,
    cid_from_multihash,
)
from .errors import DecodeError, InvalidCID
from .incremental import IncrementalInput, Sentinel
from .varint import MAX_VARINT_BYTES, decode_uvarint, encode_uvarint

__all__ = [
    "END_OF_STREAM",
    "MAX_BLOCKS",
    "MAX_BLOCK_PRESENCES",
    "MAX_CID_SIZE",
    "MAX_MESSAGE_SIZE",
    "MAX_WANTLIST_ENTRIES",
    "NEED_DATA",
    "PROTOCOLS",
    "PROTOCOL_1_0_0",
    "PROTOCOL_1_1_0",
    "PROTOCOL_1_2_0",
    "PROTOCOL_UNVERSIONED",
    "BitswapError",
    "BlockPresence",
    "FrameDecoder",
    "Message",
    "PresenceType",
    "SkippedBlock",
    "UnsupportedPrefix",
    "WantEntry",
    "WantType",
    "Wantlist",
    "cid_from_prefix",
    "decode_message",
    "encode_frame",
    "encode_message",
    "prefix_of",
    "supports_have",
]

PROTOCOL_1_2_0: Final = "/ipfs/bitswap/1.2.0"
PROTOCOL_1_1_0: Final = "/ipfs/bitswap/1.1.0"
PROTOCOL_1_0_0: Final = "/ipfs/bitswap/1.0.0"
PROTOCOL_UNVERSIONED: Final = "/ipfs/bitswap"
#: Every id chorus speaks, best first (the order boxo offers them in).
PROTOCOLS: Final = (PROTOCOL_1_2_0, PROTOCOL_1_1_0, PROTOCOL_1_0_0, PROTOCOL_UNVERSIONED)
_PAYLOAD_PROTOCOLS = (PROTOCOL_1_2_0, PROTOCOL_1_1_0)

#: Largest message (frame body) sent or accepted: the spec's 4 MiB, inclusive.
MAX_MESSAGE_SIZE: Final = 4 * 1024 * 1024
#: Most wantlist entries accepted in one message (8x boxo's per-peer queue of 1024).
MAX_WANTLIST_ENTRIES: Final = 8192
#: Most HAVE/DONT_HAVE presences accepted in one message.
MAX_BLOCK_PRESENCES: Final = 8192
#: Most blocks (payload and 1.0.0 blocks together) accepted in one message.
MAX_BLOCKS: Final = 8192
#: Longest binary CID accepted: boxo's MaximumAllowedCid, 4 varints + a 128-byte digest.
MAX_CID_SIZE: Final = 4 * MAX_VARINT_BYTES + 128

_INT32_MIN = -(1 << 31)
_INT32_MAX = (1 << 31) - 1
_U64 = 1 << 64
_MAX_FIELD_NUMBER = (1 << 29) - 1
_SHA2_256_MH = bytes([SHA2_256, 32])

# Wire types.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_WIRE_NAMES = {
    0: "varint",
    1: "fixed64",
    2: "length-delimited",
    3: "start-group",
    4: "end-group",
    5: "fixed32",
    6: "invalid (6)",
    7: "invalid (7)",
}


class BitswapError(DecodeError):
    """Bytes that are not a Bitswap message or frame chorus accepts; names field and offset."""


class UnsupportedPrefix(BitswapError):
    """A well-formed block prefix whose hash (or codec) chorus cannot compute."""


class WantType(IntEnum):
    BLOCK = 0
    HAVE = 1


class PresenceType(IntEnum):
    HAVE = 0
    DONT_HAVE = 1


@dataclass(frozen=True, slots=True)
class WantEntry:
    """One wantlist line: want (or cancel) `cid`, as the block or as a HAVE/DONT_HAVE."""

    cid: CID
    priority: int = 1
    cancel: bool = False
    want_type: WantType = WantType.BLOCK
    send_dont_have: bool = False


@dataclass(slots=True)
class Wantlist:
    """Changes to the sender's wantlist, or the whole of it when `full`."""

    entries: list[WantEntry] = field(default_factory=list)
    full: bool = False

    def __post_init__(self) -> None:
        self.entries = list(self.entries)


@dataclass(frozen=True, slots=True)
class BlockPresence:
    cid: CID
    type: PresenceType


@dataclass(frozen=True, slots=True)
class SkippedBlock:
    """A received payload block left out of `Message.blocks`, and why."""

    prefix: bytes
    size: int
    reason: str


@dataclass(slots=True)
class Message:
    """One Bitswap message, built up by the node or returned by `decode_message`.

    `blocks` are (CID, data) pairs; decoded ones hash to their CID. A `wantlist` of
    None is taken as an empty one. The lists are the message's own (copied on
    construction), so a caller may append to them before encoding.
    """

    wantlist: Wantlist = field(default_factory=Wantlist)
    blocks: list[tuple[CID, bytes]] = field(default_factory=list)
    presences: list[BlockPresence] = field(default_factory=list)
    pending_bytes: int = 0
    #: Payload blocks received with a prefix chorus cannot hash (decoding only).
    skipped: list[SkippedBlock] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.wantlist is None:
            self.wantlist = Wantlist()
        self.blocks = [(cid, data) for cid, data in self.blocks]
        self.presences = list(self.presences)
        self.skipped = list(self.skipped)


def supports_have(protocol: str) -> bool:
    """Whether a peer on `protocol` understands want-have, sendDontHave and presences."""
    return protocol == PROTOCOL_1_2_0


# -- CID prefixes ---------------------------------------------------------------------


def prefix_of(cid: CID) -> bytes:
    """The prefix a payload block travels with: version, codec, hash code, digest length."""
    multihash = cid.digest  # varint(code) varint(length) digest
    _code, pos = decode_uvarint(multihash, 0)
    _length, pos = decode_uvarint(multihash, pos)
    return encode_uvarint(cid.version) + encode_uvarint(cid.codec.code) + multihash[:pos]


def _parse_prefix(prefix: bytes) -> tuple[int, int, int, int]:
    if not prefix:
        raise BitswapError("empty CID prefix")
    values: list[int] = []
    pos = 0
    try:
        for _ in range(4):
            value, pos = decode_uvarint(prefix, pos)
            values.append(value)
    except DecodeError as exc:
        raise BitswapError(f"malformed CID prefix {prefix[:48].hex()}: {exc}") from None
    if pos != len(prefix):
        raise BitswapError(
            f"CID prefix {prefix[:48].hex()} has {len(prefix) - pos} bytes after its 4 varints"
        )
    version, codec, hash_code, digest_size = values
    if version == 0:
        if (codec, hash_code, digest_size) != (DAG_PB, SHA2_256, 32):
            raise BitswapError(
                f"CIDv0 prefix {prefix.hex()} must be dag-pb, sha2-256, 32 bytes "
                f"(got codec 0x{codec:x}, hash 0x{hash_code:x}, length {digest_size})"
            )
    elif version != 1:
        raise BitswapError(f"CID prefix {prefix[:48].hex()} has unknown CID version {version}")
    return version, codec, hash_code, digest_size


def cid_from_prefix(prefix: bytes, data: bytes) -> CID:
    """The CID of a payload block: hash `data` as `prefix` says.

    Raises `BitswapError` for a malformed prefix or a block over MAX_BLOCK_SIZE, and
    its subclass `UnsupportedPrefix` for a well-formed one chorus cannot hash (only
    sha2-256 with a 32-byte digest is computed; the codec must be one multiformats knows).
    """
    prefix = bytes(prefix)
    version, codec, hash_code, digest_size = _parse_prefix(prefix)
    if len(data) > MAX_BLOCK_SIZE:
        raise BitswapError(f"block is {len(data)} bytes; the limit is {MAX_BLOCK_SIZE}")
    if hash_code != SHA2_256:
        raise UnsupportedPrefix(
            f"block prefix {prefix.hex()} uses hash 0x{hash_code:x}; chorus hashes sha2-256 only"
        )
    if digest_size != 32:
        raise UnsupportedPrefix(
            f"block prefix {prefix.hex()} asks for a {digest_size}-byte sha2-256 digest; "
            "chorus computes the full 32 bytes only"
        )
    digest = hashlib.sha256(data).digest()
    if version == 0:
        return cid_from_digest(digest, version=0, codec=DAG_PB)
    try:
        return cid_from_multihash(_SHA2_256_MH + digest, codec=codec)
    except InvalidCID:
        raise UnsupportedPrefix(
            f"block prefix {prefix.hex()} names codec 0x{codec:x}, unknown to multiformats"
        ) from None


# -- encoding --------------------------------------------------------------------------


def _key(number: int, wire: int) -> bytes:
    return encode_uvarint((number << 3) | wire)


_MESSAGE_WANTLIST = _key(1, _LEN)
_MESSAGE_BLOCKS = _key(2, _LEN)
_MESSAGE_PAYLOAD = _key(3, _LEN)
_MESSAGE_PRESENCES = _key(4, _LEN)
_MESSAGE_PENDING = _key(5, _VARINT)
_WANTLIST_ENTRY = _key(1, _LEN)
_WANTLIST_FULL = _key(2, _VARINT)
_ENTRY_BLOCK = _key(1, _LEN)
_ENTRY_PRIORITY = _key(2, _VARINT)
_ENTRY_CANCEL = _key(3, _VARINT)
_ENTRY_WANT_TYPE = _key(4, _VARINT)
_ENTRY_SEND_DONT_HAVE = _key(5, _VARINT)
_BLOCK_PREFIX = _key(1, _LEN)
_BLOCK_DATA = _key(2, _LEN)
_PRESENCE_CID = _key(1, _LEN)
_PRESENCE_TYPE = _key(2, _VARINT)
_TRUE = b"\x01"


def _len_field(key: bytes, body: bytes) -> list[bytes]:
    return [key, encode_uvarint(len(body)), body]


def _int32(value: int, what: str) -> bytes:
    if not _INT32_MIN <= value <= _INT32_MAX:
        raise ValueError(f"{what} {value} is not an int32")
    return encode_uvarint(value % _U64)  # negatives: 10-byte two's complement, as protobuf


def _encode_entry(entry: WantEntry, want_type: WantType, send_dont_have: bool) -> bytes:
    parts = _len_field(_ENTRY_BLOCK, bytes(entry.cid))
    if entry.priority:
        parts += [_ENTRY_PRIORITY, _int32(entry.priority, "wantlist priority")]
    if entry.cancel:
        parts += [_ENTRY_CANCEL, _TRUE]
    if want_type:
        parts += [_ENTRY_WANT_TYPE, encode_uvarint(int(want_type))]
    if send_dont_have:
        parts += [_ENTRY_SEND_DONT_HAVE, _TRUE]
    return b"".join(parts)


def _encode_wantlist(
    wantlist: Wantlist, protocol: str, fallback: Literal["want-block", "drop"]
) -> bytes | None:
    parts: list[bytes] = []
    if supports_have(protocol):
        for entry in wantlist.entries:
            body = _encode_entry(entry, WantType(entry.want_type), entry.send_dont_have)
            parts += _len_field(_WANTLIST_ENTRY, body)
    else:
        wanted = {
            bytes(e.cid) for e in wantlist.entries if not e.cancel and e.want_type == WantType.BLOCK
        }
        downgraded: set[bytes] = set()
        for entry in wantlist.entries:
            if not entry.cancel and entry.want_type == WantType.HAVE:
                key = bytes(entry.cid)
                if fallback == "drop" or key in wanted or key in downgraded:
                    continue
                downgraded.add(key)
            body = _encode_entry(entry, WantType.BLOCK, False)
            parts += _len_field(_WANTLIST_ENTRY, body)
    if wantlist.full:
        parts += [_WANTLIST_FULL, _TRUE]
    if not parts:
        return None
    return b"".join(parts)


def encode_message(
    msg: Message,
    protocol: str = PROTOCOL_1_2_0,
    *,
    want_have_fallback: Literal["want-block", "drop"] = "want-block",
) -> bytes:
    """The protobuf body of `msg` as a peer on `protocol` expects it (frame it with
    `encode_frame`). See the module docstring for what each version gets; a message
    no peer would accept is a ValueError."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown Bitswap protocol {protocol!r}; chorus speaks {PROTOCOLS}")
    if want_have_fallback not in ("want-block", "drop"):
        raise ValueError(
            f"want_have_fallback must be 'want-block' or 'drop', not {want_have_fallback!r}"
        )
    parts: list[bytes] = []
    wantlist = _encode_wantlist(msg.wantlist, protocol, want_have_fallback)
    if wantlist is not None:
        parts += _len_field(_MESSAGE_WANTLIST, wantlist)
    payload = protocol in _PAYLOAD_PROTOCOLS
    for cid, data in msg.blocks:
        if len(data) > MAX_BLOCK_SIZE:
            raise ValueError(
                f"block {cid} is {len(data)} bytes; peers refuse more than {MAX_BLOCK_SIZE}"
            )
        if payload:
            block = b"".join(_len_field(_BLOCK_PREFIX, prefix_of(cid)) + _data_field(data))
            parts += _len_field(_MESSAGE_PAYLOAD, block)
        elif cid.version != 0:
            raise ValueError(
                f"block {cid} cannot be sent over {protocol}: its peers rebuild every block's "
                "CID as CIDv0 (dag-pb, sha2-256)"
            )
        else:
            parts += _len_field(_MESSAGE_BLOCKS, bytes(data))
    if supports_have(protocol):
        for presence in msg.presences:
            body = _len_field(_PRESENCE_CID, bytes(presence.cid))
            if presence.type:
                body += [_PRESENCE_TYPE, encode_uvarint(int(PresenceType(presence.type)))]
            parts += _len_field(_MESSAGE_PRESENCES, b"".join(body))
        if msg.pending_bytes:
            if msg.pending_bytes < 0:
                raise ValueError(f"pending_bytes {msg.pending_bytes} is negative")
            parts += [_MESSAGE_PENDING, _int32(msg.pending_bytes, "pending_bytes")]
    body = b"".join(parts)
    if len(body) > MAX_MESSAGE_SIZE:
        raise ValueError(
            f"message is {len(body)} bytes; peers refuse more than {MAX_MESSAGE_SIZE}: split it"
        )
    return body


def _data_field(data: bytes) -> list[bytes]:
    return _len_field(_BLOCK_DATA, bytes(data)) if data else []  # proto3 omits empty bytes


# -- decoding --------------------------------------------------------------------------

# One field: (number, wire type, value, offset of the key, offset of the value). The value
# is an int for varints, a memoryview for length-delimited fields, None for fixed ones.
_Field = tuple[int, int, "int | memoryview | None", int, int]
_OFFSET_IN_MESSAGE = re.compile(r" at offset \d+")


def _varint(view: memoryview, pos: int, base: int, where: str) -> tuple[int, int]:
    try:
        return decode_uvarint(view, pos)
    except DecodeError as exc:  # its offsets are relative to `view`: name the stream's
        reason = _OFFSET_IN_MESSAGE.sub("", str(exc))
        raise BitswapError(f"{where} at offset {base + pos}: {reason}") from None


def _fields(view: memoryview, base: int, where: str) -> Iterator[_Field]:
    """Walk the fields of one protobuf message held in `view` (which starts at stream
    offset `base`), refusing anything that is not well-formed protobuf."""
    pos = 0
    end = len(view)
    while pos < end:
        at = pos
        key, pos = _varint(view, pos, base, where)
        number, wire = key >> 3, key & 7
        if number == 0 or number > _MAX_FIELD_NUMBER:
            raise BitswapError(f"{where} at offset {base + at}: invalid field number {number}")
        value: int | memoryview | None
        if wire == _VARINT:
            value, next_pos = _varint(view, pos, base, where)
        elif wire == _LEN:
            length, start = _varint(view, pos, base, where)
            if length > end - start:
                raise BitswapError(
                    f"{where} field {number} at offset {base + at} claims {length} bytes; "
                    f"only {end - start} remain"
                )
            pos = start
            next_pos = start + length
            value = view[start:next_pos]
        elif wire in (_I64, _I32):
            size = 8 if wire == _I64 else 4
            if size > end - pos:
                raise BitswapError(f"{where} field {number} at offset {base + at} is truncated")
            value, next_pos = None, pos + size
        else:
            raise BitswapError(
                f"{where} field {number} at offset {base + at} has wire type "
                f"{_WIRE_NAMES[wire]}, which proto3 does not use"
            )
        yield number, wire, value, base + at, base + pos
        pos = next_pos


def _expect(wire: int, expected: int, what: str, offset: int) -> None:
    if wire != expected:
        raise BitswapError(
            f"{what} at offset {offset} has wire type {_WIRE_NAMES[wire]}, "
            f"not {_WIRE_NAMES[expected]}"
        )


def _as_int32(value: int, what: str, offset: int) -> int:
    if value <= _INT32_MAX:
        return value
    if value >= _U64 + _INT32_MIN:
        return value - _U64
    raise BitswapError(f"{what} at offset {offset} is {value}, not an int32")


def _as_enum(value: int, kind: type[WantType] | type[PresenceType], what: str, offset: int) -> int:
    if value not in (0, 1):
        raise BitswapError(f"{what} at offset {offset} is {value}; only 0 and 1 are defined")
    return kind(value)


def _as_cid(raw: memoryview | None, what: str, offset: int) -> CID:
    if raw is None or not len(raw):
        raise BitswapError(f"{what} at offset {offset} has no CID")
    if len(raw) > MAX_CID_SIZE:
        raise BitswapError(
            f"{what} at offset {offset}: a {len(raw)}-byte CID; the limit is {MAX_CID_SIZE}"
        )
    try:
        return cid_from_bytes(bytes(raw))
    except InvalidCID as exc:
        raise BitswapError(f"{what} at offset {offset}: {exc}") from None


def _decode_entry(view: memoryview, base: int) -> WantEntry:
    where = "Wantlist.Entry"
    raw_cid: memoryview | None = None
    priority = 0
    cancel = send_dont_have = False
    want_type = WantType.BLOCK
    for number, wire, value, at, _ in _fields(view, base, where):
        if number == 1:
            _expect(wire, _LEN, f"{where}.block", at)
            assert isinstance(value, memoryview)
            raw_cid = value
        elif number in (2, 3, 4, 5):
            _expect(wire, _VARINT, f"{where} field {number}", at)
            assert isinstance(value, int)
            if number == 2:
                priority = _as_int32(value, f"{where}.priority", at)
            elif number == 3:
                cancel = value != 0
            elif number == 4:
                want_type = WantType(_as_enum(value, WantType, f"{where}.wantType", at))
            else:
                send_dont_have = value != 0
    cid = _as_cid(raw_cid, where, base)
    return WantEntry(cid, priority, cancel, want_type, send_dont_have)


def _decode_wantlist(
    view: memoryview, base: int, entries: list[WantEntry], full: bool, limit: int
) -> bool:
    """Append the entries of one Wantlist field to `entries`; return the new `full`."""
    for number, wire, value, at, value_at in _fields(view, base, "Wantlist"):
        if number == 1:
            _expect(wire, _LEN, "Wantlist.entries", at)
            assert isinstance(value, memoryview)
            if len(entries) >= limit:
                raise BitswapError(f"wantlist at offset {base} has more than {limit} entries")
            entries.append(_decode_entry(value, value_at))
        elif number == 2:
            _expect(wire, _VARINT, "Wantlist.full", at)
            full = value != 0
    return full


def _decode_payload(view: memoryview, base: int) -> tuple[CID, bytes] | SkippedBlock:
    prefix: memoryview | None = None
    data: memoryview = view[0:0]
    for number, wire, value, at, _ in _fields(view, base, "Block"):
        if number in (1, 2):
            _expect(wire, _LEN, "Block.prefix" if number == 1 else "Block.data", at)
            assert isinstance(value, memoryview)
            if number == 1:
                prefix = value
            else:
                data = value
    if prefix is None or not len(prefix):
        raise BitswapError(f"payload block at offset {base} has no CID prefix")
    if len(data) > MAX_BLOCK_SIZE:
        raise BitswapError(
            f"payload block at offset {base} is {len(data)} bytes; the limit is {MAX_BLOCK_SIZE}"
        )
    raw_prefix, block = bytes(prefix), bytes(data)
    try:
        return cid_from_prefix(raw_prefix, block), block
    except UnsupportedPrefix as exc:
        return SkippedBlock(raw_prefix, len(block), str(exc))
    except BitswapError as exc:
        raise BitswapError(f"payload block at offset {base}: {exc}") from None


def _decode_presence(view: memoryview, base: int) -> BlockPresence:
    where = "BlockPresence"
    raw_cid: memoryview | None = None
    kind = PresenceType.HAVE
    for number, wire, value, at, _ in _fields(view, base, where):
        if number == 1:
            _expect(wire, _LEN, f"{where}.cid", at)
            assert isinstance(value, memoryview)
            raw_cid = value
        elif number == 2:
            _expect(wire, _VARINT, f"{where}.type", at)
            assert isinstance(value, int)
            kind = PresenceType(_as_enum(value, PresenceType, f"{where}.type", at))
    return BlockPresence(_as_cid(raw_cid, where, base), kind)


def decode_message(
    data: bytes | bytearray | memoryview,
    *,
    max_size: int = MAX_MESSAGE_SIZE,
    max_entries: int = MAX_WANTLIST_ENTRIES,
    max_presences: int = MAX_BLOCK_PRESENCES,
    max_blocks: int = MAX_BLOCKS,
) -> Message:
    """Decode one message body (a frame's contents) from any peer, any version.

    Raises `BitswapError` naming the field and offset of the first problem; see the
    module docstring for what is accepted, refused and skipped. The count limits
    bound the CPU one message can cost (each CID or block is parsed or hashed).
    """
    body = bytes(data)
    if len(body) > max_size:
        raise BitswapError(f"message is {len(body)} bytes; the limit is {max_size}")
    view = memoryview(body)
    entries: list[WantEntry] = []
    full = False
    blocks: list[tuple[CID, bytes]] = []
    skipped: list[SkippedBlock] = []
    presences: list[BlockPresence] = []
    pending = 0
    for number, wire, value, at, value_at in _fields(view, 0, "Message"):
        if number in (1, 2, 3, 4):
            name = ("wantlist", "blocks", "payload", "blockPresences")[number - 1]
            _expect(wire, _LEN, f"Message.{name}", at)
            assert isinstance(value, memoryview)
            if number == 1:
                full = _decode_wantlist(value, value_at, entries, full, max_entries)
            elif number == 4:
                if len(presences) >= max_presences:
                    raise BitswapError(f"message has more than {max_presences} block presences")
                presences.append(_decode_presence(value, value_at))
            else:
                if len(blocks) + len(skipped) >= max_blocks:
                    raise BitswapError(f"message has more than {max_blocks} blocks")
                if number == 3:
                    result = _decode_payload(value, value_at)
                    if isinstance(result, SkippedBlock):
                        skipped.append(result)
                    else:
                        blocks.append(result)
                else:
                    if len(value) > MAX_BLOCK_SIZE:
                        raise BitswapError(
                            f"block at offset {at} is {len(value)} bytes; "
                            f"the limit is {MAX_BLOCK_SIZE}"
                        )
                    raw = bytes(value)
                    digest = hashlib.sha256(raw).digest()
                    blocks.append((cid_from_digest(digest, version=0, codec=DAG_PB), raw))
        elif number == 5:
            _expect(wire, _VARINT, "Message.pendingBytes", at)
            assert isinstance(value, int)
            pending = max(0, _as_int32(value, "Message.pendingBytes", at))
    return Message(Wantlist(entries, full), blocks, presences, pending, skipped)


# -- framing ---------------------------------------------------------------------------


#: `next_message()`: feed more bytes with `receive_data` (or end the input).
NEED_DATA: Final = Sentinel("NEED_DATA")
#: `next_message()`: the input ended cleanly between two messages.
END_OF_STREAM: Final = Sentinel("END_OF_STREAM")


def encode_frame(msg_bytes: bytes, *, max_message_size: int = MAX_MESSAGE_SIZE) -> bytes:
    """`uvarint(len) || msg_bytes`, the framing of every message on a Bitswap stream."""
    if len(msg_bytes) > max_message_size:
        raise ValueError(
            f"message is {len(msg_bytes)} bytes; peers refuse more than {max_message_size}"
        )
    return encode_uvarint(len(msg_bytes)) + bytes(msg_bytes)


class FrameDecoder(IncrementalInput):
    """Split a Bitswap stream into message bodies, without I/O (h11 style).

    Feed bytes with `receive_data(chunk)` (`b""` when the stream has ended) and call
    `next_message()` until it returns NEED_DATA:

        buffered input                 | next_message() returns / raises
        -------------------------------+-------------------------------------------
        a whole frame                  | its body (bytes; b"" for an empty frame)
        part of a frame, more coming   | NEED_DATA
        nothing, input ended           | END_OF_STREAM (and again after that)
        part of a frame, input ended   | BitswapError (truncated)         -> ERROR
        a bad or too large length      | BitswapError                     -> ERROR
        (ERROR)                        | the same BitswapError again

    A declared length over `max_message_size` is refused as soon as the length prefix
    has arrived, before any of the body is waited for, so a peer cannot make chorus
    hold more than one frame (plus the caller's last chunk) in memory.
    """

    def __init__(self, *, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        super().__init__("FrameDecoder")
        self._error: BitswapError | None = None
        self._max = max_message_size

    def next_message(self) -> bytes | Sentinel:
        """The next message body, NEED_DATA or END_OF_STREAM; BitswapError when malformed."""
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except BitswapError as exc:
            self._error = exc
            raise

    def _next(self) -> bytes | Sentinel:
        if self.buffered == 0:
            return END_OF_STREAM if self._ended else NEED_DATA
        head = bytes(self._buffer[self._start : self._start + MAX_VARINT_BYTES])
        length: int | None = None
        try:
            for index, byte in enumerate(head):
                if byte < 0x80:
                    length, prefix = decode_uvarint(head[: index + 1])
                    break
            else:
                if len(head) >= MAX_VARINT_BYTES:
                    decode_uvarint(head)  # raises: longer than MAX_VARINT_BYTES
        except DecodeError as exc:
            raise BitswapError(
                f"bad frame length at stream offset {self._consumed}: {exc}"
            ) from None
        if length is None:
            return self._need_more("a frame length")
        if length > self._max:
            raise BitswapError(
                f"frame at stream offset {self._consumed} declares {length} bytes; "
                f"the limit is {self._max}"
            )
        end = self._start + prefix + length
        if end > len(self._buffer):
            return self._need_more(f"a {length}-byte frame")
        body = bytes(self._buffer[self._start + prefix : end])
        self._start = end
        self._consumed += prefix + length
        return body

    def _need_more(self, what: str) -> Sentinel:
        if self._ended:
            raise BitswapError(
                f"truncated Bitswap stream: it ends at offset {self._consumed + self.buffered}, "
                f"inside {what} starting at offset {self._consumed}"
            )
        return NEED_DATA
