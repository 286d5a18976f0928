"""The embedded blockstore against real SQLite files: verification on every write
and read, quota, batches, pins, gc, on-disk corruption and kill -9 crash safety."""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from multiformats import CID

from node.blockstore import FILE_NAME, Blockstore, Pin
from node.errors import BlockNotFound, PinError, QuotaExceeded, RepoError, StoreCorrupt
from protocol.cid import DAG_PB, MAX_BLOCK_SIZE, RAW, make_cid
from protocol.dagpb import PBLink, PBNode, encode_node
from protocol.errors import BlockMismatch, BlockTooLarge

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def raw_block(payload: bytes) -> tuple[CID, bytes]:
    return make_cid(payload), payload


def pb_node(
    children: list[CID], data: bytes = b"\x08\x02", *, version: int = 0
) -> tuple[CID, bytes]:
    node = encode_node(PBNode(tuple(PBLink(child, "", 1) for child in children), data))
    return make_cid(node, version=version, codec=DAG_PB), node


def v1_raw(cid: CID) -> CID:
    return CID("base32", 1, "raw", cid.digest)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Blockstore]:
    with Blockstore(tmp_path / FILE_NAME) as opened:
        yield opened


def small_dag() -> dict[str, tuple[CID, bytes]]:
    """root -> (mid -> (leaf_a, leaf_b), leaf_c); leaf_b is also linked from root."""
    leaf_a = raw_block(b"leaf a" * 10)
    leaf_b = raw_block(b"leaf b" * 10)
    leaf_c = raw_block(b"leaf c" * 10)
    mid = pb_node([leaf_a[0], leaf_b[0]])
    root = pb_node([mid[0], leaf_c[0], leaf_b[0]])
    return {"root": root, "mid": mid, "a": leaf_a, "b": leaf_b, "c": leaf_c}


# -- put / get / has / delete ------------------------------------------------------------


def test_put_get_has_delete(store: Blockstore) -> None:
    cid, data = raw_block(b"hello chorus")
    assert not store.has(cid)
    assert store.put(cid, data) is True
    assert store.put(cid, data) is False  # already there
    assert store.has(cid)
    assert store.get(cid) == data
    assert store.size_of(cid) == len(data)
    assert store.stat() == (1, len(data), None)
    store.delete(cid)
    assert not store.has(cid)
    assert store.stat() == (0, 0, None)
    with pytest.raises(BlockNotFound) as info:
        store.get(cid)
    assert info.value.cid == cid and str(cid) in str(info.value)
    with pytest.raises(BlockNotFound):
        store.size_of(cid)
    with pytest.raises(BlockNotFound):
        store.delete(cid)


def test_blocks_are_keyed_by_multihash(store: Blockstore) -> None:
    """The same dag-pb bytes under CIDv0 and CIDv1 are one block."""
    v0, node = pb_node([], b"\x08\x01")
    v1 = make_cid(node, version=1, codec=DAG_PB)
    store.put(v0, node)
    assert store.has(v1) and store.get(v1) == node
    assert store.put(v1, node) is False
    assert store.stat().blocks == 1
    assert list(store.all_cids()) == [v1_raw(v0)]


def test_empty_and_identity_blocks(store: Blockstore) -> None:
    empty = make_cid(b"")
    store.put(empty, b"")
    assert store.get(empty) == b""
    identity = CID("base32", 1, "raw", bytes([0x00, 6]) + b"inline")
    assert store.has(identity)
    assert store.get(identity) == b"inline"
    assert store.put(identity, b"inline") is False
    assert store.stat().blocks == 1  # identity blocks are never stored


def test_mismatch_refused_and_nothing_stored(store: Blockstore) -> None:
    cid, _ = raw_block(b"the real bytes")
    with pytest.raises(BlockMismatch, match=str(cid)):
        store.put(cid, b"other bytes")
    assert not store.has(cid)
    good = [raw_block(f"good {i}".encode()) for i in range(5)]
    with pytest.raises(BlockMismatch, match=str(cid)):
        store.put_many([*good, (cid, b"other bytes")])
    assert store.stat() == (0, 0, None)
    assert not any(store.has(c) for c, _ in good)


