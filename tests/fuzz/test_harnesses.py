"""Smoke test of the atheris harnesses: each runs a few thousand inputs in a subprocess.

atheris is in the `test` and `fuzz` extras (a manylinux wheel on PyPI for CPython
3.11 on x86-64 Linux), so CI runs every harness under libFuzzer with coverage from
chorus's instrumented modules; the pure-Python fallback driver is smoke-tested too,
since it is what runs where atheris cannot be installed. Long runs are by hand
(docs/fuzzing.md).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent


def _run(name: str, *args: str, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, str(HERE / f"fuzz_{name}.py"), *args],
        capture_output=True, text=True, timeout=300, cwd=cwd, check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert not list(cwd.glob("crash-*")), output[-3000:]
    return output


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_harness_runs_under_atheris(name: str, tmp_path: Path) -> None:
    output = _run(name, "-atheris_runs=3000", f"-artifact_prefix={tmp_path}/", cwd=tmp_path)
    assert "driver=atheris" in output, output[-2000:]
    assert "Done 3000 in" in output, output[-2000:]


@pytest.mark.parametrize("name", ["entry", "car"])
def test_harness_runs_with_the_fallback_driver(name: str, tmp_path: Path) -> None:
    output = _run(name, "--fallback", "-atheris_runs=2000", "-seed=1", cwd=tmp_path)
    assert f"{name}: 2000 runs" in output and "driver=fallback" in output, output


def test_a_crash_is_saved_and_fails_the_run(tmp_path: Path) -> None:
    """The fallback driver saves a failing input: a check that raises the wrong error."""
    from tests.fuzz.driver import run_fallback

    def check(data: bytes) -> bool:
        if len(data) > 3:
            raise IndexError("planted")
        return True

    with pytest.raises(IndexError):
        run_fallback("planted", check, [b"abcd"], ["x", f"-artifact_prefix={tmp_path}/"])
    (crash,) = tmp_path.glob("crash-*")
    assert crash.read_bytes() == b"abcd"
