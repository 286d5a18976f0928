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
from protocol.reader import list_directory, read_file

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
        #: Starts a background task in the daemon's nursery (set once it runs).
        self.spawn: Callable[..., object] | None = None

    async def get(self, cid: CID) -> bytes:
        """One block, fetched from the swarm if it is not here."""
        try:
            return await trio.to_thread.run_sync(self.store.get, cid)
        except BlockNotFound:
            pass
        await self._find_providers(cid)
        if not self.exchange.connected_peers():
            raise BlockNotFound(cid, "not here, and no peer to ask")
        return await self.exchange.get_block(cid)

    async def _find_providers(self, cid: CID) -> None:
        """Connected peers are asked first (by the exchange); if nobody is connected,
        or as a hint, look the CID up in the DHT and dial who provides it."""
        if self.exchange.connected_peers() and await self.exchange.someone_has(cid):
            return
        for info in await self.routing.find_providers(cid, limit=8):
            await self.exchange.dial(info)

    async def ensure_dag(
        self,
        root: CID,
        progress: Progress | None = None,
        on_block: Callable[[CID, bytes], None] | None = None,
    ) -> FetchStats:
        """Make every block under `root` local, fetching missing ones several at a time
        from every peer that has them. `on_block` sees each fetched block as it
        arrives (verified), before the fetch's batch is published to the store."""
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
                await self._find_providers(missing[0])  # never ask for what we hold
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
                if on_block is not None:
                    on_block(cid, data)
                if cid.codec.code != RAW:
                    next_frontier.extend(links_of(cid, data))
            frontier = next_frontier
        return stats

    async def read(
        self, cid: CID, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """A file's bytes, streamed while its DAG is still being fetched.

        The fetch runs as a task of the daemon's nursery (set in `spawn`); the
        reader, in a worker thread since the UnixFS reader is synchronous, takes each
        block from the store or, while it is in flight, waits for it to arrive.
        Blocks are handed over once and dropped, so memory holds only what the fetch
        is ahead of the reader. Closing the stream early cancels the fetch.
        """
        if self.spawn is None:
            await self.ensure_dag(cid)
        arrived: dict[bytes, bytes] = {}
        state = {"event": trio.Event(), "done": False}
        failure: list[BaseException] = []
        scope = trio.CancelScope()

        def on_block(got: CID, data: bytes) -> None:
            arrived[bytes(got)] = data
            state["event"].set()
            state["event"] = trio.Event()

        async def fetch() -> None:
            with scope:
                try:
                    await self.ensure_dag(cid, on_block=on_block)
                except Exception as exc:  # noqa: BLE001 - handed to the reader
                    failure.append(exc)
            state["done"] = True
            state["event"].set()

        async def wait_for(block: CID) -> bytes:
            key = bytes(block)
            while key not in arrived:
                if failure:
                    raise failure[0]
                if state["done"]:
                    return await trio.to_thread.run_sync(self.store.get, block)
                await state["event"].wait()
            return arrived.pop(key)

        token = trio.lowlevel.current_trio_token()

        def get_block(block: CID) -> bytes:
            try:
                return self.store.get(block)
            except BlockNotFound:
                return trio.from_thread.run(wait_for, block, trio_token=token)

        if self.spawn is not None:
            self.spawn(fetch)
        completed = False
        try:
            pieces = read_file(cid, get_block, offset, length)
            while True:
                piece = await trio.to_thread.run_sync(next, pieces, None)
                if piece is None:
                    completed = True
                    return
                yield piece
        finally:
            if not completed:
                scope.cancel()  # the reader went away: stop fetching for it

    async def resolve(self, root: CID, path: str) -> CID:
        """Follow `a/b/c` from the directory `root`, fetching only the directory
        nodes on the way (not the whole tree)."""
        current = root
        for segment in (part for part in path.split("/") if part):
            block = await self.get(current)
            entries = list_directory(current, lambda _cid, data=block: data)
            for entry in entries:
                if entry.name == segment:
                    current = entry.cid
                    break
            else:
                raise FileNotFoundError(f"no link named {segment!r} under {current}")
        return current

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


def _notify(
    on_block: Callable[[CID, bytes], None], changed: trio.Condition
) -> Callable[[CID, bytes], None]:
    """Wrap `on_block` so waiting readers are woken after each block."""

    def wrapped(cid: CID, data: bytes) -> None:
        on_block(cid, data)
        trio.lowlevel.spawn_system_task(_wake, changed)

    return wrapped


async def _wake(changed: trio.Condition) -> None:
    async with changed:
        changed.notify_all()
