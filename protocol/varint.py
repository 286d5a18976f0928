"""Unsigned LEB128 varints, as protobuf, multiformats and CAR write them.

Decoding is strict: at most 10 bytes, minimal form only, so one value has one
encoding and a hostile peer cannot make us loop or allocate on a long run of 0x80.
"""

from __future__ import annotations

from .errors import DecodeError

MAX_VARINT_BYTES = 10
_MAX_U64 = (1 << 64) - 1


def encode_uvarint(value: int) -> bytes:
    """Minimal unsigned varint of `value` (0 <= value < 2**64)."""
    if value < 0 or value > _MAX_U64:
        raise ValueError(f"varint out of range: {value}")
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_uvarint(buf: bytes | memoryview, pos: int = 0) -> tuple[int, int]:
    """Read one varint at `pos`; return (value, position after it).

    Raises DecodeError on truncation, over-long or non-minimal encodings.
    """
    value = 0
    shift = 0
    end = len(buf)
    start = pos
    while True:
        if pos >= end:
            raise DecodeError(f"truncated varint at offset {start}")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and pos - start > 1:
                raise DecodeError(f"non-minimal varint at offset {start}")
            if value > _MAX_U64:
                raise DecodeError(f"varint at offset {start} exceeds 64 bits")
            return value, pos
        shift += 7
        if pos - start >= MAX_VARINT_BYTES:
            raise DecodeError(f"varint at offset {start} is longer than {MAX_VARINT_BYTES} bytes")
