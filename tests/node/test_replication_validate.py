"""Replication's gossip validator: our own stored entries are not verified twice.

The ledger decodes and verifies every entry it stores; when it hands them to gossip,
`Gossip.publish` runs the validator on them again ("a node never sends what it would
refuse"). bench/swarm.py's profile showed that second signature check as 7% of a
busy node's CPU, so the validator takes the ledger's word for items it just stored,
and only for those, and only when they are our own publish."""

from __future__ import annotations

import time
from pathlib import Path

from nacl.signing import SigningKey

import node.replication as replication_module
from ledger.entry import sign_entry
from node.gossip import Gossip
from node.host import build_host
from node.ledger import NodeLedger
from node.ledger_store import LedgerStore
from node.replication import Replication


def test_own_stored_items_skip_the_second_check(tmp_path: Path, monkeypatch) -> None:
    node_key = SigningKey.generate()
    store = LedgerStore(tmp_path / "ledger.sqlite", owner=bytes(node_key.verify_key))
    try:
        gossip = Gossip(build_host(node_key), "chorus/test")
        replication = Replication(gossip, NodeLedger(store, node_key))
        decoded: list[bytes] = []
        real_decode = replication_module.decode_entry

        def counting_decode(data: bytes):
            decoded.append(data)
            return real_decode(data)

        monkeypatch.setattr(replication_module, "decode_entry", counting_decode)
        author = SigningKey.generate()
        now = int(time.time() * 1000)
        stored = sign_entry(author, 1, None, now, "note", {"text": "stored"}).encoded
        other = sign_entry(SigningKey.generate(), 1, None, now, "note",
                           {"text": "not stored"}).encoded
        forged = bytearray(other)
        forged[-1] ^= 1

        replication._queue([stored])  # what NodeLedger.on_publish hands over
        me, someone = gossip.peer_id, build_host(SigningKey.generate()).get_id()
        assert replication.validate(stored, me) and decoded == []
        assert replication.validate(stored, me) and decoded == [stored]  # once only
        replication._queue([stored])
        assert replication.validate(stored, someone)  # from a peer: always checked
        assert decoded == [stored, stored]
        assert replication.validate(other, me) and decoded[-1] == other
        assert not replication.validate(bytes(forged), me)  # never stored: refused
    finally:
        store.close()
