"""Check a gossip neighbour's signed peer record once, not on every RPC.

py-libp2p 0.8 attaches the sender's signed peer record (an Envelope) to every pubsub
RPC and, on receipt, decodes it, verifies its Ed25519 signature and stores it in the
peerstore, for every RPC. Under ledger traffic that was a tenth of a node's CPU
(py-spy, bench/swarm.py: `maybe_consume_signed_record`), and the envelope a peer
sends is the same bytes each time (py-libp2p caches its own record until its
addresses change).

The sending side has the mirror cost: `env_to_send_in_RPC` lists the host's
addresses (`get_addrs`, multiaddr objects built afresh) on every RPC sent, to see
whether its cached record is still current (4% of a node's GIL time under ledger
traffic). `_CachedEnvelope` asks at most once per `ADDRS_REFRESH` seconds per host,
and only while the host's current record is the one it sent last; a changed
address goes out in a new record within that second.

`install()` wraps the functions where pubsub and gossipsub call them: a record whose
bytes equal the last one accepted from that peer, less than `REFRESH` seconds ago,
is accepted without the work; anything else goes through py-libp2p's own check. So
a new or changed record is always verified, and the peerstore's copy (2 h TTL) is
refreshed every few minutes. The cache is bounded (`MAX_PEERS`, oldest out).
"""

from __future__ import annotations

import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import libp2p.pubsub.gossipsub as gossipsub_module
import libp2p.pubsub.pubsub as pubsub_module
from libp2p.abc import IHost
from libp2p.peer.id import ID

__all__ = ["ADDRS_REFRESH", "MAX_PEERS", "REFRESH", "install"]

REFRESH = 300.0
MAX_PEERS = 4096
ADDRS_REFRESH = 1.0

Consume = Callable[[Any, IHost, ID], bool]
Envelope = Callable[[IHost], tuple[bytes, bool]]


class _CachedConsume:
    """py-libp2p's `maybe_consume_signed_record`, skipping repeats of a known record."""

    def __init__(self, original: Consume, clock: Callable[[], float] = time.monotonic) -> None:
        self.original = original
        self.clock = clock
        self.accepted: OrderedDict[tuple[int, ID], tuple[bytes, float]] = OrderedDict()
        self.skipped = 0

    def __call__(self, msg: Any, host: IHost, peer_id: ID) -> bool:
        if not msg.HasField("senderRecord"):
            return True  # what the original answers for an RPC without a record
        record = bytes(msg.senderRecord)
        key = (id(host), peer_id)
        known = self.accepted.get(key)
        now = self.clock()
        if known is not None and known[0] == record and now - known[1] < REFRESH:
            self.skipped += 1
            return True
        ok = self.original(msg, host, peer_id)
        if ok:
            self.accepted[key] = (record, now)
            self.accepted.move_to_end(key)
            while len(self.accepted) > MAX_PEERS:
                self.accepted.popitem(last=False)
        else:
            self.accepted.pop(key, None)
        return ok


class _CachedEnvelope:
    """py-libp2p's `env_to_send_in_RPC`, asked at most once per ADDRS_REFRESH s a host."""

    def __init__(self, original: Envelope, clock: Callable[[], float] = time.monotonic) -> None:
        self.original = original
        self.clock = clock
        # Weak keys: a host's entry goes with the host (an id() could be reused by
        # the next host made in this process, which would then send our record).
        self.issued: weakref.WeakKeyDictionary[IHost, tuple[object, bytes, float]] = (
            weakref.WeakKeyDictionary()
        )

    def __call__(self, host: IHost) -> tuple[bytes, bool]:
        # Reused only while the peerstore's local record is the very one we sent:
        # identify and others issue new records too (a newer seq), and a peer that saw
        # a newer one refuses an RPC carrying an older one.
        local = host.get_peerstore().get_local_record()
        known = self.issued.get(host)
        now = self.clock()
        if (
            local is not None
            and known is not None
            and known[0] is local
            and now - known[2] < ADDRS_REFRESH
        ):
            return known[1], False
        envelope, created = self.original(host)
        self.issued[host] = (host.get_peerstore().get_local_record(), envelope, now)
        return envelope, created


def install() -> _CachedConsume:
    """Wrap py-libp2p's check and its envelope maker in both modules that call them
    (once per process); returns the check's wrapper (its `skipped` is counted)."""
    sender = pubsub_module.env_to_send_in_RPC
    if not isinstance(sender, _CachedEnvelope):
        envelope = _CachedEnvelope(sender)
        pubsub_module.env_to_send_in_RPC = envelope
        gossipsub_module.env_to_send_in_RPC = envelope
    current = pubsub_module.maybe_consume_signed_record
    if isinstance(current, _CachedConsume):
        return current
    cached = _CachedConsume(current)
    pubsub_module.maybe_consume_signed_record = cached
    gossipsub_module.maybe_consume_signed_record = cached
    return cached
