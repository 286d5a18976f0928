"""A 1 GiB file imports in constant memory: peak RSS of `chorus add` does not grow
with the file's size."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
PIECE = bytes(range(256)) * 4096  # 1 MiB


def _peak_rss_of_add(size: int, *args: str) -> tuple[int, str]:
    """Run `chorus add ARGS` fed `size` bytes on stdin; return (peak RSS in KiB, stdout)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    for i in range(size // MIB):
        proc.stdin.write(PIECE[i % 256 :] + PIECE[: i % 256])  # no two MiB alike
    proc.stdin.close()
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
    return usage.ru_maxrss, out


@pytest.mark.integration
def test_one_gib_only_hash_in_constant_memory():
    small, _ = _peak_rss_of_add(16 * MIB, "add", "-n", "-Q")
    big, out = _peak_rss_of_add(1024 * MIB, "add", "-n", "-Q")
    assert out.strip().startswith("Qm")
    assert big - small < 32 * 1024, f"peak RSS grew from {small} KiB to {big} KiB"


@pytest.mark.integration
def test_stored_add_in_constant_memory(tmp_path):
    data = tmp_path / "repo"
    subprocess.run([sys.executable, "-m", "cli.main", "--data", str(data), "init"],
                   cwd=ROOT, check=True, capture_output=True)
    small, _ = _peak_rss_of_add(8 * MIB, "--data", str(data), "add", "-Q")
    big, _ = _peak_rss_of_add(160 * MIB, "--data", str(data), "add", "-Q")
    assert big - small < 48 * 1024, f"peak RSS grew from {small} KiB to {big} KiB"
