"""kill -9 during add, pin, fetch, ledger append, sync and tally: the CI subset.

Each operation of tests/crash_harness.py runs a few rounds here (real daemons and
CLI processes, SIGKILL at a seeded random instant, then `chorus repo verify`,
`chorus ledger verify` and the acknowledged-work checks); bench/crash.py runs the
same scenarios 100 times each. The seed is fixed so CI is repeatable; set
`CHORUS_CRASH_SEED` to try others (a failure names the seed that replays it) and
`CHORUS_CRASH_ROUNDS` for more rounds.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.crash_harness import SCENARIOS, CrashRun

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("CHORUS_CRASH_SEED", "20261207"))
ROUNDS = int(os.environ.get("CHORUS_CRASH_ROUNDS", "3"))


@pytest.mark.parametrize("operation", sorted(SCENARIOS))
def test_kill_9_loses_nothing_acknowledged(operation: str, tmp_path: Path) -> None:
    run = CrashRun(tmp_path, SEED, log=print)
    stats = run.run(operation, ROUNDS)
    assert not stats.failures, "\n".join(stats.failures)
    assert stats.kills == ROUNDS, f"{stats.kills} of {ROUNDS} kills happened"
    assert stats.mid_operation >= 1, "no kill landed while the operation was running"
    assert len(stats.recover) == ROUNDS
    print(f"\n  {operation}: {stats.kills} kills, {stats.mid_operation} mid-operation, "
          f"{stats.checked} acknowledged checked, recovery {stats.mean_recover:.2f} s mean")
