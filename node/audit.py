"""Export a node's ledger to a file, and verify a ledger file or a node's own database.

Both verifications run the same `ledger.verify.LogVerifier` over the log in order. The
costly part, decoding each entry and checking its Ed25519 signature, is independent
per entry, so with `workers > 1` it runs in a process pool on chunks of the log
while this process does the order-dependent checks (feeds, tree, tree heads) on the
results. That is what brings a million-entry audit well under three minutes on two
cores (bench/ledger.py).

Verifying the database adds what only the file can get wrong: indices that are not
contiguous, a feeds table or Merkle nodes that disagree with the entries
(`LedgerStore.check_tables`, `stored_root`).
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import BinaryIO

from ledger.entry import EntryError, decode_entry, decode_entry_checked_elsewhere
from ledger.export import Manifest, encode_entry_section, encode_export_header, read_export
from ledger.feed import Head
from ledger.verify import LogVerifier, Report

from .atomic_file import atomic_writer
from .ledger_store import LedgerCorrupt, LedgerStore

__all__ = [
    "CHUNK",
    "default_workers",
    "export_ledger",
    "export_ledger_file",
    "verify_export",
    "verify_store",
]

_PR_SET_PDEATHSIG = 1  # linux/prctl.h

#: Entries per unit of work sent to a worker process.
CHUNK = 4096
_READ_SIZE = 1 << 20

Progress = Callable[[int], None]


def default_workers() -> int:
    """One worker per core, none at all on a single core (no pool to pay for)."""
    return max(1, min(os.cpu_count() or 1, 8))


def _check_chunk(chunk: list[bytes]) -> list[EntryError | None]:
    """Full `decode_entry` of each entry (in a worker): None when valid, else the error.

    Only the verdicts travel back: pickling decoded entries costs more than parsing
    them again in the parent."""
    out: list[EntryError | None] = []
    for data in chunk:
        try:
            decode_entry(data)
        except EntryError as exc:
            out.append(exc)
        else:
            out.append(None)
    return out


Record = tuple[bytes | None, bytes]


def _chunks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _run(
    verifier: LogVerifier,
    records: Iterable[tuple[bytes | None, bytes]],
    workers: int,
    progress: Progress | None,
) -> None:
    """Feed (claimed id, bytes) records to the verifier, decoding in a pool if asked."""
    done = 0
    if workers <= 1:
        for claimed, data in records:
            verifier.add(data, claimed_id=claimed)
            done += 1
            if progress is not None and done % CHUNK == 0:
                progress(done)
    else:
        with ProcessPoolExecutor(
            max_workers=workers, initializer=_die_with_parent, initargs=(os.getpid(),)
        ) as pool:
            _run_pool(verifier, records, pool, workers, progress)
            return
    if progress is not None:
        progress(done)


def _die_with_parent(parent: int) -> None:
    """Make a pool worker die when the auditing process dies.

    A worker waits on its task queue forever, and it holds the parent's stdout: an
    audit killed by SIGKILL (or the OOM killer) would leave workers behind that keep
    a caller's pipe open, so the caller never sees the end of the output. On Linux
    the kernel signals the worker (PR_SET_PDEATHSIG); elsewhere a thread watches
    the parent pid.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl")
    except (OSError, AttributeError):
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _run_pool(
    verifier: LogVerifier,
    records: Iterable[tuple[bytes | None, bytes]],
    pool: Executor,
    workers: int,
    progress: Progress | None,
) -> None:
    pending = []
    done = 0
    chunks = _chunks(records, CHUNK)
    # Keep a few chunks in flight per worker: bounded memory, no idle worker.
    for chunk in chunks:
        pending.append((chunk, pool.submit(_check_chunk, [data for _, data in chunk])))
        if len(pending) < 2 * workers:
            continue
        done += _drain_one(verifier, pending)
        if progress is not None:
            progress(done)
    while pending:
        done += _drain_one(verifier, pending)
        if progress is not None:
            progress(done)


