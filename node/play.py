"""Plays from the listener's side: what a play costs, whether it counts, what it records.

`chorus play CID --as KEY` (cli/release.py) streams a track through the node and
then writes, signed by the listener key, a ``play`` entry (when enough was played to
count) and bandwidth ``receipt`` entries for the hosts that served its blocks. The
rules it applies are the tally's (ledger/tally.py, docs/economics.md); this module
holds the listener-side arithmetic so the CLI only moves bytes:

- `quote`: price of the next counted play, paid plays so far, ownership and the
  wallet balance, read from a tally (`next_play`), so what the listener is shown
  is exactly what every node will charge.
- `played_ms`: playing is streaming; the share of the track's bytes read stands for
  the share of its duration played, ``duration × bytes_read // size`` (integers),
  capped at the duration. `counts` is the tally's threshold, min(count_after_ms,
  duration).
- `host_bytes` / `hosts_of`: the hosts of a play are the peers whose verified
  Bitswap bytes to this node grew while the track streamed (the daemon's per-peer
  counters, GET /api/chorus/v1/peers, before and after). The counters are per peer,
  not per track: a fetch running at the same time on the same node is counted too.
- `receipt_bodies`: receipts are cumulative per (listener key, host, epoch), like
  Swarm's cheques, and the tally keeps only the largest. The running total is not
  kept in a side file: it is the listener's own latest receipt for that host and
  epoch in the ledger, plus what this play received, so a lost or copied repo
  cannot make a listener acknowledge less (or twice) what it already signed. The
  roots are the tracks acknowledged to that host in that epoch (this one last; at
  most 64, the oldest dropped), all of them published tracks by construction.

Pure functions over tallies, entries and counters: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ledger.econ_kinds import PLAY, RECEIPT
from ledger.entry import SignedEntry
from ledger.tally import Tally, next_play

__all__ = [
    "MAX_HOSTS",
    "MAX_ROOTS",
    "Quote",
    "bytes_for_ms",
    "counts",
    "host_bytes",
    "hosts_of",
    "outcome",
    "play_body",
    "played_ms",
    "quote",
    "receipt_bodies",
    "threshold_ms",
]

#: A play names at most this many hosts (ledger/econ_kinds.py PLAY).
MAX_HOSTS = 16
#: A receipt names at most this many roots (RECEIPT).
MAX_ROOTS = 64


@dataclass(frozen=True, slots=True)
class Quote:
    """What the listener's next counted play of a track costs, and where they stand."""

    price: int  # µc; 0 once owned
    paid: int  # paid plays of this track so far
    plays_to_own: int
    owned: bool
    balance: int  # µc in the wallet

    @property
    def number(self) -> int:
        """Which paid play the next one would be (1-based)."""
        return self.paid + 1

    @property
    def affordable(self) -> bool:
        return self.balance >= self.price

    def to_json(self) -> dict[str, Any]:
        return {
            "price": self.price,
            "paid": self.paid,
            "plays_to_own": self.plays_to_own,
            "owned": self.owned,
            "balance": self.balance,
        }


def quote(tally: Tally, listener: bytes, track: str) -> Quote:
    """The next play of `track` by `listener` at this tally."""
    price, paid, owned = next_play(tally, listener, track)
    return Quote(
        price=price,
        paid=paid,
        plays_to_own=tally.params.plays_to_own,
        owned=owned,
        balance=tally.balances.get(listener, 0),
    )


def threshold_ms(params: Any, duration_ms: int) -> int:
    """How much of a track must be played for the play to count."""
    return min(params.count_after_ms, duration_ms)


def counts(params: Any, duration_ms: int, played: int) -> bool:
    return played >= threshold_ms(params, duration_ms)


def played_ms(duration_ms: int, size: int, bytes_read: int) -> int:
    """The part of the track's duration that `bytes_read` of its `size` bytes stand for."""
    if size <= 0:
        return duration_ms
    return min(duration_ms, duration_ms * bytes_read // size)


def bytes_for_ms(size: int, duration_ms: int, ms: int) -> int:
    """Bytes to read to play `ms` of the track (rounded up; at most `size`)."""
    if ms >= duration_ms:
        return size
    return min(size, -(-size * ms // duration_ms))


def host_bytes(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """Peer -> verified bytes received from it between two counter snapshots (> 0 only).

    A peer missing from `before` started at 0; counters never go down, but a daemon
    restarted in between would make them, and such a peer is left out."""
    grown = {}
    for peer, count in after.items():
        delta = count - before.get(peer, 0)
        if delta > 0:
            grown[peer] = delta
    return grown


def hosts_of(received: Mapping[str, int]) -> list[str]:
    """The play's ``hosts``: the peers that served most, at most MAX_HOSTS, by bytes
    (descending), ties by peer id."""
    ranked = sorted(received.items(), key=lambda item: (-item[1], item[0]))
    return [peer for peer, _ in ranked[:MAX_HOSTS]]


def play_body(track: str, release: bytes, played: int, hosts: list[str]) -> dict[str, Any]:
    """A ``play`` body, checked against the ledger's schema."""
    body = {"track": track, "release": release, "played_ms": played, "hosts": list(hosts)}
    PLAY.check(body)
    return body


def receipt_bodies(
    entries: Iterable[SignedEntry],
    listener: bytes,
    epoch: int,
    received: Mapping[str, int],
    track: str,
) -> list[dict[str, Any]]:
    """One cumulative ``receipt`` body per host in `received`, sorted by host.

    bytes = the listener's largest earlier receipt for (host, epoch) in `entries`
    plus what this play received from the host; roots = that receipt's roots with
    `track` moved to the end (the last MAX_ROOTS).
    """
    wanted = {host for host, count in received.items() if count > 0}
    latest: dict[str, tuple[int, bytes, list[str]]] = {}
    for entry in entries:
        if entry.author != listener or entry.kind != "receipt":
            continue
        body = entry.body
        host = body.get("host")
        if host not in wanted or body.get("epoch") != epoch:
            continue
        candidate = (body["bytes"], entry.id_bytes, list(body["roots"]))
        if host not in latest or candidate[:2] > latest[host][:2]:
            latest[host] = candidate
    bodies = []
    for host in sorted(wanted):
        before, _, roots = latest.get(host, (0, b"", []))
        roots = [root for root in roots if root != track] + [track]
        body = {
            "host": host,
            "epoch": epoch,
            "bytes": before + received[host],
            "roots": roots[-MAX_ROOTS:],
        }
        RECEIPT.check(body)
        bodies.append(body)
    return bodies


def outcome(before: Tally, after: Tally, listener: bytes, track: str) -> str:
    """What the tally made of the play just recorded: "paid", "unpaid" (the wallet
    could not cover it), "free" (owned), or "not_counted"."""
    old = before.plays.get((listener, track))
    new = after.plays.get((listener, track))
    if new is None:
        return "not_counted"
    for name in ("paid", "unpaid", "free"):
        if getattr(new, name) > (0 if old is None else getattr(old, name)):
            return name
    return "not_counted"
