"""UnixFS import exactly as Kubo's `ipfs add` does it, in constant memory.

Kubo's defaults: 262,144-byte fixed chunks, the balanced layout with at most 174
links per node, CIDv0 with dag-pb leaves (UnixFS type File). The
`--cid-version=1 --raw-leaves` profile keeps the layout but stores chunks as raw
blocks (CIDv1, codec raw) and internal nodes as CIDv1 dag-pb.

The balanced layout is a port of go-unixfs `importer/balanced/builder.go`: a single
chunk is the file's root; otherwise the tree grows a level each time it fills, and
a level is filled depth-first, so a lone last child is still wrapped in its own
parent (the detail other importers get wrong). The importer pulls chunks lazily
and hands every finished block to `emit`, so it holds at most one path of
partly-built nodes (depth x 174 links), whatever the file's size.

Directories follow Kubo's `ipfs add -r`: links sorted by name bytes, Data = Type
Directory. Kubo switches to a HAMT-sharded directory once the node would exceed
256 KiB; chorus does not shard and refuses such a directory with a clear error
instead of producing a CID Kubo would not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from multiformats import CID

from .cid import DAG_PB, RAW, cid_from_digest
from .dagpb import PBLink, PBNode, encode_link, encode_node
from .errors import ImportError_
from .unixfs import DataType, UnixFSData, encode_data

__all__ = [
    "KUBO_DEFAULT",
    "KUBO_V1_RAW",
    "DirectoryTooLarge",
    "Emit",
    "Entry",
    "ImportOptions",
    "build_directory",
    "fixed_chunks",
    "import_bytes",
    "import_file",
]

#: Called with every block the importer produces, leaves before their parents.
Emit = Callable[[CID, bytes], None]

#: Kubo's threshold (boxo `HAMTShardingSize`) for switching a directory to a HAMT.
HAMT_SHARDING_SIZE = 256 * 1024


class DirectoryTooLarge(ImportError_):
    """A directory Kubo would HAMT-shard; chorus refuses rather than differ."""


@dataclass(frozen=True, slots=True)
class ImportOptions:
    """How content becomes blocks; the defaults are `ipfs add`'s."""

    cid_version: int = 0
    raw_leaves: bool = False
    chunk_size: int = 262_144
    max_links: int = 174

    def __post_init__(self) -> None:
        if self.cid_version not in (0, 1):
            raise ValueError(f"cid_version must be 0 or 1, not {self.cid_version}")
        if not 1 <= self.chunk_size <= 1_048_576:
            raise ValueError(f"chunk_size must be 1..1048576 bytes, not {self.chunk_size}")
        if self.max_links < 2:
            raise ValueError(f"max_links must be at least 2, not {self.max_links}")


KUBO_DEFAULT = ImportOptions()
KUBO_V1_RAW = ImportOptions(cid_version=1, raw_leaves=True)


@dataclass(frozen=True, slots=True)
class Entry:
    """A finished node: its CID, the bytes of file content below it, its cumulative
    size (block bytes + everything it links to, the dag-pb Tsize)."""

    cid: CID
    filesize: int
    tsize: int


