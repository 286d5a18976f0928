"""`add`: files and directories on disk to UnixFS blocks in the store, like `ipfs add`.

The importer in `protocol/` is pure; this module owns the I/O around it: walking the
file system the way Kubo does (sorted names, hidden entries skipped unless asked,
symlinks stored as UnixFS symlinks, never followed), reading files in chunk-sized
pieces so memory stays flat, and writing every block of one `add` through one store batch
that publishes the blocks and pins the roots together: an interrupted or failed add
leaves nothing visible behind, never a pin to an incomplete DAG.
"""

from __future__ import annotations

import os
import queue
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from multiformats import CID

from protocol.cid import DAG_PB, make_cid
from protocol.dagpb import PBNode, encode_node
from protocol.importer import (
    KUBO_DEFAULT,
    Entry,
    ImportOptions,
    build_directory,
    import_file,
)
from protocol.unixfs import DataType, UnixFSData, encode_data

from .blockstore import BlockBatch, Blockstore

__all__ = ["AddResult", "Added", "add_paths", "add_stream", "total_input_bytes"]

READ_SIZE = 1024 * 1024
#: Blocks in flight between the importer and the store's writer (x 256 KiB).
QUEUE_DEPTH = 16

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Added:
    """One `added <cid> <name>` line."""

    name: str
    cid: CID
    size: int  # cumulative size of the DAG (block bytes), as Kubo reports it


@dataclass(slots=True)
class AddResult:
    added: list[Added] = field(default_factory=list)

    @property
    def root(self) -> Added:
        return self.added[-1]


