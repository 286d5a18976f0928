"""The node's ledger on disk: every accepted entry, in log order, in one SQLite file.

    <repo>/ledger.sqlite
        entries  log_index (the RFC 9162 leaf index) -> id, author, seq, time, kind, bytes
        feeds    author -> head seq, head id, head time, frozen_after (equivocation)
        merkle   (level, index) -> hash: every complete subtree of the log's Merkle tree
        meta     owner key of the log

Why this shape: the log is append-only, so `log_index` is the rowid and a leaf's
position never changes. The Merkle nodes written with each append make any inclusion
or consistency proof a handful of primary-key reads, and let the tree resume in
O(log n) after a restart (`MerkleLog.resume`). The feeds table is the heads every
judgement needs, kept in the same transaction as the entries it summarises.

Durability: WAL mode with ``synchronous = FULL``, so an append is on disk before it
is acknowledged, and a batch of entries, their Merkle nodes and the feed heads commit
in one transaction or not at all (tests/node/test_ledger_crash.py kills a writer
process mid-append twenty times and re-verifies).

Threads: SQLite calls block, so the daemon reaches this class through
`trio.to_thread` (node/ledger.py); it does not use aiosqlite, which runs only on
asyncio. There is one writer connection, used by one caller at a time (the
daemon's single writer task), and one reader connection behind a lock; WAL lets the
reader see the last committed state while a write is in progress.

Schema versions: `PRAGMA user_version` counts the migrations applied; `_MIGRATIONS`
lists them in order, each run in its own transaction with the version bump. A file
from a newer chorus is refused, never half-understood.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from ledger.entry import EntryError, SignedEntry, decode_entry, sign_entry
from ledger.feed import MAX_FUTURE_MS, Decision, Head, Verdict, judge
from ledger.kinds import KINDS, TREE_HEAD
from ledger.merkle import (
    MerkleLog,
    Node,
    NodeStoreError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
)
from ledger.schema import Schema

from .errors import RepoError

__all__ = [
    "FILE_NAME",
    "SCHEMA_VERSION",
    "LedgerCorrupt",
    "LedgerStore",
    "LogRecord",
    "Outcome",
    "UnknownEntry",
]

FILE_NAME = "ledger.sqlite"
BUSY_TIMEOUT = 30.0

_MIGRATIONS: tuple[str, ...] = (
    # 1: the log, the feeds, the Merkle nodes.
    """
    CREATE TABLE entries (
        log_index INTEGER PRIMARY KEY,      -- position in this node's log (leaf index)
        id        BLOB NOT NULL UNIQUE,     -- binary CIDv1 raw sha2-256 of data
        author    BLOB NOT NULL,
        seq       INTEGER NOT NULL,
        time      INTEGER NOT NULL,
        kind      TEXT NOT NULL,
        data      BLOB NOT NULL             -- the signed canonical encoding
    );
    CREATE INDEX entries_feed ON entries (author, seq);
    CREATE INDEX entries_kind ON entries (kind);
    CREATE TABLE feeds (
        author       BLOB PRIMARY KEY,
        seq          INTEGER NOT NULL,
        head         BLOB NOT NULL,
        time         INTEGER NOT NULL,
        frozen_after INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE merkle (
        level INTEGER NOT NULL,
        idx   INTEGER NOT NULL,
        hash  BLOB NOT NULL,
        PRIMARY KEY (level, idx)
    ) WITHOUT ROWID;
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)


class LedgerCorrupt(RepoError):
    """The ledger file is damaged or inconsistent with itself."""


class UnknownEntry(RepoError, KeyError):
    """No entry with that id (or at that index) in this node's log."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown entry"


#: What the store made of one submitted entry: a Decision, or the error refusing it.
Outcome = Decision | EntryError


@dataclass(frozen=True, slots=True)
class LogRecord:
    index: int
    id: bytes
    data: bytes


@contextmanager
def _merkle_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except NodeStoreError as exc:
        raise LedgerCorrupt(f"ledger {path}: {exc}") from None


class _Reader:
    """The feed view `judge` reads through, on a given connection.

    One is made per judged entry, and the heads it read are remembered: storing the
    entry needs the head `judge` just read (one query an entry, not two).
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._heads: dict[bytes, Head | None] = {}

    def head(self, author: bytes) -> Head | None:
        if author in self._heads:
            return self._heads[author]
        row = self._conn.execute(
            "SELECT seq, head, time, frozen_after FROM feeds WHERE author = ?", (author,)
        ).fetchone()
        head = None if row is None else Head(*row)
        self._heads[author] = head
        return head

    def ids_at(self, author: bytes, seq: int) -> Sequence[bytes]:
        rows = self._conn.execute(
            "SELECT id FROM entries WHERE author = ? AND seq = ? ORDER BY log_index",
            (author, seq),
        ).fetchall()
        return [row[0] for row in rows]


