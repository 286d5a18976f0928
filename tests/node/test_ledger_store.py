"""node/ledger_store.py on a real SQLite file: writes, judgements, tree heads, reopening,
proofs against an independent RFC 9162 reference, and rollback of failed transactions."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from ledger.entry import EntryError, SignedEntry, decode_entry, sign_entry
from ledger.feed import Decision, FromTheFuture, Head, MemoryFeeds, Verdict, judge
from ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from ledger.schema import SchemaError
from node.errors import RepoError
from node.ledger_store import (
    FILE_NAME,
    SCHEMA_VERSION,
    LedgerCorrupt,
    LedgerStore,
    LogRecord,
    UnknownEntry,
)

T0 = 1_700_000_000_000
NODE = SigningKey(bytes([9]) * 32)
NODE_PK = bytes(NODE.verify_key)
ALICE = SigningKey(bytes([1]) * 32)
BOB = SigningKey(bytes([2]) * 32)
CAROL = SigningKey(bytes([3]) * 32)


# --- an independent RFC 9162 reference (2.1.1), over leaf data -------------------------


def mth(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


# --- helpers --------------------------------------------------------------------------


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / FILE_NAME


@pytest.fixture
def store(path: Path):
    opened = LedgerStore(path, owner=NODE_PK)
    yield opened
    opened.close()


def signed(key: SigningKey, seq: int, prev: SignedEntry | bytes | None, time: int = T0,
           text: str = "x", kind: str = "note", body: dict | None = None) -> SignedEntry:
    if isinstance(prev, SignedEntry):
        prev = prev.id_bytes
    return sign_entry(key, seq, prev, time, kind, {"text": text} if body is None else body)


def chain(key: SigningKey, count: int, text: str = "e") -> list[SignedEntry]:
    out: list[SignedEntry] = []
    for seq in range(1, count + 1):
        out.append(signed(key, seq, out[-1] if out else None, T0 + seq, f"{text}{seq}"))
    return out


def all_data(store: LedgerStore) -> list[bytes]:
    return [record.data for record in store.iter_log()]


def table_counts(path: Path) -> tuple[int, int, int]:
    with sqlite3.connect(path) as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("entries", "feeds", "merkle")
        )


def feeds_rows(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT * FROM feeds ORDER BY author").fetchall()


def expected_merkle_rows(size: int) -> int:
    return 2 * size - bin(size).count("1")  # one per complete perfect subtree


def assert_consistent(store: LedgerStore) -> None:
    """The store's tree, stored nodes and proofs all agree with the reference."""
    data = all_data(store)
    assert store.size == len(data) == store.log_size()
    assert store.root() == mth(data)
    if data:
        assert store.stored_root(len(data)) == mth(data)
        last = len(data) - 1
        proof = store.inclusion_proof(last, len(data))
        verify_inclusion(leaf_hash(data[last]), last, len(data), proof, mth(data))
    assert store.check_tables() == []


# --- writing and reading --------------------------------------------------------------


def test_empty_store(store: LedgerStore, path: Path) -> None:
    assert store.size == 0 and store.log_size() == 0
    assert store.root() == mth([])
    assert store.heads() == [] and store.feed_count() == 0
    assert list(store.iter_log()) == []
    assert store.tree_heads() == [] and store.forks() == []
    assert store.check_tables() == []
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_write(store: LedgerStore) -> None:
    first = store.write(ALICE, "note", {"text": "one"}, T0)
    assert first.verdict is Verdict.APPEND
    entry = first.entry
    assert (entry.seq, entry.prev, entry.time, entry.body) == (1, None, T0, {"text": "one"})
    second = store.write(ALICE, "note", {"text": "two"}, T0 + 5).entry
    assert (second.seq, second.prev, second.time) == (2, entry.id_bytes, T0 + 5)
    # The clock went back: the entry keeps the feed's last time, never an invalid one.
    third = store.write(ALICE, "note", {"text": "three"}, T0 - 1000).entry
    assert third.time == T0 + 5
    assert store.head(entry.author) == Head(3, third.id_bytes, T0 + 5, None)
    assert store.size == 3
    assert store.get(second.id_bytes) == LogRecord(1, second.id_bytes, second.encoded)
    assert store.at(2) == LogRecord(2, third.id_bytes, third.encoded)
    assert store.has(entry.id_bytes) and not store.has(b"\x01" * 36)
    assert decode_entry(store.at(0).data) == entry
    assert_consistent(store)


