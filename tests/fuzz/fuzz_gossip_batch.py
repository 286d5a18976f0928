"""Fuzz gossip batch envelopes on the co-op topic (node.gossip.decode_batch).

    python tests/fuzz/fuzz_gossip_batch.py -atheris_runs=100000

The property and seeds are the "gossip_batch" target in tests/fuzz/targets.py; the driver
(atheris, or the pure-Python fallback) is tests/fuzz/driver.py; see docs/fuzzing.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz.driver import main

if __name__ == "__main__":
    main("gossip_batch")
