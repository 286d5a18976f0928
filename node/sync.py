"""`/chorus/sync/1.0.0` over libp2p: how a node that missed gossip catches up.

Gossip is fast but may lose entries (a full queue, a node that was offline). Sync is
the slow path that makes the co-op converge: a node asks a peer for its feed heads,
plans what it lacks (`ledger.sync.plan_ranges`), pulls those ranges and hands them to
the ledger's writer, which verifies and stores them like any other entry. Wire
format and planner: ledger/sync.py; this module owns the streams.

When a node syncs (`SyncService.run`):
* with every peer it connects to, soon after the connection (a node back from
  being offline catches up at once);
* with a peer whose gossip held an entry that came before its predecessors (a gap:
  gossip dropped something or delivered out of order), `gap_delay` seconds later
  and only if the gap is still open then: under load gossip's relays reorder
  batches all the time and close most gaps within the second, and a sync started at
  once fetched what was already on its way (measured: 10 nodes at 1,000 entries/s
  fetched ~80,000 entries by sync, 9 in 10 of them already held on arrival);
* every `interval` seconds with a few connected peers picked at random
  (anti-entropy: what both gossip and the triggers missed).

Hostile peers: every reply is decoded strictly; a malformed reply, a reply of the
wrong type or out of the session's rules, or an entry that does not verify or lies
outside the range asked for gets the peer penalised (disconnected and banned) and the
session ends. A reply is checked whole before any of it reaches the ledger: a lying
reply stores nothing. Heads are applied a page at a time (plan, fetch, then ask for
the next page), so a peer that advertises a million feeds costs one page of memory.
A requester that sends garbage, a frame over `MAX_REQUEST_FRAME`, asks for another
co-op, for ranges over `MAX_RANGE`, for ranges before any heads, or for heads pages
it was already given, gets a `SyncError`, a penalty and its connection closed.
Serving is bounded: one frame in, one reply out, at most `MAX_REQUESTS` requests per
stream, `STREAM_TIMEOUT` idle, `MAX_STREAMS_PER_PEER` streams of one peer at a time
(more are answered "busy", without a penalty).
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from ledger.entry import EntryError, entry_id_bytes
from ledger.feed import Verdict
from ledger.sync import (
    END_OF_STREAM,
    MAX_HEADS_PAGE,
    MAX_REQUEST_FRAME,
    NEED_DATA,
    Entries,
    FrameReader,
    Heads,
    HeadsRequest,
    LocalHead,
    RangeRequest,
    RemoteHead,
    SyncError,
    SyncProtocolError,
    encode_message,
    pack_entries,
    plan_ranges,
)
from protocol.errors import ChorusError

from .host import Penalties, disconnect, guarded
from .ledger import NodeLedger, decode_all

__all__ = ["PROTOCOL", "SyncCounters", "SyncFailed", "SyncService"]

PROTOCOL = TProtocol("/chorus/sync/1.0.0")
STREAM_TIMEOUT = 15.0
MAX_REQUESTS = 10_000
#: Feeds one peer may advertise in one session; beyond it the rest waits for the next.
MAX_REMOTE_FEEDS = 1_000_000
#: Range requests per session; what is left is planned again next time.
MAX_RANGES_PER_SESSION = 4096
#: Sync streams one peer may have open to us at once (an honest one has one).
MAX_STREAMS_PER_PEER = 2
READ_SIZE = 65536
#: Seconds after which a session reads its local heads again before the next range.
REPLAN = 0.5
log = logging.getLogger("chorus.sync")


class SyncFailed(ChorusError):
    """A sync session that could not complete (the peer is gone, refused, or hostile)."""


@dataclass
class SyncCounters:
    sessions: int = 0
    failed: int = 0
    served: int = 0
    entries_fetched: int = 0
    entries_stored: int = 0
    entries_served: int = 0
    refused: int = 0
    #: Streams answered "busy": the peer already had MAX_STREAMS_PER_PEER open.
    busy: int = 0
    #: Replies from peers we synced from that broke the rules (the peer penalised).
    hostile_replies: int = 0


@dataclass
class SyncResult:
    peer: str
    feeds: int = 0
    ranges: int = 0
    fetched: int = 0
    stored: int = 0


class _Channel:
    """One stream with a FrameReader: send a message, receive the next one."""

    def __init__(self, stream: INetStream, max_frame: int | None = None) -> None:
        self.stream = stream
        self.reader = FrameReader() if max_frame is None else FrameReader(max_frame)

    async def send(self, message: object) -> None:
        await self.stream.write(encode_message(message))  # type: ignore[arg-type]

    async def receive(self) -> object:
        while True:
            message = self.reader.next_message()
            if message is not NEED_DATA:
                return message
            with trio.fail_after(STREAM_TIMEOUT):
                data = await self.stream.read(READ_SIZE)
            self.reader.receive_data(data or b"")


@dataclass
class SyncService:
    host: IHost
    ledger: NodeLedger
    coop: str
    penalties: Penalties
    interval: float = 30.0
    peers_per_round: int = 3
    gap_delay: float = 1.0
    counters: SyncCounters = field(default_factory=SyncCounters)
    #: Peers to sync with as soon as possible (new connections, operator requests).
    _urgent: set[ID] = field(default_factory=set)
    #: Peers whose gossip showed a gap -> when to look whether it is still open, and
    #: the ledger's count of dropped early entries then (a drop may hide an open gap).
    _gaps: dict[ID, tuple[float, int]] = field(default_factory=dict)
    _wake: trio.Event = field(default_factory=trio.Event)
    _busy: set[ID] = field(default_factory=set)
    _serving: dict[ID, int] = field(default_factory=dict)  # peer -> streams open
    _clock: Callable[[], float] = trio.current_time

    # -- serving -------------------------------------------------------------------------

    def install(self) -> None:
        self.host.set_stream_handler(
            PROTOCOL, guarded("sync", self._serve, self.host, self.penalties)
        )

    async def _serve(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        channel = _Channel(stream, MAX_REQUEST_FRAME)
        if self._serving.get(peer, 0) >= MAX_STREAMS_PER_PEER:
            self.counters.busy += 1
            with trio.move_on_after(2), contextlib.suppress(Exception):
                await channel.send(SyncError(f"busy: {MAX_STREAMS_PER_PEER} streams open"))
                await stream.close()
            return
        self._serving[peer] = self._serving.get(peer, 0) + 1
        try:
            await self._serve_requests(channel, peer)
        finally:
            self._serving[peer] -= 1
            if not self._serving[peer]:
                del self._serving[peer]

    async def _serve_requests(self, channel: _Channel, peer: ID) -> None:
        stream = channel.stream
        self.counters.served += 1
        joined = False  # ranges are served only after a heads request for our co-op
        # Heads pages move forward (ledger/sync.py): where the next one may start.
        next_after: bytes | None = None
        listed = False  # a page said more=False: the listing is complete
        try:
            for _ in range(MAX_REQUESTS):
                try:
                    request = await channel.receive()
                except SyncProtocolError as exc:
                    await self._refuse(channel, peer, f"malformed request: {exc}")
                    return
                if request is END_OF_STREAM:
                    break
                if isinstance(request, HeadsRequest):
                    if request.coop != self.coop:
                        await channel.send(SyncError(f"this node syncs co-op {self.coop}"))
                        self.counters.refused += 1
                        break
                    if joined and (
                        listed
                        or request.after is None
                        or (next_after is not None and request.after < next_after)
                    ):
                        await self._refuse(
                            channel, peer, "heads request for a page already given"
                        )
                        return
                    joined = True
                    page = await self._heads_page(request)
                    listed = not page.more
                    if page.feeds:
                        next_after = page.feeds[-1].author
                    await channel.send(page)
                elif isinstance(request, RangeRequest):
                    if not joined:
                        await self._refuse(channel, peer, "range request before a heads request")
                        return
                    items = await self.ledger.read(
                        self.ledger.store.range, request.author, request.first, request.last
                    )
                    reply = pack_entries(items)
                    self.counters.entries_served += len(reply.entries)
                    await channel.send(reply)
                else:
                    await self._refuse(channel, peer, f"{type(request).__name__} is not a request")
                    return
        except trio.TooSlowError:
            pass
        finally:
            with contextlib.suppress(Exception):  # gone, or closed by _refuse
                await stream.close()

    async def _heads_page(self, request: HeadsRequest) -> Heads:
        rows = await self.ledger.read(
            self.ledger.store.heads, request.after, min(request.limit, MAX_HEADS_PAGE) + 1
        )
        more = len(rows) > request.limit
        feeds = tuple(
            RemoteHead(author, head.seq, head.id, head.frozen_after)
            for author, head in rows[: request.limit]
        )
        return Heads(feeds, more)

    async def _refuse(self, channel: _Channel, peer: ID, reason: str) -> None:
        self.counters.refused += 1
        with trio.move_on_after(2):
            with contextlib.suppress(Exception):  # the peer may be gone; punished anyway
                await channel.send(SyncError(reason[:1024]))
        self._punish(peer, reason)
        await disconnect(self.host, peer)

    def _punish(self, peer: ID, reason: str) -> None:
        log.info("sync: penalising %s: %s", peer, reason)
        self.penalties.penalise(peer, f"sync: {reason}")

    # -- requesting -----------------------------------------------------------------------

    async def sync_with(self, peer: ID) -> SyncResult:
        """One pull session with `peer`; SyncFailed if it cannot complete."""
        result = SyncResult(str(peer))
        self.counters.sessions += 1
        try:
            stream = await self.host.new_stream(peer, [PROTOCOL])
        except Exception as exc:  # noqa: BLE001 - libp2p raises many kinds
            self.counters.failed += 1
            raise SyncFailed(f"cannot open a sync stream to {peer}: {exc}") from None
        channel = _Channel(stream)
        try:
            await self._pull(channel, peer, result)
        except (SyncProtocolError, _Hostile) as exc:
            self.counters.failed += 1
            self.counters.hostile_replies += 1
            self._punish(peer, str(exc))
            await disconnect(self.host, peer)
            raise SyncFailed(f"{peer} broke the sync protocol: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - timeouts, resets: any failure ends it
            self.counters.failed += 1
            raise SyncFailed(f"sync with {peer} failed: {type(exc).__name__}: {exc}") from None
        finally:
            with trio.move_on_after(2):
                with contextlib.suppress(Exception):  # best effort
                    await stream.close()
        return result

    def _local_heads(self, authors: list[bytes]) -> dict[bytes, LocalHead]:
        store = self.ledger.store
        mine: dict[bytes, LocalHead] = {}
        for author in authors:
            head = store.head(author)
            if head is not None:
                mine[author] = LocalHead(head.seq, head.id, head.frozen_after)
        return mine

    async def _pull(self, channel: _Channel, peer: ID, result: SyncResult) -> None:
        """Heads a page at a time; each page's ranges fetched before the next page."""
        after: bytes | None = None
        while result.feeds < MAX_REMOTE_FEEDS and result.ranges < MAX_RANGES_PER_SESSION:
            page = await self._fetch_heads_page(channel, peer, after)
            result.feeds += len(page.feeds)
            mine = await self.ledger.read(self._local_heads, [h.author for h in page.feeds])
            read_at = self._clock()
            behind = [h for h in page.feeds if plan_ranges(mine, [h])]
            for position, remote in enumerate(behind):
                # Planned again with fresh heads (read at most every REPLAN seconds):
                # a page's feeds are fetched one after another, seconds apart under
                # load, and gossip goes on storing meanwhile; what it stored is not
                # asked for twice.
                if self._clock() - read_at > REPLAN:
                    rest = [h.author for h in behind[position:]]
                    mine = await self.ledger.read(self._local_heads, rest)
                    read_at = self._clock()
                for request in plan_ranges(mine, [remote]):
                    if result.ranges >= MAX_RANGES_PER_SESSION:
                        return
                    result.ranges += 1
                    await self._fetch_range(channel, peer, request, result)
            if not page.more or not page.feeds:
                return
            after = page.feeds[-1].author

    async def _fetch_heads_page(self, channel: _Channel, peer: ID, after: bytes | None) -> Heads:
        await channel.send(HeadsRequest(self.coop, after, MAX_HEADS_PAGE))
        reply = await channel.receive()
        if isinstance(reply, SyncError):
            raise SyncFailed(f"{peer} refused: {reply.reason}")
        if not isinstance(reply, Heads):
            raise _Hostile(f"answered a heads request with {_name(reply)}")
        if reply.feeds and after is not None and reply.feeds[0].author <= after:
            raise _Hostile("heads page does not start after the last author asked for")
        return reply

    async def _fetch_range(
        self, channel: _Channel, peer: ID, request: RangeRequest, result: SyncResult
    ) -> None:
        first = request.first
        while first <= request.last:
            await channel.send(RangeRequest(request.author, first, request.last))
            reply = await channel.receive()
            if isinstance(reply, SyncError):
                raise SyncFailed(f"{peer} refused a range: {reply.reason}")
            if not isinstance(reply, Entries):
                raise _Hostile(f"answered a range request with {_name(reply)}")
            if not reply.entries:
                return
            if len(reply.entries) > 2 * (request.last - first + 1) + 2:
                raise _Hostile("sent more entries than the range holds")
            result.fetched += len(reply.entries)
            self.counters.entries_fetched += len(reply.entries)
            # The whole reply is checked before any of it is stored: a lie stores nothing.
            # Entries the log already holds are parsed, not verified again (decode_all).
            held = await self.ledger.read(
                self.ledger.store.held, [entry_id_bytes(item) for item in reply.entries]
            )
            entries = await trio.to_thread.run_sync(decode_all, list(reply.entries), held)
            for entry in entries:
                if isinstance(entry, EntryError):
                    raise _Hostile(f"sent an invalid entry: {entry}")
                if entry.author != request.author or not first <= entry.seq <= request.last:
                    raise _Hostile(
                        f"sent seq {entry.seq} of {entry.author.hex()[:16]}… for a request "
                        f"of seqs {first}..{request.last} of {request.author.hex()[:16]}…"
                    )
            outcomes = await self.ledger.submit(entries, origin=peer)  # type: ignore[arg-type]
            last_seq = first - 1
            for outcome in outcomes:
                if isinstance(outcome, EntryError):
                    if _peer_fault(outcome):
                        raise _Hostile(f"sent an invalid entry: {outcome}")
                    continue
                if outcome.verdict in (Verdict.APPEND, Verdict.FORK):
                    result.stored += 1
                    self.counters.entries_stored += 1
                last_seq = max(last_seq, outcome.entry.seq)
            if not reply.more:
                return
            if last_seq < first:
                raise _Hostile("said more=True but sent nothing usable to continue from")
            first = last_seq + 1

    # -- scheduling ----------------------------------------------------------------------

    def request(self, peer: ID) -> None:
        """Sync with `peer` soon (a new connection, an operator's request)."""
        if peer != self.host.get_id():
            self._urgent.add(peer)
            self._wake.set()

    def request_gap(self, peer: Any) -> None:
        """`peer`'s gossip held an entry before its predecessors: sync with it after
        `gap_delay` if the ledger is still waiting on it then (module docstring)."""
        if isinstance(peer, ID) and peer != self.host.get_id() and peer not in self._gaps:
            dropped = self.ledger.counters.pending_dropped
            self._gaps[peer] = (self._clock() + self.gap_delay, dropped)
            self._wake.set()

    def _gaps_due(self) -> set[ID]:
        """Reported gaps whose delay is over and that are still open (or may be: the
        full pending buffer dropped early entries since, so the ledger cannot tell)."""
        now = self._clock()
        due = {peer: dropped for peer, (when, dropped) in self._gaps.items() if when <= now}
        for peer in due:
            del self._gaps[peer]
        dropped_now = self.ledger.counters.pending_dropped
        return {
            peer
            for peer, dropped in due.items()
            if dropped_now != dropped or self.ledger.waiting_on(peer)
        }

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.install()
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_connections)
            next_round = trio.current_time() + self.interval
            while True:
                with trio.move_on_at(min([next_round, *(w for w, _ in self._gaps.values())])):
                    await self._wake.wait()
                self._wake = trio.Event()
                peers = set(self._urgent) | self._gaps_due()
                self._urgent.clear()
                if trio.current_time() >= next_round:
                    connected = list(self.host.get_connected_peers())
                    random.shuffle(connected)
                    peers.update(connected[: self.peers_per_round])
                    next_round = trio.current_time() + self.interval
                for peer in peers:
                    # Banned or blocked by the operator (node/swarm_blocklist.py):
                    # the gate refuses the dial anyway; do not even try.
                    if peer not in self._busy and not self.penalties.refuses(peer):
                        nursery.start_soon(self._session, peer)
                await trio.sleep(0.2)  # coalesce bursts of triggers

    async def _session(self, peer: ID) -> None:
        self._busy.add(peer)
        try:
            result = await self.sync_with(peer)
            if result.stored:
                log.info("synced %d entries from %s", result.stored, peer)
        except SyncFailed as exc:
            log.debug("%s", exc)
        finally:
            self._busy.discard(peer)

    async def _watch_connections(self) -> None:
        """Request a sync with each newly connected peer (poll: py-libp2p's notifee
        API runs callbacks inside its own tasks, where a slow one stalls dialing)."""
        known: set[ID] = set()
        while True:
            connected = set(self.host.get_connected_peers())
            for peer in connected - known:
                self.request(peer)
            known = connected
            await trio.sleep(0.5)


class _Hostile(Exception):
    """A reply that breaks the session's rules (the peer gets penalised)."""


def _peer_fault(error: EntryError) -> bool:
    """Whether an entry error proves the sender sent garbage (not merely news we
    cannot place yet): bad bytes or signatures, or bodies outside the schema."""
    from ledger.feed import FeedError

    return not isinstance(error, FeedError)


def _name(message: object) -> str:
    return "end of stream" if message is END_OF_STREAM else type(message).__name__