def test_unknown_entries(store: LedgerStore) -> None:
    store.write(ALICE, "note", {"text": "one"}, T0)
    with pytest.raises(UnknownEntry, match="no entry") as caught:
        store.get(b"\x01" * 36)
    assert isinstance(caught.value, KeyError)
    with pytest.raises(UnknownEntry, match="log index 1"):
        store.at(1)
    with pytest.raises(UnknownEntry):
        store.tree_head_for(0)  # index 0 is Alice's note, not a head


def test_held_names_the_ids_in_the_log(store: LedgerStore) -> None:
    entries = chain(ALICE, 3)
    store.submit(entries[:2], T0 + 10)
    unknown = b"\x01\x55\x12\x20" + bytes(32)
    ids = [entry.id_bytes for entry in entries] + [unknown]
    assert store.held(ids) == {entries[0].id_bytes, entries[1].id_bytes}
    assert store.held([]) == set()
    many = [entries[0].id_bytes] + [bytes([n % 256]) * 36 for n in range(1200)]
    assert store.held(many) == {entries[0].id_bytes}  # more than one query's worth


def test_write_refuses_a_bad_body_and_stores_nothing(store: LedgerStore, path: Path) -> None:
    store.write(ALICE, "note", {"text": "one"}, T0)
    before = (store.size, store.root(), table_counts(path))
    with pytest.raises(SchemaError):
        store.write(ALICE, "note", {"text": 1}, T0)
    with pytest.raises(SchemaError):
        store.write(ALICE, "play", {"n": 1}, T0)
    with pytest.raises(EntryError):
        store.write(ALICE, "Bad Kind", {}, T0)
    assert (store.size, store.root(), table_counts(path)) == before
    assert store.write(ALICE, "note", {"text": "two"}, T0).entry.seq == 2


def test_submit_batch_sees_earlier_entries(store: LedgerStore) -> None:
    bob = chain(BOB, 3)
    bad = signed(CAROL, 1, None, body={"text": 5})
    outcomes = store.submit([bob[0], bob[1], bad, bob[2], bob[1]], T0)
    verdicts = [o.verdict if isinstance(o, Decision) else type(o) for o in outcomes]
    assert verdicts == [Verdict.APPEND, Verdict.APPEND, SchemaError, Verdict.APPEND,
                        Verdict.DUPLICATE]
    assert store.size == 3
    assert store.head(bytes(BOB.verify_key)) == Head(3, bob[2].id_bytes, bob[2].time, None)
    assert store.head(bytes(CAROL.verify_key)) is None
    assert store.submit([], T0) == []
    assert_consistent(store)


def test_range_get_and_fork_siblings(store: LedgerStore) -> None:
    alice = chain(ALICE, 4)
    fork = signed(ALICE, 2, alice[0], T0 + 2, "the other seq 2")
    bob = chain(BOB, 2)
    outcomes = store.submit([alice[0], bob[0], alice[1], alice[2], bob[1], fork, alice[3]], T0)
    assert [o.verdict for o in outcomes] == [Verdict.APPEND] * 5 + [Verdict.FORK, Verdict.FROZEN]
    assert outcomes[5].sibling == alice[1].id_bytes
    author = bytes(ALICE.verify_key)
    assert store.range(author, 1, 3) == [
        alice[0].encoded, alice[1].encoded, fork.encoded, alice[2].encoded,
    ]
    assert store.range(author, 2, 2) == [alice[1].encoded, fork.encoded]
    assert store.range(author, 4, 9) == []  # frozen: seq 4 was refused
    assert store.range(bytes(BOB.verify_key), 1, 1) == [bob[0].encoded]
    assert store.head(author) == Head(3, alice[2].id_bytes, alice[2].time, 1)
    assert store.forks() == [(author, 2, [alice[1].id_bytes, fork.id_bytes])]
    assert store.get(fork.id_bytes).index == 5
    # Writing to a frozen feed is refused by the store itself.
    with pytest.raises(RepoError, match="frozen"):
        store.write(ALICE, "note", {"text": "more"}, T0)
    assert_consistent(store)