def test_oversize_refused(store: Blockstore) -> None:
    big = b"x" * (MAX_BLOCK_SIZE + 1)
    cid = make_cid(big)
    with pytest.raises(BlockTooLarge):
        store.put(cid, big)
    with pytest.raises(BlockTooLarge):
        store.put_many([raw_block(b"fine"), (cid, big)])
    assert store.stat().blocks == 0
    at_limit = b"y" * MAX_BLOCK_SIZE
    store.put(make_cid(at_limit), at_limit)
    assert store.get(make_cid(at_limit)) == at_limit


def test_put_many_streams_in_staged_chunks(store: Blockstore) -> None:
    """Chunks are committed as they fill, but nothing is visible before the end."""
    blocks = [raw_block(bytes([i]) * 10_000) for i in range(20)]
    seen_during: list[bool] = []

    def produce():
        for index, block in enumerate(blocks):
            if index == 15:
                seen_during.append(store.has(blocks[0][0]))
                seen_during.append(store.stat().blocks > 0)  # chunks already on disk
            yield block

    assert store.put_many(produce(), commit_bytes=30_000) == 20
    assert seen_during == [False, True]
    assert all(store.get(cid) == data for cid, data in blocks)
    assert store.stat() == (20, 200_000, None)
    assert store.put_many(blocks, commit_bytes=30_000) == 0


def test_batch_abort_removes_staged_chunks(store: Blockstore) -> None:
    kept = raw_block(b"stored before the batch")
    store.put(*kept)
    blocks = [raw_block(bytes([i]) * 5_000) for i in range(10)]
    with pytest.raises(RuntimeError, match="boom"), store.batch(commit_bytes=8_000) as batch:
        for cid, data in blocks:
            batch.put(cid, data)
        batch.put(*kept)
        assert store.stat().blocks > 1  # chunks were written
        raise RuntimeError("boom")
    assert store.stat() == (1, len(kept[1]), None)
    assert store.has(kept[0])


