"""Files that appear whole or not at all: temp sibling, fsync, rename, fsync the folder.

Used wherever chorus writes a file a person or a later run will trust — the repo
config, exported CARs — so a crash or an error never leaves a half-written file
under the name asked for, nor replaces a good one with a broken one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_writer", "write_atomically"]


@contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """Yield a file to write; on a clean exit it becomes `path`, on an error it vanishes."""
    parent = path.parent if str(path.parent) else Path(".")
    fd, staging = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=parent)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    _fsync_dir(parent)


def write_atomically(path: Path, data: bytes) -> None:
    """`atomic_writer` for bytes already in memory."""
    with atomic_writer(path) as out:
        out.write(data)


def _fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (best effort: not every platform allows it)."""
    try:
        dir_fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