class LedgerStore:
    """The ledger file of one repo. Writer methods must not run concurrently."""

    def __init__(
        self,
        path: Path,
        *,
        owner: bytes,
        kinds: Mapping[str, Schema] = KINDS,
        max_future_ms: int = MAX_FUTURE_MS,
    ) -> None:
        self.path = path
        self.owner = owner
        self.kinds = kinds
        self.max_future_ms = max_future_ms
        self._read_lock = threading.Lock()
        try:
            self._writer = self._connect()
            self._migrate()
            self._check_owner()
            self._reader = self._connect()
        except sqlite3.DatabaseError as exc:
            raise LedgerCorrupt(f"cannot open ledger {path}: {exc}") from None
        self._tree = self._load_tree()

    # -- opening ------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        # FULL: a commit fsyncs the WAL before returning: acknowledged = on disk.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA trusted_schema = OFF")
        conn.execute("PRAGMA cache_size = -16384")
        return conn

    def _migrate(self) -> None:
        conn = self._writer
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise LedgerCorrupt(
                f"{self.path} has ledger schema version {version}; this chorus understands "
                f"up to {SCHEMA_VERSION} (upgrade chorus)"
            )
        if version == 0 and conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]:
            raise LedgerCorrupt(f"{self.path} is an SQLite file but not a chorus ledger")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise LedgerCorrupt(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
        for number in range(version, SCHEMA_VERSION):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _MIGRATIONS[number].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number + 1}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _check_owner(self) -> None:
        row = self._writer.execute("SELECT value FROM meta WHERE key = 'owner'").fetchone()
        if row is None:
            self._writer.execute("INSERT INTO meta VALUES ('owner', ?)", (self.owner,))
        elif row[0] != self.owner:
            raise LedgerCorrupt(
                f"{self.path} is the log of key {row[0].hex()[:16]}…, not of this node "
                f"({self.owner.hex()[:16]}…)"
            )

    def _load_tree(self) -> MerkleLog:
        size = self._writer.execute("SELECT count(*) FROM entries").fetchone()[0]
        with _merkle_errors(self.path):
            return MerkleLog.resume(size, self._read_node_on(self._writer))

    @staticmethod
    def _read_node_on(conn: sqlite3.Connection):
        def read_node(level: int, index: int) -> bytes | None:
            row = conn.execute(
                "SELECT hash FROM merkle WHERE level = ? AND idx = ?", (level, index)
            ).fetchone()
            return None if row is None else row[0]

        return read_node

    def close(self) -> None:
        self._writer.close()
        self._reader.close()

    # -- writing (one caller at a time) ------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._writer
        size = self._tree.size
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            # The in-memory tree advanced with the rolled-back rows: rebuild it.
            self._tree = MerkleLog.resume(size, self._read_node_on(conn))
            raise

    def _store(self, conn: sqlite3.Connection, decision: Decision, head: Head | None) -> None:
        entry = decision.entry
        index = self._tree.size
        conn.execute(
            "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)",
            (index, entry.id_bytes, entry.author, entry.seq, entry.time, entry.kind, entry.encoded),
        )
        nodes: list[Node] = self._tree.append(leaf_hash(entry.encoded))
        conn.executemany("INSERT INTO merkle VALUES (?, ?, ?)", nodes)
        if decision.verdict is Verdict.APPEND:
            frozen = None if head is None else head.frozen_after
            conn.execute(
                "INSERT OR REPLACE INTO feeds VALUES (?, ?, ?, ?, ?)",
                (entry.author, entry.seq, entry.id_bytes, entry.time, frozen),
            )
        else:  # FORK: freeze after the last seq both sides share
            assert head is not None
            frozen = entry.seq - 1
            if head.frozen_after is not None:
                frozen = min(frozen, head.frozen_after)
            conn.execute(
                "UPDATE feeds SET frozen_after = ? WHERE author = ?", (frozen, entry.author)
            )

    def _judge_and_store(
        self, conn: sqlite3.Connection, entry: SignedEntry, now_ms: int
    ) -> Outcome:
        view = _Reader(conn)
        try:
            decision = judge(
                entry, view, now_ms, kinds=self.kinds, max_future_ms=self.max_future_ms
            )
        except EntryError as exc:
            return exc
        if decision.stored:
            self._store(conn, decision, view.head(entry.author))
        return decision

    def submit(self, entries: Sequence[SignedEntry], now_ms: int) -> list[Outcome]:
        """Judge and store verified entries in one transaction, in the order given.

        Returns one Outcome per entry. Entries later in the batch see the earlier
        ones (a feed's seq 1..n may arrive together).
        """
        with self._transaction() as conn:
            return [self._judge_and_store(conn, entry, now_ms) for entry in entries]

    def write(self, key: SigningKey, kind: str, body: dict[str, Any], now_ms: int) -> Decision:
        """Sign `body` as the next entry of `key`'s feed and store it (one transaction).

        The entry's time is `now_ms`, or the feed's last time if the clock went back,
        so a node never signs an entry its own feed rules would refuse.
        """
        with self._transaction() as conn:
            return self._write(conn, key, kind, body, now_ms)

    def _write(
        self,
        conn: sqlite3.Connection,
        key: SigningKey,
        kind: str,
        body: dict[str, Any],
        now_ms: int,
    ) -> Decision:
        author = bytes(key.verify_key)
        head = _Reader(conn).head(author)
        if head is not None and head.frozen_after is not None:
            raise RepoError(f"the feed of {author.hex()[:16]}… is frozen by an equivocation")
        seq, prev, time = (
            (1, None, now_ms) if head is None else (head.seq + 1, head.id, max(now_ms, head.time))
        )
        entry = sign_entry(key, seq, prev, time, kind, body)
        outcome = self._judge_and_store(conn, entry, now_ms)
        if isinstance(outcome, EntryError):
            raise outcome
        assert outcome.verdict is Verdict.APPEND
        return outcome

    def tree_head_due(self) -> bool:
        """Whether the log grew, other than by tree heads, since this node's last head."""
        with self._read() as conn:
            last = conn.execute(
                "SELECT max(log_index) FROM entries WHERE author = ? AND kind = ?",
                (self.owner, TREE_HEAD.kind),
            ).fetchone()[0]
            return (
                conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM entries WHERE log_index > ? AND kind != ?)",
                    (-1 if last is None else last, TREE_HEAD.kind),
                ).fetchone()[0]
                == 1
            )

    def sign_tree_head(self, key: SigningKey, now_ms: int) -> Decision:
        """Append a signed tree head covering the whole log (appended at index = size)."""
        if bytes(key.verify_key) != self.owner:
            raise RepoError("tree heads of this log are signed by its owner, the node key")
        with self._transaction() as conn:
            body = {"size": self._tree.size, "root": self._tree.root()}
            return self._write(conn, key, TREE_HEAD.kind, body, now_ms)

    # -- reading ------------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._read_lock:
            try:
                yield self._reader
            except sqlite3.DatabaseError as exc:
                raise LedgerCorrupt(f"ledger {self.path}: {exc}") from None

    @property
    def size(self) -> int:
        """Entries in the log (as the writer knows it)."""
        return self._tree.size

    def root(self) -> bytes:
        return self._tree.root()

    def head(self, author: bytes) -> Head | None:
        with self._read() as conn:
            return _Reader(conn).head(author)

    def heads(self, after: bytes | None = None, limit: int = 4096) -> list[tuple[bytes, Head]]:
        """Feed heads in author byte order, strictly after `after` (a page)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT author, seq, head, time, frozen_after FROM feeds "
                "WHERE author > ? ORDER BY author LIMIT ?",
                (after or b"", limit),
            ).fetchall()
        return [(row[0], Head(*row[1:])) for row in rows]

    def feed_count(self) -> int:
        with self._read() as conn:
            return conn.execute("SELECT count(*) FROM feeds").fetchone()[0]

    def range(self, author: bytes, first: int, last: int) -> list[bytes]:
        """Signed bytes of `author`'s entries with first <= seq <= last (fork siblings
        included), by seq then log order."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT data FROM entries WHERE author = ? AND seq BETWEEN ? AND ? "
                "ORDER BY seq, log_index",
                (author, first, last),
            ).fetchall()
        return [row[0] for row in rows]

    def get(self, entry_id: bytes) -> LogRecord:
        with self._read() as conn:
            row = conn.execute(
                "SELECT log_index, id, data FROM entries WHERE id = ?", (entry_id,)
            ).fetchone()
        if row is None:
            raise UnknownEntry(f"no entry {entry_id.hex()} in this node's log")
        return LogRecord(*row)

    def at(self, index: int) -> LogRecord:
        with self._read() as conn:
            row = conn.execute(
                "SELECT log_index, id, data FROM entries WHERE log_index = ?", (index,)
            ).fetchone()
        if row is None:
            raise UnknownEntry(f"no entry at log index {index}")
        return LogRecord(*row)

    def block(self, cid: object) -> bytes | None:
        """The signed bytes of the entry whose id is `cid` (a CID), or None: how the
        block exchange serves entries as the raw blocks they are."""
        try:
            raw = bytes(cid)  # type: ignore[call-overload]
        except TypeError:
            return None
        if len(raw) != 36 or raw[:4] != bytes([0x01, 0x55, 0x12, 0x20]):
            return None
        try:
            return self.get(raw).data
        except UnknownEntry:
            return None

    def has(self, entry_id: bytes) -> bool:
        with self._read() as conn:
            return (
                conn.execute("SELECT 1 FROM entries WHERE id = ?", (entry_id,)).fetchone()
                is not None
            )

    def held(self, entry_ids: Sequence[bytes]) -> set[bytes]:
        """Which of `entry_ids` this log holds (one query per 500 ids)."""
        found: set[bytes] = set()
        with self._read() as conn:
            for start in range(0, len(entry_ids), 500):
                chunk = list(entry_ids[start : start + 500])
                marks = ",".join("?" * len(chunk))
                found.update(
                    row[0]
                    for row in conn.execute(f"SELECT id FROM entries WHERE id IN ({marks})", chunk)
                )
        return found

    def iter_log(
        self, start: int = 0, stop: int | None = None, page: int = 2048
    ) -> Iterator[LogRecord]:
        """Every record from `start` in log order, read in pages (constant memory)."""
        position = start
        while stop is None or position < stop:
            limit = page if stop is None else min(page, stop - position)
            with self._read() as conn:
                rows = conn.execute(
                    "SELECT log_index, id, data FROM entries WHERE log_index >= ? "
                    "ORDER BY log_index LIMIT ?",
                    (position, limit),
                ).fetchall()
            if not rows:
                return
            for row in rows:
                yield LogRecord(*row)
            position = rows[-1][0] + 1

    def log_size(self) -> int:
        """Entries committed (as a reader sees them)."""
        with self._read() as conn:
            row = conn.execute("SELECT max(log_index) FROM entries").fetchone()
        return 0 if row[0] is None else row[0] + 1

    def tree_heads(self, limit: int | None = None) -> list[SignedEntry]:
        """This node's signed tree heads, oldest first (the last `limit` if given)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT data FROM entries WHERE author = ? AND kind = ? ORDER BY seq DESC"
                + ("" if limit is None else f" LIMIT {int(limit)}"),
                (self.owner, TREE_HEAD.kind),
            ).fetchall()
        return [decode_entry(row[0]) for row in reversed(rows)]

    def tree_head_for(self, size: int) -> SignedEntry:
        """The signed tree head of exactly `size` entries (the one at log index `size`)."""
        record = self.at(size)
        entry = decode_entry(record.data)
        if entry.author != self.owner or entry.kind != TREE_HEAD.kind or entry.body["size"] != size:
            raise UnknownEntry(f"the node signed no tree head for size {size}")
        return entry

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        with self._read() as conn, _merkle_errors(self.path):
            return inclusion_proof(index, size, self._read_node_on(conn))

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        with self._read() as conn, _merkle_errors(self.path):
            return consistency_proof(old_size, new_size, self._read_node_on(conn))

    def forks(self) -> list[tuple[bytes, int, list[bytes]]]:
        """(author, seq, [ids]) for every seq where the log holds two entries."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT author, seq, group_concat(hex(id)) FROM entries "
                "GROUP BY author, seq HAVING count(*) > 1 ORDER BY author, seq"
            ).fetchall()
        return [(a, s, [bytes.fromhex(i) for i in ids.split(",")]) for a, s, ids in rows]

    # -- self-check ---------------------------------------------------------------------

    def check_tables(self) -> list[tuple[str, str]]:
        """Consistency of the file with itself: (rule, message) for each problem.

        The entries themselves are checked by `ledger.verify` (node/audit.py); this
        looks at what the file adds: contiguous indices, the feeds table and the
        Merkle nodes agreeing with the entries.
        """
        problems: list[tuple[str, str]] = []
        with self._read() as conn:
            for (message,) in conn.execute("PRAGMA quick_check"):
                if message != "ok":
                    problems.append(("sqlite", message))
            count, top = conn.execute("SELECT count(*), max(log_index) FROM entries").fetchone()
            if count and top != count - 1:
                problems.append(
                    ("log", f"log indices are not contiguous: {count} entries, highest index {top}")
                )
            rows = conn.execute(
                "SELECT f.author, f.seq, f.head, e.id FROM feeds f LEFT JOIN entries e "
                "ON e.author = f.author AND e.seq = f.seq AND e.id = f.head"
            ).fetchall()
            for author, seq, head, found in rows:
                if found is None:
                    problems.append(
                        (
                            "feeds",
                            f"feed {author.hex()[:16]}… head seq {seq} "
                            f"names {head.hex()} which the log does not hold",
                        )
                    )
            problems.extend(_check_merkle(conn, count))
        return problems

    def stored_root(self, size: int) -> bytes:
        """The root the stored Merkle nodes give for `size` entries (LedgerCorrupt if
        nodes are missing); an audit compares it with the root it recomputes."""
        with self._read() as conn, _merkle_errors(self.path):
            return MerkleLog.resume(size, self._read_node_on(conn)).root()


