"""The ledger at scale: append, verify, proofs and a full audit, next to raw Ed25519.

Measures, in one run on the same machine:
  * ceiling: PyNaCl's raw Ed25519 verify of one entry-sized message (what every entry
    costs at least), sampled beside each verify run (the machine's speed drifts);
  * verify rate: `decode_entry` (strict msgpack, canonical re-encode, signature) and
    the whole single-threaded `LogVerifier.add` (plus id, feed, Merkle), entries/s and
    as a share of the ceiling (target >= 0.50);
  * append rate into the SQLite ledger: one entry per transaction (`write`, an fsync
    each) and batches of 4096 (`submit`, group commit);
  * at N entries (default 10**6): inclusion and consistency proof generation from the
    SQLite Merkle nodes and their verification, per proof;
  * export of the N-entry log to a CAR file and its audit (`verify_export` with one
    worker per core), target under 3 minutes.
Run: `python bench/ledger.py [--entries N] [--rounds R]`. Generating 10**6 signed
entries takes a few minutes (signing runs in a process pool); the database is kept
under --work (default a temporary directory) and reused with --reuse.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from nacl.signing import SigningKey, VerifyKey
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.entry import decode_entry, sign_entry
from ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from ledger.verify import LogVerifier
from node.audit import default_workers, export_ledger_file, verify_export
from node.ledger_store import LedgerStore

NOW = 1_790_000_000_000
AUTHORS = 1000
LATER = NOW + 10**9  # after every entry, before the real clock


def _feed(seed: bytes, count: int) -> list[bytes]:
    """`count` entries of one author's feed (run in a worker)."""
    key = SigningKey(seed)
    prev = None
    out = []
    for seq in range(1, count + 1):
        entry = sign_entry(key, seq, prev, NOW + seq, "note", {"text": f"play {seq} " * 8})
        prev = entry.id_bytes
        out.append(entry.encoded)
    return out


def sample_entries(count: int) -> list[bytes]:
    return _feed(os.urandom(32), count)


def raw_verify_rate(entries: list[bytes]) -> float:
    decoded = [decode_entry(data) for data in entries]
    jobs = [(VerifyKey(e.author), e.signing_input, e.sig) for e in decoded]
    start = time.perf_counter()
    for key, message, sig in jobs:
        key.verify(message, sig)
    return len(jobs) / (time.perf_counter() - start)


def decode_rate(entries: list[bytes]) -> float:
    start = time.perf_counter()
    for data in entries:
        decode_entry(data)
    return len(entries) / (time.perf_counter() - start)


def verifier_rate(entries: list[bytes]) -> float:
    verifier = LogVerifier(log_owner=None, now_ms=LATER)
    start = time.perf_counter()
    for data in entries:
        verifier.add(data)
    elapsed = time.perf_counter() - start
    assert verifier.finish().ok
    return len(entries) / elapsed


