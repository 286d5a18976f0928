"""The signed-peer-record cache: repeats skip the work, anything new is checked."""

from __future__ import annotations

from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from node import pubsub_records
from node.pubsub_records import REFRESH, _CachedConsume


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