def test_blocks_of_a_crashed_batch_are_dropped_on_open(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    store = Blockstore(path)
    batch = store.batch(commit_bytes=1)
    staged = raw_block(b"staged but never published")
    batch.put(*staged)
    store.close()  # the process "dies" with the batch open
    batch.abort()  # a no-op on a closed store: the rows are still on disk
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT count(*) FROM staged").fetchone()[0] == 1
    with Blockstore(path) as reopened:
        assert not reopened.has(staged[0])
        assert reopened.stat().blocks == 0


def test_concurrent_batches_sharing_a_block(store: Blockstore) -> None:
    shared = raw_block(b"in both batches" * 100)
    first = store.batch(commit_bytes=1)
    second = store.batch(commit_bytes=1)
    first.put(*shared)
    second.put(*shared)
    first.abort()  # must not take the block the second batch relies on
    second.commit()
    assert store.get(shared[0]) == shared[1]


def test_put_publishes_a_block_a_batch_staged(store: Blockstore) -> None:
    block = raw_block(b"both ways")
    batch = store.batch(commit_bytes=1)
    batch.put(*block)
    assert not store.has(block[0])
    assert store.put(*block) is False
    assert store.has(block[0])
    batch.abort()
    assert store.has(block[0])


def test_threads_share_one_store(store: Blockstore) -> None:
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(40):
                cid, data = raw_block(f"{seed}:{i}".encode() * 500)
                store.put(cid, data)
                assert store.get(cid) == data
                store.put_many([raw_block(f"{seed}:{i}:{j}".encode()) for j in range(3)])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.stat().blocks == 6 * 40 * 4
    assert store.verify().ok


def test_all_cids_pages_through_everything(store: Blockstore) -> None:
    blocks = [raw_block(f"block {i}".encode()) for i in range(1200)]
    store.put_many(blocks)
    listed = list(store.all_cids())
    assert len(listed) == 1200
    assert {bytes(c) for c in listed} == {bytes(v1_raw(c)) for c, _ in blocks}
    assert all(c.version == 1 and c.codec.code == RAW for c in listed)


def test_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = Blockstore(tmp_path / FILE_NAME)
    store.close()
    store.close()  # idempotent
    with pytest.raises(RepoError, match="closed"):
        store.has(make_cid(b"x"))


def test_open_without_create_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(RepoError, match="does not exist"):
        Blockstore(tmp_path / "missing.sqlite", create=False)
    with pytest.raises(RepoError, match="cannot open"):
        Blockstore(tmp_path / "no-such-dir" / FILE_NAME)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not an sqlite database at all" * 200)
    with pytest.raises(StoreCorrupt, match=re.escape("garbage.sqlite")):
        Blockstore(garbage)
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(RepoError, match="not a chorus blockstore"):
        Blockstore(foreign)


def test_file_settings(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    Blockstore(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 65536
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental


# -- quota ------------------------------------------------------------------------------


def test_quota_exceeded_leaves_store_unchanged(tmp_path: Path) -> None:
    with Blockstore(tmp_path / FILE_NAME, quota=10_000) as store:
        first = raw_block(b"a" * 6_000)
        store.put(*first)
        too_much = raw_block(b"b" * 5_000)
        with pytest.raises(QuotaExceeded) as info:
            store.put(*too_much)
        assert (info.value.quota, info.value.used, info.value.requested) == (10_000, 6_000, 5_000)
        assert "10000" in str(info.value)
        assert store.stat() == (1, 6_000, 10_000)
        assert not store.has(too_much[0])
        store.put(*first)  # a block already stored costs nothing
        # A batch that runs over the quota in its third chunk stores nothing at all.
        blocks = [raw_block(bytes([i]) * 1_000) for i in range(6)]
        with pytest.raises(QuotaExceeded):
            store.put_many(blocks, commit_bytes=1_500)
        assert store.stat() == (1, 6_000, 10_000)
        store.put(*raw_block(b"c" * 4_000))  # exactly at the quota is allowed
        assert store.stat().bytes == 10_000


def test_bad_quota_value(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Blockstore(tmp_path / FILE_NAME, quota=-1)


# -- pins and gc ------------------------------------------------------------------------


def test_pin_kinds_and_listing(store: Blockstore) -> None:
    dag = small_dag()
    store.put_many(dag.values())
    root, mid = dag["root"][0], dag["mid"][0]
    loose = raw_block(b"pinned directly")
    store.put(*loose)
    store.pin_add(root)
    store.pin_add(loose[0], recursive=False)
    assert store.pin_ls("recursive") == [Pin(root, "recursive")]
    assert store.pin_ls("direct") == [Pin(loose[0], "direct")]
    indirect = store.pin_ls("indirect")
    assert [p.cid for p in indirect] == [mid, dag["a"][0], dag["b"][0], dag["c"][0]]
    assert all(p.kind == "indirect" for p in indirect)
    everything = store.pin_ls()
    assert [kind for _, kind in everything] == ["recursive", "direct"] + ["indirect"] * 4
    with pytest.raises(ValueError):
        store.pin_ls("sideways")  # type: ignore[arg-type]


def test_recursive_pin_of_incomplete_dag_refused(store: Blockstore) -> None:
    dag = small_dag()
    store.put_many(v for k, v in dag.items() if k != "b")
    with pytest.raises(BlockNotFound) as info:
        store.pin_add(dag["root"][0])
    assert info.value.cid == dag["b"][0]
    assert str(dag["root"][0]) in str(info.value)
    assert store.pin_ls() == []
    # A direct pin only needs the one block.
    store.pin_add(dag["root"][0], recursive=False)
    with pytest.raises(BlockNotFound):
        store.pin_add(dag["b"][0], recursive=False)


def test_pin_transitions_follow_kubo(store: Blockstore) -> None:
    dag = small_dag()
    store.put_many(dag.values())
    root = dag["root"][0]
    store.pin_add(root, recursive=False)
    store.pin_add(root)  # upgrade direct -> recursive
    assert store.pin_ls()[0] == Pin(root, "recursive")
    assert len(store.pin_ls("direct")) == 0
    with pytest.raises(PinError, match="already pinned recursively"):
        store.pin_add(root, recursive=False)
    store.pin_add(root)  # idempotent
    with pytest.raises(PinError, match="recursively"):
        store.pin_rm(root, recursive=False)
    store.pin_rm(root)
    with pytest.raises(PinError, match="not pinned"):
        store.pin_rm(root)


def test_delete_refuses_pinned_blocks(store: Blockstore) -> None:
    dag = small_dag()
    store.put_many(dag.values())
    store.pin_add(dag["root"][0])
    with pytest.raises(PinError, match="recursively"):
        store.delete(dag["root"][0])
    with pytest.raises(PinError, match="indirectly"):
        store.delete(dag["a"][0])
    # Pinned under a CIDv1 of the same multihash still protects the block.
    direct = raw_block(b"direct")
    store.put(*direct)
    store.pin_add(direct[0], recursive=False)
    with pytest.raises(PinError, match="directly"):
        store.delete(CID("base32", 1, "dag-pb", direct[0].digest))
    assert store.stat().blocks == 6


def test_gc_keeps_pinned_and_removes_the_rest(store: Blockstore) -> None:
    dag = small_dag()
    store.put_many(dag.values())
    direct = raw_block(b"direct pin")
    garbage = [raw_block(f"garbage {i}".encode() * 1000) for i in range(30)]
    store.put(*direct)
    store.put_many(garbage)
    store.pin_add(dag["root"][0])
    store.pin_add(direct[0], recursive=False)
    removed = store.gc()
    assert {bytes(c) for c in removed} == {bytes(v1_raw(c)) for c, _ in garbage}
    assert all(c.version == 1 and c.codec.code == RAW for c in removed)
    assert all(store.get(cid) == data for cid, data in [*dag.values(), direct])
    assert store.stat().blocks == len(dag) + 1
    assert store.gc() == []
    store.pin_rm(dag["root"][0])
    assert len(store.gc()) == len(dag)
    assert store.stat().blocks == 1
    assert store.verify().ok


def test_gc_returns_space_to_the_file_system(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    with Blockstore(path) as store:
        store.put_many(raw_block(os.urandom(200_000)) for _ in range(40))
    before = path.stat().st_size
    with Blockstore(path) as store:
        assert len(store.gc()) == 40
    assert path.stat().st_size < before // 4


def test_gc_keeps_blocks_of_a_batch_in_flight(store: Blockstore) -> None:
    blocks = [raw_block(f"in flight {i}".encode() * 100) for i in range(5)]
    with store.batch(commit_bytes=1) as batch:
        for cid, data in blocks:
            batch.put(cid, data)
        assert store.gc() == []  # staged chunks are not garbage
        batch.pin(blocks[0][0], recursive=False)
    assert all(store.get(cid) == data for cid, data in blocks)


def test_gc_stops_without_deleting_if_a_pinned_dag_is_damaged(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    dag = small_dag()
    with Blockstore(path) as store:
        store.put_many(dag.values())
        store.put(*raw_block(b"garbage"))
        store.pin_add(dag["root"][0])
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE blocks SET data = ? WHERE mh = ?", (b"\x00", dag["mid"][0].digest))
    with Blockstore(path) as store:
        with pytest.raises(StoreCorrupt, match=str(dag["mid"][0])):
            store.gc()
        assert store.stat().blocks == len(dag) + 1


def test_batch_pins_commit_with_the_blocks(store: Blockstore) -> None:
    dag = small_dag()
    with store.batch(commit_bytes=50) as batch:
        for cid, data in dag.values():
            batch.put(cid, data)
        batch.pin(dag["root"][0])
    assert store.pin_ls("recursive") == [Pin(dag["root"][0], "recursive")]
    # A batch whose pin cannot be satisfied stores nothing.
    other = small_dag()
    extra_leaf = raw_block(b"missing leaf")
    broken_root = pb_node([other["a"][0], extra_leaf[0]], b"\x08\x03")
    before = store.stat()
    with pytest.raises(BlockNotFound) as info, store.batch(commit_bytes=10) as batch:
        batch.put(*broken_root)
        batch.put(*raw_block(b"new block in the failing batch"))
        batch.pin(broken_root[0])
    assert info.value.cid == extra_leaf[0]
    assert store.stat() == before
    assert not store.has(broken_root[0])


# -- corruption -------------------------------------------------------------------------


def test_corruption_on_disk_is_found_by_verify_and_get(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    pattern = b"CHORUS-CORRUPTION-PROBE-" * 4000  # ~94 KiB of a distinctive pattern
    victim = raw_block(pattern)
    bystanders = [raw_block(os.urandom(50_000)) for _ in range(5)]
    with Blockstore(path) as store:
        store.put_many([*bystanders, victim])
    assert not Path(f"{path}-wal").exists()  # closed cleanly: everything is in the main file
    raw = bytearray(path.read_bytes())
    at = raw.find(pattern[:4096])
    assert at >= 0
    raw[at + 2048] ^= 0x01
    path.write_bytes(bytes(raw))
    with Blockstore(path) as store:
        report = store.verify()
        assert report.corrupt == (v1_raw(victim[0]),)
        assert report.checked == 6 and not report.ok
        with pytest.raises(StoreCorrupt) as info:
            store.get(victim[0])
        assert info.value.cids == (victim[0],)
        assert all(store.get(cid) == data for cid, data in bystanders)


def test_row_corrupted_through_sql_is_found(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    victim = raw_block(b"will be overwritten" * 100)
    resized = raw_block(b"size column will lie")
    with Blockstore(path) as store:
        store.put(*victim)
        store.put(*resized)
        store.put(*raw_block(b"untouched"))
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE blocks SET data = ? WHERE mh = ?", (b"X" * 1900, victim[0].digest))
        raw.execute("UPDATE blocks SET size = 1 WHERE mh = ?", (resized[0].digest,))
    with Blockstore(path) as store:
        report = store.verify(structure=True)
        assert set(report.corrupt) == {v1_raw(victim[0]), v1_raw(resized[0])}
        assert any("recorded size 1" in problem for problem in report.problems)
        with pytest.raises(StoreCorrupt, match=str(victim[0])):
            store.get(victim[0])


# -- crash safety -----------------------------------------------------------------------

_WRITER = r"""
import random, sys
from node.blockstore import Blockstore
from protocol.cid import make_cid

path, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
store = Blockstore(path)
i = 0
while True:
    i += 1
    def block(tag):
        size = rng.choice((1, 100, 4096, 65536, 262144, 300000))
        data = (f"{seed}:{i}:{tag}:".encode() * (size // 8 + 1))[:size]
        return make_cid(data), data
    if i % 3:
        cid, data = block("p")
        store.put(cid, data)
        print(cid, flush=True)
    else:
        blocks = [block(f"m{j}") for j in range(4)]
        store.put_many(blocks, commit_bytes=200000)
        for cid, _ in blocks:
            print(cid, flush=True)
"""


@pytest.mark.integration
def test_acknowledged_puts_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    Blockstore(path).close()
    rng = random.Random(1234)
    acknowledged: list[str] = []
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    deadline = time.monotonic() + 25
    for round_number in range(20):
        child = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), str(round_number)],
            stdout=subprocess.PIPE,
            env=env,
            cwd=PROJECT_ROOT,
        )
        assert child.stdout is not None
        first = child.stdout.readline()  # the writer is running its loop
        assert first.endswith(b"\n"), f"writer failed to start (round {round_number})"
        time.sleep(rng.uniform(0.0, 0.25))
        child.send_signal(signal.SIGKILL)
        rest = child.stdout.read()
        child.wait()
        lines = (first + rest).split(b"\n")
        acknowledged += [line.decode() for line in lines[:-1]]  # a torn last line is not a CID
        assert time.monotonic() < deadline
    assert len(acknowledged) > 20
    with Blockstore(path) as store:
        missing = [text for text in acknowledged if not store.has(CID.decode(text))]
        assert missing == []
        for text in acknowledged:
            store.get(CID.decode(text))  # verifies the bytes
        report = store.verify(structure=True)
        assert report.ok, report.problems
        assert store.stat().blocks == report.checked
