"""CAR export and import between the blockstore and byte streams (`chorus car ...`).

The codec is pure (`protocol.car`); this module is the I/O around it. Export walks
the DAG the way `ipfs dag export` does, so the same DAG gives the same CAR bytes as
Kubo. Import reads the stream in fixed-size pieces (memory stays flat whatever the
CAR's size), verifies every block against its CID, and goes through one
`BlockBatch`: if any block is bad, or the stream is malformed or truncated, nothing
of the CAR is stored, and the roots are pinned in the same commit as the blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from multiformats import CID

from protocol.car import (
    CAR_END,
    NEED_DATA,
    CarBlock,
    CarDecoder,
    CarHeader,
    encode_block,
    encode_header,
)
from protocol.dag import links_of
from protocol.errors import BlockError

from .atomic_file import atomic_writer
from .blockstore import Blockstore

__all__ = ["READ_SIZE", "ImportResult", "export_car", "export_car_file", "import_car"]

#: Bytes read from the source per call during import.
READ_SIZE = 256 * 1024

#: Called with the number of bytes just written (export) or read (import).
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class ImportResult:
    roots: tuple[CID, ...]
    blocks: int  # sections read (a block repeated in the CAR counts each time)
    bytes: int  # block payload bytes read


def export_car(
    blockstore: Blockstore, root: CID, out: BinaryIO, progress: Progress | None = None
) -> int:
    """Write the DAG under `root` to `out` as a CARv1; return the bytes written.

    Order is Kubo's: depth-first, links in order, each CID once. Every block is
    verified on read (`Blockstore.get`). If the DAG is incomplete, BlockNotFound is
    raised part-way through, after some bytes were written: to produce a file, use
    `export_car_file`, which only puts a complete CAR under the name asked for.
    """
    written = _write(out, encode_header([root]), progress)
    stack = [root]
    seen: set[bytes] = set()
    while stack:
        cid = stack.pop()
        name = bytes(cid)
        if name in seen:
            continue
        seen.add(name)
        data = blockstore.get(cid)
        written += _write(out, encode_block(cid, data), progress)
        stack.extend(reversed(links_of(cid, data)))
    return written


def export_car_file(
    blockstore: Blockstore, root: CID, path: Path, progress: Progress | None = None
) -> int:
    """`export_car` into `path` atomically: written to a temporary sibling, fsynced,
    then renamed, so a failed export leaves no partial file (and no old one replaced)."""
    with atomic_writer(path) as out:
        written = export_car(blockstore, root, out, progress)
    return written


def import_car(
    blockstore: Blockstore,
    src: BinaryIO,
    *,
    pin_roots: bool = True,
    progress: Progress | None = None,
) -> ImportResult:
    """Read a CARv1 from `src` into the store; pin its roots recursively if asked.

    All or nothing: CarError (malformed or truncated stream), BlockMismatch or
    BlockTooLarge (naming the bad block's CID and its offset), QuotaExceeded, or
    BlockNotFound (a root's DAG is not complete, with `pin_roots`) leave the store
    as it was.
    """
    decoder = CarDecoder()
    roots: tuple[CID, ...] = ()
    blocks = 0
    size = 0
    with blockstore.batch() as batch:
        while True:
            event = decoder.next_event()
            if event is NEED_DATA:
                chunk = src.read(READ_SIZE) or b""
                decoder.receive_data(chunk)
                if chunk and progress is not None:
                    progress(len(chunk))
            elif event is CAR_END:
                break
            elif isinstance(event, CarHeader):
                roots = event.roots
            elif isinstance(event, CarBlock):
                try:
                    batch.put(event.cid, event.data)  # verifies; aborts the batch if bad
                except BlockError as exc:
                    raise type(exc)(f"CAR section at offset {event.offset}: {exc}") from None
                blocks += 1
                size += len(event.data)
        if pin_roots:
            for root in roots:
                batch.pin(root, recursive=True)
    return ImportResult(roots, blocks, size)


def _write(out: BinaryIO, data: bytes, progress: Progress | None) -> int:
    out.write(data)
    if progress is not None:
        progress(len(data))
    return len(data)
