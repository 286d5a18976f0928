"""The co-op's gossip layer: one gossipsub topic per co-op that carries new ledger entries.

Why it exists: a node that accepts a ledger entry tells the swarm at once, so other
nodes usually hear of it within a second. Gossip is the fast path only. The pull-based
sync protocol (a later issue) is what makes every node eventually hold every entry,
so nothing here may be relied on to deliver everything.

What gossip guarantees in practice (py-libp2p 0.8.1; figures in docs/gossip.md)
-----------------------------------------------------------------------------
* Never forwarded: a batch that is over the size limit, does not decode, holds one
  item the validator rejects, or comes over its originator's rate limit. Every node
  on the path checks before it forwards, and delivers nothing it would not forward.
  A forwarder never changes a batch: the originator signed it (StrictSign), so the
  check is all or nothing per batch.
* Usually delivered: every item, to every subscribed node the mesh reaches, while the
  whole mesh carries fewer than about 40-50 gossip messages a second. That is
  py-libp2p's CPU ceiling (roughly 10 ms of CPU per message per hop): in a line of 3
  processes on 2 cores, 47 single-item messages/s all arrived, ~62/s lost a quarter.
  Batching keeps us far below it: one message carries up to 64 KiB (~300 entries of
  200 bytes), and 500 items cross a 3-node line in about 0.3 s in 2 messages.
* Not guaranteed: delivery to a node that was offline or joins late (py-libp2p only
  replays what its message cache still holds, a few seconds); order between batches
  (py-libp2p handles each incoming message in its own task; items inside a batch keep
  their order); no duplicates (a batch comes once per node within py-libp2p's 120 s
  seen-cache, but the same item may be published again, e.g. after a restart: the
  ledger dedupes by entry id). Messages are dropped *silently* when a per-peer send
  queue (32 RPCs, i.e. 16 messages: py-libp2p adds an IDONTWANT per message) or the
  subscription queue (32 messages) overflows. Items still buffered when `run()` is
  cancelled are not sent. Above the CPU ceiling messages are late, then lost.

Theory of operation
-------------------
* Wire format of one gossip message: msgpack `{"items": [bin, ...], "v": 1}` (keys in
  sorted order, bin types, the only encoding `encode_batch` produces). Decoding is
  strict: anything else, even the same value encoded another way, is a
  `BatchDecodeError`. The items are opaque bytes here; the ledger layer gives them
  meaning through the validator.
* Publishing: `publish(item)` adds to a buffer. The flush task sends the buffer as one
  gossip message as soon as pacing allows: at most one message per `flush_interval`
  (1 s by default). An idle node sends a lone item at once; a busy one batches
  whatever arrived since its last send. A buffer that fills up (`max_message_size`
  bytes or `max_batch_items` items) is sent early, `MIN_FLUSH_SPACING` (0.1 s) after
  the previous message, while `publish` waits (back-pressure, not loss). So one node
  sends 1 to 10 messages a second: the mesh's cost is per message (py-libp2p's
  ceiling is ~40-50 messages a second on 2 cores), and bench/swarm.py measured ten
  busy nodes converging 5x sooner with 1 s than with 0.25 s.
* Receiving: py-libp2p runs `_check_message` (our topic validator) before it delivers
  or forwards a message: size, per-originator rate, envelope, then `validator(item,
  origin)` for every item. Accepted batches reach the delivery task, which splits them
  into `Received(item, origin)` on `receive_channel`. A full channel drops items (and
  counts them) rather than stall py-libp2p, whose own queue would then drop silently.
* Spam protection: py-libp2p's GossipSub has a rate limit (10 messages/s per topic)
  that we switch off. It counts per *forwarding neighbour*, not per originator, and
  runs after local delivery. So a relay with two publishers behind it, each well under
  the limit, gets its forwards throttled, and the next hop loses messages with no
  sign (measured: 2 publishers at 7 msg/s each, the node after the relay got 50 of
  70). In its place: our pacing (1 to 10 msg/s per publisher) and a per-originator token
  bucket in the validator (`max_batches_per_origin`, 20/s with a burst of 40).
  Messages are signed, so the originator cannot be forged.
* Blame: `on_reject(forwarder, reason)` is called for a refusal the forwarder could
  have seen itself (size, envelope, an invalid item: the same checks on every node),
  so an honest relay, which forwards only what it accepted, is never blamed for a
  hostile originator. A batch over its *originator's* rate is the exception: each node
  runs its own bucket and messages reach it with other timing, so a relay may forward
  a batch that we find over the rate; only a forwarder that is the originator is
  blamed for that.
* Message ids: py-libp2p ids a message by (origin, seqno), and its seqno counter starts
  at the wall-clock second of start-up. A node that sent more than one message a
  second and restarts within minutes would reuse ids, which peers drop as already
  seen or as "equivocation". We start the counter at the wall-clock *microsecond*:
  pacing never lets it overtake the clock.
* Validator contract: `validate(item, origin) -> bool` is synchronous and runs inside
  py-libp2p's message handling on the trio thread, once per item of every batch that
  is new to this node. It must be fast (well under a millisecond per item). It must
  answer False only for items that are invalid everywhere, because a False drops the
  whole batch on this path. `origin` is the peer that signed the batch (not the
  neighbour that forwarded it). If the validator raises, the batch is dropped and
  counted in `validator_errors`. The same validator runs on our own items in
  `publish`, so a node never sends what it would refuse.
* One `Gossip` per host: py-libp2p's Pubsub claims the /meshsub protocol handlers.
* Signed peer records: py-libp2p verifies the one attached to every RPC; we verify a
  neighbour's record once and accept the same bytes again without the signature work
  (node/pubsub_records.py: a tenth of a busy node's CPU).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import msgpack
import trio
from libp2p.abc import IHost, ISubscriptionAPI
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service
from multiformats import CID

from protocol.cid import parse_cid
from protocol.errors import ChorusError, DecodeError

from . import pubsub_records

__all__ = [
    "DEFAULT_FLUSH_INTERVAL",
    "DEFAULT_MAX_BATCH_ITEMS",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "MAX_MESSAGE_SIZE_CEILING",
    "MIN_FLUSH_SPACING",
    "BatchDecodeError",
    "BatchTooLarge",
    "Gossip",
    "GossipCounters",
    "GossipError",
    "GossipNotRunning",
    "ItemRejected",
    "ItemTooLarge",
    "Received",
    "Validator",
    "accept_all",
    "decode_batch",
    "encode_batch",
    "envelope_size",
    "ledger_topic",
]

log = logging.getLogger("chorus.gossip")

ENVELOPE_VERSION = 1
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024
"""Largest gossip message (encoded envelope) a node sends or accepts."""
MAX_MESSAGE_SIZE_CEILING = 512 * 1024
"""py-libp2p resets the stream of a peer that sends an RPC frame over 1 MiB; stay well below."""
DEFAULT_MAX_BATCH_ITEMS = 512
"""Caps the validator work one message can cause (~0.1 ms per signature check)."""
DEFAULT_FLUSH_INTERVAL = 1.0
#: A full buffer is sent this soon after the previous message, whatever the interval.
MIN_FLUSH_SPACING = 0.1
"""Seconds between two gossip messages from this node (so at most 4 a second)."""
DEFAULT_RECEIVE_BUFFER = 10_000
"""Items `receive_channel` holds before further items are dropped (and counted)."""
DEFAULT_MAX_BATCHES_PER_ORIGIN = 20.0
"""Batches a second accepted from one originator (twice what a full buffer sends)."""
_OVER_RATE = "over the per-originator rate"

# Every chorus node uses these settings: a batch one node accepts, all accept.
_DEGREE, _DEGREE_LOW, _DEGREE_HIGH = 6, 4, 12
_HEARTBEAT_INTERVAL = 1

Validator = Callable[[bytes, ID], bool]
"""`validate(item, origin) -> bool`: synchronous, fast, True to accept the item."""
RejectHook = Callable[[ID, str], None]
"""`on_reject(forwarder, reason)`: told about every batch dropped on receipt."""


def accept_all(item: bytes, origin: ID) -> bool:
    """The validator until the ledger layer installs its own: every item is accepted."""
    return True


# --- errors ---------------------------------------------------------------------------


class GossipError(ChorusError):
    """Something the gossip layer refused to do."""


class GossipNotRunning(GossipError):
    """`publish` or `flush` on a Gossip whose `run()` has not started or has ended."""


class ItemTooLarge(GossipError, ValueError):
    """An item that cannot fit in one gossip message even alone; nothing was queued."""

    def __init__(self, size: int, max_message_size: int) -> None:
        self.size = size
        self.max_message_size = max_message_size
        super().__init__(
            f"item of {size} bytes does not fit in a gossip message of at most "
            f"{max_message_size} bytes (envelope included)"
        )


class ItemRejected(GossipError, ValueError):
    """The node's own validator refused an item offered to `publish`; nothing was queued."""


