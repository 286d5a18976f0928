"""`chorus daemon`: one tree of trio nurseries that is the running node.

    Daemon.run
    ├── host (libp2p: TCP, Noise, Yamux/mplex, identify, ping)
    ├── exchange (Bitswap 1.2/1.1/1.0 server and client sessions)
    ├── routing (Kademlia provider records, reprovide loop)
    ├── ledger (the single writer of the ledger database, tree heads)
    ├── gossip (the co-op's ledger topic, when the node belongs to a co-op)
    ├── replication (gossip <-> ledger) and sync (/chorus/sync/1.0.0 pulls)
    ├── bootstrap keepers (one per bootstrap peer, with backoff)
    └── HTTP (hypercorn on trio): the local listener (RPC, gateway, chorus API)
        and, optionally, a public gateway-only listener

Shutting down is leaving that tree: SIGINT/SIGTERM cancel it, every connection is
closed, the API file is removed and the repo (stores, lock) is closed. The daemon
owns the repo for its whole life; CLI commands reach it through the HTTP API,
whose address it writes to `<data dir>/api` once it is listening.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import trio
from libp2p.abc import IHost
from libp2p.perf.perf_service import PerfService
from multiaddr import Multiaddr
from multiformats import CID

from .bitswap import BitswapExchange
from .blockservice import BlockService
from .bootstrap import keep_connected, load_bootstrap_peers
from .coop import CoopMismatch, load_genesis
from .gossip import DEFAULT_FLUSH_INTERVAL, Gossip, ledger_topic
from .host import Penalties, build_host
from .http_app import serve_http
from .ledger import NodeLedger
from .play_sessions import PlaySessions
from .replication import Replication
from .repo import Repo
from .routing import Routing
from .swarm_blocklist import SwarmBlocklist, install_gate
from .sync import SyncService
from .tally_cache import TallyCache

__all__ = ["API_FILE", "Daemon", "DaemonOptions", "read_api_address"]

API_FILE = "api"
log = logging.getLogger("chorus.daemon")


@dataclass
class DaemonOptions:
    listen: Sequence[str] = ("/ip4/0.0.0.0/tcp/4001",)
    http: str = "127.0.0.1:8080"
    gateway: str | None = None
    bootstrap: Sequence[str] = ()
    dht: bool = True
    reprovide_interval: float = 12 * 3600.0
    #: The co-op's genesis CID: names the gossip topic the ledger travels on.
    coop: str | None = None
    #: Seconds between signed tree heads of the node's log (when it grew); 0 = never.
    tree_head_interval: float = 60.0
    #: Seconds between anti-entropy sync rounds with random connected peers.
    sync_interval: float = 30.0
    #: Fault injection for tests: the share of received gossip items thrown away.
    gossip_drop: float = 0.0
    #: Seconds between this node's gossip messages when busy (node/gossip.py pacing).
    gossip_interval: float = DEFAULT_FLUSH_INTERVAL
    extra: dict[str, object] = field(default_factory=dict)


def read_api_address(data_dir: Path) -> str | None:
    """The running daemon's API base URL, from the file it writes, or None."""
    try:
        text = (data_dir / API_FILE).read_text("utf-8").strip()
    except OSError:
        return None
    return text or None


