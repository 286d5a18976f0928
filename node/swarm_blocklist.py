"""The operator's peer block list (`chorus swarm block`): peers this node will not talk to.

Why it exists: an operator sometimes has to cut a peer off *now* and for as long as
they say — a peer that floods or misbehaves in ways the automatic penalties do not
see, a partition drill (tests/node/test_partition.py), a node of another co-op that
keeps dialling. Kubo does it with `ipfs swarm filters` (by address) and go-libp2p
with a ConnectionGater (by peer). py-libp2p 0.8.1 gates by IP address only
(`ConnectionGate`: allow and deny lists of networks), which is useless against a peer
that shares an address with others (every test node is 127.0.0.1), so the gate here
is by peer ID.

How it is enforced (`install_gate`): every connection py-libp2p makes, in either
direction, goes through two methods of its Swarm: `dial_peer` (each outbound dial:
`host.connect`, `new_stream` to an unconnected peer, the bootstrap keepers, sync,
Bitswap, the DHT) and `add_conn` (each connection, inbound or outbound, once the
Noise handshake has authenticated the remote peer ID and the muxer is up, before
any stream can be opened on it). The gate wraps both on the node's Swarm object: a
dial to a blocked peer fails at once with a SwarmException naming the block, and a
connection from one is closed before it is registered — so no protocol, gossipsub
included, ever sees it. Blocking a peer that is connected closes its connections
(`block_and_disconnect`). The rest of the node checks the list too, in the places it
checks the temporary penalty bans (node/host.py `Penalties.refuses`): stream
handlers, sync's choice of peers, gossip from a forwarder.

An operator block is not a penalty: penalties (node/host.py) are automatic and
expire (10 minutes); a block is manual and lasts until `chorus swarm unblock` or the
daemon stops. It is runtime state, on purpose not persisted: a block is an incident
response, and a forgotten one that silently survived restarts would keep a node cut
off from the co-op whose ledger only converges through connections. Peers a node
must never reach belong in its bootstrap file and firewall, not here.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from libp2p.abc import IHost
from libp2p.network.exceptions import SwarmException
from libp2p.peer.id import ID

from protocol.errors import ChorusError

__all__ = [
    "MAX_BLOCKED",
    "BlockedPeer",
    "BlocklistFull",
    "SwarmBlocklist",
    "block_and_disconnect",
    "install_gate",
    "unblock",
]

#: Peers one node may block at once: far more than an operator types, small enough
#: that the list (checked on every dial and connection) stays trivially cheap.
MAX_BLOCKED = 4096

log = logging.getLogger("chorus.blocklist")


class BlocklistFull(ChorusError):
    """Blocking these peers would put the list over its capacity; nothing changed."""


@dataclass(frozen=True)
class BlockedPeer:
    peer: ID
    #: When it was blocked, in Unix milliseconds (for the operator, not for any rule).
    since_ms: int


@dataclass
class SwarmBlocklist:
    """The blocked peers, and how often the gate refused them since the daemon started."""

    capacity: int = MAX_BLOCKED
    clock: Callable[[], float] = time.time
    _peers: dict[ID, BlockedPeer] = field(default_factory=dict)
    refused_dials: int = 0
    refused_connections: int = 0

    def is_blocked(self, peer: ID) -> bool:
        return peer in self._peers

    def __len__(self) -> int:
        return len(self._peers)

    def entries(self) -> list[BlockedPeer]:
        """Every blocked peer, oldest block first (then by peer ID)."""
        return sorted(self._peers.values(), key=lambda b: (b.since_ms, str(b.peer)))

    def block(self, peers: Iterable[ID]) -> list[ID]:
        """Block `peers`; the ones that were not blocked already, in the order given.

        All or nothing: BlocklistFull (and no change) if they would not all fit.
        """
        new = list(dict.fromkeys(p for p in peers if p not in self._peers))
        if len(self._peers) + len(new) > self.capacity:
            raise BlocklistFull(
                f"blocking {len(new)} more peers would make {len(self._peers) + len(new)}, "
                f"over the limit of {self.capacity}; unblock some first"
            )
        since = int(self.clock() * 1000)
        for peer in new:
            self._peers[peer] = BlockedPeer(peer, since)
            log.info("operator blocked peer %s", peer)
        return new

    def unblock(self, peers: Iterable[ID]) -> list[ID]:
        """Unblock `peers`; the ones that were blocked, in the order given."""
        removed = []
        for peer in dict.fromkeys(peers):
            if self._peers.pop(peer, None) is not None:
                removed.append(peer)
                log.info("operator unblocked peer %s", peer)
        return removed


def install_gate(host: IHost, blocklist: SwarmBlocklist) -> None:
    """Refuse blocked peers at the host's Swarm: outbound dials and every new connection.

    Wraps the Swarm object's `dial_peer` and `add_conn` (instance attributes, so the
    Swarm's own calls `self.dial_peer(...)`/`self.add_conn(...)` go through them too);
    see the module docstring for why these two.
    """
    network: Any = host.get_network()
    dial_peer = network.dial_peer
    add_conn = network.add_conn

    async def gated_dial_peer(peer_id: ID) -> Any:
        if blocklist.is_blocked(peer_id):
            blocklist.refused_dials += 1
            raise SwarmException(
                f"peer {peer_id} is blocked by this node's operator (chorus swarm unblock)"
            )
        return await dial_peer(peer_id)

    async def gated_add_conn(muxed_conn: Any, direction: str = "unknown") -> Any:
        peer_id = muxed_conn.peer_id
        if blocklist.is_blocked(peer_id):
            blocklist.refused_connections += 1
            log.info("refused a %s connection with blocked peer %s", direction, peer_id)
            with contextlib.suppress(Exception):  # it may be closing already
                await muxed_conn.close()
            raise SwarmException(f"peer {peer_id} is blocked by this node's operator")
        return await add_conn(muxed_conn, direction)

    network.dial_peer = gated_dial_peer
    network.add_conn = gated_add_conn


async def block_and_disconnect(
    host: IHost, blocklist: SwarmBlocklist, peers: Iterable[ID]
) -> tuple[list[ID], list[ID]]:
    """Block `peers` and close every connection to them at once.

    Returns (newly blocked, disconnected). Connections are closed even for peers that
    were blocked already (a connection that raced the block is closed now).
    BlocklistFull before anything changes.
    """
    peers = list(dict.fromkeys(peers))
    added = blocklist.block(peers)
    network = host.get_network()
    disconnected = []
    for peer in peers:
        if network.get_connections(peer):
            try:
                await network.close_peer(peer)
            except Exception as exc:  # noqa: BLE001 - best effort: it may be gone already
                log.debug("closing %s: %s", peer, exc)
            disconnected.append(peer)
    return added, disconnected


def unblock(host: IHost, blocklist: SwarmBlocklist, peers: Iterable[ID]) -> list[ID]:
    """Unblock `peers` and let them be dialled again at once.

    py-libp2p remembers peers whose dials all failed for a minute (its negative
    cache); a dial refused by the gate never reaches it, but a peer that was
    unreachable for other reasons would otherwise stay undialable after its unblock.
    """
    removed = blocklist.unblock(peers)
    network: Any = host.get_network()
    for peer in removed:
        with contextlib.suppress(Exception):  # not every INetwork has it
            network.unblock_peer(peer)
    return removed
