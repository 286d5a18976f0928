"""node/audit.py: exports verify; faults planted in the SQLite file or the export are named.

Faults in the database are planted through a separate sqlite3 connection after the
store is closed, then the store is reopened and audited, as an operator would.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from ledger.entry import decode_entry, entry_id_bytes, sign_entry
from ledger.export import ExportError, Manifest, encode_export_header, read_export
from ledger.feed import Verdict
from ledger.verify import Report
from node.audit import export_ledger, export_ledger_file, verify_export, verify_store
from node.ledger_store import FILE_NAME, LedgerCorrupt, LedgerStore
from protocol.car import encode_block
from protocol.cid import cid_from_bytes, cid_to_text

T0 = 1_700_000_000_000
NOW = T0 + 3_600_000
NODE = SigningKey(bytes([9]) * 32)
NODE_PK = bytes(NODE.verify_key)
ALICE = SigningKey(bytes([1]) * 32)
BOB = SigningKey(bytes([2]) * 32)
CAROL = SigningKey(bytes([3]) * 32)
ENTRY_RULES = {"id", "format", "canonical", "signature"}

# The log every test starts from ("H" = the node's signed tree head):
#   0 A1  1 B1  2 A2  3 C1  4 H   5 A3  6 B2  7 A4  8 C2  9 node note  10 H
#  11 A5 12 B3 13 H  14 C3 15 B4
SCRIPT = [ALICE, BOB, ALICE, CAROL, None, ALICE, BOB, ALICE, CAROL, NODE, None,
          ALICE, BOB, None, CAROL, BOB]
HEADS = [4, 10, 13]
SIZE = len(SCRIPT)


def build(path: Path) -> None:
    store = LedgerStore(path, owner=NODE_PK)
    try:
        for step, key in enumerate(SCRIPT):
            if key is None:
                store.sign_tree_head(NODE, T0 + step)
            else:
                store.write(key, "note", {"text": f"step {step}"}, T0 + step)
        assert store.size == SIZE
    finally:
        store.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / FILE_NAME
    build(path)
    return path


def audit(path: Path, workers: int = 1) -> Report:
    store = LedgerStore(path, owner=NODE_PK)
    try:
        return verify_store(store, now_ms=NOW, workers=workers)
    finally:
        store.close()


def export(db: Path, out: Path) -> Manifest:
    store = LedgerStore(db, owner=NODE_PK)
    try:
        return export_ledger_file(store, out, coop="demo co-op")
    finally:
        store.close()


def rows(path: Path) -> list[tuple[int, bytes, bytes]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT log_index, id, data FROM entries ORDER BY log_index").fetchall()


def text_id(value: bytes) -> str:
    return cid_to_text(cid_from_bytes(value))


def flipped(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x10]) + data[position + 1 :]


def rules(report: Report) -> set[str]:
    return {finding.rule for finding in report.findings}


def at_index(report: Report, index: int) -> list:
    return [finding for finding in report.findings if finding.index == index]


def assert_failed(report: Report) -> None:
    assert not report.ok and report.errors >= 1 and report.findings
    assert not report.to_json()["ok"]


# --- clean ----------------------------------------------------------------------------


def test_export_verifies(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "ledger.car"
    manifest = export(db, out)
    assert manifest == Manifest(NODE_PK, SIZE, "demo co-op")
    seen: list[int] = []
    read, report = verify_export(out, now_ms=NOW, progress=seen.append)
    assert read == manifest
    assert report.ok and report.clean, report.findings
    assert report.entries == SIZE and report.feeds == 4
    assert [head.index for head in report.tree_heads] == HEADS
    assert report.uncovered == 2
    assert seen and seen[-1] == SIZE
    _, pooled = verify_export(out, now_ms=NOW, workers=2)
    assert pooled.to_json() == report.to_json()
    # The file holds exactly the store's records, in log order.
    with open(out, "rb") as handle:
        _, records = read_export([handle.read()])
        assert list(records) == [(id_, data) for _, id_, data in rows(db)]


def test_store_verifies(db: Path, tmp_path: Path) -> None:
    report = audit(db)
    assert report.ok and report.clean, report.findings
    assert audit(db, workers=2).to_json() == report.to_json()
    out = tmp_path / "ledger.car"
    export(db, out)
    assert verify_export(out, now_ms=NOW)[1].to_json() == report.to_json()


def test_export_of_a_prefix(db: Path, tmp_path: Path) -> None:
    store = LedgerStore(db, owner=NODE_PK)
    out = tmp_path / "prefix.car"
    try:
        with open(out, "wb") as handle:
            manifest = export_ledger(store, handle, size=HEADS[1] + 1)
        with open(out, "wb") as handle, pytest.raises(LedgerCorrupt, match="expected"):
            export_ledger(store, handle, size=SIZE + 1)
    finally:
        store.close()
    assert manifest.size == HEADS[1] + 1
    with open(out, "wb") as handle:
        handle.write(encode_export_header(manifest))
        for _, id_, data in rows(db)[: HEADS[1] + 1]:
            handle.write(encode_block(cid_from_bytes(id_), data))
    _, report = verify_export(out, now_ms=NOW)
    assert report.clean and report.uncovered == 0


# --- faults in the database -----------------------------------------------------------


@pytest.mark.parametrize("index", [0, HEADS[0], 9, HEADS[2], SIZE - 1])
@pytest.mark.parametrize("position", [0, 20, -70, -1])
def test_flipped_byte_in_a_row(db: Path, index: int, position: int) -> None:
    data = rows(db)[index][2]
    bad = flipped(data, position % len(data))
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE entries SET data = ? WHERE log_index = ?", (bad, index))
    report = audit(db)
    assert_failed(report)
    first = at_index(report, index)[0]
    assert first.rule == "id"
    assert first.entry == text_id(entry_id_bytes(bad))


@pytest.mark.parametrize("index", [1, HEADS[1], SIZE - 1])
def test_rewritten_row_with_a_matching_id(db: Path, index: int) -> None:
    """The id column updated to the new bytes' hash: the entry itself is refused."""
    data = rows(db)[index][2]
    bad = flipped(data, len(data) - 30)  # inside the signature
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE entries SET data = ?, id = ? WHERE log_index = ?",
            (bad, entry_id_bytes(bad), index),
        )
    report = audit(db)
    assert_failed(report)
    first = at_index(report, index)[0]
    assert first.rule in ENTRY_RULES - {"id"}
    assert first.entry == text_id(entry_id_bytes(bad))


