"""UnixFS v1 `Data` messages (https://specs.ipfs.tech/unixfs/), the payload of dag-pb nodes.

Encoding writes the fields Kubo writes, in field-number order, non-packed
`blocksizes` (proto2), and omits what Kubo omits (no Data on internal nodes or the
empty file), because a CID is only equal to Kubo's if every byte is. Decoding
accepts any valid protobuf field order and packed or unpacked blocksizes, but
checks types and sizes and raises `UnixFSError` otherwise.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import DecodeError
from .varint import decode_uvarint, encode_uvarint

__all__ = ["DataType", "UnixFSData", "UnixFSError", "decode_data", "encode_data"]


class UnixFSError(DecodeError):
    """A dag-pb node whose Data is not a valid UnixFS message."""


class DataType(enum.IntEnum):
    RAW = 0
    DIRECTORY = 1
    FILE = 2
    METADATA = 3
    SYMLINK = 4
    HAMT_SHARD = 5


@dataclass(frozen=True, slots=True)
class UnixFSData:
    type: DataType
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: tuple[int, ...] = ()
    hash_type: int | None = None
    fanout: int | None = None
    mode: int | None = None
    mtime: tuple[int, int | None] | None = None  # (seconds, nanoseconds)


def _key(number: int, wire: int) -> bytes:
    return encode_uvarint((number << 3) | wire)


def encode_data(msg: UnixFSData) -> bytes:
    """Serialize a UnixFS Data message byte-for-byte as go-unixfs does."""
    parts = [_key(1, 0), encode_uvarint(int(msg.type))]
    if msg.data is not None:
        parts += [_key(2, 2), encode_uvarint(len(msg.data)), msg.data]
    if msg.filesize is not None:
        parts += [_key(3, 0), encode_uvarint(msg.filesize)]
    for size in msg.blocksizes:
        parts += [_key(4, 0), encode_uvarint(size)]
    if msg.hash_type is not None:
        parts += [_key(5, 0), encode_uvarint(msg.hash_type)]
    if msg.fanout is not None:
        parts += [_key(6, 0), encode_uvarint(msg.fanout)]
    if msg.mode is not None:
        parts += [_key(7, 0), encode_uvarint(msg.mode)]
    if msg.mtime is not None:
        seconds, nanos = msg.mtime
        body = _key(1, 0) + encode_uvarint(seconds & ((1 << 64) - 1))
        if nanos is not None:
            body += _key(2, 5) + nanos.to_bytes(4, "little")
        parts += [_key(8, 2), encode_uvarint(len(body)), body]
    return b"".join(parts)


def _skip(buf: memoryview, pos: int, wire: int, number: int) -> int:
    if wire == 0:
        return decode_uvarint(buf, pos)[1]
    if wire == 1:
        end = pos + 8
    elif wire == 2:
        length, pos = decode_uvarint(buf, pos)
        end = pos + length
    elif wire == 5:
        end = pos + 4
    else:
        raise UnixFSError(f"field {number}: unsupported wire type {wire}")
    if end > len(buf):
        raise UnixFSError(f"field {number} runs past the end of the message")
    return end


def _decode_mtime(buf: memoryview) -> tuple[int, int | None]:
    pos = 0
    seconds: int | None = None
    nanos: int | None = None
    while pos < len(buf):
        key, pos = decode_uvarint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 1 and wire == 0:
            raw, pos = decode_uvarint(buf, pos)
            seconds = raw - (1 << 64) if raw >= 1 << 63 else raw
        elif number == 2 and wire == 5:
            if pos + 4 > len(buf):
                raise UnixFSError("mtime nanoseconds truncated")
            nanos = int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
            if nanos >= 1_000_000_000:
                raise UnixFSError(f"mtime nanoseconds out of range: {nanos}")
        else:
            pos = _skip(buf, pos, wire, number)
    if seconds is None:
        raise UnixFSError("mtime without Seconds")
    return seconds, nanos


def decode_data(data: bytes) -> UnixFSData:
    """Parse a UnixFS Data message; raise UnixFSError naming what is wrong."""
    buf = memoryview(data)
    pos = 0
    fields: dict[str, object] = {}
    blocksizes: list[int] = []
    try:
        while pos < len(buf):
            key, pos = decode_uvarint(buf, pos)
            number, wire = key >> 3, key & 7
            if number == 1 and wire == 0:
                value, pos = decode_uvarint(buf, pos)
                try:
                    fields["type"] = DataType(value)
                except ValueError:
                    raise UnixFSError(f"unknown UnixFS type {value}") from None
            elif number == 2 and wire == 2:
                length, pos = decode_uvarint(buf, pos)
                if pos + length > len(buf):
                    raise UnixFSError("UnixFS Data runs past the end of the message")
                fields["data"] = bytes(buf[pos : pos + length])
                pos += length
            elif number in (3, 5, 6, 7) and wire == 0:
                value, pos = decode_uvarint(buf, pos)
                name = {3: "filesize", 5: "hash_type", 6: "fanout", 7: "mode"}[number]
                fields[name] = value
            elif number == 4 and wire == 0:
                value, pos = decode_uvarint(buf, pos)
                blocksizes.append(value)
            elif number == 4 and wire == 2:  # packed encoding, as some writers emit
                length, pos = decode_uvarint(buf, pos)
                end = pos + length
                if end > len(buf):
                    raise UnixFSError("packed blocksizes run past the end of the message")
                while pos < end:
                    value, pos = decode_uvarint(buf[:end], pos)
                    blocksizes.append(value)
            elif number == 8 and wire == 2:
                length, pos = decode_uvarint(buf, pos)
                if pos + length > len(buf):
                    raise UnixFSError("mtime runs past the end of the message")
                fields["mtime"] = _decode_mtime(buf[pos : pos + length])
                pos += length
            elif number in (1, 2, 3, 4, 5, 6, 7, 8):
                raise UnixFSError(f"UnixFS field {number} has wrong wire type {wire}")
            else:
                pos = _skip(buf, pos, wire, number)  # unknown fields: protobuf says skip
    except UnixFSError:
        raise
    except DecodeError as exc:
        raise UnixFSError(f"malformed UnixFS Data: {exc}") from None
    if "type" not in fields:
        raise UnixFSError("UnixFS Data without the required Type field")
    return UnixFSData(blocksizes=tuple(blocksizes), **fields)  # type: ignore[arg-type]