class BatchDecodeError(DecodeError):
    """Bytes on the ledger topic that are not a batch envelope in its one valid encoding."""


class BatchTooLarge(BatchDecodeError):
    """A batch over the message size or item count limit."""


# --- the envelope ---------------------------------------------------------------------

# {"items": [...], "v": 1}: fixmap(1) + fixstr "items"(6) + fixstr "v"(2) + fixint 1(1)
_ENVELOPE_FIXED = 10


def _array_header(count: int) -> int:
    return 1 if count <= 15 else 3 if count <= 0xFFFF else 5


def _bin_size(length: int) -> int:
    return length + (2 if length <= 0xFF else 3 if length <= 0xFFFF else 5)


def envelope_size(item_lengths: Iterable[int]) -> int:
    """Exact size of `encode_batch` of items of these lengths, without encoding them."""
    count = 0
    payload = 0
    for length in item_lengths:
        count += 1
        payload += _bin_size(length)
    return _ENVELOPE_FIXED + _array_header(count) + payload


def encode_batch(items: Sequence[bytes]) -> bytes:
    """The envelope of one gossip message: canonical msgpack `{"items": [...], "v": 1}`."""
    if not items:
        raise ValueError("a batch holds at least one item")
    values = [bytes(item) for item in items]
    if not all(values):
        raise ValueError("a batch item is at least one byte long")
    return msgpack.packb({"items": values, "v": ENVELOPE_VERSION}, use_bin_type=True)


