"""Fuzz /chorus/sync/1.0.0 frames (ledger.sync.decode_message, FrameReader).

    python tests/fuzz/fuzz_sync.py -atheris_runs=100000

The property and seeds are the "sync" target in tests/fuzz/targets.py; the driver
(atheris, or the pure-Python fallback) is tests/fuzz/driver.py; see docs/fuzzing.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz.driver import main

if __name__ == "__main__":
    main("sync")