def test_heads_are_paged_in_author_order(store: LedgerStore) -> None:
    keys = [SigningKey(bytes([n]) * 32) for n in range(10, 17)]
    for key in keys:
        store.write(key, "note", {"text": "hi"}, T0)
    authors = sorted(bytes(key.verify_key) for key in keys)
    assert [author for author, _ in store.heads()] == authors
    assert store.feed_count() == 7
    pages: list[bytes] = []
    after = None
    while page := store.heads(after, limit=3):
        assert len(page) <= 3
        pages.extend(author for author, _ in page)
        after = page[-1][0]
    assert pages == authors
    assert all(head.seq == 1 for _, head in store.heads())


def test_iter_log_paging(store: LedgerStore) -> None:
    for n in range(7):
        store.write([ALICE, BOB][n % 2], "note", {"text": str(n)}, T0 + n)
    records = list(store.iter_log())
    assert [r.index for r in records] == list(range(7))
    assert list(store.iter_log(page=2)) == records
    assert list(store.iter_log(page=1)) == records
    assert list(store.iter_log(3, page=2)) == records[3:]
    assert list(store.iter_log(2, 5, page=2)) == records[2:5]
    assert list(store.iter_log(2, 3)) == records[2:3]
    assert list(store.iter_log(5, 5)) == []
    assert list(store.iter_log(7)) == []
    assert list(store.iter_log(0, 100, page=3)) == records
    for record in records:
        assert record.id == decode_entry(record.data).id_bytes


# --- the store judges as MemoryFeeds does ---------------------------------------------


def scripted_entries() -> list[SignedEntry]:
    alice = chain(ALICE, 5, "a")
    bob = chain(BOB, 3, "b")
    return [
        alice[0], bob[0], alice[1],
        alice[3],  # early
        signed(ALICE, 3, b"\x01\x55\x12\x20" + b"\x00" * 32, T0 + 3),  # chain broken
        signed(ALICE, 3, alice[1], T0 - 5),  # time reversed
        signed(BOB, 2, bob[0], T0 + 10**9),  # from the future
        signed(ALICE, 3, alice[1], T0 + 3, body={"nope": 1}),  # schema
        signed(ALICE, 3, alice[1], T0 + 3, kind="play", body={"n": 1}),  # unknown kind
        alice[2], alice[3], bob[1],
        alice[0],  # duplicate
        signed(BOB, 2, bob[0], T0 + 2, "bob's fork"),  # fork at 2
        bob[2],  # frozen
        signed(BOB, 1, None, T0, "bob's fork at 1"),  # a lower fork
        signed(BOB, 2, bob[0], T0 + 2, "bob's fork"),  # the fork again: duplicate
        alice[4],
        signed(CAROL, 1, None, T0, "carol"),
    ]


def outcome_key(outcome: object) -> object:
    if isinstance(outcome, Decision):
        return (outcome.verdict, outcome.entry.id_bytes, outcome.sibling)
    return type(outcome)


def reference(entries: list[SignedEntry], now: int) -> tuple[list[object], dict[bytes, Head]]:
    feeds = MemoryFeeds()
    outcomes: list[object] = []
    for entry in entries:
        try:
            decision = judge(entry, feeds, now)
        except EntryError as exc:
            outcomes.append(type(exc))
            continue
        feeds.record(decision)
        outcomes.append(outcome_key(decision))
    return outcomes, dict(feeds.heads())


