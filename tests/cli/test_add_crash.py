"""kill -9 of `chorus add` at random instants never leaves a store that fails to verify,
and never a pin whose DAG is incomplete."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node.repo import Repo
from protocol.reader import read_file

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_kill_9_during_add_leaves_a_verifying_store(tmp_path):
    data = tmp_path / "repo"
    subprocess.run([sys.executable, "-m", "cli.main", "--data", str(data), "init"],
                   check=True, cwd=ROOT, capture_output=True)
    rng = random.Random(20261121)
    sources = []
    for i in range(3):
        path = tmp_path / f"track{i}.bin"
        path.write_bytes(rng.randbytes(12 * 1024 * 1024 + i))
        sources.append(path)
    completed: dict[str, Path] = {}
    # Calibrate: how long a whole add takes here, so kills land across its span.
    start = time.perf_counter()
    calibration = subprocess.run(
        [sys.executable, "-m", "cli.main", "--data", str(data), "add", "-Q", str(sources[0])],
        cwd=ROOT, capture_output=True, check=True,
    )
    full = time.perf_counter() - start
    completed[calibration.stdout.decode().strip()] = sources[0]
    kills = 0
    attempt = 0
    while kills < 20 and attempt < 40:
        attempt += 1
        source = sources[attempt % len(sources)]
        args = ["add", "-Q", str(source)]
        if attempt % 2:
            args[1:1] = ["--cid-version", "1"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "--data", str(data), *args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        time.sleep(rng.uniform(0.02, 0.95) * full)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        out, err = proc.communicate(timeout=60)
        if proc.returncode == 0:
            completed[out.decode().strip()] = source
        else:
            assert proc.returncode == -signal.SIGKILL, err.decode()
    assert kills >= 20, f"only {kills} adds were killed mid-way; widen the timing"
    with Repo.open(data) as repo:
        report = repo.blockstore.verify()
        assert report.ok, report.problems
        pinned = {str(pin.cid) for pin in repo.blockstore.pin_ls("recursive")}
        assert set(completed) <= pinned
        for pin in repo.blockstore.pin_ls("recursive"):
            # Every pin names a complete DAG: reading it touches every block.
            size = sum(len(piece) for piece in read_file(pin.cid, repo.blockstore.get))
            assert size in {path.stat().st_size for path in sources}
        repo.blockstore.gc()
        assert repo.blockstore.verify().ok