class Daemon:
    """A running node. Construct with an open repo, then `await run()`."""

    def __init__(self, repo: Repo, options: DaemonOptions) -> None:
        self.repo = repo
        self.options = options
        #: The genesis of the co-op the repo joined (node/coop.py), or None: the rules
        #: of every tally the node serves. A config naming a co-op whose genesis file
        #: is missing or another's refuses to start (GenesisFileError), as does
        #: `--coop` naming another co-op than the repo's: gossip and tallies would
        #: then follow different co-ops.
        self.genesis = load_genesis(repo.path)
        if self.genesis is not None:
            if options.coop is None:
                options.coop = self.genesis.id_text
            elif options.coop != self.genesis.id_text:
                raise CoopMismatch(
                    f"--coop {options.coop} is not the co-op this repo joined "
                    f"({self.genesis.id_text}, in {repo.path / 'genesis.bin'})"
                )
        #: The operator's peer block list (`chorus swarm block`, node/swarm_blocklist.py):
        #: runtime state only, empty at every start (that module says why).
        self.blocklist = SwarmBlocklist()
        self.penalties = Penalties(blocklist=self.blocklist)
        self.host: IHost = build_host(repo.identity)
        install_gate(self.host, self.blocklist)
        self.exchange = BitswapExchange(self.host, repo.blockstore, self.penalties)
        self.exchange.extra_blocks = repo.ledger.block  # entries are raw blocks too
        self.routing = Routing(self.host, enabled=options.dht)
        self.blocks = BlockService(repo.blockstore, self.exchange, self.routing)
        #: The libp2p perf protocol (/perf/1.0.0): raw stream throughput between two
        #: nodes, the ceiling the exchange is measured against (bench/fetch.py).
        self.perf = PerfService(self.host, {"write_block_size": 256 * 1024})
        #: The ledger's single writer in front of repo.ledger (node/ledger.py).
        self.ledger = NodeLedger(
            repo.ledger, repo.identity, tree_head_interval=options.tree_head_interval
        )
        #: Listening sessions the web app reports (POST /plays/progress, node/web_api.py).
        self.play_sessions = PlaySessions()
        #: The co-op's figures at the log's size, computed ahead once the log is quiet
        #: (node/tally_cache.py); what /tally, wallets and proposals answer from.
        self.tally_cache = TallyCache()
        self.gossip: Gossip | None = None
        self.replication: Replication | None = None
        self.sync: SyncService | None = None
        if options.coop:
            self.gossip = Gossip(
                self.host,
                ledger_topic(options.coop),
                on_reject=lambda peer, reason: self.penalties.penalise(peer, reason),
                refuse_forwarder=self.penalties.refuses,
                flush_interval=options.gossip_interval,
            )
            self.replication = Replication(self.gossip, self.ledger, drop_rate=options.gossip_drop)
            self.sync = SyncService(
                self.host, self.ledger, options.coop, self.penalties, interval=options.sync_interval
            )
            self.ledger.on_gap.append(self.sync.request_gap)
        self.api_url: str | None = None
        self.gateway_url: str | None = None
        self.listen_addrs: list[str] = []
        self._cancel: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None

    @property
    def peer_id(self) -> str:
        return str(self.host.get_id())

    def announce(self, cids: Sequence[CID]) -> None:
        """Provide `cids` on the DHT in the background (after an add or a pin)."""
        if self._nursery is None:
            return

        async def provide_all() -> None:
            for cid in cids:
                await self.routing.provide(cid)

        self._nursery.start_soon(provide_all)

    def stop(self) -> None:
        """Ask the daemon to shut down (from the API or a test)."""
        if self._cancel is not None:
            self._cancel.cancel()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        peers = load_bootstrap_peers(self.repo.path, self.options.bootstrap)
        addrs = [Multiaddr(text) for text in self.options.listen]
        api_file = self.repo.path / API_FILE
        with trio.CancelScope() as cancel:
            self._cancel = cancel
            try:
                async with self.host.run(listen_addrs=addrs), trio.open_nursery() as nursery:
                    self._nursery = nursery
                    self.blocks.spawn = nursery.start_soon
                    self.listen_addrs = [str(a) for a in self.host.get_addrs()]
                    await self.perf.start()
                    await nursery.start(self.exchange.run)
                    await nursery.start(self.routing.run)
                    await nursery.start(self.ledger.run)
                    if self.gossip is not None:
                        assert self.replication is not None and self.sync is not None
                        await nursery.start(self.gossip.run)
                        await nursery.start(self.replication.run)
                        await nursery.start(self.sync.run)
                    if self.genesis is not None:
                        nursery.start_soon(
                            self.tally_cache.keep_warm, self.repo.ledger, self.genesis
                        )
                    nursery.start_soon(
                        self.routing.reprovide_loop,
                        self.blocks.provide_roots,
                        self.options.reprovide_interval,
                    )
                    for peer in peers:
                        if peer.peer_id != self.host.get_id():
                            nursery.start_soon(keep_connected, self.host, peer)
                    self.api_url = await nursery.start(serve_http, self, self.options.http)
                    if self.options.gateway:
                        self.gateway_url = await nursery.start(
                            partial(serve_http, public=True), self, self.options.gateway
                        )
                    api_file.write_text(self.api_url + "\n", "utf-8")
                    log.info("daemon %s ready; API at %s", self.peer_id, self.api_url)
                    task_status.started()
                    await trio.sleep_forever()
            finally:
                api_file.unlink(missing_ok=True)
                with trio.CancelScope(shield=True), trio.move_on_after(10):
                    await self.host.close()


async def run_until_signalled(
    daemon: Daemon, on_ready: Callable[[Daemon], None] | None = None
) -> None:
    """Run `daemon` until SIGINT/SIGTERM (or an API shutdown), then return cleanly."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def run_then_stop_watching(
                task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
            ) -> None:
                await daemon.run(task_status=task_status)
                nursery.cancel_scope.cancel()

            async def watch_signals() -> None:
                async for _ in signals:
                    daemon.stop()
                    return

            await nursery.start(run_then_stop_watching)
            nursery.start_soon(watch_signals)
            if on_ready is not None:
                on_ready(daemon)
