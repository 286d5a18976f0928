"""Entries are not verified twice: replication's gossip validator, sync's replies.

The ledger decodes and verifies every entry it stores; when it hands them to gossip,
`Gossip.publish` runs the validator on them again ("a node never sends what it would
refuse"). bench/swarm.py's profile showed that second signature check as 7% of a
busy node's CPU, so the validator takes the ledger's word for items it just stored,
and only for those, and only when they are our own publish. A sync reply under load is
mostly entries gossip stored meanwhile: `decode_all` parses those without a second
signature check, and only those whose id (the hash of the very bytes) the log holds."""

from __future__ import annotations

import time
from pathlib import Path

from nacl.signing import SigningKey

import node.replication as replication_module
from ledger.entry import BadSignature, SignedEntry, sign_entry
from node.gossip import Gossip
from node.host import build_host
from node.ledger import NodeLedger, decode_all
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


def test_decode_all_skips_the_signature_only_of_held_ids() -> None:
    key = SigningKey.generate()
    now = int(time.time() * 1000)
    good = sign_entry(key, 1, None, now, "note", {"text": "good"}).encoded
    victim = sign_entry(SigningKey.generate(), 1, None, now, "note", {"text": "forged"})
    forged = bytearray(victim.encoded)
    forged[victim.encoded.index(victim.sig) + 10] ^= 1  # parses, no longer verifies
    from ledger.entry import entry_id_bytes

    checked = decode_all([good, bytes(forged)])
    assert isinstance(checked[0], SignedEntry) and isinstance(checked[1], BadSignature)
    # An id in `held` stands for bytes verified when stored; here the forged bytes
    # are claimed held, which shows the check is skipped (never the case in a node:
    # the id is the hash of the bytes, so held bytes are the stored ones).
    trusted = decode_all([good, bytes(forged)], held={entry_id_bytes(bytes(forged))})
    assert isinstance(trusted[0], SignedEntry) and isinstance(trusted[1], SignedEntry)
    garbage = decode_all([b"\x81\xa1x\x01"], held={entry_id_bytes(b"\x81\xa1x\x01")})
    assert isinstance(garbage[0], Exception)  # held or not, bytes must parse


def test_the_ledger_says_which_origins_it_still_waits_on(tmp_path: Path) -> None:
    from node.ledger import _Job

    node_key = SigningKey.generate()
    store = LedgerStore(tmp_path / "ledger.sqlite", owner=bytes(node_key.verify_key))
    try:
        ledger = NodeLedger(store, node_key)
        key = SigningKey.generate()
        now = int(time.time() * 1000)
        one = sign_entry(key, 1, None, now, "note", {"text": "1"})
        two = sign_entry(key, 2, one.id_bytes, now, "note", {"text": "2"})
        outcomes = store.submit([two], now)  # before its predecessor: EARLY
        ledger._after(_Job("submit", [two], origin="peer A"), outcomes)
        assert ledger.waiting_on("peer A") and not ledger.waiting_on("peer B")
        outcomes = store.submit([one], now)
        ready = ledger._after(_Job("submit", [one], origin="peer B"), outcomes)
        assert ready == [two] and not ledger.waiting_on("peer A")
    finally:
        store.close()
