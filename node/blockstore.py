"""The embedded blockstore: blocks and pins in one SQLite file (`blocks.sqlite`).

Why SQLite rather than one file per block (Kubo's flatfs): a pin and the blocks it
protects commit in one transaction; a crash at any instant leaves either the old or
the new state, never a torn block; one fsync per commit instead of one per file plus
its directory; and one writer is exactly SQLite's model. docs/blockstore.md has the
whole argument and the measured figures.

Theory of operation
-------------------
* Blocks are keyed by multihash bytes (as Kubo since 0.12), so the same bytes under
  CIDv0 and CIDv1 are stored once. Pins are keyed by the CID as given (v0 and v1 of a
  node are two pins, as in Kubo) and also record the multihash, for `delete`.
* Every write verifies the bytes against the CID first (`verify_block`), and every
  read verifies them again: a block damaged on disk is reported as `StoreCorrupt`,
  never served.
* Threads: one writer connection behind a `threading.Lock` (SQLite admits one writer
  at a time anyway, so queueing in Python costs nothing and avoids busy-retry loops),
  plus a pool of reader connections. In WAL mode readers see the last committed
  state and never wait for the writer, so the gateway keeps serving while an import
  or a gc runs. Every method is synchronous and may be called from any thread (the
  daemon calls them through `trio.to_thread`).
* Large writes go through a `BlockBatch`: blocks are written in chunks of about
  `commit_bytes`, each chunk its own transaction, but marked in the `staged` table
  so readers, `has` and pins do not see them. Publishing the batch (and its pins) is
  one small transaction that deletes its `staged` rows; aborting deletes its blocks.
  So a 1 GiB import never makes a 1 GiB transaction, yet is all-or-nothing. Staged
  rows left by a crash are dead batches and are removed when the store is opened
  (the repo lock guarantees one process per store).
* Durability: WAL with `synchronous=FULL`, so a write that returned was fsynced to
  the WAL: it survives kill -9 and, as far as SQLite and the disk keep their
  promises, power loss.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, NamedTuple

from multiformats import CID

from protocol.cid import MAX_BLOCK_SIZE, RAW, cid_from_bytes, cid_from_multihash, verify_block
from protocol.dag import links_of
from protocol.errors import BlockError, BlockTooLarge, DecodeError

from .errors import BlockNotFound, PinError, QuotaExceeded, RepoError, StoreCorrupt

__all__ = [
    "DEFAULT_COMMIT_BYTES",
    "FILE_NAME",
    "PAGE_SIZE",
    "BlockBatch",
    "Blockstore",
    "Pin",
    "PinKind",
    "StoreStat",
    "VerifyReport",
]

#: The database file inside a repo directory.
FILE_NAME = "blocks.sqlite"
#: Schema version stored in `PRAGMA user_version`.
SCHEMA_VERSION = 1
#: Page size fixed when the file is created. 64 KiB: a 256 KiB chunk is four overflow
#: pages instead of 64, which measured fastest for both put and get (docs/blockstore.md).
PAGE_SIZE = 65536
#: A batch commits its staged chunk once this many block bytes are waiting.
DEFAULT_COMMIT_BYTES = 8 * 1024 * 1024
#: How long a connection waits on a lock held by another connection (seconds).
BUSY_TIMEOUT = 30.0
#: The WAL is truncated back to this size after a checkpoint.
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024

_IDENTITY = 0x00
_PAGE_ROWS = 512  # keyset-pagination page for scans of multihashes
_VERIFY_ROWS = 8  # rows (each up to 2 MiB) held at once by verify()

PinKind = Literal["recursive", "direct", "indirect"]

_SCHEMA = f"""
BEGIN IMMEDIATE;
CREATE TABLE blocks (
    id   INTEGER PRIMARY KEY,
    mh   BLOB NOT NULL UNIQUE,      -- multihash bytes: the key
    size INTEGER NOT NULL,          -- len(data); before data so metadata reads skip the blob
    data BLOB NOT NULL
);
CREATE TABLE staged (               -- blocks of batches not yet published
    mh    BLOB NOT NULL,
    batch INTEGER NOT NULL,
    PRIMARY KEY (mh, batch)
) WITHOUT ROWID;
CREATE INDEX staged_batch ON staged (batch);
CREATE TABLE pins (
    cid       BLOB PRIMARY KEY,     -- binary CID as pinned
    mh        BLOB NOT NULL,
    recursive INTEGER NOT NULL CHECK (recursive IN (0, 1))
) WITHOUT ROWID;
CREATE INDEX pins_mh ON pins (mh);
CREATE TABLE totals (               -- kept by triggers, so stat() and quota are O(1)
    id     INTEGER PRIMARY KEY CHECK (id = 0),
    blocks INTEGER NOT NULL,
    bytes  INTEGER NOT NULL
);
INSERT INTO totals VALUES (0, 0, 0);
CREATE TRIGGER blocks_insert AFTER INSERT ON blocks BEGIN
    UPDATE totals SET blocks = blocks + 1, bytes = bytes + NEW.size WHERE id = 0;
