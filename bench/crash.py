"""kill -9 during add, pin, fetch, ledger append, sync and tally, many times over.

Runs tests/crash_harness.py's scenarios with real `chorus daemon` and `chorus` CLI
processes: each round starts the operation, SIGKILLs the daemon (or the CLI) at a
random instant drawn from the seed, runs `chorus repo verify` and `chorus ledger
verify` on what is left, checks that every acknowledged operation survived, and
restarts. Prints one row per operation: kills, kills that landed mid-operation,
acknowledged operations checked, failures, and the mean time from kill to "verified
and serving again". The baseline row is a clean stop/start of the same daemon, so the
recovery column reads as a ratio to an ordinary restart.

    python bench/crash.py                      # 100 rounds of every operation
    python bench/crash.py --rounds 10 --only append sync
    python bench/crash.py --seed 1234          # replay a failure reported by its seed

Exit status 1 if any check failed (each failure is printed with its seed).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console
from rich.table import Table

from tests.crash_harness import QUIET, SCENARIOS, CrashRun
from tests.daemons import DaemonProcess


def restart_baseline(work: Path, rounds: int) -> float:
    """Mean seconds of a clean stop + start + first answer of an idle daemon."""
    node = DaemonProcess(work / "baseline", dht=False, extra=QUIET).start()
    spans = []
    try:
        for _ in range(rounds):
            started = time.monotonic()
            node.stop()
            node.start()
            node.chorus_api("GET", "/ledger")
            spans.append(time.monotonic() - started)
    finally:
        node.stop()
    return sum(spans) / len(spans)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100, help="kills per operation")
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument("--only", nargs="+", choices=sorted(SCENARIOS), default=None)
    parser.add_argument("--keep", type=Path, default=None, help="work here and keep it")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(10**9)
    console = Console()
    console.print(f"crash bench: seed {seed}, {args.rounds} rounds per operation")
    with tempfile.TemporaryDirectory(prefix="chorus-crash-") as tmp:
        work = args.keep or Path(tmp)
        baseline = restart_baseline(work, 5)
        run = CrashRun(work, seed, log=lambda text: console.print(f"[red]FAIL[/] {text}"))
        started = time.monotonic()
        for operation in args.only or list(SCENARIOS):
            begun = time.monotonic()
            stats = run.run(operation, args.rounds)
            console.print(f"  {operation}: {stats.kills} kills in "
                          f"{time.monotonic() - begun:.0f} s, {len(stats.failures)} failed")
        elapsed = time.monotonic() - started

    table = Table(title=f"kill -9 rounds (seed {seed}, {elapsed:.0f} s)")
    for column in ("operation", "kills", "mid-operation", "acked checked", "failures",
                   "recovery s (mean)", "× clean restart"):
        table.add_column(column, justify="left" if column == "operation" else "right")
    for stats in run.stats.values():
        table.add_row(stats.operation, str(stats.kills), str(stats.mid_operation),
                      str(stats.checked), str(len(stats.failures)),
                      f"{stats.mean_recover:.2f}", f"{stats.mean_recover / baseline:.1f}")
    table.add_row("baseline: clean restart", "-", "-", "-", "-", f"{baseline:.2f}", "1.0")
    console.print(table)
    failures = run.failures()
    if failures:
        console.print(f"[red]{len(failures)} failure(s)[/]; replay with --seed {seed}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
