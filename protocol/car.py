"""CARv1 (https://ipld.io/specs/transport/car/carv1/): the archive IPFS tools trade DAGs in.

A CAR is a header, `varint(len) || DAG-CBOR {"roots": [CID, ...], "version": 1}`,
then sections, `varint(len(cid) + len(data)) || cid || data`. The encoder writes
exactly what go-car (and so `ipfs dag export`) writes: the DAG-CBOR map in canonical
key order, CIDs under tag 42 with the 0x00 multibase prefix.

Theory of operation (decoder)
-----------------------------
The decoder does no I/O, in the manner of h11: the caller feeds bytes with
`receive_data(chunk)` (and `receive_data(b"")` at end of input) and pulls events
with `next_event()`:

    state      | buffered input          | next_event() returns / raises
    -----------+-------------------------+------------------------------------
    HEADER     | complete header         | CarHeader            -> SECTIONS
    HEADER     | incomplete, more coming | NEED_DATA
    SECTIONS   | complete section        | CarBlock             (stays)
    SECTIONS   | empty, input ended      | CAR_END              -> DONE
    SECTIONS   | incomplete, more coming | NEED_DATA
    any        | incomplete, input ended | CarError (truncated) -> ERROR
    any        | malformed               | CarError             -> ERROR
    DONE       | -                       | CAR_END
    ERROR      | -                       | CarError (the same failure again)

It holds at most one section (≤ MAX_SECTION_SIZE) beyond what the caller has fed,
checks every length before waiting for the bytes it announces, and never checks a
block's hash: that is the blockstore's job (`verify_block`), done before storing.
Every malformation is a `CarError`; no other exception escapes for any input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

import dag_cbor
from multiformats import CID

from .cid import MAX_BLOCK_SIZE, cid_from_bytes
from .errors import DecodeError
from .incremental import IncrementalInput, Sentinel
from .varint import MAX_VARINT_BYTES, decode_uvarint, encode_uvarint

__all__ = [
    "CAR_END",
    "MAX_CID_SIZE",
    "MAX_HEADER_SIZE",
    "MAX_SECTION_SIZE",
    "NEED_DATA",
    "CarBlock",
    "CarDecoder",
    "CarError",
    "CarHeader",
    "encode_block",
    "encode_header",
]

#: Largest header accepted. go-car allows 32 MiB; a header is a version and a few
#: root CIDs, so 1 MiB is already thousands of roots.
MAX_HEADER_SIZE: Final = 1024 * 1024
#: Room for the CID in front of a block's bytes (identity CIDs may inline data).
MAX_CID_SIZE: Final = 256
#: Largest section accepted: the 2 MiB block limit plus its CID.
MAX_SECTION_SIZE: Final = MAX_BLOCK_SIZE + MAX_CID_SIZE

_SHA2_256_V0_PREFIX = b"\x12\x20"
_V0_CID_SIZE = 34


class CarError(DecodeError):
    """Bytes that are not a CARv1 archive chorus accepts; the message names the offset."""


@dataclass(frozen=True, slots=True)
class CarHeader:
    roots: tuple[CID, ...]
    version: int = 1


@dataclass(frozen=True, slots=True)
class CarBlock:
    """One section: a CID and the bytes claimed for it (not yet verified)."""

    cid: CID
    data: bytes
    #: Offset of the section's length prefix in the stream, for error messages.
    offset: int


#: `next_event()`: feed more bytes with `receive_data` (or end the input).
NEED_DATA: Final = Sentinel("NEED_DATA")
#: `next_event()`: the input ended cleanly after a whole section (or the header).
CAR_END: Final = Sentinel("CAR_END")

CarEvent = CarHeader | CarBlock | Sentinel


def encode_header(roots: Sequence[CID]) -> bytes:
    """The CARv1 header for `roots`, byte for byte as go-car writes it."""
    body = dag_cbor.encode({"roots": list(roots), "version": 1})
    assert isinstance(body, bytes)
    return encode_uvarint(len(body)) + body


def encode_block(cid: CID, data: bytes) -> bytes:
    """One CARv1 section: varint length, binary CID, block bytes."""
    raw = bytes(cid)
    return encode_uvarint(len(raw) + len(data)) + raw + bytes(data)


def _cid_length(section: bytes, offset: int) -> int:
    """How many leading bytes of `section` are the binary CID (checked by parse later)."""
    if section[:2] == _SHA2_256_V0_PREFIX:
        return _V0_CID_SIZE
    pos = 0
    try:
        version, pos = decode_uvarint(section, pos)
        if version != 1:
            raise CarError(f"section at offset {offset}: CID version {version} is not 1")
        _codec, pos = decode_uvarint(section, pos)
        _hash, pos = decode_uvarint(section, pos)
        digest_size, pos = decode_uvarint(section, pos)
    except CarError:
        raise
    except DecodeError as exc:
        raise CarError(f"section at offset {offset}: malformed CID ({exc})") from None
    end = pos + digest_size
    if end > len(section):
        raise CarError(
            f"section at offset {offset}: its CID claims a {digest_size}-byte digest, "
            f"longer than the {len(section)}-byte section"
        )
    return end


class CarDecoder(IncrementalInput):
    """Incremental CARv1 decoder; see the module docstring for the state table."""

    def __init__(
        self, *, max_header_size: int = MAX_HEADER_SIZE, max_section_size: int = MAX_SECTION_SIZE
    ) -> None:
        super().__init__("CarDecoder")
        self._state: Literal["HEADER", "SECTIONS", "DONE", "ERROR"] = "HEADER"
        self._error: CarError | None = None
        self._max_header = max_header_size
        self._max_section = max_section_size
        self.header: CarHeader | None = None

    @property
    def state(self) -> str:
        return self._state

    def next_event(self) -> CarEvent:
        """The next header or block, NEED_DATA, or CAR_END; CarError when malformed."""
        if self._state == "ERROR":
            assert self._error is not None
            raise self._error
        if self._state == "DONE":
            return CAR_END
        try:
            if self._state == "HEADER":
                return self._next_header()
            return self._next_section()
        except CarError as exc:
            self._state = "ERROR"
            self._error = exc
            raise

    # -- internals -------------------------------------------------------------------

    def _need_more(self, what: str) -> Sentinel:
        if self._ended:
            raise CarError(
                f"truncated CAR: input ends at offset {self._consumed + self.buffered} "
                f"inside {what} starting at offset {self._consumed}"
            )
        return NEED_DATA

    def _read_length(self) -> tuple[int, int] | None:
        """(value, varint size) of the length prefix at the read position, or None if
        more bytes are needed."""
        head = bytes(self._buffer[self._start : self._start + MAX_VARINT_BYTES])
        try:
            for index, byte in enumerate(head):
                if byte < 0x80:
                    return decode_uvarint(head[: index + 1])
            if len(head) >= MAX_VARINT_BYTES:
                decode_uvarint(head)  # raises: longer than MAX_VARINT_BYTES
            return None
        except DecodeError as exc:
            raise CarError(f"bad length prefix at offset {self._consumed}: {exc}") from None

    def _take(self, prefix: int, length: int) -> bytes | None:
        """Consume a length-prefixed frame and return its body, or None if incomplete."""
        end = self._start + prefix + length
        if end > len(self._buffer):
            return None
        with memoryview(self._buffer) as whole:
            body = bytes(whole[self._start + prefix : end])
        self._start = end
        self._consumed += prefix + length
        return body

    def _next_header(self) -> CarEvent:
        offset = self._consumed
        found = self._read_length()
        if found is None:
            return self._need_more("the header length")
        length, prefix = found
        if length == 0:
            raise CarError("CAR header has length 0")
        if length > self._max_header:
            raise CarError(f"CAR header is {length} bytes; the limit is {self._max_header}")
        body = self._take(prefix, length)
        if body is None:
            return self._need_more("the header")
        header = _decode_header(body, offset)
        self.header = header
        self._state = "SECTIONS"
        return header

    def _next_section(self) -> CarEvent:
        offset = self._consumed
        if self.buffered == 0 and self._ended:
            self._state = "DONE"
            return CAR_END
        found = self._read_length()
        if found is None:
            return self._need_more("a section length")
        length, prefix = found
        if length == 0:
            raise CarError(f"section at offset {offset} has length 0")
        if length > self._max_section:
            raise CarError(
                f"section at offset {offset} is {length} bytes; the limit is {self._max_section}"
            )
        body = self._take(prefix, length)
        if body is None:
            return self._need_more("a section")
        cid_size = _cid_length(body, offset)
        if cid_size > MAX_CID_SIZE:
            raise CarError(f"section at offset {offset}: a {cid_size}-byte CID is too long")
        try:
            cid = cid_from_bytes(body[:cid_size])
        except DecodeError as exc:
            raise CarError(f"section at offset {offset}: {exc}") from None
        return CarBlock(cid, body[cid_size:], offset)


def _decode_header(body: bytes, offset: int) -> CarHeader:
    try:
        value = dag_cbor.decode(body)
    except Exception as exc:  # noqa: BLE001 - dag_cbor raises many types, even RecursionError
        raise CarError(f"CAR header at offset {offset} is not DAG-CBOR: {exc}") from None
    if not isinstance(value, dict):
        raise CarError(f"CAR header is a {type(value).__name__}, not a map")
    version = value.get("version")
    if type(version) is not int:
        raise CarError(f"CAR header has no integer version (got {version!r})")
    if version == 2:
        raise CarError("this is a CARv2 file; chorus reads CARv1 only (convert with go-car)")
    if version != 1:
        raise CarError(f"CAR version {version} is not supported (only 1)")
    roots = value.get("roots")
    if not isinstance(roots, list) or not all(isinstance(root, CID) for root in roots):
        raise CarError("CAR header roots must be a list of CIDs")
    # Other keys are ignored, as go-car does; empty roots are allowed, as the spec's
    # maintainers advise new implementations (ipld/ipld#287).
    return CarHeader(tuple(roots), version)