def _drain_one(verifier: LogVerifier, pending: list) -> int:
    chunk, future = pending.pop(0)
    for (claimed, data), error in zip(chunk, future.result(), strict=True):
        decoded = decode_entry_checked_elsewhere(data) if error is None else error
        verifier.add(data, claimed_id=claimed, decoded=decoded)
    return len(chunk)


def verify_store(
    store: LedgerStore,
    *,
    now_ms: int | None = None,
    workers: int = 1,
    progress: Progress | None = None,
) -> Report:
    """Verify a node's ledger database: every entry, feed, tree head and table."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    verifier = LogVerifier(log_owner=store.owner, now_ms=now, kinds=store.kinds)
    records = ((record.id, record.data) for record in store.iter_log())
    _run(verifier, records, workers, progress)
    report = verifier.finish(require_tree_head=False)
    for rule, message in store.check_tables():
        verifier._find(rule, message, None, None)
    # The feeds table must be exactly the heads the log recomputes to: a stale head or
    # a lost freeze would let the node accept a second entry for a seq unnoticed.
    recomputed = verifier.feeds.heads()
    stored_heads: dict[bytes, Head] = {}
    after = None
    while page := store.heads(after):
        stored_heads.update(page)
        after = page[-1][0]
    for author in sorted(recomputed.keys() | stored_heads.keys()):
        if stored_heads.get(author) != recomputed.get(author):
            verifier._find(
                "feeds",
                f"feed {author.hex()[:16]}… is {stored_heads.get(author)} in the feeds "
                f"table but the log gives {recomputed.get(author)}",
                None,
                None,
            )
    if report.entries:
        try:
            stored = store.stored_root(report.entries)
        except LedgerCorrupt as exc:
            verifier._find("merkle", str(exc), None, None)
        else:
            if stored != report.root:
                verifier._find(
                    "merkle",
                    f"stored Merkle nodes give root {stored.hex()} but the entries "
                    f"recompute to {report.root.hex()}",
                    None,
                    None,
                )
    return report


def _file_chunks(handle: BinaryIO) -> Iterator[bytes]:
    while chunk := handle.read(_READ_SIZE):
        yield chunk


def verify_export(
    path: Path,
    *,
    now_ms: int | None = None,
    workers: int = 1,
    progress: Progress | None = None,
) -> tuple[Manifest, Report]:
    """Verify an export file (ExportError if it is not one at all)."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    with open(path, "rb") as handle:
        manifest, records = read_export(_file_chunks(handle))
        verifier = LogVerifier(log_owner=manifest.node, now_ms=now)
        _run(verifier, records, workers, progress)
        report = verifier.finish()
    if report.entries != manifest.size:
        verifier._find(
            "log",
            f"the manifest announces {manifest.size} entries but the file holds {report.entries}",
            None,
            None,
        )
    return manifest, report


def export_ledger(
    store: LedgerStore,
    out: BinaryIO,
    *,
    coop: str | None = None,
    size: int | None = None,
    progress: Progress | None = None,
) -> Manifest:
    """Write the first `size` log entries (all by default) as an export to `out`."""
    size = store.log_size() if size is None else size
    manifest = Manifest(store.owner, size, coop)
    out.write(encode_export_header(manifest))
    written = 0
    for record in store.iter_log(0, size):
        out.write(encode_entry_section(record.data, record.id))
        written += 1
        if progress is not None and written % CHUNK == 0:
            progress(written)
    if written != size:
        raise LedgerCorrupt(f"the log has {written} entries, expected {size}")
    return manifest


def export_ledger_file(store: LedgerStore, path: Path, *, coop: str | None = None) -> Manifest:
    """`export_ledger` into a file that appears whole or not at all."""
    with atomic_writer(path) as handle:
        return export_ledger(store, handle, coop=coop)