END;
CREATE TRIGGER blocks_delete AFTER DELETE ON blocks BEGIN
    UPDATE totals SET blocks = blocks - 1, bytes = bytes - OLD.size WHERE id = 0;
END;
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;
"""

# A block is visible (has/get/pins) once no batch still stages it.
_VISIBLE = "NOT EXISTS (SELECT 1 FROM staged WHERE staged.mh = blocks.mh)"


class StoreStat(NamedTuple):
    """What `stat()` reports. `bytes` counts block payloads (file overhead excluded),
    including the chunks of batches still in flight, since they occupy the quota."""

    blocks: int
    bytes: int
    quota: int | None


class Pin(NamedTuple):
    """One pin-set entry; unpacks as `cid, kind` like a row of `ipfs pin ls`."""

    cid: CID
    kind: PinKind


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Result of re-hashing every stored block. `problems` explains each entry of
    `corrupt`, plus damage that cannot be pinned to a CID (an unreadable key, a
    malformed database page)."""

    checked: int
    bytes: int
    corrupt: tuple[CID, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.corrupt and not self.problems


def _key(cid: CID) -> bytes:
    return bytes(cid.digest)


def _is_identity(cid: CID) -> bool:
    return cid.hashfun.code == _IDENTITY


def _raw_cid(mh: bytes) -> CID:
    """The CIDv1 raw naming a stored multihash, as Kubo's `refs local` prints it."""
    return cid_from_multihash(mh)


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))


