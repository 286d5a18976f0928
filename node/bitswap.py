"""Block exchange, wire-compatible with Bitswap 1.2.0 / 1.1.0 / 1.0.0.

Written on py-libp2p streams rather than `libp2p.bitswap` (see docs/exchange.md for
the measurements behind that): the codec is `protocol/bitswap.py`; this module is
the engine around it.

Streams follow Bitswap's convention: each side sends its messages on a stream it
opened itself and reads the other side's messages from streams the other opened.
One outbound stream per peer carries everything we send it, written by one sender
task that coalesces queued blocks into messages of up to ~1 MiB. The stream is closed
after STREAM_IDLE seconds without a message (Helia resets inbound Bitswap streams
silent for 10 s) and a message whose write fails is sent again on a new stream.

Server side: a peer's wantlist entries are answered at once — want-have with HAVE
or DONT_HAVE (when asked), want-block with the block or DONT_HAVE — and wants for
blocks we lack are remembered, so a block that arrives later is sent on.

Client side: `fetch_many` spreads want-block requests over every connected peer not
known to lack the block, least-loaded first, with a bounded number in flight per
peer and in total. DONT_HAVE, a timeout or a vanished peer moves the request to
another peer. Every received block is hashed against its CID (in a worker thread)
before anything else happens; a mismatch penalises the sender: it is disconnected
and refused for a while, and nothing is stored. Unsolicited blocks are dropped.
Bytes sent and received are counted per peer for hosting pay.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from multiformats import CID

from protocol.bitswap import (
    END_OF_STREAM,
    NEED_DATA,
    PROTOCOLS,
    BitswapError,
    BlockPresence,
    FrameDecoder,
    Message,
    PresenceType,
    WantEntry,
    Wantlist,
    WantType,
    decode_message,
    encode_frame,
    encode_message,
)

from .blockstore import BlockBatch, Blockstore
from .errors import BlockNotFound, StoreCorrupt
from .host import Penalties, disconnect, guarded

__all__ = ["BitswapExchange", "PeerCounters"]

log = logging.getLogger("chorus.bitswap")

#: Blocks requested from one peer and not yet answered.
PER_PEER_IN_FLIGHT = 64
#: Blocks requested from all peers together.
TOTAL_IN_FLIGHT = 192
#: A request unanswered this long moves to another peer (a peer that has delivered
#: before gets longer, scaled from what its deliveries took).
REQUEST_TIMEOUT = 8.0
FIRST_REQUEST_TIMEOUT = 1.5
#: A peer that let a request time out is asked only when nobody else can be, for this long.
SLOW_PEER_SECONDS = 60.0
#: Wants of one peer we remember for blocks we lack (boxo's limit); extras are ignored.
MAX_PEER_WANTS = 1024
#: Give up on a block nobody has for this long.
FETCH_TIMEOUT = 60.0
#: A block asked of a peer may arrive this long after we stopped waiting for it.
ASKED_GRACE = 120.0
#: Blocks that answered a want-have (see `_on_block`) kept this many at most.
SPARE_BLOCKS = 64
#: Close our outbound stream to a peer after this long without a message (Helia resets
#: inbound Bitswap streams idle for 10 s: DEFAULT_MESSAGE_RECEIVE_TIMEOUT).
STREAM_IDLE = 5.0
#: Block bytes queued for one peer before its wants wait (backpressure).
OUTBOX_BYTES = 8 * 1024 * 1024
#: Block bytes read from the store per worker-thread hop when serving wants.
SERVE_BATCH_BYTES = 4 * 1024 * 1024
#: Coalesce queued outgoing blocks up to this many bytes per message.
MESSAGE_TARGET = 1024 * 1024
READ_SIZE = 1 << 20


@dataclass
class PeerCounters:
    """Bytes of blocks exchanged with one peer (the basis of bandwidth receipts)."""

    blocks_sent: int = 0
    bytes_sent: int = 0
    blocks_received: int = 0
    bytes_received: int = 0
    unsolicited: int = 0


@dataclass
class _Outbox:
    """What we will send one peer; its sender task drains it.

    `queued_bytes` counts block bytes waiting; the server stops reading a peer's
    wants while it is over OUTBOX_BYTES, so a greedy peer is slowed, not buffered.
    """

    send: trio.MemorySendChannel[Message]
    receive: trio.MemoryReceiveChannel[Message]
    queued_bytes: int = 0
    room: trio.Event = field(default_factory=trio.Event)


@dataclass
class _Request:
    cid: CID
    peer: ID | None = None
    sent_at: float = 0.0
    lacking: set[ID] = field(default_factory=set)
    first_asked: float = field(default_factory=time.monotonic)


class BitswapExchange:
    def __init__(self, host: IHost, store: Blockstore, penalties: Penalties) -> None:
        self.host = host
        self.store = store
        self.penalties = penalties
        #: Blocks served from outside the blockstore: the ledger's entries are raw
        #: blocks too (their ids are CIDv1 raw sha2-256), so any IPFS peer can fetch
        #: an entry by its id. Called in a worker thread; None when it has no such block.
        self.extra_blocks: Callable[[CID], bytes | None] | None = None
        self.counters: dict[ID, PeerCounters] = {}
        #: Blocks each peer asked us for that we did not have yet.
        self.peer_wants: dict[ID, dict[bytes, WantEntry]] = {}
        self._outboxes: dict[ID, _Outbox] = {}
        self._peer_protocol: dict[ID, TProtocol] = {}
        #: Blocks our sessions wait for: key (CID bytes) -> channels to notify.
        self._waiting: dict[bytes, list[trio.MemorySendChannel[tuple[ID, CID, bytes]]]] = {}
        self._presence_waiters: dict[bytes, list[trio.MemorySendChannel[tuple[ID, bool]]]] = {}
        #: Peers that let a request time out, and when (they are asked last for a while).
        self._slow: dict[ID, float] = {}
        #: Smoothed seconds from want-block to block, per peer that has delivered.
        self._latency: dict[ID, float] = {}
        #: Blocks we asked each peer for (CID bytes -> when), to spot unsolicited ones.
        self._asked: dict[ID, dict[bytes, float]] = {}
        #: Peers that answered DONT_HAVE for a block our sessions wait for.
        self._dont_haves: dict[bytes, set[ID]] = {}
        #: Blocks sent in answer to our want-have (key -> when, data), for the fetch
        #: that follows `someone_has` to take instead of asking again.
        self._spare: dict[bytes, tuple[float, bytes]] = {}
        #: Want-blocks sent to each peer and not yet settled, over every session: a
        #: session picks the least-loaded peer by its own requests first and by these
        #: next, so concurrent one-block fetches (the gateway's read-ahead) spread
        #: over every host instead of all going to the first peer.
        self._load: dict[ID, int] = {}
        self._nursery: trio.Nursery | None = None

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for protocol in PROTOCOLS:
                self.host.set_stream_handler(
                    TProtocol(protocol),
                    guarded(f"bitswap {protocol}", self._handle_stream, self.host, self.penalties),
                )
            task_status.started()
            await trio.sleep_forever()

    def connected_peers(self) -> list[ID]:
        return [p for p in self.host.get_connected_peers() if not self.penalties.is_banned(p)]

    async def dial(self, info: PeerInfo) -> bool:
        if info.peer_id == self.host.get_id() or self.penalties.is_banned(info.peer_id):
            return False
        try:
            with trio.fail_after(10):
                await self.host.connect(info)
            return True
        except Exception as exc:  # noqa: BLE001 - a provider may be unreachable
            log.info("dialing provider %s failed: %s", info.peer_id, exc)
            return False

    def counter(self, peer: ID) -> PeerCounters:
        found = self.counters.get(peer)
        if found is None:
            found = self.counters[peer] = PeerCounters()
        return found

    # -- receiving ----------------------------------------------------------------------

    async def _handle_stream(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        protocol = stream.get_protocol()
        if protocol is not None:
            self._peer_protocol.setdefault(peer, protocol)
        decoder = FrameDecoder()
        while True:
            try:
                data = await stream.read(READ_SIZE)
            except Exception:  # noqa: BLE001 - EOF or reset: the peer is done sending
                return
            if not data:
                return
            try:
                decoder.receive_data(data)
                while True:
                    frame = decoder.next_message()
                    if frame is NEED_DATA or frame is END_OF_STREAM:
                        break
                    # Decoding hashes every block (payload CIDs are rebuilt from the
                    # bytes): do it off the event loop so reading continues meanwhile.
                    message = await trio.to_thread.run_sync(decode_message, frame)
                    await self._on_message(peer, message)
                    if self.penalties.is_banned(peer):
                        return
            except BitswapError as exc:
                self.penalties.penalise(peer, f"malformed bitswap message: {exc}")
                self.forget_peer(peer)
                await disconnect(self.host, peer)
                return

    async def _on_message(self, peer: ID, message: Message) -> None:
        for cid, data in message.blocks:
            await self._on_block(peer, cid, data)
            if self.penalties.is_banned(peer):
                return
        for presence in message.presences:
            key = bytes(presence.cid)
            have = presence.type == PresenceType.HAVE
            if not have and key in self._waiting:
                self._dont_haves.setdefault(key, set()).add(peer)
            for channel in self._presence_waiters.get(key, []):
                with contextlib.suppress(trio.WouldBlock):
                    channel.send_nowait((peer, have))
        if message.wantlist.entries or message.wantlist.full:
            await self._on_wantlist(peer, message.wantlist)

    async def _on_block(self, peer: ID, cid: CID, data: bytes) -> None:
        """A block the decoder already hashed (its CID is rebuilt from its bytes).

        So a peer answering a want with wrong bytes shows up here as a block we never
        asked it for: an honest peer only sends what it was asked for (now or in the
        last minute), so that costs it a penalty and its connection.
        """
        key = bytes(cid)
        counters = self.counter(peer)
        if not self._was_asked(peer, key):
            counters.unsolicited += 1
            self.penalties.penalise(peer, f"sent block {cid}, which it was not asked for")
            self.forget_peer(peer)
            await disconnect(self.host, peer)
            return
        counters.blocks_received += 1
        counters.bytes_received += len(data)
        # Helia and boxo answer a want-have for a small block (< 1 KiB) with the block
        # itself instead of a HAVE: that is a HAVE too, and the block is kept for the
        # fetch that follows.
        waiters = self._presence_waiters.get(key, ())
        if waiters and key not in self._waiting:
            self._keep_spare(key, data)
        for channel in list(waiters):
            with contextlib.suppress(trio.WouldBlock):
                channel.send_nowait((peer, True))
        for channel in list(self._waiting.get(key, ())):
            try:
                channel.send_nowait((peer, cid, data))
            except trio.WouldBlock:
                log.debug("session queue full; block %s will be asked again", cid)
        self.block_arrived(cid, data)

    def _keep_spare(self, key: bytes, data: bytes) -> None:
        now = time.monotonic()
        for old, (when, _) in list(self._spare.items()):
            if now - when > ASKED_GRACE or len(self._spare) >= SPARE_BLOCKS:
                del self._spare[old]
        self._spare[key] = (now, data)

    def _note_asked(self, peer: ID, keys: Iterable[bytes]) -> None:
        asked = self._asked.setdefault(peer, {})
        now = time.monotonic()
        for key in keys:
            asked[key] = now

    def _was_asked(self, peer: ID, key: bytes) -> bool:
        asked = self._asked.get(peer)
        if not asked:
            return False
        when = asked.get(key)
        if when is None:
            return False
        if time.monotonic() - when > ASKED_GRACE:
            del asked[key]
            return False
        return True

    async def _on_wantlist(self, peer: ID, wantlist: Wantlist) -> None:
        """Answer a peer's wants: presences at once, blocks as the outbox has room.

        Store lookups go to a worker thread a few MiB at a time (one hop per batch,
        not per entry). A block that fails its re-hash on read is answered like a
        missing one: corruption here must never reach a peer.
        """
        wants = self.peer_wants.setdefault(peer, {})
        if wantlist.full:
            wants.clear()
        pending = []
        for entry in wantlist.entries:
            if entry.cancel:
                wants.pop(bytes(entry.cid), None)
            else:
                pending.append(entry)
        while pending:
            found, pending = await trio.to_thread.run_sync(self._lookup, pending)
            reply = Message()
            blocks: list[tuple[CID, bytes]] = []
            for entry, result in found:
                key = bytes(entry.cid)
                if entry.want_type == WantType.HAVE:
                    if result:
                        reply.presences.append(BlockPresence(entry.cid, PresenceType.HAVE))
                        continue
                elif isinstance(result, bytes):
                    wants.pop(key, None)
                    blocks.append((entry.cid, result))
                    continue
                if key in wants or len(wants) < MAX_PEER_WANTS:
                    wants[key] = entry
                if entry.send_dont_have:
                    reply.presences.append(BlockPresence(entry.cid, PresenceType.DONT_HAVE))
            if reply.presences:
                self._send(peer, reply)
            for block in blocks:
                await self._send_block(peer, block)

    def _lookup(
        self, entries: list[WantEntry]
    ) -> tuple[list[tuple[WantEntry, bytes | bool]], list[WantEntry]]:
        """In a worker thread: HAVE answers and block bytes for a prefix of `entries`
        worth at most SERVE_BATCH_BYTES; returns (answers, the rest)."""
        answers: list[tuple[WantEntry, bytes | bool]] = []
        loaded = 0
        for index, entry in enumerate(entries):
            if loaded >= SERVE_BATCH_BYTES:
                return answers, entries[index:]
            extra = None
            if self.extra_blocks is not None and not self.store.has(entry.cid):
                extra = self.extra_blocks(entry.cid)
            if entry.want_type == WantType.HAVE:
                answers.append((entry, extra is not None or self.store.has(entry.cid)))
                continue
            if extra is not None:
                loaded += len(extra)
                answers.append((entry, extra))
                continue
            if not self.store.has(entry.cid):
                answers.append((entry, False))
                continue
            try:
                data = self.store.get(entry.cid)
            except (BlockNotFound, StoreCorrupt):
                answers.append((entry, False))
                continue
            loaded += len(data)
            answers.append((entry, data))
        return answers, []

    def forget_peer(self, peer: ID) -> None:
        """Drop everything kept for `peer` (it left, or was penalised): its wants, what
        we asked it, its outbox. Its byte counters stay (they are owed receipts)."""
        self.peer_wants.pop(peer, None)
        self._asked.pop(peer, None)
        self._latency.pop(peer, None)
        outbox = self._outboxes.pop(peer, None)
        if outbox is not None:
            outbox.send.close()
            outbox.room.set()

    def block_arrived(self, cid: CID, data: bytes) -> None:
        """Send a block we just stored to every connected peer that asked for it
        earlier (never dialling a peer just to deliver, never to a banned one)."""
        key = bytes(cid)
        connected = set(self.connected_peers())
        for peer in [p for p in self.peer_wants if p not in connected]:
            self.forget_peer(peer)
        for peer, wants in list(self.peer_wants.items()):
            entry = wants.get(key)
            if entry is None:
                continue
            if entry.want_type == WantType.BLOCK:
                del wants[key]
                self._send(peer, Message(blocks=[(cid, data)]))
            else:
                self._send(peer, Message(presences=[BlockPresence(cid, PresenceType.HAVE)]))

    # -- sending ------------------------------------------------------------------------

    def _outbox(self, peer: ID) -> _Outbox:
        outbox = self._outboxes.get(peer)
        if outbox is None:
            send, receive = trio.open_memory_channel[Message](1024)
            outbox = self._outboxes[peer] = _Outbox(send, receive)
            assert self._nursery is not None, "the exchange is not running"
            self._nursery.start_soon(self._sender, peer, outbox)
        return outbox

    def _send(self, peer: ID, message: Message) -> None:
        if self.penalties.is_banned(peer):
            return
        outbox = self._outbox(peer)
        try:
            outbox.send.send_nowait(message)
        except trio.WouldBlock:
            log.info("outbox to %s is full; dropping a message (the peer will re-ask)", peer)
            return
        outbox.queued_bytes += sum(len(data) for _, data in message.blocks)

    async def _send_block(self, peer: ID, block: tuple[CID, bytes]) -> None:
        """Queue one block for `peer`, waiting while its outbox is over OUTBOX_BYTES."""
        outbox = self._outbox(peer)
        while outbox.queued_bytes > OUTBOX_BYTES and self._outboxes.get(peer) is outbox:
            await outbox.room.wait()
        self._send(peer, Message(blocks=[block]))

    async def _sender(self, peer: ID, outbox: _Outbox) -> None:
        """One task per peer: open a stream, write queued messages, coalescing blocks."""
        stream: INetStream | None = None
        try:
            while True:
                if stream is None:
                    message = await outbox.receive.receive()
                else:
                    # Helia resets an inbound Bitswap stream idle for 10 s: close ours
                    # before that, and open a new one for the next message.
                    with trio.move_on_after(STREAM_IDLE):
                        message = None
                        message = await outbox.receive.receive()
                    if message is None:
                        await self._close_stream(stream)
                        stream = None
                        continue
                merged = message
                size = sum(len(d) for _, d in message.blocks)
                while size < MESSAGE_TARGET:
                    try:
                        more = outbox.receive.receive_nowait()
                    except trio.WouldBlock:
                        break
                    merged = _merge(merged, more)
                    size += sum(len(d) for _, d in more.blocks)
                for attempt in (1, 2):
                    if stream is None:
                        if peer not in self.host.get_connected_peers():
                            return  # never dial a peer just to answer it
                        stream = await self.host.new_stream(peer, [TProtocol(p) for p in PROTOCOLS])
                    protocol = str(stream.get_protocol() or PROTOCOLS[0])
                    try:
                        await stream.write(encode_frame(encode_message(merged, protocol)))
                        break
                    except Exception as exc:  # the stream, not the peer, may be gone
                        # e.g. the peer reset it: send the message again on a new stream
                        if attempt == 2:
                            raise
                        log.debug("stream to %s failed (%s); opening another", peer, exc)
                        await self._close_stream(stream)
                        stream = None
                counters = self.counter(peer)
                counters.blocks_sent += len(merged.blocks)
                counters.bytes_sent += size
                outbox.queued_bytes -= size
                if outbox.queued_bytes <= OUTBOX_BYTES:
                    outbox.room.set()
                    outbox.room = trio.Event()
        except Exception as exc:  # noqa: BLE001 - the peer went away: forget its outbox
            log.debug("sending to %s stopped: %s", peer, exc)
        finally:
            if self._outboxes.get(peer) is outbox:
                del self._outboxes[peer]
            outbox.room.set()  # release servers waiting on a peer that went away
            if stream is not None:
                await self._close_stream(stream)

    @staticmethod
    async def _close_stream(stream: INetStream) -> None:
        with trio.move_on_after(1) as scope, contextlib.suppress(Exception):
            scope.shield = True
            await stream.close()

    # -- fetching -----------------------------------------------------------------------

    async def someone_has(self, cid: CID, timeout: float = 2.0) -> bool:
        """Ask every connected peer for HAVE of `cid`; True as soon as one says so."""
        peers = self.connected_peers()
        if not peers:
            return False
        key = bytes(cid)
        send, receive = trio.open_memory_channel[tuple[ID, bool]](len(peers) * 2)
        self._presence_waiters.setdefault(key, []).append(send)
        try:
            entry = WantEntry(cid, want_type=WantType.HAVE, send_dont_have=True)
            for peer in peers:
                self._note_asked(peer, (key,))
                self._send(peer, Message(wantlist=Wantlist((entry,))))
            answers = 0
            with trio.move_on_after(timeout):
                async for _, have in receive:
                    if have:
                        return True
                    answers += 1
                    if answers >= len(peers):
                        return False
            return False
        finally:
            self._presence_waiters[key].remove(send)
            if not self._presence_waiters[key]:
                del self._presence_waiters[key]

    async def get_block(self, cid: CID) -> bytes:
        """One block from the swarm, verified and stored.

        The session is run to its end (not left at the first yield): only then does
        its batch publish the block to the store.
        """
        found: bytes | None = None
        async for _, data in self.fetch_many([cid]):
            found = data
        if found is None:
            raise BlockNotFound(cid, "no connected peer has it")
        return found

    async def fetch_many(self, cids: Iterable[CID]) -> AsyncIterator[tuple[CID, bytes]]:
        """Fetch blocks from every peer that has them; yield each as it is verified
        and stored. Raises BlockNotFound for a block nobody sends within the timeout."""
        wanted = {bytes(cid): _Request(cid) for cid in cids}
        if not wanted:
            return
        send, receive = trio.open_memory_channel[tuple[ID, CID, bytes]](TOTAL_IN_FLIGHT * 4)
        for key in wanted:
            self._waiting.setdefault(key, []).append(send)
        pending = dict(wanted)
        in_flight: dict[ID, int] = {}
        batch = self.store.batch()
        try:
            for key, request in list(pending.items()):
                spare = self._spare.pop(key, None)
                if spare is not None:  # already here, verified (see `_on_block`)
                    del pending[key]
                    await trio.to_thread.run_sync(batch.put_verified, request.cid, spare[1])
                    yield request.cid, spare[1]
            last_expiry = time.monotonic()
            while pending:
                self._dispatch(pending, in_flight)
                arrived: list[tuple[ID, CID, bytes]] = []
                with trio.move_on_after(0.25):
                    arrived.append(await receive.receive())
                    while len(arrived) < 64:  # take whatever else is already here
                        try:
                            arrived.append(receive.receive_nowait())
                        except trio.WouldBlock:
                            break
                fresh: list[tuple[CID, bytes]] = []
                now = time.monotonic()
                for peer, cid, data in arrived:
                    request = pending.pop(bytes(cid), None)
                    if request is None:
                        continue
                    if request.peer == peer:
                        self._note_delivery(peer, request, now)
                    if request.peer is not None:
                        in_flight[request.peer] = max(0, in_flight.get(request.peer, 1) - 1)
                        self._settle(request.peer)
                    fresh.append((cid, data))
                if fresh:
                    await trio.to_thread.run_sync(_put_all, batch, fresh)
                    for cid, data in fresh:
                        yield cid, data
                now = time.monotonic()
                if not arrived or now - last_expiry >= 0.25:
                    self._expire(pending, in_flight)
                    last_expiry = now
            await trio.to_thread.run_sync(batch.commit)
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(batch.abort)
            raise
        finally:
            for request in pending.values():
                if request.peer is not None:
                    self._settle(request.peer)
            for key in wanted:
                channels = self._waiting.get(key)
                if channels is not None:
                    if send in channels:
                        channels.remove(send)
                    if not channels:
                        del self._waiting[key]
                        self._dont_haves.pop(key, None)
            send.close()
            receive.close()

    def _dispatch(self, pending: dict[bytes, _Request], in_flight: dict[ID, int]) -> None:
        """Ask for every unrequested block from the least-loaded peer not known to lack it."""
        peers = self.connected_peers()
        if not peers:
            return
        total = sum(in_flight.values())
        wants: dict[ID, list[WantEntry]] = {}
        now = time.monotonic()
        for request in pending.values():
            if request.peer is not None:
                continue
            if total >= TOTAL_IN_FLIGHT:
                break
            candidates = [
                p
                for p in peers
                if p not in request.lacking and in_flight.get(p, 0) < PER_PEER_IN_FLIGHT
            ]
            if not candidates:
                if all(p in request.lacking for p in peers):
                    request.lacking.clear()  # ask everyone again later (they may get it)
                continue
            reliable = [p for p in candidates if not self._is_slow(p, now)]
            peer = min(
                reliable or candidates,
                key=lambda p: (in_flight.get(p, 0), self._load.get(p, 0)),
            )
            request.peer = peer
            request.sent_at = now
            in_flight[peer] = in_flight.get(peer, 0) + 1
            self._load[peer] = self._load.get(peer, 0) + 1
            total += 1
            wants.setdefault(peer, []).append(
                WantEntry(request.cid, want_type=WantType.BLOCK, send_dont_have=True)
            )
        for peer, entries in wants.items():
            self._note_asked(peer, (bytes(entry.cid) for entry in entries))
            self._send(peer, Message(wantlist=Wantlist(tuple(entries))))

    def _expire(self, pending: dict[bytes, _Request], in_flight: dict[ID, int]) -> None:
        """Move requests whose peer said DONT_HAVE, went away or timed out."""
        now = time.monotonic()
        connected = set(self.connected_peers())
        for request in pending.values():
            if now - request.first_asked > FETCH_TIMEOUT:
                raise BlockNotFound(request.cid, f"no peer sent it within {FETCH_TIMEOUT:.0f}s")
            peer = request.peer
            if peer is None:
                continue
            gone = peer not in connected
            said_no = peer in self._dont_have(request)
            timed_out = now - request.sent_at > self._timeout_for(peer)
            if timed_out:
                self._slow[peer] = now
            if gone or said_no or timed_out:
                request.lacking.add(peer)
                request.peer = None
                in_flight[peer] = max(0, in_flight.get(peer, 1) - 1)
                self._settle(peer)

    def _settle(self, peer: ID) -> None:
        """One want-block to `peer` is answered, moved elsewhere or given up."""
        left = self._load.get(peer, 0) - 1
        if left > 0:
            self._load[peer] = left
        else:
            self._load.pop(peer, None)

    def _is_slow(self, peer: ID, now: float) -> bool:
        since = self._slow.get(peer)
        if since is None:
            return False
        if now - since > SLOW_PEER_SECONDS:
            del self._slow[peer]
            return False
        return True

    def _timeout_for(self, peer: ID) -> float:
        """How long to wait for `peer`: short for a peer that never delivered (a
        withholding peer costs little), scaled from its record otherwise."""
        latency = self._latency.get(peer)
        if latency is None:
            return FIRST_REQUEST_TIMEOUT
        return min(REQUEST_TIMEOUT, max(FIRST_REQUEST_TIMEOUT, 8 * latency))

    def _note_delivery(self, peer: ID, request: _Request, now: float) -> None:
        took = max(0.0, now - request.sent_at)
        previous = self._latency.get(peer)
        self._latency[peer] = took if previous is None else 0.8 * previous + 0.2 * took
        self._slow.pop(peer, None)

    def _dont_have(self, request: _Request) -> set[ID]:
        return self._dont_haves.get(bytes(request.cid), set())


def _merge(first: Message, second: Message) -> Message:
    """One message carrying both messages' wants, blocks and presences."""
    entries = [*first.wantlist.entries, *second.wantlist.entries]
    full = first.wantlist.full or second.wantlist.full
    wantlist = Wantlist(tuple(entries), full)
    return Message(
        wantlist=wantlist,
        blocks=[*first.blocks, *second.blocks],
        presences=[*first.presences, *second.presences],
    )


def _put_all(batch: BlockBatch, blocks: list[tuple[CID, bytes]]) -> None:
    """Stage already-verified blocks (one worker-thread hop for many blocks)."""
    for cid, data in blocks:
        batch.put_verified(cid, data)
