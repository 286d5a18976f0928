"""Hypothesis profiles for the whole suite (see docs/fuzzing.md).

* ``ci`` (the default): what every `make test` and CI run uses. ``deadline=None``
  because a 2-core CI machine shared with daemons under test has pauses that say
  nothing about the code; examples are random each run (not derandomized), so CI
  keeps exploring and every failure is saved in .hypothesis/ and printed with the
  ``@example`` that reproduces it. Tests that set ``max_examples`` themselves keep
  their own count (the cheap pure decoders ask for 300-1000).
* ``deep``: ``HYPOTHESIS_PROFILE=deep`` for a long run (20k+ examples a test, every
  decoder and validator); `pytest -k fuzz` and the decoder test files are where it pays.
  Tests that set their own ``max_examples`` are scaled up too, through the
  ``fuzz_examples`` helper in tests/fuzz/targets.py.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=300,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "deep",
    max_examples=20_000,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