@pytest.mark.parametrize("batched", [False, True])
def test_store_judges_like_memory_feeds(store: LedgerStore, batched: bool) -> None:
    entries = scripted_entries()
    now = T0 + 60_000
    expected, heads = reference(entries, now)
    assert FromTheFuture in expected
    assert expected[13] == (Verdict.FORK, entries[13].id_bytes, entries[11].id_bytes)
    assert expected[14] == (Verdict.FROZEN, entries[14].id_bytes, None)
    if batched:
        got = [outcome_key(o) for o in store.submit(entries, now)]
    else:
        got = [outcome_key(store.submit([entry], now)[0]) for entry in entries]
    assert got == expected
    assert dict(store.heads()) == heads
    assert heads[bytes(BOB.verify_key)].frozen_after == 0
    stored = [e.encoded for e, o in zip(entries, expected, strict=True)
              if isinstance(o, tuple) and o[0] in (Verdict.APPEND, Verdict.FORK)]
    assert all_data(store) == stored
    assert_consistent(store)


# --- tree heads -----------------------------------------------------------------------


def test_tree_heads(store: LedgerStore) -> None:
    assert not store.tree_head_due()  # nothing to cover
    store.write(ALICE, "note", {"text": "a"}, T0)
    assert store.tree_head_due()
    store.submit(chain(BOB, 2), T0)
    size, root = store.size, store.root()
    head = store.sign_tree_head(NODE, T0 + 10)
    assert head.verdict is Verdict.APPEND
    assert head.entry.author == NODE_PK and head.entry.kind == "tree_head"
    assert head.entry.body == {"size": size, "root": root} and size == 3
    assert root == mth(all_data(store)[:3])
    assert store.at(size).data == head.entry.encoded
    assert store.tree_head_for(size) == head.entry
    assert not store.tree_head_due()  # a head does not make another one due
    store.write(NODE, "note", {"text": "the node speaks"}, T0 + 11)
    assert store.tree_head_due()
    second = store.sign_tree_head(NODE, T0 + 12)
    assert second.entry.seq == 3 and second.entry.body["size"] == 5
    assert not store.tree_head_due()
    store.write(CAROL, "note", {"text": "c"}, T0)
    assert store.tree_head_due()
    assert store.tree_heads() == [head.entry, second.entry]
    assert store.tree_heads(limit=1) == [second.entry]
    with pytest.raises(UnknownEntry):
        store.tree_head_for(4)


def test_sign_tree_head_refuses_other_keys(store: LedgerStore, path: Path) -> None:
    store.write(ALICE, "note", {"text": "a"}, T0)
    before = table_counts(path)
    with pytest.raises(RepoError, match="owner"):
        store.sign_tree_head(ALICE, T0)
    assert table_counts(path) == before and store.size == 1
    assert store.tree_head_due()


# --- opening and reopening ------------------------------------------------------------


def test_reopen_keeps_everything(path: Path) -> None:
    store = LedgerStore(path, owner=NODE_PK)
    store.submit(chain(ALICE, 3) + chain(BOB, 2), T0)
    store.sign_tree_head(NODE, T0)
    store.write(CAROL, "note", {"text": "c"}, T0)
    size, root, heads = store.size, store.root(), store.heads()
    tree_heads, data = store.tree_heads(), all_data(store)
    store.close()
    store = LedgerStore(path, owner=NODE_PK)
    try:
        assert (store.size, store.root(), store.heads()) == (size, root, heads)
        assert store.tree_heads() == tree_heads and all_data(store) == data
        assert store.tree_head_due()
        store.sign_tree_head(NODE, T0 + 1)
        store.write(ALICE, "note", {"text": "after reopen"}, T0 + 2)
        assert store.head(bytes(ALICE.verify_key)).seq == 4
        assert_consistent(store)
    finally:
        store.close()


