"""The signed-peer-record cache: repeats skip the work, anything new is checked."""

from __future__ import annotations

from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from node import pubsub_records
from node.pubsub_records import ADDRS_REFRESH, REFRESH, _CachedConsume, _CachedEnvelope


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _rpc(record: bytes | None) -> rpc_pb2.RPC:
    rpc = rpc_pb2.RPC()
    if record is not None:
        rpc.senderRecord = record
    return rpc


def test_a_repeated_record_is_checked_once_and_anything_else_every_time() -> None:
    calls: list[bytes] = []
    verdicts = {b"good": True, b"other": True, b"forged": False}

    def original(msg, host, peer) -> bool:
        calls.append(bytes(msg.senderRecord))
        return verdicts[bytes(msg.senderRecord)]

    clock = Clock()
    cached = _CachedConsume(original, clock)
    host, alice, bob = object(), ID(b"alice"), ID(b"bob")
    assert cached(_rpc(None), host, alice) is True and calls == []
    assert cached(_rpc(b"good"), host, alice) is True
    assert cached(_rpc(b"good"), host, alice) is True
    assert calls == [b"good"] and cached.skipped == 1
    assert cached(_rpc(b"good"), host, bob) is True  # another peer: checked
    assert cached(_rpc(b"forged"), host, alice) is False  # changed bytes: checked, refused
    assert cached(_rpc(b"good"), host, alice) is True  # forgotten after the refusal
    assert calls == [b"good", b"good", b"forged", b"good"]
    clock.now += REFRESH + 1
    assert cached(_rpc(b"good"), host, alice) is True  # stale: checked again
    assert len(calls) == 5
    assert cached(_rpc(b"good"), object(), alice) is True  # another host: checked
    assert len(calls) == 6


def test_the_cache_is_bounded(monkeypatch) -> None:
    monkeypatch.setattr(pubsub_records, "MAX_PEERS", 3)
    cached = _CachedConsume(lambda msg, host, peer: True)
    host = object()
    for n in range(10):
        cached(_rpc(b"r"), host, ID(bytes([n])))
    assert len(cached.accepted) == 3


def test_install_wraps_both_callers_once() -> None:
    import libp2p.pubsub.gossipsub as gossipsub_module
    import libp2p.pubsub.pubsub as pubsub_module

    first = pubsub_records.install()
    assert pubsub_records.install() is first
    assert pubsub_module.maybe_consume_signed_record is first
    assert gossipsub_module.maybe_consume_signed_record is first
    envelope = pubsub_module.env_to_send_in_RPC
    assert isinstance(envelope, _CachedEnvelope)
    assert gossipsub_module.env_to_send_in_RPC is envelope


class _Host:
    """The part of a host the cache reads: its peerstore's current local record."""

    def __init__(self) -> None:
        self.record: object | None = None

    def get_peerstore(self) -> _Host:
        return self

    def get_local_record(self) -> object | None:
        return self.record


def test_our_envelope_is_made_at_most_once_a_second_per_host() -> None:
    made: list[object] = []

    def original(host) -> tuple[bytes, bool]:
        made.append(host)
        host.record = object()  # py-libp2p issues and caches a record
        return b"record %d" % len(made), True

    clock = Clock()
    cached = _CachedEnvelope(original, clock)
    one, two = _Host(), _Host()
    assert cached(one) == (b"record 1", True)
    clock.now += ADDRS_REFRESH / 2
    assert cached(one) == (b"record 1", False)  # within the second: no new work
    assert cached(two) == (b"record 2", True)  # another host: its own record
    clock.now += ADDRS_REFRESH
    assert cached(one) == (b"record 3", True)  # asked again (its addresses may differ)
    one.record = object()  # identify (say) issued a newer record meanwhile
    assert cached(one) == (b"record 4", True)  # never an older record than the current
    assert made == [one, two, one, one]
    made.clear()
    del two
    import gc

    gc.collect()
    assert len(cached.issued) == 1  # a host's entry goes with the host


def test_the_envelope_sent_is_the_hosts_own_signed_record() -> None:
    from libp2p import new_host
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.envelope import consume_envelope
    from libp2p.peer.peerstore import env_to_send_in_RPC

    cached = _CachedEnvelope(env_to_send_in_RPC)
    for _ in range(2):
        host = new_host(key_pair=create_new_key_pair())
        data, _ = cached(host)
        assert cached(host)[0] == data
        _, record = consume_envelope(data, "libp2p-peer-record")
        assert record.peer_id == host.get_id()
