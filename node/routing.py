"""Content routing: who has a CID. Kademlia provider records on `/ipfs/kad/1.0.0`.

A thin layer over py-libp2p's KadDHT (server mode, no random walk: a co-op swarm is
small and its peers are known). py-libp2p does not add connected peers to the
routing table by itself, so `run` keeps the table filled from the host's
connections. Provider lookups return each peer once (py-libp2p may repeat them).
Every call is bounded in time and failures are logged, never raised: routing is a
hint, the exchange asks connected peers first anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio
from libp2p.abc import IHost
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.peerinfo import PeerInfo
from libp2p.tools.anyio_service import background_trio_service
from multiformats import CID

from protocol.cid import cid_to_text

__all__ = ["Routing"]

log = logging.getLogger("chorus.routing")

QUERY_TIMEOUT = 10.0


class Routing:
    def __init__(self, host: IHost, *, enabled: bool = True) -> None:
        self.host = host
        self.enabled = enabled
        self.dht: KadDHT | None = None
        self.provided = 0
        self.lookups = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if not self.enabled:
            task_status.started()
            return
        self.dht = KadDHT(self.host, DHTMode.SERVER, enable_random_walk=False)
        async with background_trio_service(self.dht):
            task_status.started()
            known: set[object] = set()
            while True:
                for peer in self.host.get_connected_peers():
                    if peer not in known:
                        try:
                            if await self.dht.add_peer(peer, skip_server_mode_check=True):
                                known.add(peer)
                        except Exception as exc:  # noqa: BLE001 - a peer may vanish meanwhile
                            log.debug("adding %s to the routing table: %s", peer, exc)
                known &= set(self.host.get_connected_peers())
                await trio.sleep(1.0)

    async def provide(self, cid: CID) -> bool:
        """Announce that this node has `cid`; False if there is no DHT or it failed."""
        if self.dht is None:
            return False
        try:
            with trio.fail_after(QUERY_TIMEOUT):
                ok = await self.dht.provide(cid_to_text(cid))
        except Exception as exc:  # noqa: BLE001 - routing failures are not fatal
            log.info("providing %s failed: %s", cid, exc)
            return False
        if ok:
            self.provided += 1
        return bool(ok)

    async def find_providers(self, cid: CID, limit: int = 20) -> list[PeerInfo]:
        """Peers that announced `cid` (never this node), each once."""
        if self.dht is None:
            return []
        self.lookups += 1
        try:
            with trio.fail_after(QUERY_TIMEOUT):
                found = await self.dht.find_providers(cid_to_text(cid), limit)
        except Exception as exc:  # noqa: BLE001
            log.info("finding providers of %s failed: %s", cid, exc)
            return []
        unique: dict[object, PeerInfo] = {}
        for info in found:
            if info.peer_id != self.host.get_id():
                unique.setdefault(info.peer_id, info)
        return list(unique.values())

    async def reprovide_loop(
        self, provide_all: Callable[[], Awaitable[int]], interval: float
    ) -> None:
        """Announce every pinned root now and then every `interval` seconds."""
        if not self.enabled:
            return
        await trio.sleep(2.0)  # let bootstrap connections come up first
        while True:
            try:
                count = await provide_all()
                log.info("reprovided %d roots", count)
            except Exception as exc:  # noqa: BLE001 - try again next round
                log.warning("reprovide failed: %s", exc)
            await trio.sleep(interval)
