"""The node's Merkle log at 10**6 entries: append rate, proof cost, next to raw SHA-256.

Measures, in one run on the same machine:
  * ceiling: SHA-256 of 65-byte messages (0x01 || left || right, one node hash) in a
    Python loop over hashlib; every operation below is a number of such hashes plus
    bookkeeping, so "ceiling" is this rate divided by the hashes the operation needs;
  * append of N leaf hashes to a `MerkleLog`, alone and with the nodes it hands back
    kept in a `MemoryNodeStore`; the same with the leaf hashing of 256-byte entries;
  * root, resume from the store, and inclusion / consistency proofs at N leaves:
    generation (reads from the store) and RFC 9162 verification, per proof.
Each row runs --rounds times, each beside a fresh ceiling sample (the machine may be
shared); ratios are medians of rate / ceiling. Run:
`python bench/merkle.py [--leaves N] [--proofs P] [--rounds R]`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ledger.merkle as merkle
from ledger.merkle import (
    MemoryNodeStore,
    MerkleLog,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_at,
    verify_consistency,
    verify_inclusion,
)

ENTRY_SIZE = 256


def sha256_rate(count: int = 1 << 17) -> float:
    """Node hashes per second now: hashlib over 65-byte messages in a Python loop."""
    messages = [b"\x01" + os.urandom(64) for _ in range(1024)]
    sha256 = hashlib.sha256
    start = time.perf_counter()
    for _ in range(count // len(messages)):
        for message in messages:
            sha256(message).digest()
    return (count // len(messages)) * len(messages) / (time.perf_counter() - start)


def interleaved(rounds: int, fn, *args) -> tuple[float, float, float, object]:
    """Run fn `rounds` times, each beside a fresh ceiling sample (this machine is shared
    and its speed drifts): (best seconds, median ceiling, median seconds x ceiling, result).
    """
    samples, result = [], None
    for _ in range(rounds):
        ceiling = sha256_rate()
        start = time.perf_counter()
        result = fn(*args)
        samples.append((time.perf_counter() - start, ceiling))
    best = min(seconds for seconds, _ in samples)
    ceilings = sorted(ceiling for _, ceiling in samples)
    normalised = sorted(seconds * ceiling for seconds, ceiling in samples)
    return best, ceilings[len(ceilings) // 2], normalised[len(normalised) // 2], result


def counted(fn, reader) -> tuple[int, int, object]:
    """Run fn(reader) once, counting SHA-256 calls in ledger.merkle and store reads."""
    hashes = reads = 0
    real_sha256 = merkle._sha256

    def sha256(*args):
        nonlocal hashes
        hashes += 1
        return real_sha256(*args)

    def read(level: int, index: int) -> bytes:
        nonlocal reads
        reads += 1
        return reader(level, index)

    merkle._sha256 = sha256
    try:
        result = fn(read)
    finally:
        merkle._sha256 = real_sha256
    return hashes, reads, result


def append_only(leaves: list[bytes]) -> MerkleLog:
    log = MerkleLog()
    append = log.append
    for leaf in leaves:
        append(leaf)
    return log


def append_and_store(leaves: list[bytes]) -> tuple[MerkleLog, MemoryNodeStore]:
    store = MemoryNodeStore()
    log = MerkleLog(store)
    append, add = log.append, store.add
    for leaf in leaves:
        add(append(leaf))
    return log, store


def hash_append_and_store(entries: list[bytes]) -> MerkleLog:
    store = MemoryNodeStore()
    log = MerkleLog(store)
    append, add = log.append, store.add
    for entry in entries:
        add(append(leaf_hash(entry)))
    return log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leaves", type=int, default=1_000_000, help="log size")
    parser.add_argument("--proofs", type=int, default=10_000, help="proofs of each kind")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per row")
    args = parser.parse_args()
    n, proofs, rounds = args.leaves, args.proofs, args.rounds
    rng = random.Random(9162)
    console = Console(width=120)

    entries = [rng.randbytes(ENTRY_SIZE) for _ in range(n)]
    leaves = [leaf_hash(entry) for entry in entries]
    node_hashes_per_leaf = (n - n.bit_count()) / n  # one per merge: n - popcount(n) in all

    title = f"chorus Merkle log (RFC 9162), {n:,} leaves, {os.cpu_count()} cores, best of {rounds}"
    table = Table(title=title)
    columns = ("operation", "count", "per op", "ops/s", "SHA-256/op", "reads/op", "ceiling/s")
    columns += ("ratio",)
    for column in columns:
        table.add_column(column, justify="left" if column == "operation" else "right")

    def row(what: str, count: int, hashes: float, reads: float, fn, *fn_args):
        seconds, ceiling, normalised, result = interleaved(rounds, fn, *fn_args)
        rate, per = count / seconds, seconds / count
        per_text = f"{per * 1e6:.2f} µs" if per < 1e-3 else f"{per * 1e3:.2f} ms"
        cells = [what, f"{count:,}", per_text, f"{rate:,.0f}", f"{hashes:.2f}", f"{reads:.1f}"]
        if hashes and not reads:
            # ratio: this operation's rate over the ceiling sampled beside it (median).
            cells += [f"{ceiling / hashes:,.0f}", f"{count * hashes / normalised:.2f}"]
        else:
            cells += ["-", "-"]
        table.add_row(*cells)
        return result

    ceiling = sha256_rate(1 << 20)
    table.add_row(
        "sha2-256, 65 B messages (ceiling)",
        "",
        f"{1e6 / ceiling:.2f} µs",
        f"{ceiling:,.0f}",
        "1.00",
        "0",
        f"{ceiling:,.0f}",
        "1.00",
    )
    row("append (leaf hash given)", n, node_hashes_per_leaf, 0, append_only, leaves)
    log, store = row(
        "append + keep nodes (memory store)", n, node_hashes_per_leaf, 0, append_and_store, leaves
    )
    # A 256-byte entry plus its prefix is 5 SHA-256 blocks, a node hash 2: count leaf
    # hashing as 2.5 node hashes so the ceiling stays in the same unit.
    row(
        f"leaf_hash({ENTRY_SIZE} B) + append + keep",
        n,
        node_hashes_per_leaf + 2.5,
        0,
        hash_append_and_store,
        entries,
    )
    del entries

    repeats = 1000
    head = log.root()
    row("root() now", repeats, n.bit_count() - 1, 0, lambda: [log.root() for _ in range(repeats)])
    _, reads, _ = counted(lambda read: MerkleLog.resume(n, read), store)
    row(
        "resume(n) from the store",
        repeats,
        0,
        reads,
        lambda: [MerkleLog.resume(n, store) for _ in range(repeats)],
    )

    # Per-proof SHA-256 calls and store reads are counted in one extra pass.
    indices = [rng.randrange(n) for _ in range(proofs)]
    olds = [rng.randrange(1, n) for _ in range(proofs)]
    old_roots = [root_at(m, store) for m in olds]

    def make_inclusion(read) -> list[list[bytes]]:
        return [inclusion_proof(i, n, read) for i in indices]

    def make_consistency(read) -> list[list[bytes]]:
        return [consistency_proof(m, n, read) for m in olds]

    def verify_all_inclusion(_read=None) -> None:
        for i, path in zip(indices, paths, strict=True):
            verify_inclusion(leaves[i], i, n, path, head)

    def verify_all_consistency(_read=None) -> None:
        for m, old_root, proof in zip(olds, old_roots, cproofs, strict=True):
            verify_consistency(m, n, old_root, head, proof)

    hashes, reads, paths = counted(make_inclusion, store)
    row("inclusion proof: generate", proofs, hashes / proofs, reads / proofs, make_inclusion, store)
    hashes, _, _ = counted(verify_all_inclusion, store)
    row("inclusion proof: verify", proofs, hashes / proofs, 0, verify_all_inclusion)
    hashes, reads, cproofs = counted(make_consistency, store)
    row(
        "consistency proof: generate",
        proofs,
        hashes / proofs,
        reads / proofs,
        make_consistency,
        store,
    )
    hashes, _, _ = counted(verify_all_consistency, store)
    row("consistency proof: verify", proofs, hashes / proofs, 0, verify_all_consistency)
    mean_len = sum(map(len, paths)) / proofs
    mean_clen = sum(map(len, cproofs)) / proofs

    console.print(table)
    console.print(
        f"store: {len(store):,} nodes, {len(store) * 32 / 1e6:.0f} MB of hashes; mean proof "
        f"length: inclusion {mean_len:.1f}, consistency {mean_clen:.1f} hashes. "
        "ratio = rate / (ceiling sampled beside it / SHA-256 per op), median of the rounds; "
        "no ratio where store reads, not hashing, set the cost."
    )


if __name__ == "__main__":
    main()