class Blockstore:
    """Verified blocks, pins, quota and gc over one SQLite file; see the module docstring.

    Construct with the file's path; `create=False` refuses to create a missing file
    (the repo opens an existing store that way). Close it, or use it as a context manager.
    """

    def __init__(self, path: Path | str, *, quota: int | None = None, create: bool = True) -> None:
        if quota is not None and (type(quota) is not int or quota < 0):
            raise ValueError(f"quota must be a non-negative number of bytes or None, not {quota!r}")
        self.path = Path(path)
        self.quota = quota
        self._write_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._idle_readers: list[sqlite3.Connection] = []
        self._closed = False
        if not create and not self.path.is_file():
            raise RepoError(f"blockstore {self.path} does not exist")
        with self._guard():
            try:
                self._writer = self._connect()
            except sqlite3.OperationalError as exc:
                raise RepoError(f"cannot open blockstore {self.path}: {exc}") from None
            try:
                self._prepare_file()
                self._drop_dead_batches()
            except BaseException:
                self._writer.close()
                raise

    # -- connections -----------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        # Per-connection settings. FULL: a commit fsyncs the WAL before returning, so
        # an acknowledged write survives power loss, not only a process crash.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA fullfsync = ON")  # macOS: a real flush, not just to the drive
        conn.execute("PRAGMA checkpoint_fullfsync = ON")
        conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
        conn.execute("PRAGMA cache_size = -16384")  # KiB: 16 MiB
        conn.execute("PRAGMA trusted_schema = OFF")
        return conn

    def _prepare_file(self) -> None:
        conn = self._writer
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RepoError(
                f"{self.path} has schema version {version}; this chorus understands "
                f"up to {SCHEMA_VERSION} (upgrade chorus)"
            )
        if version == 0:
            tables = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
            if tables:
                raise RepoError(f"{self.path} is an SQLite file but not a chorus blockstore")
            # Both must be set before the first table exists; they are then fixed.
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise RepoError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
        if version == 0:
            try:
                conn.executescript(_SCHEMA)  # one transaction: schema and version together
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _drop_dead_batches(self) -> None:
        """Remove blocks staged by batches of an earlier, interrupted process."""
        with self._writing() as conn:
            conn.execute("DELETE FROM blocks WHERE mh IN (SELECT mh FROM staged)")
            conn.execute("DELETE FROM staged")

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn SQLite's "malformed"/"not a database" into StoreCorrupt naming the file."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if _is_corruption(exc):
                raise StoreCorrupt(
                    f"{self.path} is damaged: SQLite reports {exc}", path=self.path
                ) from exc
            raise

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the writer connection, committed on a clean exit."""
        with self._write_lock:
            self._check_open()
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")  # may fail too (disk full): then roll back
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A reader connection from the pool (created on demand, returned after use)."""
        with self._pool_lock:
            self._check_open()
            conn = self._idle_readers.pop() if self._idle_readers else None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            with self._pool_lock:
                if self._closed:
                    conn.close()
                else:
                    self._idle_readers.append(conn)

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A reader connection inside one read transaction: a consistent view for walks."""
        with self._reading() as conn:
            conn.execute("BEGIN")
            yield conn

    def _check_open(self) -> None:
        if self._closed:
            raise RepoError(f"blockstore {self.path} is closed")

    def close(self) -> None:
        """Close every connection; the last close checkpoints and removes the WAL.

        Readers in use by another thread at that moment are closed when returned."""
        with self._write_lock, self._pool_lock:
            if self._closed:
                return
            self._closed = True
            for conn in self._idle_readers:
                conn.close()
            self._idle_readers.clear()
            self._writer.close()

    def __enter__(self) -> Blockstore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- reads -----------------------------------------------------------------------

    def has(self, cid: CID) -> bool:
        """True if the block is stored (and published); no hashing."""
        if _is_identity(cid):
            return True
        with self._guard(), self._reading() as conn:
            return _has(conn, _key(cid))

    def get(self, cid: CID) -> bytes:
        """The block's bytes, re-verified against `cid` on every read.

        Raises BlockNotFound if absent, StoreCorrupt if the stored bytes no longer hash
        to the CID (damage on disk): a corrupted block is never returned.
        """
        if _is_identity(cid):
            return bytes(cid.raw_digest)
        with self._guard(), self._reading() as conn:
            data = _read(conn, _key(cid))
        if data is None:
            raise BlockNotFound(cid)
        self._check_block(cid, data)
        return data

    def size_of(self, cid: CID) -> int:
        """The block's size in bytes, from the index (no hashing: `get` verifies)."""
        if _is_identity(cid):
            return len(cid.raw_digest)
        with self._guard(), self._reading() as conn:
            row = conn.execute(
                f"SELECT size FROM blocks WHERE mh = ? AND {_VISIBLE}", (_key(cid),)
            ).fetchone()
        if row is None:
            raise BlockNotFound(cid)
        return int(row[0])

    def all_cids(self) -> Iterator[CID]:
        """Every stored block as CIDv1 raw over its multihash (Kubo's `refs local`).

        Streams in pages by key, so memory stays flat and no read transaction stays
        open between pages; blocks written meanwhile may or may not be listed.
        """
        last = b""
        while True:
            with self._guard(), self._reading() as conn:
                rows = conn.execute(
                    f"SELECT mh FROM blocks WHERE mh > ? AND {_VISIBLE} ORDER BY mh LIMIT ?",
                    (last, _PAGE_ROWS),
                ).fetchall()
            if not rows:
                return
            for (mh,) in rows:
                yield self._cid_of_key(mh)
            last = rows[-1][0]

    def stat(self) -> StoreStat:
        """Block count, payload bytes and quota, from counters kept by triggers (O(1))."""
        with self._guard(), self._reading() as conn:
            blocks, size = conn.execute("SELECT blocks, bytes FROM totals").fetchone()
        return StoreStat(blocks=int(blocks), bytes=int(size), quota=self.quota)

    def _check_block(self, cid: CID, data: bytes) -> None:
        try:
            verify_block(cid, data)
        except BlockError as exc:
            raise StoreCorrupt(
                f"block {cid} in {self.path} is corrupt: {exc}; run `chorus repo verify`",
                cids=[cid],
                path=self.path,
            ) from None

    def _cid_of_key(self, mh: bytes) -> CID:
        try:
            return _raw_cid(mh)
        except Exception as exc:  # noqa: BLE001 - multiformats raises many types
            raise StoreCorrupt(
                f"{self.path} holds a key that is not a multihash ({bytes(mh)[:40].hex()}): {exc}",
                path=self.path,
            ) from None

    # -- writes ----------------------------------------------------------------------

    def put(self, cid: CID, data: bytes) -> bool:
        """Store one block after verifying it; return False if it was already there.

        Raises BlockMismatch/BlockTooLarge (nothing stored) or QuotaExceeded.
        """
        data = bytes(data)
        verify_block(cid, data)
        if _is_identity(cid):
            return False
        key = _key(cid)
        with self._guard(), self._writing() as conn:
            if conn.execute("SELECT 1 FROM blocks WHERE mh = ?", (key,)).fetchone():
                # Already stored, perhaps staged by a batch: publish it now. The batch's
                # abort then leaves it alone, since it no longer stages it.
                conn.execute("DELETE FROM staged WHERE mh = ?", (key,))
                return False
            self._check_quota(conn, len(data))
            conn.execute(
                "INSERT INTO blocks (mh, size, data) VALUES (?, ?, ?)", (key, len(data), data)
            )
        return True

    def put_many(
        self,
        blocks: Iterable[tuple[CID, bytes]],
        *,
        commit_bytes: int = DEFAULT_COMMIT_BYTES,
    ) -> int:
        """Store many blocks as one unit; return how many were new.

        Streams: `blocks` is consumed lazily and written in chunks of `commit_bytes`.
        All or nothing: if any block is refused (mismatch, oversize, quota) none of
        them becomes visible and the error names the block.
        """
        with self.batch(commit_bytes=commit_bytes) as batch:
            for cid, data in blocks:
                batch.put(cid, data)
        return batch.new_blocks

    def batch(self, *, commit_bytes: int = DEFAULT_COMMIT_BYTES) -> BlockBatch:
        """A `BlockBatch` to use as a context manager: published on a clean exit,
        aborted (nothing stored) on an exception."""
        self._check_open()
        return BlockBatch(self, commit_bytes=commit_bytes)

    def delete(self, cid: CID) -> None:
        """Remove one block, as `ipfs block rm` does: refused while a pin needs it.

        Raises BlockNotFound if absent and PinError naming the pin if pinned directly,
        recursively, or indirectly (this walks the recursive pins, so it is O(pinned)).
        """
        if _is_identity(cid):
            return
        key = _key(cid)
        with self._guard(), self._writing() as conn:
            if not _has(conn, key):
                raise BlockNotFound(cid)
            row = conn.execute(
                "SELECT cid, recursive FROM pins WHERE mh = ? LIMIT 1", (key,)
            ).fetchone()
            if row is not None:
                kind = "recursively" if row[1] else "directly"
                raise PinError(f"cannot delete {cid}: pinned {kind} as {CID.decode(row[0])}")
            for root in _roots(conn, recursive=True):
                for reached in self._walk(conn, root):
                    if _key(reached) == key:
                        raise PinError(f"cannot delete {cid}: pinned indirectly by {root}")
            conn.execute("DELETE FROM blocks WHERE mh = ?", (key,))

    def _check_quota(self, conn: sqlite3.Connection, requested: int) -> None:
        if self.quota is None or requested == 0:
            return
        used = int(conn.execute("SELECT bytes FROM totals").fetchone()[0])
        if used + requested > self.quota:
            raise QuotaExceeded(self.quota, used, requested)

    # -- pins ------------------------------------------------------------------------

    def pin_add(self, cid: CID, *, recursive: bool = True) -> None:
        """Pin `cid`. Recursive needs the whole DAG present (BlockNotFound names the
        first missing block); direct needs only the block. A direct pin is upgraded by
        a recursive one; a direct pin of a recursively pinned CID is a PinError, as in
        Kubo. The walk runs inside the write transaction, so gc cannot interleave."""
        with self._guard(), self._writing() as conn:
            self._pin_in(conn, cid, recursive=recursive)

    def pin_rm(self, cid: CID, *, recursive: bool = True) -> None:
        """Unpin `cid`. `recursive=False` only removes a direct pin, as in Kubo."""
        with self._guard(), self._writing() as conn:
            row = conn.execute("SELECT recursive FROM pins WHERE cid = ?", (bytes(cid),)).fetchone()
            if row is None:
                raise PinError(f"{cid} is not pinned (or only pinned indirectly)")
            if row[0] and not recursive:
                raise PinError(f"{cid} is pinned recursively; unpin it with recursive=True")
            conn.execute("DELETE FROM pins WHERE cid = ?", (bytes(cid),))

    def pin_ls(self, kind: Literal["all", "recursive", "direct", "indirect"] = "all") -> list[Pin]:
        """Pins of one kind, or all: recursive, then direct, then indirect (every block
        reached from a recursive pin that is not itself listed), from one snapshot."""
        if kind not in ("all", "recursive", "direct", "indirect"):
            raise ValueError(f"pin kind must be all, recursive, direct or indirect, not {kind!r}")
        pins: list[Pin] = []
        with self._guard(), self._snapshot() as conn:
            recursive = list(_roots(conn, recursive=True))
            direct = list(_roots(conn, recursive=False))
            if kind in ("all", "recursive"):
                pins += [Pin(cid, "recursive") for cid in recursive]
            if kind in ("all", "direct"):
                pins += [Pin(cid, "direct") for cid in direct]
            if kind in ("all", "indirect"):
                listed = {bytes(cid) for cid in recursive}
                if kind == "all":
                    listed |= {bytes(cid) for cid in direct}
                for root in recursive:
                    for reached in self._walk(conn, root):
                        if bytes(reached) not in listed:
                            listed.add(bytes(reached))
                            pins.append(Pin(reached, "indirect"))
        return pins

    def _pin_in(
        self,
        conn: sqlite3.Connection,
        cid: CID,
        *,
        recursive: bool,
        trusted: frozenset[bytes] | set[bytes] = frozenset(),
    ) -> None:
        row = conn.execute("SELECT recursive FROM pins WHERE cid = ?", (bytes(cid),)).fetchone()
        if recursive:
            if row is not None and row[0]:
                return
            for _ in self._walk(conn, cid, trusted=trusted):
                pass
        else:
            if row is not None:
                if row[0]:
                    raise PinError(f"{cid} is already pinned recursively")
                return
            if not _is_identity(cid) and not _has(conn, _key(cid)):
                raise BlockNotFound(cid, "cannot pin it directly")
        conn.execute(
            "INSERT OR REPLACE INTO pins (cid, mh, recursive) VALUES (?, ?, ?)",
            (bytes(cid), _key(cid), int(recursive)),
        )

    def _walk(
        self,
        conn: sqlite3.Connection,
        root: CID,
        *,
        trusted: frozenset[bytes] | set[bytes] = frozenset(),
    ) -> Iterator[CID]:
        """Every CID of the DAG under `root`, depth-first, each once, verified.

        Raw leaves are only checked for presence (their bytes cannot hold links);
        other blocks are read, re-hashed (a damaged node could point anywhere) and
        decoded with `links_of`. Blocks whose keys are in `trusted` were hashed by
        the calling batch moments ago, inside the same writer, and are not hashed a
        second time. Raises BlockNotFound, StoreCorrupt or DecodeError.
        """
        stack = [root]
        seen: set[bytes] = set()
        while stack:
            cid = stack.pop()
            name = bytes(cid)
            if name in seen:
                continue
            seen.add(name)
            if _is_identity(cid):
                data = bytes(cid.raw_digest)
            elif cid.codec.code == RAW:
                if not _has(conn, _key(cid)):
                    raise BlockNotFound(cid, f"part of the DAG under {root}")
                yield cid
                continue
            else:
                key = _key(cid)
                found = _read(conn, key)
                if found is None:
                    raise BlockNotFound(cid, f"part of the DAG under {root}")
                if key not in trusted:
                    self._check_block(cid, found)
                data = found
            try:
                links = links_of(cid, data)
            except DecodeError as exc:
                raise DecodeError(
                    f"cannot follow the links of {cid} (under {root}): {exc}"
                ) from None
            yield cid
            stack.extend(reversed(links))

    # -- maintenance -----------------------------------------------------------------

    def gc(self) -> list[CID]:
        """Delete every block no pin needs; return their CIDs (v1 raw, as Kubo prints).

        Mark (walk recursive pins, add direct ones) and sweep run in one write
        transaction, so no pin can be added between them; blocks of batches in flight
        are kept. If a pinned DAG is damaged or incomplete the gc stops with that error
        and deletes nothing: without the node's links we cannot know what it protects.
        Freed pages are then returned to the file system (incremental vacuum).
        """
        removed: list[CID] = []
        with self._guard():
            with self._writing() as conn:
                marked: set[bytes] = set()
                for root in _roots(conn, recursive=True):
                    marked.update(_key(cid) for cid in self._walk(conn, root))
                marked.update(_key(cid) for cid in _roots(conn, recursive=False))
                last = b""
                while True:
                    rows = conn.execute(
                        f"SELECT mh FROM blocks WHERE mh > ? AND {_VISIBLE} ORDER BY mh LIMIT ?",
                        (last, _PAGE_ROWS),
                    ).fetchall()
                    if not rows:
                        break
                    last = rows[-1][0]
                    doomed = [mh for (mh,) in rows if mh not in marked]
                    conn.executemany("DELETE FROM blocks WHERE mh = ?", [(mh,) for mh in doomed])
                    removed.extend(self._cid_of_key(mh) for mh in doomed)
            if removed:
                with self._write_lock:
                    self._check_open()
                    # It frees one page per step, and execute() steps once: executescript
                    # runs it to completion (in its own transaction).
                    self._writer.executescript("PRAGMA incremental_vacuum;")
        return removed

    def verify(self, *, structure: bool = False) -> VerifyReport:
        """Re-hash every stored block (staged ones included) and report the bad ones.

        Streams a few rows at a time (constant memory, no long read transaction).
        `structure=True` also runs SQLite's `integrity_check`, which finds damage to
        the indexes that a re-hash by row cannot see (it reads the whole file again).
        """
        checked = 0
        total = 0
        corrupt: list[CID] = []
        problems: list[str] = []
        last_id = 0
        while True:
            try:
                with self._reading() as conn:
                    rows = conn.execute(
                        "SELECT id, mh, size, data FROM blocks WHERE id > ? ORDER BY id LIMIT ?",
                        (last_id, _VERIFY_ROWS),
                    ).fetchall()
            except sqlite3.DatabaseError as exc:
                if not _is_corruption(exc):
                    raise
                problems.append(f"database damaged after row {last_id}: {exc}; scan stopped")
                break
            if not rows:
                break
            for row_id, mh, size, data in rows:
                last_id = row_id
                checked += 1
                total += len(data)
                try:
                    cid = _raw_cid(mh)
                except Exception as exc:  # noqa: BLE001 - multiformats raises many types
                    problems.append(
                        f"row {row_id}: key {bytes(mh)[:40].hex()} is not a multihash: {exc}"
                    )
                    continue
                try:
                    verify_block(cid, data)
                except BlockError as exc:
                    corrupt.append(cid)
                    problems.append(f"{cid}: {exc}")
                    continue
                if size != len(data):
                    corrupt.append(cid)
                    problems.append(f"{cid}: recorded size {size} but {len(data)} bytes stored")
        if structure:
            with self._guard(), self._reading() as conn:
                for (message,) in conn.execute("PRAGMA integrity_check"):
                    if message != "ok":
                        problems.append(f"integrity_check: {message}")
        return VerifyReport(checked, total, tuple(corrupt), tuple(problems))