def fixed_chunks(source: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Re-cut arbitrary pieces into `size`-byte chunks (the last may be short).

    Like Kubo's size splitter: an empty source yields nothing.
    """
    pending: list[bytes] = []
    have = 0
    for piece in source:
        if not piece:
            continue
        if have == 0 and len(piece) == size:  # the common case: reads of exactly one chunk
            yield bytes(piece)
            continue
        pending.append(piece)
        have += len(piece)
        if have >= size:
            joined = b"".join(pending)
            offset = 0
            while have - offset >= size:
                yield joined[offset : offset + size]
                offset += size
            rest = joined[offset:]
            pending = [rest] if rest else []
            have = len(rest)
    if have:
        yield b"".join(pending)


class _Builder:
    """Turns chunks into blocks under one set of options; emits as it goes."""

    def __init__(self, options: ImportOptions, emit: Emit | None) -> None:
        self.options = options
        self.emit = emit

    def _dag_pb(self, data: bytes) -> CID:
        cid = cid_from_digest(
            hashlib.sha256(data).digest(), version=self.options.cid_version, codec=DAG_PB
        )
        if self.emit is not None:
            self.emit(cid, data)
        return cid

    def leaf(self, chunk: bytes) -> Entry:
        if self.options.raw_leaves:
            cid = cid_from_digest(hashlib.sha256(chunk).digest(), version=1, codec=RAW)
            if self.emit is not None:
                self.emit(cid, chunk)
            return Entry(cid, len(chunk), len(chunk))
        unixfs = encode_data(
            UnixFSData(DataType.FILE, data=chunk or None, filesize=len(chunk))
        )
        block = encode_node(PBNode((), unixfs))
        return Entry(self._dag_pb(block), len(chunk), len(block))

    def parent(self, children: list[Entry]) -> Entry:
        """An internal File node over `children` (go-unixfs FSNodeOverDag.Commit)."""
        filesize = sum(child.filesize for child in children)
        unixfs = encode_data(
            UnixFSData(
                DataType.FILE,
                filesize=filesize,
                blocksizes=tuple(child.filesize for child in children),
            )
        )
        links = tuple(PBLink(child.cid, "", child.tsize) for child in children)
        block = encode_node(PBNode(links, unixfs))
        tsize = len(block) + sum(child.tsize for child in children)
        return Entry(self._dag_pb(block), filesize, tsize)


class _Lookahead:
    """A chunk iterator that can answer "is there more?" (Kubo's `db.Done()`)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._next: bytes | None = next(chunks, None)

    def done(self) -> bool:
        return self._next is None

    def take(self) -> bytes:
        chunk = self._next
        assert chunk is not None
        self._next = next(self._chunks, None)
        return chunk


def _fill(builder: _Builder, chunks: _Lookahead, depth: int, first: Entry | None) -> Entry:
    """go-unixfs `fillNodeRec`: fill one node of `depth` with as many children as fit."""
    children: list[Entry] = [] if first is None else [first]
    max_links = builder.options.max_links
    while len(children) < max_links and not chunks.done():
        if depth == 1:
            children.append(builder.leaf(chunks.take()))
        else:
            children.append(_fill(builder, chunks, depth - 1, None))
    return builder.parent(children)


def import_file(
    source: Iterable[bytes], options: ImportOptions = KUBO_DEFAULT, emit: Emit | None = None
) -> Entry:
    """Import a file's bytes (any piece sizes) and return its root.

    `emit` receives every block; pass None to only compute the CID (`add -n`).
    """
    builder = _Builder(options, emit)
    chunks = _Lookahead(fixed_chunks(source, options.chunk_size))
    if chunks.done():
        return builder.leaf(b"")
    root = builder.leaf(chunks.take())
    depth = 1
    while not chunks.done():
        root = _fill(builder, chunks, depth, root)
        depth += 1
    return root


def import_bytes(
    data: bytes, options: ImportOptions = KUBO_DEFAULT, emit: Emit | None = None
) -> Entry:
    """`import_file` over bytes already in memory."""
    return import_file((data,), options, emit)


def build_directory(
    children: Iterable[tuple[str, Entry]],
    options: ImportOptions = KUBO_DEFAULT,
    emit: Emit | None = None,
) -> Entry:
    """A UnixFS directory node over named children, as `ipfs add -r` builds it."""
    named = sorted(children, key=lambda item: item[0].encode("utf-8"))
    seen: set[str] = set()
    estimated = 0
    for name, entry in named:
        if not name or "/" in name or name in (".", ".."):
            raise ImportError_(f"invalid directory entry name {name!r}")
        if name in seen:
            raise ImportError_(f"duplicate directory entry name {name!r}")
        seen.add(name)
        estimated += len(name.encode("utf-8")) + len(bytes(entry.cid))
    if estimated > HAMT_SHARDING_SIZE:
        raise DirectoryTooLarge(
            f"directory with {len(named)} entries ({estimated} bytes of links) exceeds "
            f"{HAMT_SHARDING_SIZE} bytes; Kubo would HAMT-shard it and chorus does not shard"
        )
    links = tuple(PBLink(entry.cid, name, entry.tsize) for name, entry in named)
    block = encode_node(PBNode(links, encode_data(UnixFSData(DataType.DIRECTORY))))
    builder = _Builder(options, emit)
    tsize = len(block) + sum(entry.tsize for _, entry in named)
    return Entry(builder._dag_pb(block), 0, tsize)


# Re-exported for callers that encode links themselves (directory listings, tests).
encode_pb_link = encode_link
