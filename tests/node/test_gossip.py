"""The ledger gossip layer: the envelope codec, and real py-libp2p hosts on 127.0.0.1.

The network tests put three hosts in a line A-B-C (A and C are not connected), so
everything C sees was forwarded by B: what B's validator refuses, C must never see.
All hosts run in this one trio process, which shares one core between three nodes;
figures printed here are therefore lower than between processes (docs/gossip.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import msgpack
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from multiaddr import Multiaddr

from node.gossip import (
    MAX_MESSAGE_SIZE_CEILING,
    MIN_FLUSH_SPACING,
    BatchDecodeError,
    BatchTooLarge,
    Gossip,
    GossipNotRunning,
    ItemRejected,
    ItemTooLarge,
    Received,
    _OriginRate,
    decode_batch,
    encode_batch,
    envelope_size,
    ledger_topic,
)
from protocol.cid import make_cid
from protocol.errors import InvalidCID

logging.getLogger("libp2p").setLevel(logging.CRITICAL)

GENESIS = make_cid(b"chorus test co-op genesis")
TOPIC = ledger_topic(GENESIS)


# --- the envelope ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "lengths",
    [[1], [255], [256], [65535], [65536], [10] * 15, [10] * 16, [3] * 70000, [1, 300, 70000]],
)
def test_envelope_size_is_exact(lengths: list[int]) -> None:
    items = [b"x" * n for n in lengths]
    data = encode_batch(items)
    assert envelope_size(lengths) == len(data)
    assert decode_batch(data, max_message_size=len(data), max_items=len(items)) == items


def test_envelope_is_canonical_msgpack_with_sorted_keys() -> None:
    assert encode_batch([b"a"]) == b"\x82\xa5items\x91\xc4\x01a\xa1v\x01"
    assert msgpack.unpackb(encode_batch([b"a", b"bc"])) == {"items": [b"a", b"bc"], "v": 1}


def test_encode_refuses_empty_batches_and_items() -> None:
    with pytest.raises(ValueError, match="at least one item"):
        encode_batch([])
    with pytest.raises(ValueError, match="at least one byte"):
        encode_batch([b"a", b""])


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "not msgpack"),
        (b"\xc1", "not msgpack"),  # the one never-used msgpack byte
        (encode_batch([b"a"])[:-1], "not msgpack"),  # truncated
        (encode_batch([b"a"]) + b"\x00", "not msgpack"),  # trailing bytes
        (b"\x91" * 5000 + b"\x90", "not msgpack"),  # nesting deeper than msgpack allows
        (_pack([b"a"]), "not a map"),
        (_pack({"items": [b"a"]}), "keys"),
        (_pack({"items": [b"a"], "v": 1, "x": 0}), "keys"),
        (_pack({1: 2}), "not msgpack"),  # strict_map_key: only str/bytes keys
        (b"\x82\xa5items\x91\xc4\x01a\xa1v\xff", "version -1"),
        (_pack({"items": [b"a"], "v": 2}), "version 2"),
        (_pack({"items": [b"a"], "v": True}), "version True"),
        (_pack({"items": [b"a"], "v": 1.0}), "version 1.0"),
        (_pack({"items": [], "v": 1}), "no list"),
        (_pack({"items": b"a", "v": 1}), "no list"),
        (_pack({"items": ["text"], "v": 1}), "item 0"),
        (_pack({"items": [b"a", b""], "v": 1}), "item 1"),
        (_pack({"items": [b"a", 7], "v": 1}), "item 1"),
        (_pack({"items": [msgpack.ExtType(1, b"x")], "v": 1}), "not msgpack"),
        (_pack({"v": 1, "items": [b"a"]}), "canonical"),  # keys in the other order
        (b"\x82\xa5items\x91\xc4\x01a\xa1v\xcc\x01", "canonical"),  # 1 as uint8
        (b"\x82\xa5items\xdc\x00\x01\xc4\x01a\xa1v\x01", "canonical"),  # array16 of 1
        (b"\x82\xa5it\xffms\x91\xc4\x01a\xa1v\x01", "not msgpack"),  # invalid UTF-8 key
    ],
)
def test_decode_refuses_everything_but_the_canonical_envelope(data: bytes, match: str) -> None:
    with pytest.raises(BatchDecodeError, match=match):
        decode_batch(data)


def test_decode_limits_are_batch_too_large() -> None:
    data = encode_batch([b"x" * 1000])
    with pytest.raises(BatchTooLarge, match="over the 1000-byte limit"):
        decode_batch(data, max_message_size=1000)
    with pytest.raises(BatchTooLarge, match="3 items is over the 2-item limit"):
        decode_batch(encode_batch([b"a", b"b", b"c"]), max_items=2)
    with pytest.raises(BatchDecodeError, match="not str"):
        decode_batch("text")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_decode_of_arbitrary_bytes_raises_only_batch_decode_error(data: bytes) -> None:
    try:
        items = decode_batch(data)
    except BatchDecodeError:
        return
    assert encode_batch(items) == data


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=20), st.data())
def test_decode_of_a_corrupted_envelope_never_escapes(
    items: list[bytes], data: st.DataObject
) -> None:
    good = bytearray(encode_batch(items))
    assert decode_batch(bytes(good)) == items
    position = data.draw(st.integers(0, len(good) - 1))
    good[position] = data.draw(st.integers(0, 255))
    try:
        decoded = decode_batch(bytes(good))
    except BatchDecodeError:
        return
    assert encode_batch(decoded) == bytes(good)


def test_ledger_topic_is_the_same_for_every_form_of_the_genesis_cid() -> None:
    v1 = make_cid(b"genesis")
    v0 = make_cid(b"genesis", version=0, codec=0x70)
    topic = ledger_topic(v1)
    assert topic == f"/chorus/{v1.encode('base32')}/ledger/1"
    assert ledger_topic(str(v1)) == ledger_topic(v1.encode("base58btc")) == topic
    assert ledger_topic(bytes(v1)) == topic
    assert ledger_topic(str(v0)) == ledger_topic(v0.set(version=1)) != topic
    assert ledger_topic(str(v0)).startswith("/chorus/bafybei")
    with pytest.raises(InvalidCID):
        ledger_topic("not-a-cid")


def test_origin_rate_is_a_token_bucket_per_origin() -> None:
    rate = _OriginRate(rate=2.0, burst=4.0, max_tracked=8)
    assert [rate.allow(b"a", 0.0) for _ in range(5)] == [True] * 4 + [False]
    assert rate.allow(b"b", 0.0)  # another origin has its own bucket
    assert not rate.allow(b"a", 0.4)  # 0.8 tokens
    assert rate.allow(b"a", 0.5)  # refilled to 1
    for i in range(20):  # many origins: memory stays bounded
        rate.allow(bytes([i]), 10.0 + i)
    assert len(rate._buckets) <= 8


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_message_size": 5},
        {"max_message_size": MAX_MESSAGE_SIZE_CEILING + 1},
        {"max_batch_items": 0},
        {"flush_interval": -1},
        {"flush_interval": float("nan")},
        {"receive_buffer": 0},
        {"max_batches_per_origin": 0},
    ],
)
def test_settings_out_of_range_are_refused(kwargs: dict[str, Any]) -> None:
    host = new_host(key_pair=create_new_key_pair())
    with pytest.raises(ValueError):
        Gossip(host, TOPIC, **kwargs)


async def test_publish_outside_run_is_refused() -> None:
    gossip = Gossip(new_host(key_pair=create_new_key_pair()), TOPIC)
    with pytest.raises(GossipNotRunning, match="has not started"):
        await gossip.publish(b"entry")
    with pytest.raises(GossipNotRunning):
        await gossip.flush()


# --- real hosts -----------------------------------------------------------------------


def _host() -> Any:
    return new_host(
        key_pair=create_new_key_pair(),
        muxer_preference="YAMUX",
        connection_config=ConnectionConfig(max_connections_per_peer=1),
    )


@asynccontextmanager
async def swarm(
    configs: list[dict[str, Any]], edges: list[tuple[int, int]], *, connect_first: bool = False
) -> AsyncIterator[list[Gossip]]:
    """One host per config (Gossip keyword arguments), connected along `edges`, meshes formed.

    With `connect_first` the hosts connect before gossip starts (Gossip adopts them).
    Hosts are always closed: leaving `host.run()` does not close connections. A failure
    in the test body is re-raised after everything closed, so that pytest shows it
    plainly rather than wrapped in one exception group per host nursery.
    """
    hosts = [_host() for _ in configs]
    failure: Exception | None = None
    try:
        async with AsyncExitStack() as stack:
            for host in hosts:
                await stack.enter_async_context(
                    host.run(listen_addrs=[Multiaddr("/ip4/127.0.0.1/tcp/0")])
                )

            async def connect() -> None:
                for near, far in edges:
                    await hosts[near].connect(info_from_p2p_addr(hosts[far].get_addrs()[0]))

            if connect_first:
                await connect()
            async with trio.open_nursery() as nursery:
                gossips = [Gossip(h, TOPIC, **c) for h, c in zip(hosts, configs, strict=True)]
                for gossip in gossips:
                    await nursery.start(gossip.run)
                if not connect_first:
                    await connect()
                for near, far in edges:
                    await gossips[near].wait_for_peer(gossips[far].peer_id, timeout=10)
                    await gossips[far].wait_for_peer(gossips[near].peer_id, timeout=10)
                try:
                    yield gossips
                except Exception as exc:  # noqa: BLE001 - re-raised below, unwrapped
                    failure = exc
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            for host in hosts:
                await host.close()
    if failure is not None:
        raise failure


def line(*configs: dict[str, Any], connect_first: bool = False) -> Any:
    """`swarm` of hosts in a line: 0-1, 1-2, ..."""
    edges = [(i, i + 1) for i in range(len(configs) - 1)]
    return swarm(list(configs), edges, connect_first=connect_first)


async def collect(
    gossip: Gossip, count: int, timeout: float, until: Callable[[Received], bool] | None = None
) -> list[Received]:
    """Items from `gossip` until `count` arrived (or `until` says stop) or `timeout`."""
    got: list[Received] = []
    with trio.move_on_after(timeout):
        async for received in gossip.receive_channel:
            got.append(received)
            if len(got) >= count or (until is not None and until(received)):
                break
    return got


async def test_500_items_cross_a_line_of_three_in_a_few_batches() -> None:
    async with line({}, {}, {}) as (a, b, c):
        items = [b"entry-%04d-" % i + bytes(80) for i in range(500)]
        start = time.monotonic()
        for item in items:
            await a.publish(item)
        got = await collect(c, 500, timeout=10)
        elapsed = time.monotonic() - start
        print(
            f"\n500 items A->B->C: {elapsed:.3f} s, {500 / elapsed:.0f} items/s, "
            f"{a.counters.batches_published} gossip messages"
        )
        assert [r.item for r in got] == items
        assert {r.origin for r in got} == {a.peer_id}
        assert elapsed < 5
        assert a.counters.published == 500
        assert a.counters.batches_published <= 3  # batching: not 500 messages
        assert b.counters.received == c.counters.received == 500
        assert a.counters.received == 0  # our own items are not echoed back to us
        await a.flush()
        assert a._handed_total == 500


def _refuse_bad(item: bytes, origin: ID) -> bool:
    if item.startswith(b"boom"):
        raise RuntimeError("validator bug")
    return not item.startswith(b"bad")


async def test_what_the_validator_on_b_refuses_never_reaches_c() -> None:
    rejected: list[tuple[ID, str]] = []
    b_config = {"validator": _refuse_bad, "on_reject": lambda p, r: rejected.append((p, r))}
    async with line({}, b_config, {}) as (a, b, c):
        for batch in ([b"good-1"], [b"bad-1", b"good-2"], [b"boom", b"good-3"], [b"good-4"]):
            for item in batch:
                await a.publish(item)
            await a.flush()  # one gossip message per batch
        assert a.counters.batches_published == 4
        got = await collect(c, 2, timeout=5)
        assert [r.item for r in got] == [b"good-1", b"good-4"]
        await trio.sleep(0.3)  # anything more would be here by now
        assert c.counters.received == 2 and c.counters.dropped_invalid == 0
        assert b.counters.received == 2
        assert b.counters.dropped_invalid == 2 and b.counters.validator_errors == 1
        assert [peer for peer, _ in rejected] == [a.peer_id, a.peer_id]
        assert "item 0 of 2 refused" in rejected[0][1]
        # A node never sends what its own validator refuses.
        with pytest.raises(ItemRejected, match="refused our own item"):
            await b.publish(b"bad-2")
        with pytest.raises(ItemRejected, match="raised"):
            await b.publish(b"boom")
        await b.publish(b"good-from-b")
        assert [r.item for r in await collect(c, 1, timeout=5)] == [b"good-from-b"]


async def test_oversize_is_refused_on_publish_and_dropped_on_receipt() -> None:
    limit = 4096
    async with line(*[{"max_message_size": limit}] * 3) as (a, b, c):
        with pytest.raises(ItemTooLarge, match="4090 bytes") as refused:
            await a.publish(b"x" * 4090)  # + 13 bytes of envelope > 4096
        assert refused.value.max_message_size == limit
        largest = max(n for n in range(limit) if envelope_size([n]) <= limit)
        assert envelope_size([largest]) == limit
        await a.publish(b"x" * largest)  # exactly the limit: accepted
        await a.flush()
        assert [len(r.item) for r in await collect(c, 1, timeout=5)] == [largest]
        # Bypass our check with the raw pubsub API: B must drop it, C never sees it.
        await a.pubsub.publish(TOPIC, encode_batch([b"y" * limit]))
        await a.pubsub.publish(TOPIC, encode_batch([b"z"] * (a.max_batch_items + 1)))
        await a.publish(b"after")
        got = await collect(c, 1, timeout=5)
        assert [r.item for r in got] == [b"after"]
        assert b.counters.dropped_oversize == 2
        assert c.counters.dropped_oversize == 0  # B did not forward them
        assert c.counters.received == 2


async def test_malformed_envelopes_are_dropped_and_the_node_keeps_working() -> None:
    async with line({}, {}, {}, connect_first=True) as (a, b, c):
        raw = [
            b"\x00not msgpack",
            b"",
            _pack({"v": 1, "items": [b"a"]}),  # wrong key order: not canonical
            _pack({"items": [b"a"], "v": 2}),
            b"\xc1" * 100,
        ]
        for data in raw:
            await a.pubsub.publish(TOPIC, data)
            await trio.sleep(0.02)  # stay clear of py-libp2p's burst drops
        await a.publish(b"still-working")
        got = await collect(c, 1, timeout=5)
        assert [r.item for r in got] == [b"still-working"]
        assert b.counters.dropped_malformed == len(raw)
        assert c.counters.dropped_malformed == 0  # nothing malformed was forwarded
        assert b.counters.received == c.counters.received == 1
        assert b.running and c.running


async def test_per_origin_rate_limit_drops_a_flood() -> None:
    async with line({}, {"max_batches_per_origin": 2.0}, {}) as (a, b, c):
        for i in range(10):  # a burst above B's bucket of 4, below py-libp2p's queues
            await a.pubsub.publish(TOPIC, encode_batch([b"flood-%d" % i]))
        await trio.sleep(1)
        assert b.counters.dropped_rate >= 4
        assert b.counters.received == 10 - b.counters.dropped_rate
        assert c.counters.received == b.counters.received


async def test_a_relay_with_two_busy_publishers_behind_it_forwards_everything() -> None:
    """Why py-libp2p's spam protection is off: it limits each *forwarding neighbour* to
    10 messages/s, so relay C below, fed 16 messages/s by B from two honest publishers
    (8/s each), would deliver them itself but forward only 10/s to D (measured: D got
    50 of 70 with it on). Topology: A-B, X-B, B-C, C-D."""
    fast = {"flush_interval": 0.125}
    async with swarm([fast, fast, {}, {}, {}], [(0, 2), (1, 2), (2, 3), (3, 4)]) as gossips:
        a, x, _, _, d = gossips

        async def publish(gossip: Gossip, name: bytes) -> None:
            for i in range(16):
                await gossip.publish(b"%s-%d" % (name, i))
                await trio.sleep(0.125)  # one message each, 8 messages/s per publisher

        async with trio.open_nursery() as nursery:
            nursery.start_soon(publish, a, b"a")
            nursery.start_soon(publish, x, b"x")
            got = await collect(d, 32, timeout=8)
        assert a.counters.batches_published == x.counters.batches_published == 16
        assert sorted(r.item for r in got) == sorted(
            [b"a-%d" % i for i in range(16)] + [b"x-%d" % i for i in range(16)]
        )


async def test_publish_waits_while_the_buffer_is_full_and_stops_with_run() -> None:
    async with line({"flush_interval": 0.5, "max_batch_items": 3}, {}) as (a, b):
        start = trio.current_time()
        # 1 sent at once; 3 fill the buffer and the 5th publish waits, so they go at
        # the early slot (+MIN_FLUSH_SPACING); the last 3 fill it again but no one
        # waits: they go at the paced slot, flush_interval after the second send.
        for i in range(7):
            await a.publish(b"%d" % i)
        waited = trio.current_time() - start
        assert MIN_FLUSH_SPACING - 0.01 <= waited < 0.45  # back-pressure, not loss
        await a.flush()
        assert trio.current_time() - start >= MIN_FLUSH_SPACING + 0.5 - 0.02
        assert a.counters.batches_published == 3
        assert len(await collect(b, 7, timeout=5)) == 7
        a_gossip = a
    with pytest.raises(GossipNotRunning, match="has stopped"):
        await a_gossip.publish(b"late")
    assert [r async for r in a_gossip.receive_channel] == []  # closed when run() ended


async def test_measure_delivered_items_per_second_by_batch_size() -> None:
    """Not a pass/fail figure: printed for docs/gossip.md. 200-byte items, A->B->C."""
    async with line({}, {}, {}) as (a, _, c):
        a.flush_interval = 0.05  # 20 messages/s, half of py-libp2p's measured ceiling
        for batch in (1, 10, 100, 300):
            a.max_batch_items = batch
            messages = 20
            total = batch * messages
            sent_before = a.counters.batches_published
            start = time.monotonic()
            async with trio.open_nursery() as nursery:

                async def publisher(total: int = total) -> None:
                    for i in range(total):
                        await a.publish(b"%08d" % i + bytes(192))

                nursery.start_soon(publisher)
                got = await collect(c, total, timeout=8)
            elapsed = time.monotonic() - start
            print(
                f"\nbatch {batch:>3} x 200 B: {len(got)}/{total} items in {elapsed:.2f} s = "
                f"{len(got) / elapsed:,.0f} items/s, "
                f"{a.counters.batches_published - sent_before} messages"
            )
            assert len(got) == total
