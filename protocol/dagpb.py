"""The dag-pb codec (https://ipld.io/specs/codecs/dag-pb/spec/), byte-exact with Kubo.

A dag-pb block is a protobuf PBNode: repeated PBLink Links = 2, optional bytes Data = 1,
written Links first then Data; a PBLink is Hash = 1, Name = 2, Tsize = 3 in that order.
The decoder follows the spec's strictness (fields in canonical order, no unknown or
repeated fields, correct wire types), so one node has one byte form and anything else
is a typed `DagPbError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from multiformats import CID

from .cid import cid_from_bytes
from .errors import DecodeError, InvalidCID
from .varint import decode_uvarint, encode_uvarint

__all__ = ["DagPbError", "PBLink", "PBNode", "decode_node", "encode_node"]


class DagPbError(DecodeError):
    """Bytes that are not a valid dag-pb node."""


@dataclass(frozen=True, slots=True)
class PBLink:
    """A named, sized pointer to another block. `name`/`tsize` None means absent."""

    cid: CID
    name: str | None = ""
    tsize: int | None = None


@dataclass(frozen=True, slots=True)
class PBNode:
    links: tuple[PBLink, ...] = ()
    data: bytes | None = None


def _field(number: int, wire: int) -> bytes:
    return encode_uvarint((number << 3) | wire)


_LINK_HASH = _field(1, 2)
_LINK_NAME = _field(2, 2)
_LINK_TSIZE = _field(3, 0)
_NODE_LINK = _field(2, 2)
_NODE_DATA = _field(1, 2)


def encode_link(link: PBLink) -> bytes:
    cid_bytes = bytes(link.cid)
    parts = [_LINK_HASH, encode_uvarint(len(cid_bytes)), cid_bytes]
    if link.name is not None:
        name = link.name.encode("utf-8")
        parts += [_LINK_NAME, encode_uvarint(len(name)), name]
    if link.tsize is not None:
        parts += [_LINK_TSIZE, encode_uvarint(link.tsize)]
    return b"".join(parts)


def encode_node(node: PBNode) -> bytes:
    """Encode `node` exactly as go-merkledag / @ipld/dag-pb do (links in given order)."""
    parts: list[bytes] = []
    for link in node.links:
        body = encode_link(link)
        parts += [_NODE_LINK, encode_uvarint(len(body)), body]
    if node.data is not None:
        parts += [_NODE_DATA, encode_uvarint(len(node.data)), node.data]
    return b"".join(parts)


def _read_key(buf: memoryview, pos: int) -> tuple[int, int, int]:
    key, pos = decode_uvarint(buf, pos)
    return key >> 3, key & 7, pos


def _read_bytes(buf: memoryview, pos: int, what: str) -> tuple[memoryview, int]:
    length, pos = decode_uvarint(buf, pos)
    end = pos + length
    if end > len(buf):
        raise DagPbError(f"{what}: length {length} runs past the end of the block")
    return buf[pos:end], end


def _decode_link(buf: memoryview) -> PBLink:
    pos = 0
    cid: CID | None = None
    name: str | None = None
    tsize: int | None = None
    last = 0
    while pos < len(buf):
        number, wire, pos = _read_key(buf, pos)
        if number <= last:
            raise DagPbError(f"PBLink field {number} out of order or repeated")
        last = number
        if number == 1 and wire == 2:
            raw, pos = _read_bytes(buf, pos, "PBLink.Hash")
            try:
                cid = cid_from_bytes(raw)
            except InvalidCID as exc:
                raise DagPbError(f"PBLink.Hash is not a CID: {exc}") from None
        elif number == 2 and wire == 2:
            raw, pos = _read_bytes(buf, pos, "PBLink.Name")
            try:
                name = bytes(raw).decode("utf-8")
            except UnicodeDecodeError:
                raise DagPbError("PBLink.Name is not valid UTF-8") from None
        elif number == 3 and wire == 0:
            tsize, pos = decode_uvarint(buf, pos)
        else:
            raise DagPbError(f"unexpected PBLink field {number} with wire type {wire}")
    if cid is None:
        raise DagPbError("PBLink without a Hash")
    return PBLink(cid, name, tsize)


def decode_node(data: bytes) -> PBNode:
    """Decode a dag-pb block; raise DagPbError naming the first problem found."""
    buf = memoryview(data)
    pos = 0
    links: list[PBLink] = []
    payload: bytes | None = None
    try:
        while pos < len(buf):
            number, wire, pos = _read_key(buf, pos)
            if number == 2 and wire == 2:
                if payload is not None:
                    raise DagPbError("PBNode.Links after PBNode.Data")
                raw, pos = _read_bytes(buf, pos, "PBNode.Links")
                links.append(_decode_link(raw))
            elif number == 1 and wire == 2:
                if payload is not None:
                    raise DagPbError("PBNode.Data appears twice")
                raw, pos = _read_bytes(buf, pos, "PBNode.Data")
                payload = bytes(raw)
            else:
                raise DagPbError(f"unexpected PBNode field {number} with wire type {wire}")
    except DagPbError:
        raise
    except DecodeError as exc:
        raise DagPbError(f"malformed dag-pb: {exc}") from None
    return PBNode(tuple(links), payload)