def test_deleted_row(db: Path) -> None:
    before = rows(db)
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM entries WHERE log_index = 5")  # Alice's seq 3
    report = audit(db)
    assert_failed(report)
    assert {"log", "gap", "tree-head"} <= rules(report)
    gap = next(f for f in report.findings if f.rule == "gap")
    # Alice's seq 4, log index 7, is the verifier's 7th record.
    assert gap.index == 6 and gap.entry == text_id(before[7][1])
    assert next(f.index for f in report.findings if f.rule == "tree-head") == HEADS[1] - 1


def test_deleted_last_row(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM entries WHERE log_index = ?", (SIZE - 1,))
    report = audit(db)
    assert_failed(report)
    assert "feeds" in rules(report)  # Bob's head is gone


def test_swapped_rows_between_heads(db: Path) -> None:
    (_, id5, data5), (_, id6, data6) = rows(db)[5:7]  # Alice seq 3, Bob seq 2
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE entries SET id = x'00' WHERE log_index = 5")
        conn.execute("UPDATE entries SET id = ?, data = ? WHERE log_index = 6", (id5, data5))
        conn.execute("UPDATE entries SET id = ?, data = ? WHERE log_index = 5", (id6, data6))
    report = audit(db)
    assert_failed(report)
    heads = [f for f in report.findings if f.rule == "tree-head"]
    assert [f.index for f in heads] == HEADS[1:]
    assert heads[0].entry == text_id(rows(db)[HEADS[1]][1])
    assert "gap" not in rules(report)


def test_feed_head_changed(db: Path) -> None:
    other = rows(db)[0][1]  # Alice's seq 1, not her head
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE feeds SET head = ? WHERE author = ?", (other, bytes(ALICE.verify_key)))
    report = audit(db)
    assert_failed(report)
    assert rules(report) == {"feeds"}
    assert any(other.hex() in f.message for f in report.findings)


def test_feed_head_stale(db: Path) -> None:
    """The feeds table one entry behind: the node would accept a second seq 5."""
    _, id4, data4 = rows(db)[7]  # Alice's seq 4; her seq 5 follows at index 11
    alice = decode_entry(data4)
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE feeds SET seq = 4, head = ?, time = ? WHERE author = ?",
            (id4, alice.time, alice.author),
        )
    report = audit(db)
    assert_failed(report)
    assert rules(report) == {"feeds"}
    assert alice.author.hex()[:16] in report.findings[0].message
    # Why it matters: the store now takes a second seq 5 as the feed's next entry.
    second = sign_entry(ALICE, 5, id4, alice.time + 100, "note", {"text": "again"})
    store = LedgerStore(db, owner=NODE_PK)
    try:
        assert store.submit([second], NOW)[0].verdict is Verdict.APPEND
    finally:
        store.close()


