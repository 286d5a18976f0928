"""The portable ledger export: a node's whole log as a CARv1 file an auditor can check.

Why a CAR: entries are raw blocks (their ids are CIDv1 raw sha2-256), so the log is
naturally a sequence of blocks, and CARv1 is the archive every IPFS tool reads
(`ipfs dag import` takes it as is). The file is:

    CAR header   roots = [manifest id]
    block 0      the manifest: canonical msgpack
                 {"coop": str | nil, "format": "chorus/ledger-export/v1",
                  "node": bin32 (the log owner's key), "size": int}
    block 1..N   the node's log, in log order: every entry it accepted, its signed
                 tree heads among them, fork evidence included

Nothing in the file is trusted because of where it sits: the manifest is unsigned,
but it only names whose tree heads to check and how many entries to expect; every
entry carries its own signature, and the node's tree heads (signed entries of its
own feed) pin the order and content of everything before them. `read_export` only
parses; `ledger.verify.LogVerifier` judges.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import msgpack

from protocol.car import (
    CAR_END,
    NEED_DATA,
    CarBlock,
    CarDecoder,
    CarError,
    CarHeader,
    encode_block,
    encode_header,
)
from protocol.cid import RAW, cid_from_bytes, make_cid
from protocol.errors import DecodeError

__all__ = [
    "FORMAT",
    "ExportError",
    "Manifest",
    "decode_manifest",
    "encode_entry_section",
    "encode_export_header",
    "encode_manifest",
    "read_export",
]

FORMAT = "chorus/ledger-export/v1"
_MAX_U63 = (1 << 63) - 1


class ExportError(DecodeError):
    """A file that is not a chorus ledger export (bad CAR, manifest or block layout)."""


@dataclass(frozen=True, slots=True)
class Manifest:
    node: bytes
    size: int
    coop: str | None = None


def encode_manifest(manifest: Manifest) -> bytes:
    value = {"coop": manifest.coop, "format": FORMAT, "node": manifest.node, "size": manifest.size}
    return msgpack.packb(value, use_bin_type=True, strict_types=True)


def decode_manifest(data: bytes) -> Manifest:
    """Strictly decode a manifest block; ExportError names what is wrong."""
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=True, timestamp=0)
    except Exception as exc:  # noqa: BLE001 - msgpack raises many types on garbage
        raise ExportError(f"manifest is not msgpack: {type(exc).__name__}: {exc}") from None
    if type(value) is not dict or set(value) != {"coop", "format", "node", "size"}:
        raise ExportError("manifest must be a map of exactly coop, format, node, size")
    if value["format"] != FORMAT:
        raise ExportError(f"manifest format is {value['format']!r}, expected {FORMAT!r}")
    node, size, coop = value["node"], value["size"], value["coop"]
    if type(node) is not bytes or len(node) != 32:
        raise ExportError("manifest node must be a 32-byte Ed25519 public key")
    if type(size) is not int or not 0 <= size <= _MAX_U63:
        raise ExportError(f"manifest size must be a non-negative integer, got {size!r}")
    if coop is not None and (type(coop) is not str or len(coop) > 256):
        raise ExportError("manifest coop must be nil or a short string")
    manifest = Manifest(node, size, coop)
    if encode_manifest(manifest) != data:
        raise ExportError("manifest is not in canonical form")
    return manifest


def encode_export_header(manifest: Manifest) -> bytes:
    """The CAR header and the manifest block: everything before the first entry."""
    data = encode_manifest(manifest)
    cid = make_cid(data, version=1, codec=RAW)
    return encode_header([cid]) + encode_block(cid, data)


def encode_entry_section(entry_bytes: bytes, entry_id: bytes) -> bytes:
    """One log entry as a CAR section (its id given in binary form, not recomputed)."""
    return encode_block(cid_from_bytes(entry_id), entry_bytes)


def read_export(chunks: Iterable[bytes]) -> tuple[Manifest, Iterator[tuple[bytes, bytes]]]:
    """Parse an export: its manifest, then (claimed id, entry bytes) in log order.

    The id is the section's CID as written, not checked against the bytes (the
    verifier reports a mismatch as a flipped byte at that index). The iterator
    raises ExportError if the file turns malformed part-way.
    """
    decoder = CarDecoder()
    source = iter(chunks)

    def next_block() -> CarHeader | CarBlock | None:
        while True:
            try:
                event = decoder.next_event()
            except CarError as exc:
                raise ExportError(f"not a valid CAR file: {exc}") from None
            if event is NEED_DATA:
                decoder.receive_data(next(source, b""))
                continue
            if event is CAR_END:
                return None
            return event  # type: ignore[return-value]

    header = next_block()
    if not isinstance(header, CarHeader) or len(header.roots) != 1:
        raise ExportError("a ledger export has exactly one root, its manifest")
    first = next_block()
    if not isinstance(first, CarBlock) or first.cid != header.roots[0]:
        raise ExportError("the first block of a ledger export must be its manifest root")
    if make_cid(first.data, version=1, codec=RAW) != first.cid:
        raise ExportError("the manifest block does not match its CID")
    manifest = decode_manifest(first.data)

    def entries() -> Iterator[tuple[bytes, bytes]]:
        while (block := next_block()) is not None:
            assert isinstance(block, CarBlock)
            yield bytes(block.cid), block.data

    return manifest, entries()
