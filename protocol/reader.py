"""Reading UnixFS back: file bytes (with seek), directory listings, path resolution.

Everything takes a `get_block` callable and asks it only for the blocks it needs: a
read of bytes [offset, offset+length) descends only into children whose range (from
the parent's `blocksizes`) overlaps it, so a player seeking into a 1 GiB track
fetches a handful of blocks. The reader trusts no node: inconsistent sizes, link
counts or types, cycles and absurd depths raise `UnixFSError` with the CID named.
`get_block` is expected to return verified bytes (the blockstore and the exchange
hash every block against its CID).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from multiformats import CID

from .cid import DAG_PB, RAW
from .dagpb import PBNode, decode_node
from .errors import NotAFile
from .unixfs import DataType, UnixFSData, UnixFSError, decode_data

__all__ = [
    "DirEntry",
    "GetBlock",
    "NodeInfo",
    "iter_dag",
    "list_directory",
    "read_file",
    "resolve_path",
    "stat_node",
]

GetBlock = Callable[[CID], bytes]

#: No real file needs more: 174^8 chunks of 256 KiB is far beyond any disk.
MAX_DEPTH = 16


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What a UnixFS root is: 'file', 'directory', 'symlink', 'raw' (a raw block) or 'hamt'."""

    cid: CID
    kind: str
    size: int  # file bytes for files/raw, 0 otherwise
    block_size: int
    links: int


@dataclass(frozen=True, slots=True)
class DirEntry:
    name: str
    cid: CID
    tsize: int | None


def _decode(cid: CID, block: bytes) -> tuple[PBNode, UnixFSData]:
    if cid.codec.code != DAG_PB:
        raise UnixFSError(f"{cid}: codec {cid.codec.name} is not dag-pb")
    node = decode_node(block)
    if node.data is None:
        raise UnixFSError(f"{cid}: dag-pb node without UnixFS Data")
    return node, decode_data(node.data)


def stat_node(cid: CID, get_block: GetBlock) -> NodeInfo:
    """Classify the node at `cid` from its own block only."""
    block = get_block(cid)
    if cid.codec.code == RAW:
        return NodeInfo(cid, "raw", len(block), len(block), 0)
    node, fs = _decode(cid, block)
    kind = {
        DataType.FILE: "file",
        DataType.RAW: "file",
        DataType.DIRECTORY: "directory",
        DataType.SYMLINK: "symlink",
        DataType.HAMT_SHARD: "hamt",
        DataType.METADATA: "metadata",
    }[fs.type]
    size = _file_size(cid, node, fs) if kind == "file" else 0
    return NodeInfo(cid, kind, size, len(block), len(node.links))


def _file_size(cid: CID, node: PBNode, fs: UnixFSData) -> int:
    own = len(fs.data or b"")
    if len(fs.blocksizes) != len(node.links):
        raise UnixFSError(
            f"{cid}: {len(node.links)} links but {len(fs.blocksizes)} blocksizes"
        )
    size = own + sum(fs.blocksizes)
    if fs.filesize is not None and fs.filesize != size:
        raise UnixFSError(f"{cid}: filesize {fs.filesize} but content adds up to {size}")
    return size


def read_file(
    cid: CID, get_block: GetBlock, offset: int = 0, length: int | None = None
) -> Iterator[bytes]:
    """Yield the bytes of the UnixFS file (or raw block) at `cid` from `offset`.

    Raises NotAFile for directories and symlinks, UnixFSError for malformed DAGs.
    """
    if offset < 0:
        raise ValueError(f"offset must be >= 0, not {offset}")
    if length is not None and length < 0:
        raise ValueError(f"length must be >= 0, not {length}")
    end = None if length is None else offset + length
    if end is not None and end <= offset:
        return
    yield from _read(cid, get_block, offset, end, 0, expected=None)


def _read(
    cid: CID, get_block: GetBlock, start: int, end: int | None, depth: int, expected: int | None
) -> Iterator[bytes]:
    if depth > MAX_DEPTH:
        raise UnixFSError(f"{cid}: file DAG deeper than {MAX_DEPTH} levels")
    block = get_block(cid)
    if cid.codec.code == RAW:
        if expected is not None and len(block) != expected:
            raise UnixFSError(f"{cid}: raw leaf is {len(block)} bytes, parent says {expected}")
        piece = block[start:end]
        if piece:
            yield piece
        return
    node, fs = _decode(cid, block)
    if fs.type not in (DataType.FILE, DataType.RAW):
        raise NotAFile(f"{cid} is a UnixFS {fs.type.name.lower()}, not a file")
    size = _file_size(cid, node, fs)
    if expected is not None and size != expected:
        raise UnixFSError(f"{cid}: holds {size} bytes, parent says {expected}")
    own = fs.data or b""
    if start < len(own):
        piece = own[start:end]
        if piece:
            yield piece
    position = len(own)
    for link, child_size in zip(node.links, fs.blocksizes, strict=True):
        child_end = position + child_size
        if end is not None and position >= end:
            break
        if child_end > start and child_size > 0:
            yield from _read(
                link.cid,
                get_block,
                max(0, start - position),
                None if end is None else min(child_size, end - position),
                depth + 1,
                expected=child_size,
            )
        position = child_end


def list_directory(cid: CID, get_block: GetBlock) -> list[DirEntry]:
    """The entries of a (non-sharded) UnixFS directory, in stored order."""
    node, fs = _decode(cid, get_block(cid))
    if fs.type == DataType.HAMT_SHARD:
        raise UnixFSError(f"{cid} is a HAMT-sharded directory, which chorus does not read")
    if fs.type != DataType.DIRECTORY:
        raise NotAFile(f"{cid} is a UnixFS {fs.type.name.lower()}, not a directory")
    entries = []
    for link in node.links:
        if not link.name or "/" in link.name or link.name in (".", ".."):
            raise UnixFSError(f"{cid}: directory entry with unusable name {link.name!r}")
        entries.append(DirEntry(link.name, link.cid, link.tsize))
    return entries


def resolve_path(cid: CID, path: str, get_block: GetBlock) -> CID:
    """Follow `a/b/c` from the directory at `cid`; FileNotFoundError if a name is missing."""
    current = cid
    for segment in (part for part in path.split("/") if part):
        for entry in list_directory(current, get_block):
            if entry.name == segment:
                current = entry.cid
                break
        else:
            raise FileNotFoundError(f"no link named {segment!r} under {current}")
    return current


def iter_dag(cid: CID, get_block: GetBlock, path: str = "") -> Iterator[tuple[str, NodeInfo]]:
    """Walk a UnixFS tree depth-first, yielding (relative path, info) for every entry."""
    info = stat_node(cid, get_block)
    yield path, info
    if info.kind == "directory":
        for entry in list_directory(cid, get_block):
            child = f"{path}/{entry.name}" if path else entry.name
            yield from iter_dag(entry.cid, get_block, child)