def test_other_owner_is_refused(path: Path) -> None:
    LedgerStore(path, owner=NODE_PK).close()
    with pytest.raises(LedgerCorrupt, match="not of this node"):
        LedgerStore(path, owner=bytes(ALICE.verify_key))
    LedgerStore(path, owner=NODE_PK).close()


def test_newer_schema_version_is_refused(path: Path) -> None:
    LedgerStore(path, owner=NODE_PK).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(LedgerCorrupt, match="upgrade chorus"):
        LedgerStore(path, owner=NODE_PK)


def test_non_ledger_sqlite_file_is_refused(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE music (title TEXT)")
    with pytest.raises(LedgerCorrupt, match="not a chorus ledger"):
        LedgerStore(path, owner=NODE_PK)
    with sqlite3.connect(path) as conn:  # untouched
        assert conn.execute("SELECT name FROM sqlite_schema").fetchall() == [("music",)]


def test_non_sqlite_file_is_refused(path: Path) -> None:
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(LedgerCorrupt):
        LedgerStore(path, owner=NODE_PK)


# --- proofs ---------------------------------------------------------------------------


def test_proofs_verify_against_the_reference(store: LedgerStore) -> None:
    keys = [ALICE, BOB, CAROL]
    for n in range(13):
        store.write(keys[n % 3], "note", {"text": str(n)}, T0 + n)
        if n in (4, 9):
            store.sign_tree_head(NODE, T0 + n)
    data = all_data(store)
    total = len(data)
    assert total == 15
    roots = [mth(data[:size]) for size in range(total + 1)]
    for size in range(1, total + 1):
        assert store.stored_root(size) == roots[size]
        for index in range(size):
            proof = store.inclusion_proof(index, size)
            verify_inclusion(leaf_hash(data[index]), index, size, proof, roots[size])
        for old in range(1, size + 1):
            proof = store.consistency_proof(old, size)
            verify_consistency(old, size, roots[old], roots[size], proof)
    # Each signed head's root is the reference root at its size.
    for head in store.tree_heads():
        assert head.body["root"] == roots[head.body["size"]]


def test_check_tables_checks_every_merkle_node(store: LedgerStore, path: Path) -> None:
    for n in range(6):
        store.write(ALICE, "note", {"text": str(n)}, T0 + n)
    assert store.check_tables() == []
    assert table_counts(path)[2] == expected_merkle_rows(6)
    with sqlite3.connect(path) as conn:  # not on the frontier of 6: (2, 0) and (1, 2)
        conn.execute("UPDATE merkle SET hash = ? WHERE level = 1 AND idx = 0", (b"\x05" * 32,))
    problems = store.check_tables()
    assert [rule for rule, _ in problems] == ["merkle"]
    assert "2 Merkle nodes" in problems[0][1]  # (1, 0) and its parent (2, 0)
    assert "(1, 0)" in problems[0][1]
    assert store.stored_root(6) == store.root()  # what only the frontier would show
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE merkle SET hash = ? WHERE level = 1 AND idx = 0",
                     (mth(all_data(store)[:2]),))
        conn.execute("INSERT INTO merkle VALUES (70, 0, ?)", (b"\x00" * 32,))
    problems = store.check_tables()
    assert [rule for rule, _ in problems] == ["merkle", "merkle"]
    assert "11 Merkle nodes stored, 10 of them" in problems[0][1]
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM merkle WHERE level = 70")
        conn.execute("DELETE FROM merkle WHERE level = 0 AND idx = 4")
    problems = store.check_tables()
    assert [rule for rule, _ in problems] == ["merkle", "merkle"]
    assert "(0, 4)" in problems[1][1]


# --- failed transactions roll back everything -----------------------------------------


