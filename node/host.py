"""The node's libp2p host: identity, transports, stream handler boundaries, penalties.

py-libp2p facts this module is built around (measured, ../shared/notes):
`max_connections_per_peer=1` avoids a 250 ms dial delay per connect; an exception
escaping a stream handler takes the whole host down, so every handler runs inside
`guarded`; leaving `host.run()` does not close connections, so the daemon calls
`host.close()` itself on the way out.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.crypto.keys import KeyPair
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from nacl.signing import SigningKey

if TYPE_CHECKING:
    from .swarm_blocklist import SwarmBlocklist

__all__ = ["Penalties", "build_host", "guarded", "keypair_of"]

log = logging.getLogger("chorus.host")

StreamHandler = Callable[[INetStream], Awaitable[None]]


def keypair_of(key: SigningKey) -> KeyPair:
    """The libp2p key pair of the node's PyNaCl signing key (same 32-byte seed)."""
    private = Ed25519PrivateKey(key)
    return KeyPair(private, private.get_public_key())


def build_host(key: SigningKey) -> IHost:
    """A TCP + Noise + Yamux (mplex fallback) host with identify and ping."""
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    return new_host(
        key_pair=keypair_of(key),
        muxer_preference="YAMUX",
        # One connection per peer (no 250 ms dial delay); no auto-dialing of every
        # peer the peerstore has heard of: chorus keeps its bootstrap peers itself.
        connection_config=ConnectionConfig(
            max_connections_per_peer=1, min_connections=0, low_watermark=0
        ),
    )


@dataclass
class Penalties:
    """Peers that misbehaved, and until when they are refused.

    A peer that sends a block that does not match its CID, or bytes that do not
    decode, is disconnected and refused for `ban_seconds`; `strikes` counts every
    offence for metrics and for the node view.

    `blocklist` is the operator's indefinite block list (node/swarm_blocklist.py):
    kept apart (a block is not an offence and does not expire) but checked in the
    same places, through `refuses`.
    """

    ban_seconds: float = 600.0
    clock: Callable[[], float] = time.monotonic
    banned_until: dict[ID, float] = field(default_factory=dict)
    strikes: dict[ID, int] = field(default_factory=dict)
    reasons: dict[ID, str] = field(default_factory=dict)
    blocklist: SwarmBlocklist | None = None

    def penalise(self, peer: ID, reason: str) -> None:
        self.strikes[peer] = self.strikes.get(peer, 0) + 1
        self.reasons[peer] = reason
        self.banned_until[peer] = self.clock() + self.ban_seconds
        log.warning("penalised %s: %s", peer, reason)

    def is_banned(self, peer: ID) -> bool:
        until = self.banned_until.get(peer)
        if until is None:
            return False
        if self.clock() >= until:
            del self.banned_until[peer]
            return False
        return True

    def refuses(self, peer: ID) -> bool:
        """Whether `peer` is refused right now: banned for an offence, or blocked."""
        if self.blocklist is not None and self.blocklist.is_blocked(peer):
            return True
        return self.is_banned(peer)


async def disconnect(host: IHost, peer: ID) -> None:
    """Close every connection to `peer`; never raises (the peer may be gone already)."""
    try:
        await host.get_network().close_peer(peer)
    except Exception as exc:  # noqa: BLE001 - disconnecting is best effort
        log.debug("closing %s: %s", peer, exc)


def guarded(
    name: str, handler: StreamHandler, host: IHost, penalties: Penalties | None = None
) -> StreamHandler:
    """Wrap a stream handler so nothing it raises can reach the host.

    Banned and blocked peers are refused before the handler runs. Any exception is
    logged with the protocol name and the peer, and the stream is reset.
    """

    async def boundary(stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        if penalties is not None and penalties.refuses(peer):
            await _reset(stream)
            await disconnect(host, peer)
            return
        try:
            await handler(stream)
        except Exception as exc:  # noqa: BLE001 - this is the error boundary
            log.info("%s handler for %s ended: %s: %s", name, peer, type(exc).__name__, exc)
            await _reset(stream)

    return boundary


async def _reset(stream: INetStream) -> None:
    with contextlib.suppress(Exception):  # the stream may already be gone
        await stream.reset()
