"""Gossip <-> ledger: what the daemon does with ledger entries on the co-op topic.

* Validating: py-libp2p asks `validate(item, origin)` before it delivers or forwards
  a batch. An item passes if it decodes as a canonical, well-signed entry whose body
  fits its kind: checks that hold everywhere. Whether it extends a feed depends on
  what each node already holds, so that is judged later by the ledger, not here (a
  refusal here drops the batch for everyone behind us and penalises the sender).
  The decoded entry is kept for the delivery step, so a signature is checked once;
  that cache is capped in entries and in bytes, because a batch whose last item is
  refused is never delivered and its valid items would otherwise stay (a hostile
  peer could pin `_CACHE` entries of 64 KiB each: half a gigabyte).
* Receiving: delivered items are grouped and handed to the ledger writer in one
  submission (one transaction); an entry that arrives before its predecessors makes
  the ledger ask the sync service to pull from that peer.
* Publishing: entries the ledger announces (written here, or fork evidence) are
  queued on gossip, which batches them into few messages.
* `drop_rate` throws away that share of received items before the ledger sees them:
  fault injection for tests that prove sync repairs what gossip loses.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial

import trio
from libp2p.peer.id import ID

from ledger.entry import EntryError, SignedEntry, decode_entry
from ledger.kinds import check_body

from .gossip import Gossip
from .ledger import NodeLedger

__all__ = ["Replication"]

log = logging.getLogger("chorus.replication")
_CACHE = 8192
_CACHE_BYTES = 8 * 1024 * 1024
_GROUP = 2048
_OUTBOX = 100_000


@dataclass
class ReplicationCounters:
    received: int = 0
    dropped_injected: int = 0
    published: int = 0
    refused: int = 0


class Replication:
    def __init__(
        self, gossip: Gossip, ledger: NodeLedger, *, drop_rate: float = 0.0, seed: int | None = None
    ) -> None:
        if not 0.0 <= drop_rate <= 1.0:
            raise ValueError(f"drop_rate {drop_rate} is not a share between 0 and 1")
        self.gossip = gossip
        self.ledger = ledger
        self.drop_rate = drop_rate
        self.counters = ReplicationCounters()
        self._random = random.Random(seed)
        self._decoded: OrderedDict[bytes, SignedEntry] = OrderedDict()
        self._decoded_bytes = 0
        #: Items the ledger stored (so verified) and handed us to publish: gossip's own
        #: check of them in `publish` need not verify each signature a second time.
        self._stored: OrderedDict[bytes, None] = OrderedDict()
        self._outbox_send, self._outbox = trio.open_memory_channel[bytes](_OUTBOX)
        gossip.validator = self.validate
        ledger.on_publish.append(self._queue)

    def validate(self, item: bytes, origin: ID) -> bool:
        if origin == self.gossip.peer_id and item in self._stored:
            del self._stored[item]
            return True  # stored by our ledger a moment ago: decoded and verified there
        try:
            entry = decode_entry(item)
            check_body(entry.kind, entry.body, self.ledger.store.kinds)
        except EntryError as exc:
            self.counters.refused += 1
            log.info("gossip from %s refused: %s", origin, exc)
            return False
        if item not in self._decoded:
            self._decoded[item] = entry
            self._decoded_bytes += len(item)
        while len(self._decoded) > _CACHE or self._decoded_bytes > _CACHE_BYTES:
            evicted, _ = self._decoded.popitem(last=False)
            self._decoded_bytes -= len(evicted)
        return True

    def _queue(self, items: list[bytes]) -> None:
        for item in items:
            try:
                self._outbox_send.send_nowait(item)
            except trio.WouldBlock:  # pragma: no cover - sync repairs what is not sent
                log.warning("gossip outbox full; an entry will travel by sync only")
                continue
            self._stored[item] = None
            while len(self._stored) > _OUTBOX:
                self._stored.popitem(last=False)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._publish_loop)
            nursery.start_soon(self._receive_loop)
            task_status.started()

    async def _publish_loop(self) -> None:
        async for item in self._outbox:
            try:
                await self.gossip.publish(item)
                self.counters.published += 1
            except Exception as exc:  # noqa: BLE001 - gossip is best effort; sync repairs
                log.warning("could not gossip an entry: %s", exc)

    async def _receive_loop(self) -> None:
        channel = self.gossip.receive_channel
        async for first in channel:
            batch = [first]
            while len(batch) < _GROUP:
                try:
                    batch.append(channel.receive_nowait())
                except trio.WouldBlock:
                    break
            await self._submit(batch)

    async def _submit(self, batch: list) -> None:
        by_origin: dict[ID, list[SignedEntry]] = {}
        for item, origin in batch:
            self.counters.received += 1
            if self.drop_rate and self._random.random() < self.drop_rate:
                self.counters.dropped_injected += 1
                continue
            entry = self._decoded.pop(item, None)
            if entry is not None:
                self._decoded_bytes -= len(item)
            else:
                try:
                    entry = decode_entry(item)
                except EntryError:  # pragma: no cover - the validator refused it already
                    continue
            by_origin.setdefault(origin, []).append(entry)
        # Side by side, so the ledger's writer takes them as one group (one commit):
        # in turn, each origin's entries cost a transaction of their own.
        async with trio.open_nursery() as nursery:
            for origin, entries in by_origin.items():
                nursery.start_soon(partial(self.ledger.submit, entries, origin=origin))