class _Sink:
    """Where emitted blocks go: a store batch, or nowhere when only hashing.

    With a store, blocks are handed to one writer thread through a small bounded
    queue: the store re-verifies every block and writes it to SQLite while the
    importer hashes the next chunk. Both release the GIL (hashlib on large buffers,
    sqlite3 while it works), so an add uses two cores instead of one. The thread
    lives exactly as long as the `_sink` context; a store error ends the add at the
    next block.
    """

    def __init__(self, batch: BlockBatch | None, depth: int = QUEUE_DEPTH) -> None:
        self.batch = batch
        self._queue: queue.Queue[tuple[CID, bytes] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if batch is not None:
            self._thread = threading.Thread(target=self._write, name="chorus-add-writer")
            self._thread.start()

    def _write(self) -> None:
        assert self.batch is not None
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self.batch.put(*item)
                except BaseException as exc:  # noqa: BLE001 - handed to the importing thread
                    self._error = exc

    def __call__(self, cid: CID, data: bytes) -> None:
        if self._thread is None:
            return
        if self._error is not None:
            raise self._error
        self._queue.put((cid, data))

    def close(self) -> None:
        """Wait for every queued block to be written; raise the writer's error, if any."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join()
        self._thread = None
        if self._error is not None:
            raise self._error


@contextmanager
def _sink(store: Blockstore | None) -> Iterator[tuple[_Sink, BlockBatch | None]]:
    """A sink feeding one store batch; the batch commits only if the sink drained cleanly."""
    if store is None:
        yield _Sink(None), None
        return
    with store.batch() as batch:
        sink = _Sink(batch)
        try:
            yield sink, batch
        finally:
            sink.close()


def _read_pieces(stream: BinaryIO, progress: Progress | None) -> Iterator[bytes]:
    while True:
        piece = stream.read(READ_SIZE)
        if not piece:
            return
        if progress is not None:
            progress(len(piece))
        yield piece


def add_stream(
    stream: BinaryIO,
    store: Blockstore | None,
    options: ImportOptions = KUBO_DEFAULT,
    *,
    pin: bool = True,
    progress: Progress | None = None,
) -> Entry:
    """Import one byte stream as a UnixFS file; store (and pin) it unless `store` is None."""
    with _sink(store) as (sink, batch):
        entry = import_file(_read_pieces(stream, progress), options, sink)
        sink.close()
        if batch is not None and pin:
            batch.pin(entry.cid, recursive=True)
    return entry


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _symlink(path: Path, options: ImportOptions, sink: _Sink) -> Entry:
    target = os.readlink(path).encode("utf-8", "surrogateescape")
    block = encode_node(PBNode((), encode_data(UnixFSData(DataType.SYMLINK, data=target))))
    cid = make_cid(block, version=options.cid_version, codec=DAG_PB)
    sink(cid, block)
    return Entry(cid, 0, len(block))


def _add_tree(
    path: Path,
    name: str,
    options: ImportOptions,
    sink: _Sink,
    *,
    hidden: bool,
    files: list[Added],
    dirs: list[Added],
    progress: Progress | None,
) -> Entry:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        entry = _symlink(path, options, sink)
        files.append(Added(name, entry.cid, entry.tsize))
        return entry
    if stat.S_ISREG(info.st_mode):
        with path.open("rb") as stream:
            entry = import_file(_read_pieces(stream, progress), options, sink)
        files.append(Added(name, entry.cid, entry.tsize))
        return entry
    if stat.S_ISDIR(info.st_mode):
        children: list[tuple[str, Entry]] = []
        for child in sorted(os.listdir(path), key=lambda n: n.encode("utf-8", "surrogateescape")):
            if not hidden and _is_hidden(child):
                continue
            entry = _add_tree(
                path / child,
                f"{name}/{child}",
                options,
                sink,
                hidden=hidden,
                files=files,
                dirs=dirs,
                progress=progress,
            )
            children.append((child, entry))
        entry = build_directory(children, options, sink)
        dirs.append(Added(name, entry.cid, entry.tsize))
        return entry
    raise OSError(f"{path}: not a regular file, directory or symlink")


def add_paths(
    paths: list[Path],
    store: Blockstore | None,
    options: ImportOptions = KUBO_DEFAULT,
    *,
    recursive: bool = False,
    hidden: bool = False,
    pin: bool = True,
    progress: Progress | None = None,
) -> AddResult:
    """Add files (and, with `recursive`, directories) as `ipfs add [-r]` does.

    Output order follows Kubo: each file as it is added, then directories from the
    deepest up. Blocks and pins become visible together when every path is done.
    """
    result = AddResult()
    roots: list[CID] = []
    with _sink(store) as (sink, batch):
        for path in paths:
            entry = _add_one(
                path,
                options,
                sink,
                recursive=recursive,
                hidden=hidden,
                result=result,
                progress=progress,
            )
            roots.append(entry.cid)
        sink.close()
        if batch is not None and pin:
            for root in roots:
                batch.pin(root, recursive=True)
    return result


def _add_one(
    path: Path,
    options: ImportOptions,
    sink: _Sink,
    *,
    recursive: bool,
    hidden: bool,
    result: AddResult,
    progress: Progress | None,
) -> Entry:
    if path.is_dir() and not path.is_symlink() and not recursive:
        raise IsADirectoryError(f"{path} is a directory; use -r to add directories")
    files: list[Added] = []
    dirs: list[Added] = []
    name = path.name or str(path)
    entry = _add_tree(
        path, name, options, sink, hidden=hidden, files=files, dirs=dirs, progress=progress
    )
    result.added.extend(files)
    result.added.extend(dirs)
    return entry


def total_input_bytes(paths: list[Path], *, recursive: bool, hidden: bool) -> int:
    """Bytes that `add_paths` will read, for a progress bar's total."""
    total = 0
    for path in paths:
        if path.is_file():
            total += path.stat().st_size
        elif recursive and path.is_dir():
            for root, dirnames, filenames in os.walk(path):
                if not hidden:
                    dirnames[:] = [d for d in dirnames if not _is_hidden(d)]
                for filename in filenames:
                    if hidden or not _is_hidden(filename):
                        full = Path(root) / filename
                        if full.is_file() and not full.is_symlink():
                            total += full.stat().st_size
    return total
