"""kill -9 a process appending to a ledger, 24 times: nothing acknowledged is lost,
nothing is half-written, and the log still verifies.

The child appends notes one transaction at a time, with a batch submission and a
signed tree head mixed in, and prints each entry's id only after `write`/`submit`
returned (that is the acknowledgement). The parent kills it at a random instant,
reopens the file and checks every acknowledged id is in the log and the file is
consistent with itself; every eighth round (and the last) the whole database passes
`verify_store`, which re-checks every entry, feed, tree head and Merkle node.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from ledger.jsonview import id_text
from node.audit import verify_store
from node.ledger_store import LedgerStore

pytestmark = pytest.mark.integration

ROUNDS = 24

CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from nacl.signing import SigningKey
    from ledger.entry import sign_entry
    from ledger.jsonview import id_text
    from node.ledger_store import LedgerStore

    path, node_seed, member_seed, other_seed = sys.argv[1:5]
    node = SigningKey(bytes.fromhex(node_seed))
    member = SigningKey(bytes.fromhex(member_seed))
    other = SigningKey(bytes.fromhex(other_seed))
    store = LedgerStore(Path(path), owner=bytes(node.verify_key))
    print("ready", flush=True)
    n = 0
    while True:
        n += 1
        now = int(time.time() * 1000)
        if n % 7 == 0:
            # a batch of another author's entries in one transaction
            head = store.head(bytes(other.verify_key))
            seq, prev = (1, None) if head is None else (head.seq + 1, head.id)
            batch = []
            for i in range(5):
                entry = sign_entry(other, seq + i, prev, now, "note", {"text": f"b{n}.{i}"})
                prev = entry.id_bytes
                batch.append(entry)
            outcomes = store.submit(batch, now)
            print(" ".join(id_text(o.entry.id_bytes) for o in outcomes), flush=True)
        elif n % 11 == 0:
            decision = store.sign_tree_head(node, now)
            print(id_text(decision.entry.id_bytes), flush=True)
        else:
            decision = store.write(member, "note", {"text": f"note {n}" * 20}, now)
            print(id_text(decision.entry.id_bytes), flush=True)
    """
)


def test_kill_9_during_appends_loses_nothing_acknowledged(tmp_path: Path) -> None:
    node, member, other = (SigningKey.generate() for _ in range(3))
    path = tmp_path / "ledger.sqlite"
    acknowledged: list[str] = []
    rng = random.Random(20261122)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    for round_number in range(ROUNDS):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), bytes(node).hex(), bytes(member).hex(),
             bytes(other).hex()],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        deadline = time.monotonic() + rng.uniform(0.05, 0.4)
        os.set_blocking(child.stdout.fileno(), False)
        while time.monotonic() < deadline:
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
        child.wait()
        os.set_blocking(child.stdout.fileno(), True)
        lines = child.stdout.read().splitlines()
        # A line cut off by the kill was never a whole acknowledgement... but a whole
        # line is printed only after the commit returned, so every whole line counts.
        for line in lines:
            acknowledged += [word for word in line.split() if len(word) == 59]
        child.stdout.close()
        child.stderr.close()

        store = LedgerStore(path, owner=bytes(node.verify_key))
        try:
            held = {id_text(record.id) for record in store.iter_log()}
            lost = [text for text in acknowledged if text not in held]
            assert not lost, f"round {round_number}: acknowledged entries are gone: {lost[:5]}"
            assert store.check_tables() == [], f"round {round_number}"
            assert store.stored_root(store.size) == store.root()
            if round_number % 8 == 7:  # the full audit re-checks every entry: not each round
                report = verify_store(store)
                assert report.ok, [f.to_json() for f in report.findings]
                assert report.entries == store.size
        finally:
            store.close()
    assert len(acknowledged) >= ROUNDS  # the child really did append in most rounds