def _check_merkle(conn: sqlite3.Connection, count: int) -> list[tuple[str, str]]:
    """The Merkle nodes against the entries: exactly one row per complete perfect
    subtree of the `count`-entry log, each leaf the hash of its entry and each inner
    node the hash of its two children (so every node, not only the frontier, is right)."""
    problems: list[tuple[str, str]] = []
    expected = 2 * count - bin(count).count("1")
    total, placed = conn.execute(
        "SELECT count(*), coalesce(sum(level >= 0 AND idx >= 0 AND idx < (? >> level)), 0) "
        "FROM merkle",
        (count,),
    ).fetchone()
    if total != expected or placed != expected:
        problems.append(
            ("merkle", f"{total} Merkle nodes stored, {placed} of them in the tree of "
                       f"{count} entries, which has {expected}")
        )
    bad, first = 0, []  # a count and the first few, not one row per bad node
    for index, data, stored in conn.execute(
        "SELECT e.log_index, e.data, m.hash FROM entries e "
        "LEFT JOIN merkle m ON m.level = 0 AND m.idx = e.log_index"
    ):
        if not isinstance(data, bytes) or stored != leaf_hash(data):
            bad += 1
            first = first if len(first) >= 10 else [*first, (0, index)]
    for level, index, stored, left, right in conn.execute(
        "SELECT p.level, p.idx, p.hash, l.hash, r.hash FROM merkle p "
        "LEFT JOIN merkle l ON l.level = p.level - 1 AND l.idx = 2 * p.idx "
        "LEFT JOIN merkle r ON r.level = p.level - 1 AND r.idx = 2 * p.idx + 1 "
        "WHERE p.level > 0"
    ):
        if not (
            isinstance(left, bytes) and isinstance(right, bytes)
            and stored == hashlib.sha256(b"\x01" + left + right).digest()
        ):
            bad += 1
            first = first if len(first) >= 10 else [*first, (level, index)]
    if bad:
        problems.append(
            ("merkle", f"{bad} Merkle nodes disagree with the entries or their "
                       f"children, first (level, index): {first}")
        )
    return problems
