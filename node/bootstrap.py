"""Which peers a node dials at start, and keeping it connected to them.

`bootstrap_peers.json` (format `chorus-bootstrap/1`): `{"format": ..., "peers":
[multiaddr, ...]}`, every multiaddr ending in `/p2p/<peer id>`. The node reads the
one in its data directory if there is one, else the one shipped with chorus (empty:
a fresh node dials nobody it was not told to), plus any `--bootstrap` flags.
Connections are kept with exponential backoff (1 s doubling to 60 s, jittered), so a
bootstrap peer that restarts is found again without flooding it.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterable
from pathlib import Path

import trio
from libp2p.abc import IHost
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from multiaddr import Multiaddr

from .errors import RepoError

__all__ = ["BOOTSTRAP_FILE", "keep_connected", "load_bootstrap_peers", "parse_peer_addr"]

BOOTSTRAP_FILE = "bootstrap_peers.json"
FORMAT = "chorus-bootstrap/1"
SHIPPED = Path(__file__).resolve().parent.parent / BOOTSTRAP_FILE

log = logging.getLogger("chorus.bootstrap")


def parse_peer_addr(text: str) -> PeerInfo:
    """A dialable peer from `/ip4/.../tcp/N/p2p/<id>`; ValueError naming the input."""
    try:
        addr = Multiaddr(text.strip())
    except Exception as exc:  # noqa: BLE001 - multiaddr raises many types
        raise ValueError(f"not a multiaddr: {text!r} ({exc})") from None
    if "/p2p/" not in str(addr):
        raise ValueError(f"{text!r} has no /p2p/<peer id>: chorus dials peers, not addresses")
    try:
        return info_from_p2p_addr(addr)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"cannot dial {text!r}: {exc}") from None


def load_bootstrap_peers(data_dir: Path, extra: Iterable[str] = ()) -> list[PeerInfo]:
    """The peers to dial: the data dir's file (or the shipped one) plus `extra`."""
    path = data_dir / BOOTSTRAP_FILE
    if not path.exists():
        path = SHIPPED
    addrs: list[str] = []
    if path.exists():
        try:
            body = json.loads(path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RepoError(f"cannot read {path}: {exc}") from None
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise RepoError(f"{path} is not a {FORMAT} file")
        peers = body.get("peers")
        if not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
            raise RepoError(f"{path}: 'peers' must be a list of multiaddr strings")
        addrs.extend(peers)
    addrs.extend(extra)
    infos = []
    for text in addrs:
        try:
            infos.append(parse_peer_addr(text))
        except ValueError as exc:
            raise RepoError(f"bootstrap peer in {path}: {exc}") from None
    return infos


async def keep_connected(
    host: IHost, peer: PeerInfo, *, first_delay: float = 1.0, max_delay: float = 60.0
) -> None:
    """Dial `peer` and redial whenever it is not connected, with backoff. Runs forever."""
    delay = first_delay
    while True:
        if peer.peer_id in host.get_connected_peers():
            delay = first_delay
            await trio.sleep(1.0)
            continue
        try:
            with trio.fail_after(10):
                await host.connect(peer)
            log.info("connected to bootstrap peer %s", peer.peer_id)
            delay = first_delay
        except Exception as exc:  # noqa: BLE001 - any failure means: try again later
            log.info("bootstrap peer %s unreachable (%s); retry in %.0fs", peer.peer_id, exc, delay)
            await trio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, max_delay)