def test_conflicting_row_rolls_back_the_batch(store: LedgerStore, path: Path) -> None:
    store.submit(chain(ALICE, 2), T0)
    store.sign_tree_head(NODE, T0)
    size, root = store.size, store.root()
    counts, feeds = table_counts(path), feeds_rows(path)
    # Another writer put a row where the batch's second entry will go.
    planted = signed(CAROL, 1, None, T0, "planted")
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)",
            (size + 1, planted.id_bytes, planted.author, 1, T0, "note", planted.encoded),
        )
    bob = chain(BOB, 3)
    with pytest.raises(sqlite3.IntegrityError):
        store.submit(bob, T0)
    assert (store.size, store.root()) == (size, root)
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM entries WHERE log_index = ?", (size + 1,))
    assert table_counts(path) == counts and feeds_rows(path) == feeds
    assert store.head(bytes(BOB.verify_key)) is None
    # The store carries on from the state before the failed batch.
    outcomes = store.submit(bob, T0)
    assert [o.verdict for o in outcomes] == [Verdict.APPEND] * 3
    store.sign_tree_head(NODE, T0 + 1)
    assert table_counts(path)[2] == expected_merkle_rows(store.size)
    assert_consistent(store)


class FailingConnection:
    """The writer connection, raising once `fail_on` has been executed `after` times."""

    def __init__(self, conn: sqlite3.Connection, fail_on: str, after: int) -> None:
        self._conn = conn
        self._fail_on = fail_on
        self._left = after

    def _maybe_fail(self, sql: str) -> None:
        if self._fail_on in sql:
            if self._left == 0:
                raise RuntimeError(f"disk on fire during {sql.split()[0:3]}")
            self._left -= 1

    def execute(self, sql: str, *args):
        self._maybe_fail(sql)
        return self._conn.execute(sql, *args)

    def executemany(self, sql: str, *args):
        self._maybe_fail(sql)
        return self._conn.executemany(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self._conn, name)


@pytest.mark.parametrize(
    ("fail_on", "after"),
    [
        ("INSERT INTO entries", 2),  # third entry of the batch
        ("INSERT INTO merkle", 1),  # nodes of the second entry
        ("INSERT OR REPLACE INTO feeds", 3),  # feed head of the fourth
        ("UPDATE feeds", 0),  # the fork's freeze
        ("COMMIT", 0),
    ],
)
def test_failure_mid_submit_rolls_back(
    store: LedgerStore, path: Path, monkeypatch: pytest.MonkeyPatch, fail_on: str, after: int
) -> None:
    alice = chain(ALICE, 3)
    store.submit(alice, T0)
    store.sign_tree_head(NODE, T0)
    size, root, heads = store.size, store.root(), store.heads()
    counts, feeds = table_counts(path), feeds_rows(path)
    real = store._writer
    monkeypatch.setattr(store, "_writer", FailingConnection(real, fail_on, after))
    batch = [*chain(BOB, 4), signed(ALICE, 2, alice[0], T0 + 2, "fork")]
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.submit(batch, T0)
    monkeypatch.setattr(store, "_writer", real)
    assert (store.size, store.root(), store.heads()) == (size, root, heads)
    assert table_counts(path) == counts and feeds_rows(path) == feeds
    assert store.forks() == []
    # Later writes build on the restored tree and still verify.
    assert [o.verdict for o in store.submit(batch, T0)] == [Verdict.APPEND] * 4 + [Verdict.FORK]
    store.write(CAROL, "note", {"text": "after"}, T0)
    store.sign_tree_head(NODE, T0 + 1)
    assert table_counts(path)[2] == expected_merkle_rows(store.size)
    assert_consistent(store)


def test_failure_while_signing_a_tree_head_rolls_back(
    store: LedgerStore, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.submit(chain(BOB, 3), T0)
    size, root, counts = store.size, store.root(), table_counts(path)
    real = store._writer
    monkeypatch.setattr(store, "_writer", FailingConnection(real, "INSERT OR REPLACE", 0))
    with pytest.raises(RuntimeError):
        store.sign_tree_head(NODE, T0)
    monkeypatch.setattr(store, "_writer", real)
    assert (store.size, store.root(), table_counts(path)) == (size, root, counts)
    assert store.tree_head_due()
    head = store.sign_tree_head(NODE, T0)
    assert head.entry.body == {"size": size, "root": root}
    assert_consistent(store)
