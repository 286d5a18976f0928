"""Import throughput: `chorus add` of a 256 MiB file in both Kubo profiles.

Prints MB/s for hashing only (`add -n`) and for a full add into a fresh repo
(blocks stored in SQLite, root pinned), next to the ceiling measured in the same
run on the same bytes: plain sha2-256 over the file (every byte must be hashed at
least once, so no importer can beat it). Run: `python bench/import.py [--size MiB]`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.adder import add_paths
from node.repo import Repo
from protocol.importer import KUBO_DEFAULT, KUBO_V1_RAW

MIB = 1024 * 1024


def make_file(path: Path, size: int) -> None:
    with path.open("wb") as out:
        remaining = size
        while remaining:
            piece = os.urandom(min(remaining, 8 * MIB))
            out.write(piece)
            remaining -= len(piece)


def sha256_ceiling(path: Path) -> float:
    start = time.perf_counter()
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while piece := src.read(MIB):
            digest.update(piece)
    return time.perf_counter() - start


def timed_add(path: Path, options, repo_dir: Path | None) -> tuple[float, str]:
    if repo_dir is None:
        start = time.perf_counter()
        result = add_paths([path], None, options)
        return time.perf_counter() - start, str(result.root.cid)
    with Repo.init(repo_dir) as repo:
        start = time.perf_counter()
        result = add_paths([path], repo.blockstore, options, pin=True)
        elapsed = time.perf_counter() - start
    return elapsed, str(result.root.cid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=256, help="file size in MiB")
    args = parser.parse_args()
    size = args.size * MIB
    console = Console(width=120)
    with tempfile.TemporaryDirectory(prefix="chorus-bench-") as tmp:
        work = Path(tmp)
        source = work / "track.bin"
        make_file(source, size)
        sha256_ceiling(source)  # warm the page cache so every run reads from memory
        ceiling = min(sha256_ceiling(source) for _ in range(3))
        ceiling_mbs = size / MIB / ceiling
        table = Table(title=f"chorus add, {args.size} MiB file, 256 KiB chunks")
        for column in ("profile", "mode", "seconds", "MiB/s", "ratio to sha2-256"):
            table.add_column(column, justify="right" if column != "profile" else "left")
        table.add_row("sha2-256", "ceiling", f"{ceiling:.2f}", f"{ceiling_mbs:.0f}", "1.00")
        for name, options in (("kubo-v0", KUBO_DEFAULT), ("v1-raw", KUBO_V1_RAW)):
            for mode in ("only-hash", "store+pin"):
                repo_dir = None if mode == "only-hash" else work / f"repo-{name}"
                elapsed, _ = timed_add(source, options, repo_dir)
                mbs = size / MIB / elapsed
                table.add_row(
                    name, mode, f"{elapsed:.2f}", f"{mbs:.0f}", f"{mbs / ceiling_mbs:.2f}"
                )
        console.print(table)


if __name__ == "__main__":
    main()