def test_feed_row_deleted(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM feeds WHERE author = ?", (bytes(CAROL.verify_key),))
    report = audit(db)
    assert_failed(report)
    assert rules(report) == {"feeds"}


def test_feed_frozen_without_a_fork(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE feeds SET frozen_after = 1 WHERE author = ?",
                     (bytes(BOB.verify_key),))
    report = audit(db)
    assert_failed(report)
    assert rules(report) == {"feeds"}


def test_merkle_frontier_changed(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE merkle SET hash = ? WHERE level = 4 AND idx = 0", (b"\x01" * 32,))
    report = audit(db)
    assert_failed(report)
    assert rules(report) == {"merkle"}


def test_merkle_frontier_deleted(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM merkle WHERE level = 4 AND idx = 0")
    with pytest.raises(LedgerCorrupt):
        LedgerStore(db, owner=NODE_PK)


@pytest.mark.parametrize(("level", "idx"), [(0, 0), (0, 9), (1, 3), (2, 1), (3, 1)])
def test_merkle_inner_node_changed(db: Path, level: int, idx: int) -> None:
    with sqlite3.connect(db) as conn:
        changed = conn.execute(
            "UPDATE merkle SET hash = ? WHERE level = ? AND idx = ?", (b"\x02" * 32, level, idx)
        ).rowcount
    assert changed == 1
    report = audit(db)
    assert_failed(report)
    assert rules(report) == {"merkle"}


@pytest.mark.parametrize(("level", "idx"), [(0, 3), (2, 2)])
def test_merkle_inner_node_deleted(db: Path, level: int, idx: int) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM merkle WHERE level = ? AND idx = ?", (level, idx))
    report = audit(db)
    assert_failed(report)
    assert rules(report) == {"merkle"}


# --- faults in the export -------------------------------------------------------------


@pytest.fixture
def car(db: Path, tmp_path: Path) -> Path:
    out = tmp_path / "ledger.car"
    export(db, out)
    return out


def records_of(path: Path) -> tuple[Manifest, list[tuple[bytes, bytes]]]:
    with open(path, "rb") as handle:
        manifest, records = read_export([handle.read()])
        return manifest, list(records)


def rewrite(path: Path, manifest: Manifest, records: list[tuple[bytes, bytes]]) -> None:
    with open(path, "wb") as handle:
        handle.write(encode_export_header(manifest))
        for id_, data in records:
            handle.write(encode_block(cid_from_bytes(id_), data))


def section_offsets(path: Path) -> list[int]:
    """File offset of each entry's data (after its section's length and CID)."""
    manifest, records = records_of(path)
    offset = len(encode_export_header(manifest))
    out = []
    for id_, data in records:
        section = encode_block(cid_from_bytes(id_), data)
        out.append(offset + len(section) - len(data))
        offset += len(section)
    assert offset == path.stat().st_size
    return out


@pytest.mark.parametrize("index", [0, HEADS[0], 9, SIZE - 1])
@pytest.mark.parametrize("position", [0, 33, -66, -1])
def test_flipped_byte_in_the_export(car: Path, index: int, position: int) -> None:
    _, records = records_of(car)
    start = section_offsets(car)[index]
    offset = start + position % len(records[index][1])
    data = bytearray(car.read_bytes())
    data[offset] ^= 0x04
    car.write_bytes(bytes(data))
    _, report = verify_export(car, now_ms=NOW)
    assert_failed(report)
    first = at_index(report, index)[0]
    assert first.rule == "id"
    assert text_id(records[index][0]) in first.message
    _, pooled = verify_export(car, now_ms=NOW, workers=2)
    assert pooled.to_json() == report.to_json()


def test_dropped_section(car: Path) -> None:
    manifest, records = records_of(car)
    rewrite(car, manifest, records[:7] + records[8:])  # Alice's seq 4
    _, report = verify_export(car, now_ms=NOW)
    assert_failed(report)
    assert {"log", "gap", "tree-head"} <= rules(report)
    log = next(f for f in report.findings if f.rule == "log")
    assert f"announces {SIZE} entries but the file holds {SIZE - 1}" in log.message
    gap = next(f for f in report.findings if f.rule == "gap")
    assert gap.index == 10 and gap.entry == text_id(records[11][0])  # Alice's seq 5
    # Even with an honest manifest, the node's own heads betray the drop.
    rewrite(car, Manifest(manifest.node, SIZE - 1, manifest.coop), records[:7] + records[8:])
    _, report = verify_export(car, now_ms=NOW)
    assert_failed(report)
    assert "log" not in rules(report)
    assert next(f.index for f in report.findings if f.rule == "tree-head") == HEADS[1] - 1


def test_reordered_sections_of_two_authors(car: Path) -> None:
    manifest, records = records_of(car)
    records[5], records[6] = records[6], records[5]
    rewrite(car, manifest, records)
    _, report = verify_export(car, now_ms=NOW)
    assert_failed(report)
    assert rules(report) == {"tree-head"}
    assert [f.index for f in report.findings] == HEADS[1:]


def test_reordered_sections_of_one_feed(car: Path) -> None:
    manifest, records = records_of(car)
    records[5], records[7] = records[7], records[5]  # Alice's seq 3 and 4
    rewrite(car, manifest, records)
    _, report = verify_export(car, now_ms=NOW)
    assert_failed(report)
    gap = next(f for f in report.findings if f.rule == "gap")
    assert gap.index == 5 and gap.entry == text_id(records[5][0])
    assert "tree-head" in rules(report)


@pytest.mark.parametrize("size", [0, SIZE - 1, SIZE + 1, 10**6])
def test_manifest_size_lie(car: Path, size: int) -> None:
    manifest, records = records_of(car)
    rewrite(car, Manifest(manifest.node, size, manifest.coop), records)
    read, report = verify_export(car, now_ms=NOW)
    assert read.size == size
    assert_failed(report)
    assert [(f.rule, f.index) for f in report.findings] == [("log", None)]


def test_manifest_naming_another_node(car: Path) -> None:
    manifest, records = records_of(car)
    rewrite(car, Manifest(bytes(ALICE.verify_key), manifest.size), records)
    _, report = verify_export(car, now_ms=NOW)
    assert_failed(report)
    assert [(f.rule, f.index) for f in report.findings] == [("tree-head", None)]


def test_truncated_export_is_not_an_export(car: Path) -> None:
    data = car.read_bytes()
    car.write_bytes(data[: section_offsets(car)[8] + 10])
    with pytest.raises(ExportError):
        verify_export(car, now_ms=NOW)
    car.write_bytes(b"not a car")
    with pytest.raises(ExportError):
        verify_export(car, now_ms=NOW)


def test_entries_are_decodable_in_the_store(db: Path) -> None:
    for index, id_, data in rows(db):
        entry = decode_entry(data)
        assert entry.id_bytes == id_
        assert (entry.kind == "tree_head") == (index in HEADS)


# --- pool workers ----------------------------------------------------------------------

_POOL_SCRIPT = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
from node.audit import _die_with_parent
with ProcessPoolExecutor(2, initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
    pids = {pool.submit(os.getpid).result() for _ in range(8)}
    print(*pids, flush=True)
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # a zombie has died; only its parent's wait is due


def test_audit_workers_die_with_a_killed_auditor() -> None:
    """`chorus ledger audit` killed with SIGKILL must not leave workers holding its
    stdout (the crash harness saw callers wait forever on such a pipe)."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", _POOL_SCRIPT], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    workers = [int(pid) for pid in proc.stdout.readline().split()]
    assert workers and proc.pid not in workers
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)  # the pipe closes: no worker holds it
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers)