class BlockBatch:
    """Blocks (and pins) that become visible together, or not at all.

    `put` verifies each block at once (a bad block raises immediately, naming its
    CID) and buffers it; every `commit_bytes` the buffer is written as a staged chunk
    in its own transaction, so memory stays at one chunk whatever the batch's size.
    `commit()` writes the last chunk, publishes every staged block and adds the pins
    in one transaction; `abort()` deletes what was staged. As a context manager it
    commits on a clean exit and aborts on an exception.
    """

    def __init__(self, store: Blockstore, *, commit_bytes: int = DEFAULT_COMMIT_BYTES) -> None:
        if commit_bytes <= 0:
            raise ValueError(f"commit_bytes must be positive, not {commit_bytes}")
        self._store = store
        self._token = secrets.randbits(62)
        self._commit_bytes = commit_bytes
        self._pending: dict[bytes, bytes] = {}
        self._pending_bytes = 0
        self._pins: list[tuple[CID, bool]] = []
        #: Keys this batch verified and wrote itself (not blocks that were already
        #: stored, which may have rotted since): its pin walk need not hash them again.
        self._verified: set[bytes] = set()
        self._state: Literal["open", "committed", "aborted"] = "open"
        #: Blocks this batch added to the store (not already there); final after commit.
        self.new_blocks = 0
        #: Payload bytes of those blocks.
        self.new_bytes = 0

    def put(self, cid: CID, data: bytes) -> None:
        """Verify and queue one block. Any error (BlockMismatch and BlockTooLarge name
        the CID; QuotaExceeded) aborts the whole batch: nothing of it is stored."""
        self._check_open()
        try:
            data = bytes(data)
            verify_block(cid, data)
            if _is_identity(cid):
                return
            key = _key(cid)
            if key in self._pending:
                return
            self._pending[key] = data
            self._pending_bytes += len(data)
            if self._pending_bytes >= self._commit_bytes:
                with self._store._guard(), self._store._writing() as conn:
                    self._write_chunk(conn)
        except BaseException:
            self.abort()
            raise

    def put_verified(self, cid: CID, data: bytes) -> None:
        """Queue a block the caller has just hashed against `cid` itself.

        For the exchange, which must verify a received block before deciding what
        to do with its sender (penalise on mismatch) and should not hash it twice.
        Size limits and quota are still enforced here.
        """
        self._check_open()
        try:
            if len(data) > MAX_BLOCK_SIZE:
                raise BlockTooLarge(
                    f"block {cid} is {len(data)} bytes; the limit is {MAX_BLOCK_SIZE}"
                )
            if _is_identity(cid):
                return
            key = _key(cid)
            if key in self._pending:
                return
            self._pending[key] = bytes(data)
            self._pending_bytes += len(data)
            if self._pending_bytes >= self._commit_bytes:
                with self._store._guard(), self._store._writing() as conn:
                    self._write_chunk(conn)
        except BaseException:
            self.abort()
            raise

    def pin(self, cid: CID, *, recursive: bool = True) -> None:
        """Pin `cid` when the batch commits (checked then, against the published store)."""
        self._check_open()
        self._pins.append((cid, recursive))

    def commit(self) -> None:
        """Publish the batch and add its pins in one transaction; abort on any error."""
        self._check_open()
        store = self._store
        try:
            with store._guard(), store._writing() as conn:
                self._write_chunk(conn)
                conn.execute(
                    "DELETE FROM staged WHERE mh IN (SELECT mh FROM staged WHERE batch = ?)",
                    (self._token,),
                )
                for cid, recursive in self._pins:
                    store._pin_in(conn, cid, recursive=recursive, trusted=self._verified)
        except BaseException:
            self.abort()
            raise
        self._state = "committed"

    def abort(self) -> None:
        """Delete the blocks this batch staged (unless another batch stages them too)."""
        if self._state != "open":
            return
        self._state = "aborted"
        self._pending.clear()
        store = self._store
        if store._closed:
            return  # the staged rows are dropped when the store is next opened
        with store._guard(), store._writing() as conn:
            conn.execute(
                "DELETE FROM blocks WHERE mh IN (SELECT mh FROM staged WHERE batch = ?) "
                "AND NOT EXISTS (SELECT 1 FROM staged AS other "
                "WHERE other.mh = blocks.mh AND other.batch != ?)",
                (self._token, self._token),
            )
            conn.execute("DELETE FROM staged WHERE batch = ?", (self._token,))
        self.new_blocks = 0
        self.new_bytes = 0

    def _write_chunk(self, conn: sqlite3.Connection) -> None:
        """Write the buffered blocks as staged rows (inside the caller's transaction)."""
        if not self._pending:
            return
        fresh: list[tuple[bytes, bytes]] = []
        for key, data in self._pending.items():
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM staged WHERE staged.mh = blocks.mh) "
                "FROM blocks WHERE mh = ?",
                (key,),
            ).fetchone()
            if row is None:
                fresh.append((key, data))
            elif row[0]:
                # Staged by another batch (or an earlier chunk of this one): co-own it,
                # so that batch's abort cannot delete a block this one relies on.
                conn.execute(
                    "INSERT OR IGNORE INTO staged (mh, batch) VALUES (?, ?)", (key, self._token)
                )
        requested = sum(len(data) for _, data in fresh)
        self._store._check_quota(conn, requested)
        conn.executemany(
            "INSERT INTO blocks (mh, size, data) VALUES (?, ?, ?)",
            [(key, len(data), data) for key, data in fresh],
        )
        conn.executemany(
            "INSERT INTO staged (mh, batch) VALUES (?, ?)", [(key, self._token) for key, _ in fresh]
        )
        self._verified.update(key for key, _ in fresh)
        self.new_blocks += len(fresh)
        self.new_bytes += requested
        self._pending.clear()
        self._pending_bytes = 0

    def _check_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"this block batch is already {self._state}")

    def __enter__(self) -> BlockBatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def _has(conn: sqlite3.Connection, key: bytes) -> bool:
    row = conn.execute(f"SELECT 1 FROM blocks WHERE mh = ? AND {_VISIBLE}", (key,)).fetchone()
    return row is not None


def _read(conn: sqlite3.Connection, key: bytes) -> bytes | None:
    row = conn.execute(f"SELECT data FROM blocks WHERE mh = ? AND {_VISIBLE}", (key,)).fetchone()
    return None if row is None else bytes(row[0])


def _roots(conn: sqlite3.Connection, *, recursive: bool) -> Iterator[CID]:
    rows = conn.execute(
        "SELECT cid FROM pins WHERE recursive = ? ORDER BY cid", (int(recursive),)
    ).fetchall()
    for (raw,) in rows:
        yield cid_from_bytes(raw)