def build(path: Path, node: SigningKey, count: int, console: Console) -> LedgerStore:
    """A ledger of `count` entries: AUTHORS interleaved feeds, tree heads every 10%."""
    store = LedgerStore(path, owner=bytes(node.verify_key))
    per_author = max(1, count // AUTHORS)
    authors = min(AUTHORS, count)
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=default_workers()) as pool:
        seeds = [os.urandom(32) for _ in range(authors)]
        feeds = list(pool.map(_feed, seeds, [per_author] * authors, chunksize=8))
    console.print(f"signed {authors * per_author:,} entries in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    batch: list = []
    written = 0
    next_head = count // 10
    for seq in range(per_author):
        for feed in feeds:
            batch.append(decode_entry(feed[seq]))
            if len(batch) == 4096:
                store.submit(batch, LATER)
                written += len(batch)
                batch = []
                if written >= next_head:
                    store.sign_tree_head(node, LATER)
                    next_head += count // 10
    if batch:
        store.submit(batch, LATER)
    store.sign_tree_head(node, LATER)
    console.print(f"stored {store.size:,} in {time.perf_counter() - start:.1f} s")
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true", help="reuse --work's database")
    args = parser.parse_args()
    console = Console()
    work = args.work or Path(tempfile.mkdtemp(prefix="chorus-bench-ledger-"))
    work.mkdir(parents=True, exist_ok=True)

    # 1. verify rate next to the raw Ed25519 ceiling, interleaved.
    entries = sample_entries(4000)
    raw, dec, ver = [], [], []
    for _ in range(args.rounds):
        raw.append(raw_verify_rate(entries))
        dec.append(decode_rate(entries))
        ver.append(verifier_rate(entries))
    ceiling = statistics.median(raw)
    table = Table(title=f"verify ({len(entries)} entries of {len(entries[0])} bytes, "
                        f"median of {args.rounds})")
    for column in ("what", "entries/s", "share of raw Ed25519"):
        table.add_column(column, justify="right")
    table.add_row("raw Ed25519 verify (ceiling)", f"{ceiling:,.0f}", "1.00")
    table.add_row("decode_entry (canonical + signature)", f"{statistics.median(dec):,.0f}",
                  f"{statistics.median(d / r for d, r in zip(dec, raw, strict=True)):.2f}")
    table.add_row("LogVerifier.add (+ id, feed, Merkle)", f"{statistics.median(ver):,.0f}",
                  f"{statistics.median(v / r for v, r in zip(ver, raw, strict=True)):.2f}")
    console.print(table)

    # 2. append rates on a fresh file.
    node = SigningKey.generate()
    small = LedgerStore(work / "append.sqlite", owner=bytes(node.verify_key))
    member = SigningKey.generate()
    start = time.perf_counter()
    for n in range(500):
        small.write(member, "note", {"text": f"note {n}"}, NOW)
    single = 500 / (time.perf_counter() - start)
    batch = [decode_entry(data) for data in sample_entries(8192)]
    start = time.perf_counter()
    for offset in range(0, len(batch), 4096):
        small.submit(batch[offset : offset + 4096], LATER)
    grouped = len(batch) / (time.perf_counter() - start)
    small.close()
    table = Table(title="append into SQLite (WAL, synchronous=FULL)")
    table.add_column("how")
    table.add_column("entries/s", justify="right")
    table.add_row("write: sign + one transaction each", f"{single:,.0f}")
    table.add_row("submit: 4096 verified entries per transaction", f"{grouped:,.0f}")
    console.print(table)

    # 3. the big log.
    db = work / "big.sqlite"
    key_file = work / "node.key"
    if args.reuse and db.exists() and key_file.exists():
        node = SigningKey(key_file.read_bytes())
        store = LedgerStore(db, owner=bytes(node.verify_key))
        console.print(f"reusing {db} ({store.size:,} entries)")
    else:
        db.unlink(missing_ok=True)
        node = SigningKey.generate()
        key_file.write_bytes(bytes(node))
        store = build(db, node, args.entries, console)
    size = store.size
    rng = random.Random(1)
    heads = store.tree_heads()
    last = heads[-1].body["size"]
    root = heads[-1].body["root"]
    gen, check = [], []
    for _ in range(200):
        index = rng.randrange(last)
        t0 = time.perf_counter()
        proof = store.inclusion_proof(index, last)
        t1 = time.perf_counter()
        verify_inclusion(leaf_hash(store.at(index).data), index, last, proof, root)
        t2 = time.perf_counter()
        gen.append(t1 - t0)
        check.append(t2 - t1)
    cgen, ccheck = [], []
    for head in heads[:-1]:
        old = head.body["size"]
        t0 = time.perf_counter()
        proof = store.consistency_proof(old, last)
        t1 = time.perf_counter()
        verify_consistency(old, last, head.body["root"], root, proof)
        cgen.append(t1 - t0)
        ccheck.append(time.perf_counter() - t1)
    table = Table(title=f"proofs at {last:,} entries (median)")
    for column in ("proof", "generate (SQLite)", "verify"):
        table.add_column(column, justify="right")
    table.add_row("inclusion", f"{statistics.median(gen) * 1e3:.2f} ms",
                  f"{statistics.median(check) * 1e6:.0f} µs")
    if cgen:
        table.add_row("consistency", f"{statistics.median(cgen) * 1e3:.2f} ms",
                      f"{statistics.median(ccheck) * 1e6:.0f} µs")
    console.print(table)

    # 4. export and audit.
    export = work / "big.car"
    start = time.perf_counter()
    export_ledger_file(store, export)
    exported = time.perf_counter() - start
    workers = default_workers()
    start = time.perf_counter()
    _, report = verify_export(export, workers=workers)
    audited = time.perf_counter() - start
    assert report.ok, report.findings[:3]
    mib = export.stat().st_size / 2**20
    table = Table(title=f"export and audit of {size:,} entries ({mib:.0f} MiB)")
    table.add_column("step")
    table.add_column("time", justify="right")
    table.add_column("entries/s", justify="right")
    table.add_row("export (SQLite -> CAR)", f"{exported:.1f} s", f"{size / exported:,.0f}")
    table.add_row(f"audit, {workers} worker(s) (target < 180 s)", f"{audited:.1f} s",
                  f"{size / audited:,.0f}")
    console.print(table)
    console.print(f"tree heads verified: {len(report.tree_heads)}; feeds: {report.feeds:,}; "
                  f"work dir {work}")
    store.close()


if __name__ == "__main__":
    main()
