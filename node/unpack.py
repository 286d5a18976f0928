"""Writing a UnixFS DAG back out: `cat` to a stream and `get` to the file system.

Reads go through a block getter (the local store now, the swarm later) and only the
blocks needed are asked for. `get` writes into a temporary sibling and renames it
into place at the end, so an interrupted or failed `get` never leaves a half-written
file under the name the user asked for.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from multiformats import CID

from protocol.dagpb import decode_node
from protocol.errors import NotAFile
from protocol.reader import GetBlock, list_directory, read_file, stat_node
from protocol.unixfs import decode_data

__all__ = ["cat_to", "get_to_path"]

Progress = Callable[[int], None]


def cat_to(
    cid: CID,
    get_block: GetBlock,
    out: BinaryIO,
    *,
    offset: int = 0,
    length: int | None = None,
    progress: Progress | None = None,
) -> int:
    """Stream a file's bytes to `out`; return how many were written."""
    written = 0
    for piece in read_file(cid, get_block, offset, length):
        out.write(piece)
        written += len(piece)
        if progress is not None:
            progress(len(piece))
    return written


def _write_tree(cid: CID, get_block: GetBlock, dest: Path, progress: Progress | None) -> None:
    info = stat_node(cid, get_block)
    if info.kind in ("file", "raw"):
        with dest.open("wb") as out:
            cat_to(cid, get_block, out, progress=progress)
            out.flush()
            os.fsync(out.fileno())
    elif info.kind == "directory":
        dest.mkdir()
        for entry in list_directory(cid, get_block):
            _write_tree(entry.cid, get_block, dest / entry.name, progress)
    elif info.kind == "symlink":
        target = decode_data(decode_node(get_block(cid)).data or b"").data or b""
        os.symlink(target.decode("utf-8", "surrogateescape"), dest)
    else:
        raise NotAFile(f"{cid} is a UnixFS {info.kind}, which chorus cannot write out")


def get_to_path(
    cid: CID, get_block: GetBlock, dest: Path, *, progress: Progress | None = None
) -> Path:
    """Write the file or directory tree at `cid` to `dest` (which must not exist)."""
    if dest.exists() or dest.is_symlink():
        raise FileExistsError(f"{dest} already exists; refusing to overwrite it")
    parent = dest.parent if str(dest.parent) else Path(".")
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=parent))
    try:
        target = staging / "content"
        _write_tree(cid, get_block, target, progress)
        os.replace(target, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest
