"""Blocks from wherever they are: the local store first, then the swarm.

The HTTP API and the CLI read through this, never through Bitswap directly (boxo's
blockservice seam): a block missing locally is fetched by the exchange, which
verifies it against its CID and stores it before handing it over. Blockstore calls
run in worker threads (`trio.to_thread`), because SQLite blocks.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import trio
from multiformats import CID

from protocol.cid import RAW
from protocol.dag import links_of
from protocol.reader import read_file

from .bitswap import BitswapExchange
from .blockstore import Blockstore
from .errors import BlockNotFound
from .routing import Routing

__all__ = ["BlockService", "FetchStats"]

log = logging.getLogger("chorus.blockservice")

Progress = Callable[[int], None]


class FetchStats:
    """What `ensure_dag` did: blocks already local, blocks fetched, bytes fetched."""

    def __init__(self) -> None:
        self.local = 0
        self.fetched = 0
        self.bytes = 0


class BlockService:
    def __init__(self, store: Blockstore, exchange: BitswapExchange, routing: Routing) -> None:
        self.store = store
        self.exchange = exchange
        self.routing = routing

    async def get(self, cid: CID) -> bytes:
        """One block, fetched from the swarm if it is not here."""
        try:
            return await trio.to_thread.run_sync(self.store.get, cid)
        except BlockNotFound:
            pass
        await self._find_providers(cid)
        return await self.exchange.get_block(cid)

    async def _find_providers(self, cid: CID) -> None:
        """Connected peers are asked first (by the exchange); if nobody is connected,
        or as a hint, look the CID up in the DHT and dial who provides it."""
        if self.exchange.connected_peers() and await self.exchange.someone_has(cid):
            return
        for info in await self.routing.find_providers(cid, limit=8):
            await self.exchange.dial(info)

    async def ensure_dag(self, root: CID, progress: Progress | None = None) -> FetchStats:
        """Make every block under `root` local, fetching missing ones several at a time
        from every peer that has them."""
        stats = FetchStats()
        frontier = [root]
        seen: set[bytes] = set()
        first = True
        while frontier:
            level: list[CID] = []
            for cid in frontier:
                key = bytes(cid)
                if key not in seen:
                    seen.add(key)
                    level.append(cid)
            present = await trio.to_thread.run_sync(_which_present, self.store, level)
            missing = [cid for cid, here in zip(level, present, strict=True) if not here]
            if missing and first:
                await self._find_providers(root)
            first = False
            next_frontier: list[CID] = []
            for cid, here in zip(level, present, strict=True):
                if here and cid.codec.code != RAW:
                    data = await trio.to_thread.run_sync(self.store.get, cid)
                    stats.local += 1
                    next_frontier.extend(links_of(cid, data))
                elif here:
                    stats.local += 1
            async for cid, data in self.exchange.fetch_many(missing):
                stats.fetched += 1
                stats.bytes += len(data)
                if progress is not None:
                    progress(len(data))
                if cid.codec.code != RAW:
                    next_frontier.extend(links_of(cid, data))
            frontier = next_frontier
        return stats

    async def read(
        self, cid: CID, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """A file's bytes, the DAG fetched first if needed; read in worker threads."""
        await self.ensure_dag(cid)
        pieces = read_file(cid, self.store.get, offset, length)
        while True:
            piece = await trio.to_thread.run_sync(next, pieces, None)
            if piece is None:
                return
            yield piece

    async def provide_roots(self) -> int:
        """Announce every recursively pinned root on the DHT; return how many."""
        pins = await trio.to_thread.run_sync(self.store.pin_ls, "recursive")
        count = 0
        for pin in pins:
            if await self.routing.provide(pin.cid):
                count += 1
        return count


def _which_present(store: Blockstore, cids: list[CID]) -> list[bool]:
    return [store.has(cid) for cid in cids]