def decode_batch(
    data: bytes,
    *,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_items: int = DEFAULT_MAX_BATCH_ITEMS,
) -> list[bytes]:
    """The items of an envelope. Anything but `encode_batch` output is refused.

    Raises `BatchTooLarge` over the limits, `BatchDecodeError` for everything else
    (not msgpack, trailing bytes, other keys or types, version not 1, no items, an
    empty item, a non-canonical encoding). Never raises anything else.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BatchDecodeError(f"a batch is bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_message_size:
        raise BatchTooLarge(f"batch of {len(data)} bytes is over the {max_message_size}-byte limit")
    try:
        value = msgpack.unpackb(
            data, raw=False, strict_map_key=True, use_list=True, max_ext_len=0, timestamp=0
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise BatchDecodeError(
            f"batch of {len(data)} bytes is not msgpack: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(value, dict):
        raise BatchDecodeError(f"batch envelope is a {type(value).__name__}, not a map")
    if set(value) != {"items", "v"}:
        raise BatchDecodeError(f"batch envelope keys are {sorted(map(str, value))}, not items, v")
    version = value["v"]
    if type(version) is not int or version != ENVELOPE_VERSION:
        raise BatchDecodeError(f"batch envelope version {version!r} is not {ENVELOPE_VERSION}")
    items = value["items"]
    if not isinstance(items, list) or not items:
        raise BatchDecodeError("batch envelope has no list of items")
    if len(items) > max_items:
        raise BatchTooLarge(f"batch of {len(items)} items is over the {max_items}-item limit")
    for index, item in enumerate(items):
        if type(item) is not bytes or not item:
            raise BatchDecodeError(f"batch item {index} is not non-empty bytes")
    if encode_batch(items) != data:
        raise BatchDecodeError("batch envelope is not in its canonical encoding")
    return items


def ledger_topic(genesis: CID | str | bytes) -> str:
    """The gossipsub topic of a co-op's ledger: `/chorus/<genesis CIDv1, base32>/ledger/1`.

    Any text or binary form of the genesis CID gives the same topic (a v0 CID is
    written as its v1 equivalent), so two members cannot end up on two topics.
    """
    cid = parse_cid(genesis)
    if cid.version == 0:
        cid = cid.set(version=1)
    return f"/chorus/{cid.encode('base32')}/ledger/1"


# --- counters and received items ------------------------------------------------------


@dataclass
class GossipCounters:
    """What this node's gossip did; monotonic, for /metrics. Drops count batches
    except `dropped_backlog` (items)."""

    published: int = 0  # own items handed to gossipsub
    batches_published: int = 0
    received: int = 0  # items from other nodes put on receive_channel
    batches_received: int = 0
    dropped_invalid: int = 0  # the validator refused an item (or raised)
    dropped_oversize: int = 0  # over max_message_size bytes or max_batch_items items
    dropped_malformed: int = 0  # the envelope did not decode
    dropped_rate: int = 0  # over max_batches_per_origin
    dropped_backlog: int = 0  # items lost because receive_channel was full
    validator_errors: int = 0  # the validator raised (also in dropped_invalid)
    publish_errors: int = 0  # batches py-libp2p raised on; their items are lost
    dropped_refused: int = 0  # batches forwarded by a banned or blocked peer


class Received(NamedTuple):
    """One item from another node, and the peer that published (signed) its batch."""

    item: bytes
    origin: ID


class _OriginRate:
    """Token bucket per originating peer: `rate` batches a second, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float, max_tracked: int = 4096) -> None:
        self.rate = rate
        self.burst = burst
        self.max_tracked = max_tracked
        self._buckets: dict[bytes, tuple[float, float]] = {}

    def allow(self, key: bytes, now: float) -> bool:
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.max_tracked:
            self._forget(now)
        return allowed

    def _forget(self, now: float) -> None:
        """Drop buckets that have refilled (they equal a fresh one), then the oldest."""
        refill = self.burst / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < refill}
        if len(self._buckets) > self.max_tracked // 2:
            newest = sorted(self._buckets.items(), key=lambda kv: kv[1][1])
            self._buckets = dict(newest[-(self.max_tracked // 2) :])


# --- the gossip service ---------------------------------------------------------------


class Gossip:
    """The ledger topic of one co-op on one libp2p host: batched publish, validated receive.

    `run()` owns py-libp2p's Pubsub and GossipSub services and our two tasks (flush,
    delivery); leaving it (cancellation) stops them all. `publish`, `flush` and
    `receive_channel` are for other tasks of the daemon while `run()` is running.
    """

    def __init__(
        self,
        host: IHost,
        topic: str,
        *,
        validator: Validator = accept_all,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_batch_items: int = DEFAULT_MAX_BATCH_ITEMS,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        receive_buffer: int = DEFAULT_RECEIVE_BUFFER,
        max_batches_per_origin: float | None = DEFAULT_MAX_BATCHES_PER_ORIGIN,
        on_reject: RejectHook | None = None,
        refuse_forwarder: Callable[[ID], bool] | None = None,
    ) -> None:
        if not topic:
            raise ValueError("the gossip topic name is empty")
        pubsub_records.install()  # each neighbour's signed record checked once
        if not envelope_size([1]) <= max_message_size <= MAX_MESSAGE_SIZE_CEILING:
            raise ValueError(
                f"max_message_size {max_message_size} is outside "
                f"{envelope_size([1])}..{MAX_MESSAGE_SIZE_CEILING}"
            )
        if max_batch_items < 1:
            raise ValueError(f"max_batch_items {max_batch_items} is below 1")
        if not (math.isfinite(flush_interval) and flush_interval >= 0):
            raise ValueError(f"flush_interval {flush_interval} is not a duration in seconds")
        if receive_buffer < 1:
            raise ValueError(f"receive_buffer {receive_buffer} is below 1")
        if max_batches_per_origin is not None and not max_batches_per_origin > 0:
            raise ValueError(f"max_batches_per_origin {max_batches_per_origin} is not positive")
        self.host = host
        self.topic = topic
        self.validator = validator
        """Replaceable at any time (the ledger layer installs its own)."""
        self.on_reject = on_reject
        #: `refuse_forwarder(peer)`: True to drop, unchecked and unpunished, whatever a
        #: neighbour forwards (the daemon: peers banned or blocked by the operator).
        self.refuse_forwarder = refuse_forwarder
        self.max_message_size = max_message_size
        self.max_batch_items = max_batch_items
        self.flush_interval = flush_interval
        self.counters = GossipCounters()
        self.peer_id: ID = host.get_id()
        self._own_id = self.peer_id.to_bytes()
        self._rate = (
            _OriginRate(max_batches_per_origin, 2 * max_batches_per_origin)
            if max_batches_per_origin is not None
            else None
        )
        self._send, self.receive_channel = trio.open_memory_channel[Received](receive_buffer)

        self._pubsub: Pubsub | None = None
        self._router: GossipSub | None = None
        self._started = False
        self._running = False
        # The buffer of items not yet sent, and the events publishers and flush wait on.
        self._pending: list[bytes] = []
        self._pending_payload = 0  # sum of _bin_size over _pending
        self._has_items = trio.Event()  # set while _pending is non-empty
        self._drained = trio.Event()  # set (and replaced) whenever _pending is taken
        self._full = trio.Event()  # set when publish waits for room in the buffer
        self._progress = trio.Event()  # set (and replaced) after each send
        self._enqueued_total = 0
        self._handed_total = 0

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    @property
    def pubsub(self) -> Pubsub:
        """py-libp2p's Pubsub, for diagnostics and tests (raw publish); only while running."""
        if self._pubsub is None or not self._running:
            raise GossipNotRunning("gossip is not running")
        return self._pubsub

    def mesh_peers(self) -> set[ID]:
        """The peers in this node's gossipsub mesh for the topic (empty if not running)."""
        if self._router is None or not self._running:
            return set()
        return set(self._router.mesh.get(self.topic, ()))

    async def wait_for_peer(self, peer: ID, timeout: float = 5.0) -> None:
        """Wait until `peer` is in our mesh for the topic; `trio.TooSlowError` after `timeout`."""
        await self.pubsub.wait_for_mesh(peer, self.topic, timeout=timeout)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Join the topic and serve until cancelled. Reports started once subscribed.

        Peers connected before `run()` are adopted; later connections are seen by
        py-libp2p itself. Runs once per Gossip object.
        """
        if self._started:
            raise GossipError("Gossip.run() runs once; make a new Gossip to rejoin")
        self._started = True
        router = GossipSub(
            protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11],
            degree=_DEGREE,
            degree_low=_DEGREE_LOW,
            degree_high=_DEGREE_HIGH,
            heartbeat_interval=_HEARTBEAT_INTERVAL,
            spam_protection_enabled=False,  # see "Spam protection" in the module docstring
        )
        # Created here, right before its service starts: a constructed Pubsub already
        # receives "connected" notifications on an unbuffered channel.
        pubsub = Pubsub(self.host, router)
        pubsub.counter = time.time_ns() // 1000  # see "Message ids" in the module docstring
        pubsub.set_topic_validator(self.topic, self._check_message, is_async_validator=False)
        self._pubsub, self._router = pubsub, router
        try:
            async with background_trio_service(pubsub), background_trio_service(router):
                await pubsub.wait_until_ready()
                subscription = await pubsub.subscribe(self.topic)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._deliver, subscription)
                    nursery.start_soon(self._flush_loop, pubsub)
                    for peer in self.host.get_connected_peers():
                        nursery.start_soon(self._adopt, pubsub, peer)
                    self._running = True
                    task_status.started()
        finally:
            self._running = False
            self._send.close()
            self._wake_waiters()
            if self._pending:
                log.info("gossip stopped with %d unsent items", len(self._pending))

    # -- publishing --------------------------------------------------------------------

    async def publish(self, item: bytes) -> None:
        """Queue one item for the next gossip message.

        Raises `ItemTooLarge` if it cannot fit in a message even alone, `ItemRejected`
        if our own validator refuses it, `GossipNotRunning` outside `run()`. Waits
        (back-pressure) while the buffer is full. Returns once queued, not sent.
        """
        await trio.lowlevel.checkpoint()
        self._require_running()
        item = bytes(item)
        if not item:
            raise ItemRejected("an empty item cannot be gossiped")
        if envelope_size([len(item)]) > self.max_message_size:
            raise ItemTooLarge(len(item), self.max_message_size)
        self._check_own(item)
        cost = _bin_size(len(item))
        while not self._fits(cost):
            self._full.set()  # the flush task may send before its slot (see _flush_loop)
            await self._drained.wait()
            self._require_running()
        self._pending.append(item)
        self._pending_payload += cost
        self._enqueued_total += 1
        self._has_items.set()

    async def flush(self) -> None:
        """Wait until every item queued before this call has been handed to gossipsub.

        Pacing still applies: this waits for the next send, it does not force one.
        """
        await trio.lowlevel.checkpoint()
        self._require_running()
        target = self._enqueued_total
        while self._handed_total < target:
            await self._progress.wait()
            self._require_running()

    def _fits(self, cost: int) -> bool:
        count = len(self._pending) + 1
        if count > self.max_batch_items:
            return False
        size = _ENVELOPE_FIXED + _array_header(count) + self._pending_payload + cost
        return size <= self.max_message_size

    def _check_own(self, item: bytes) -> None:
        try:
            valid = self.validator(item, self.peer_id)
        except Exception as exc:
            raise ItemRejected(f"the validator raised on our own item: {exc!r}") from exc
        if not valid:
            raise ItemRejected(f"the validator refused our own item of {len(item)} bytes")

    def _require_running(self) -> None:
        if not self._running:
            state = "has stopped" if self._started else "has not started"
            raise GossipNotRunning(f"gossip on {self.topic} {state}")

    def _wake_waiters(self) -> None:
        self._drained.set()
        self._progress.set()

    async def _flush_loop(self, pubsub: Pubsub) -> None:
        """Send the buffer as one message whenever it has items and pacing allows."""
        next_slot = early_slot = trio.current_time()
        while True:
            await self._has_items.wait()
            # A full buffer goes at its early slot (never more than 1/MIN_FLUSH_SPACING
            # messages a second); anything less waits for the paced slot.
            with trio.move_on_at(next_slot):
                await self._full.wait()
                await trio.sleep_until(early_slot)
            items, self._pending, self._pending_payload = self._pending, [], 0
            self._has_items, self._full = trio.Event(), trio.Event()
            drained, self._drained = self._drained, trio.Event()
            drained.set()
            now = trio.current_time()
            next_slot = now + self.flush_interval
            early_slot = now + min(MIN_FLUSH_SPACING, self.flush_interval)
            try:
                await pubsub.publish(self.topic, encode_batch(items))
            except Exception as exc:  # noqa: BLE001 - boundary: gossip is best effort
                self.counters.publish_errors += 1
                log.warning(
                    "publishing %d items failed: %s: %s", len(items), type(exc).__name__, exc
                )
            else:
                self.counters.published += len(items)
                self.counters.batches_published += 1
            self._handed_total += len(items)
            progress, self._progress = self._progress, trio.Event()
            progress.set()

    # -- receiving ---------------------------------------------------------------------

    def _check_message(self, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        """py-libp2p's topic validator: True to deliver and forward. Never raises."""
        try:
            if forwarder == self.peer_id:
                return True  # our own publish: items were validated in publish()
            if self.refuse_forwarder is not None and self.refuse_forwarder(forwarder):
                self.counters.dropped_refused += 1
                return False  # not the batch's fault: no on_reject, no penalty
            reason = self._refusal(msg)
        except Exception as exc:  # noqa: BLE001 - boundary: py-libp2p must not see it
            self.counters.dropped_invalid += 1
            self.counters.validator_errors += 1
            reason = f"validator raised {type(exc).__name__}: {exc}"
            log.warning("gossip batch from %s: %s", _short(msg.from_id), reason)
        if reason is None:
            return True
        log.debug("dropped gossip batch from %s via %s: %s", _short(msg.from_id), forwarder, reason)
        if reason == _OVER_RATE and forwarder.to_bytes() != msg.from_id:
            return False  # a relay's bucket is not ours: see "Blame" above
        if self.on_reject is not None:
            try:
                self.on_reject(forwarder, reason)
            except Exception as exc:  # noqa: BLE001 - boundary around the daemon's hook
                log.warning("on_reject hook raised %s: %s", type(exc).__name__, exc)
        return False

    def _refusal(self, msg: rpc_pb2.Message) -> str | None:
        """Why a received batch must be dropped, or None to accept it. Counts the drop."""
        data = msg.data
        if len(data) > self.max_message_size:
            self.counters.dropped_oversize += 1
            return f"{len(data)} bytes, over the {self.max_message_size}-byte limit"
        if self._rate is not None and not self._rate.allow(msg.from_id, trio.current_time()):
            self.counters.dropped_rate += 1
            return _OVER_RATE
        try:
            items = decode_batch(
                data, max_message_size=self.max_message_size, max_items=self.max_batch_items
            )
        except BatchTooLarge as exc:
            self.counters.dropped_oversize += 1
            return str(exc)
        except BatchDecodeError as exc:
            self.counters.dropped_malformed += 1
            return str(exc)
        origin = ID(msg.from_id)
        validate = self.validator
        for index, item in enumerate(items):
            try:
                valid = validate(item, origin)
            except Exception as exc:  # noqa: BLE001 - the ledger's bug must not kill gossip
                self.counters.dropped_invalid += 1
                self.counters.validator_errors += 1
                log.warning("validator raised on item %d: %s: %s", index, type(exc).__name__, exc)
                return f"validator raised on item {index}"
            if not valid:
                self.counters.dropped_invalid += 1
                return f"item {index} of {len(items)} refused by the validator"
        return None

    async def _deliver(self, subscription: ISubscriptionAPI) -> None:
        """Split accepted batches from other nodes into items on receive_channel."""
        async for msg in subscription:
            if msg.from_id == self._own_id:
                continue  # py-libp2p echoes our own publishes back
            try:
                items = decode_batch(
                    msg.data, max_message_size=self.max_message_size, max_items=self.max_batch_items
                )
                origin = ID(msg.from_id)
            except Exception as exc:  # noqa: BLE001 - validated already; boundary anyway
                self.counters.dropped_malformed += 1
                log.warning("undecodable batch got past the validator: %s", exc)
                continue
            self.counters.batches_received += 1
            for item in items:
                try:
                    self._send.send_nowait(Received(item, origin))
                except (trio.WouldBlock, trio.BrokenResourceError):
                    # Full, or the reader closed its end: keep draining py-libp2p's
                    # queue anyway, or it would log a warning for every message.
                    self.counters.dropped_backlog += 1
                else:
                    self.counters.received += 1

    async def _adopt(self, pubsub: Pubsub, peer: ID) -> None:
        """Open the pubsub stream to a peer that connected before Pubsub existed."""
        try:
            await pubsub.ensure_peer_stream(peer)
        except Exception as exc:  # noqa: BLE001 - best effort, the peer may be gone
            log.debug("adopting %s into gossip: %s", peer, exc)


def _short(peer_bytes: bytes) -> str:
    try:
        return ID(peer_bytes).to_base58()[-8:]
    except Exception:  # noqa: BLE001 - only for log lines
        return peer_bytes[:8].hex()
