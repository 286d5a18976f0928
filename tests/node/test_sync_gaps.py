"""A gap reported by gossip is synced only if it is still open a moment later.

Under load gossip's relays deliver batches out of order all the time, and most gaps
close within the second; a sync started at once fetched what was already on its way
(bench/swarm.py: ~80,000 entries fetched by sync, nine in ten already held when they
arrived). `SyncService.request_gap` waits `gap_delay` and asks the ledger whether it
still waits on that peer. The sessions themselves run against real daemons in
test_replication.py; this checks the scheduling decision on a real ledger.
"""

from __future__ import annotations

import time
from pathlib import Path

from nacl.signing import SigningKey

from ledger.entry import sign_entry
from node.host import Penalties, build_host
from node.ledger import NodeLedger, _Job
from node.ledger_store import LedgerStore
from node.sync import SyncService


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_gap_is_synced_after_the_delay_only_while_it_is_open(tmp_path: Path) -> None:
    node_key = SigningKey.generate()
    store = LedgerStore(tmp_path / "ledger.sqlite", owner=bytes(node_key.verify_key))
    try:
        ledger = NodeLedger(store, node_key, max_pending=2)
        host = build_host(node_key)
        clock = Clock()
        sync = SyncService(host, ledger, "coop", Penalties(), gap_delay=1.0, _clock=clock)
        peer_a = build_host(SigningKey.generate()).get_id()
        peer_b = build_host(SigningKey.generate()).get_id()

        key = SigningKey.generate()
        now = int(time.time() * 1000)
        one = sign_entry(key, 1, None, now, "note", {"text": "1"})
        two = sign_entry(key, 2, one.id_bytes, now, "note", {"text": "2"})
        other = SigningKey.generate()
        lone = sign_entry(other, 2, b"\x01\x55\x12\x20" + bytes(32), now, "note", {"text": "x"})

        # Both peers' gossip showed a gap.
        ledger._after(_Job("submit", [two], origin=peer_a), store.submit([two], now))
        ledger._after(_Job("submit", [lone], origin=peer_b), store.submit([lone], now))
        sync.request_gap(peer_a)
        sync.request_gap(peer_b)
        sync.request_gap(peer_a)  # reported again: still one check, not a later one
        sync.request_gap(host.get_id())  # never ourselves
        sync.request_gap("not a peer id")  # an origin that is no peer (a local write)
        assert set(sync._gaps) == {peer_a, peer_b}
        assert sync._gaps_due() == set()  # not yet: gossip may close them

        # Gossip brings peer A's missing entry meanwhile; peer B's gap stays open.
        ledger._after(_Job("submit", [one], origin=peer_a), store.submit([one], now))
        clock.now += 1.0
        assert sync._gaps_due() == {peer_b}
        assert sync._gaps == {}
        assert sync._gaps_due() == set()  # each report is looked at once

        # A full pending buffer dropped early entries meanwhile: the ledger cannot
        # tell whether peer A's gap is still open, so it is synced.
        sync.request_gap(peer_a)
        for n in range(2):  # two more early entries: the buffer (2) drops its oldest
            far = SigningKey.generate()
            early = sign_entry(far, 5, b"\x01\x55\x12\x20" + bytes(32), now, "note",
                               {"text": f"far {n}"})
            ledger._after(_Job("submit", [early], origin=peer_b), store.submit([early], now))
        assert ledger.counters.pending_dropped == 1 and not ledger.waiting_on(peer_a)
        clock.now += 1.0
        assert sync._gaps_due() == {peer_a}
    finally:
        store.close()
