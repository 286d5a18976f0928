"""Run one fuzz target (tests/fuzz/targets.py) under atheris, or a pure-Python fallback.

    python tests/fuzz/fuzz_car.py -atheris_runs=100000          # atheris (libFuzzer)
    python tests/fuzz/fuzz_car.py -max_total_time=60 corpus/    # libFuzzer flags pass through
    python tests/fuzz/fuzz_car.py --fallback -atheris_runs=5000 # no atheris: mutate seeds

With atheris (the `fuzz` extra), chorus's protocol/, ledger/ and node.gossip modules
are imported under `atheris.instrument_imports`, so libFuzzer sees their coverage, and
every input goes through the target's `check`: the decoder's typed error is an
answer, any other exception or a failed round-trip assertion is a crash that
libFuzzer saves as ``crash-<sha1>`` (``-artifact_prefix=`` to choose where). Unless
corpus directories are given, a fresh temporary one is seeded with the target's seeds
(valid encodings + tests/fuzz/corpus/<target>/), so the committed corpus stays as it is.

The fallback driver (no atheris installed, or ``--fallback``) feeds the same `check`
with seeds mutated the way libFuzzer's simplest mutators do (bit flips, byte sets,
truncation, insertion, duplication, splicing, random bytes); it understands
``-atheris_runs=N``, ``-max_total_time=S``, ``-seed=N`` and ``-artifact_prefix=P``.
Both print one summary line: ``<target>: <runs> runs in <s> s (<execs/s> execs/s) ...``.
"""

from __future__ import annotations

import atexit
import hashlib
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: What atheris instruments for coverage: chorus's decoders (and msgpack is C anyway).
INSTRUMENTED = ["protocol", "ledger", "node.gossip"]


def _flag(argv: list[str], name: str, default: str | None = None) -> str | None:
    for arg in argv:
        if arg.startswith(f"-{name}="):
            return arg.split("=", 1)[1]
    return default


def mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    """One mutant of a random seed: 1-4 of libFuzzer's basic mutations, or pure noise."""
    if not seeds or rng.random() < 0.05:
        return rng.randbytes(rng.randrange(0, 300))
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(7)
        position = rng.randrange(len(data) + 1)
        if choice == 0 and data:  # flip a bit
            position = min(position, len(data) - 1)
            data[position] ^= 1 << rng.randrange(8)
        elif choice == 1 and data:  # set a byte to an interesting value
            position = min(position, len(data) - 1)
            data[position] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif choice == 2:  # truncate
            del data[position:]
        elif choice == 3:  # insert random bytes
            data[position:position] = rng.randbytes(rng.randint(1, 8))
        elif choice == 4 and data:  # erase a run
            del data[position : position + rng.randint(1, 8)]
        elif choice == 5:  # duplicate a run
            data[position:position] = data[position : position + rng.randint(1, 16)]
        else:  # splice in part of another seed
            other = rng.choice(seeds)
            start = rng.randrange(len(other) + 1)
            data[position:] = other[start:] + data[position:][: rng.randint(0, 32)]
    return bytes(data)


def run_fallback(name: str, check: Callable[[bytes], bool], seeds: list[bytes],
                 argv: list[str]) -> int:
    """The pure-Python driver; returns the number of inputs run. A crash re-raises
    after saving the input as ``<artifact_prefix>crash-<sha1>``."""
    runs = int(_flag(argv, "atheris_runs", _flag(argv, "runs", "10000")) or 10000)
    budget = float(_flag(argv, "max_total_time", "0") or 0)
    rng = random.Random(int(_flag(argv, "seed", "0") or 0) or None)
    prefix = _flag(argv, "artifact_prefix", "") or ""
    start = time.perf_counter()
    accepted = 0
    done = 0
    for done in range(1, runs + 1):
        data = seeds[done - 1] if done <= len(seeds) else mutate(rng, seeds)
        try:
            accepted += check(data)
        except BaseException:
            crash = Path(f"{prefix}crash-{hashlib.sha1(data).hexdigest()}")
            crash.write_bytes(data)
            print(f"{name}: crash on input saved as {crash}", file=sys.stderr)
            raise
        if budget and time.perf_counter() - start > budget:
            break
    elapsed = time.perf_counter() - start
    print(f"{name}: {done} runs in {elapsed:.1f} s ({done / max(elapsed, 1e-9):.0f} execs/s), "
          f"{accepted} accepted, driver=fallback")
    return done


def main(name: str, argv: list[str] | None = None) -> None:
    """Entry point of tests/fuzz/fuzz_<name>.py."""
    argv = list(sys.argv if argv is None else argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    fallback = "--fallback" in argv
    argv = [arg for arg in argv if arg != "--fallback"]
    try:
        if fallback:
            raise ImportError("--fallback given")
        import atheris
    except ImportError:
        from tests.fuzz.targets import TARGETS, seeds

        run_fallback(name, TARGETS[name].check, seeds(name), argv)
        return
    with atheris.instrument_imports(include=INSTRUMENTED):
        from tests.fuzz.targets import TARGETS, seeds
    check = TARGETS[name].check

    def test_one_input(data: bytes) -> None:
        check(data)

    if not any(not arg.startswith("-") for arg in argv[1:]):
        corpus = Path(tempfile.mkdtemp(prefix=f"chorus-fuzz-{name}-"))
        atexit.register(shutil.rmtree, corpus, ignore_errors=True)
        for number, seed in enumerate(seeds(name)):
            (corpus / f"seed-{number:03d}").write_bytes(seed)
        argv.append(str(corpus))
    print(f"{name}: driver=atheris, instrumented {', '.join(INSTRUMENTED)}", flush=True)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()  # libFuzzer ends the process: "Done N runs in S second(s)"
