"""Prometheus `/metrics`: what the node holds, exchanges and serves, as numbers.

`GET /metrics` (local listener only) answers in the Prometheus text exposition
format 0.0.4, written here by hand (`Exposition`): a few dozen series do not need a
client library. Counters come from the daemon's own bookkeeping — the exchange's
per-peer counters, the penalties, the routing and gossip counters, the blockstore's
totals — read when scraped, so there is no second copy to keep in step. The one
thing this module counts itself is HTTP traffic: `RequestMetrics`, an ASGI
middleware outermost in `build_app`, times every request (including the 401/403/413
refusals) per route family and status class. Its numbers live in `NodeMetrics`, one
per daemon, shared by the local and public listeners.

The full list of series is in docs/api.md.
"""

from __future__ import annotations

import dataclasses
import math
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

if TYPE_CHECKING:
    from .daemon import Daemon

__all__ = [
    "CONTENT_TYPE",
    "LATENCY_BUCKETS",
    "Exposition",
    "Histogram",
    "NodeMetrics",
    "RequestMetrics",
    "metrics_routes",
    "node_metrics",
    "render_metrics",
    "request_metrics",
    "route_family",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds; a gateway Range request is milliseconds, a large `add` or `get` minutes.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: path prefix -> route family (first match wins); anything else is "other".
ROUTE_FAMILIES: tuple[tuple[str, str], ...] = (
    ("/ipfs/", "gateway"),
    ("/ipns/", "gateway"),
    ("/api/v0/", "rpc"),
    ("/api/chorus/v1", "chorus_api"),
    ("/metrics", "metrics"),
)


def route_family(path: str) -> str:
    """gateway, rpc, chorus_api, metrics or other — a label of bounded cardinality."""
    for prefix, family in ROUTE_FAMILIES:
        if path.startswith(prefix):
            return family
    return "other"


# -- the exposition format --------------------------------------------------------------


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


class Exposition:
    """Builds a text exposition: each family once, with HELP and TYPE, then samples."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._families: set[str] = set()

    def family(self, name: str, kind: str, help_text: str) -> None:
        if name in self._families:
            raise ValueError(f"metric family {name} written twice")
        self._families.add(name)
        self._lines.append(f"# HELP {name} {_escape_help(help_text)}")
        self._lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        if labels:
            inner = ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in labels.items())
            self._lines.append(f"{name}{{{inner}}} {_number(value)}")
        else:
            self._lines.append(f"{name} {_number(value)}")

    def single(self, name: str, kind: str, help_text: str, value: float) -> None:
        """A family of one unlabelled sample."""
        self.family(name, kind, help_text)
        self.sample(name, value)

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


# -- what this module counts: HTTP --------------------------------------------------------


@dataclass
class Histogram:
    """Cumulative-bucket histogram per label set, as Prometheus exposes them."""

    buckets: Sequence[float] = LATENCY_BUCKETS
    counts: dict[tuple[str, ...], list[int]] = field(default_factory=dict)
    sums: dict[tuple[str, ...], float] = field(default_factory=dict)

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        counts = self.counts.get(labels)
        if counts is None:
            counts = self.counts[labels] = [0] * (len(self.buckets) + 1)  # last: +Inf
            self.sums[labels] = 0.0
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                counts[i] += 1
        counts[-1] += 1
        self.sums[labels] += value

    def write(self, out: Exposition, name: str, label_names: Sequence[str]) -> None:
        for labels in sorted(self.counts):
            base = dict(zip(label_names, labels, strict=True))
            counts = self.counts[labels]
            for bound, count in zip(self.buckets, counts, strict=False):
                out.sample(f"{name}_bucket", count, {**base, "le": _number(float(bound))})
            out.sample(f"{name}_bucket", counts[-1], {**base, "le": "+Inf"})
            out.sample(f"{name}_sum", self.sums[labels], base)
            out.sample(f"{name}_count", counts[-1], base)


@dataclass
class NodeMetrics:
    """What /metrics counts itself, for one daemon (both its listeners)."""

    #: (family, status class) -> requests answered
    requests: dict[tuple[str, str], int] = field(default_factory=dict)
    latency: Histogram = field(default_factory=Histogram)
    in_flight: int = 0
    #: peer -> the Bitswap protocol its bytes are reported under, fixed the first time
    #: it is known, so per-protocol counters never go down.
    peer_protocol: dict[object, str] = field(default_factory=dict)

    def record(self, family: str, status_class: str, seconds: float) -> None:
        key = (family, status_class)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.latency.observe(key, seconds)


_BY_DAEMON: weakref.WeakKeyDictionary[Daemon, NodeMetrics] = weakref.WeakKeyDictionary()


def node_metrics(daemon: Daemon) -> NodeMetrics:
    """The daemon's NodeMetrics (made on first use; dies with the daemon).

    Kept beside the daemon rather than on it so node/daemon.py need not know about
    metrics; both listeners' apps find the same one here.
    """
    found = _BY_DAEMON.get(daemon)
    if found is None:
        found = _BY_DAEMON[daemon] = NodeMetrics()
    return found


class RequestMetrics:
    """ASGI middleware: count and time every HTTP request (to the end of its body)."""

    def __init__(self, app: ASGIApp, *, metrics: NodeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        family = route_family(scope.get("path", ""))
        status: int | None = None

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        started = time.perf_counter()
        outcome = "aborted"  # cancelled (the client left) before any response
        self.metrics.in_flight += 1
        try:
            await self.app(scope, receive, counting_send)
        except Exception:
            outcome = "5xx" if status is None else f"{status // 100}xx"
            raise
        finally:
            self.metrics.in_flight -= 1
            if status is not None:
                outcome = f"{status // 100}xx"
            self.metrics.record(family, outcome, time.perf_counter() - started)


def request_metrics(daemon: Daemon) -> list[Middleware]:
    """For `build_app`: outermost, so refusals by node/auth.py are counted too."""
    return [Middleware(RequestMetrics, metrics=node_metrics(daemon))]


# -- the scrape ---------------------------------------------------------------------------

_GOSSIP_HELP = {
    "published": "ledger items this node handed to gossipsub",
    "batches_published": "gossip batches this node published",
    "received": "ledger items received from other nodes",
    "batches_received": "gossip batches received from other nodes",
    "dropped_invalid": "gossip batches dropped: an item failed validation",
    "dropped_oversize": "gossip batches dropped: too many bytes or items",
    "dropped_malformed": "gossip batches dropped: the envelope did not decode",
    "dropped_rate": "gossip batches dropped: over the per-origin rate",
    "dropped_backlog": "gossip items dropped: the receive buffer was full",
    "validator_errors": "gossip batches whose validator raised",
    "publish_errors": "gossip batches py-libp2p failed to publish",
    "dropped_refused": "gossip batches dropped: forwarded by a banned or blocked peer",
}

_LEDGER_HELP = {
    "appended": "entries appended to the log",
    "forks": "entries that proved a fork (their feed is frozen)",
    "duplicates": "entries already held",
    "early": "entries that arrived before their predecessors",
    "frozen": "entries refused: their feed is frozen",
    "invalid": "entries refused as invalid",
    "tree_heads": "tree heads signed",
    "transactions": "SQLite write transactions",
    "pending_dropped": "early entries dropped from the full pending buffer (sync repairs)",
}

_EXCHANGE_FIELDS = (
    ("blocks_sent", "blocks_sent", "verified blocks sent to peers"),
    ("bytes_sent", "bytes_sent", "bytes of blocks sent to peers"),
    ("blocks_received", "blocks_received", "verified blocks received from peers"),
    ("bytes_received", "bytes_received", "bytes of verified blocks received from peers"),
)


async def render_metrics(daemon: Daemon) -> str:
    """The whole exposition for `daemon`, as text."""
    from .rpc import VERSION

    stat = await trio.to_thread.run_sync(daemon.repo.blockstore.stat)
    mine = node_metrics(daemon)
    out = Exposition()

    out.family("chorus_info", "gauge", "constant 1, labelled with the node's identity")
    out.sample("chorus_info", 1, {"version": VERSION, "peer_id": daemon.peer_id})

    out.single("chorus_store_blocks", "gauge", "blocks in the blockstore", stat.blocks)
    out.single("chorus_store_bytes", "gauge", "block payload bytes in the blockstore", stat.bytes)
    if stat.quota is not None:
        out.single("chorus_store_quota_bytes", "gauge", "the storage quota", stat.quota)

    _write_exchange(out, daemon, mine)

    connected = daemon.host.get_connected_peers()
    penalties = daemon.penalties
    out.single("chorus_peers_connected", "gauge", "peers with an open connection", len(connected))
    out.single(
        "chorus_peers_penalised", "gauge", "peers penalised at least once", len(penalties.strikes)
    )
    banned = sum(1 for peer in list(penalties.banned_until) if penalties.is_banned(peer))
    out.single("chorus_peers_banned", "gauge", "peers refused right now", banned)
    out.single(
        "chorus_peers_blocked", "gauge", "peers on the operator's block list",
        len(daemon.blocklist),
    )
    out.single(
        "chorus_penalties_total", "counter", "offences by peers (bad blocks, bad bytes)",
        sum(penalties.strikes.values()),
    )

    routing = daemon.routing
    out.single("chorus_dht_enabled", "gauge", "1 if the Kademlia DHT runs", int(routing.enabled))
    out.single(
        "chorus_dht_provides_total", "counter", "provider records announced", routing.provided
    )
    out.single("chorus_dht_lookups_total", "counter", "provider lookups made", routing.lookups)

    if daemon.gossip is not None:
        counters = dataclasses.asdict(daemon.gossip.counters)
        for name, value in counters.items():
            out.single(
                f"chorus_gossip_{name}_total", "counter",
                _GOSSIP_HELP.get(name, f"gossip counter {name}"), value,
            )
        out.single(
            "chorus_gossip_mesh_peers", "gauge", "peers in the co-op topic's mesh",
            len(list(daemon.gossip.mesh_peers())),
        )

    _write_ledger(out, daemon)

    out.family(
        "chorus_http_requests_total", "counter",
        "HTTP requests answered, by route family and status class",
    )
    for (family, status_class), count in sorted(mine.requests.items()):
        out.sample(
            "chorus_http_requests_total", count, {"family": family, "status_class": status_class}
        )
    out.family(
        "chorus_http_request_duration_seconds", "histogram",
        "HTTP request time, to the end of the response body",
    )
    mine.latency.write(out, "chorus_http_request_duration_seconds", ("family", "status_class"))
    out.single(
        "chorus_http_requests_in_flight", "gauge", "HTTP requests being answered",
        mine.in_flight,
    )
    return out.text()


def _write_ledger(out: Exposition, daemon: Daemon) -> None:
    """The ledger writer, replication and sync: what an operator alerts on (a log
    that stops growing, a pending buffer that stays full, hostile sync peers)."""
    ledger = daemon.ledger
    out.single("chorus_ledger_entries", "gauge", "entries in the log", ledger.store.size)
    out.single(
        "chorus_ledger_pending", "gauge", "early entries waiting for their predecessors",
        ledger.pending,
    )
    out.single(
        "chorus_ledger_pending_bytes", "gauge", "bytes of the early entries waiting",
        ledger.pending_bytes,
    )
    for name, value in dataclasses.asdict(ledger.counters).items():
        out.single(
            f"chorus_ledger_{name}_total", "counter",
            _LEDGER_HELP.get(name, f"ledger counter {name}"), value,
        )
    for prefix, counters in (("sync", daemon.sync), ("replication", daemon.replication)):
        if counters is None:
            continue
        for name, value in dataclasses.asdict(counters.counters).items():
            out.single(
                f"chorus_{prefix}_{name}_total", "counter",
                f"{prefix} counter {name} (docs/api.md, {prefix.capitalize()}Counters)", value,
            )


def _write_exchange(out: Exposition, daemon: Daemon, mine: NodeMetrics) -> None:
    counters = list(daemon.exchange.counters.items())
    known = getattr(daemon.exchange, "_peer_protocol", {})  # not public in bitswap.py
    for peer, _ in counters:
        if peer not in mine.peer_protocol and peer in known:
            mine.peer_protocol[peer] = str(known[peer])
    for attr, name, help_text in _EXCHANGE_FIELDS:
        out.single(
            f"chorus_bitswap_{name}_total", "counter", help_text,
            sum(getattr(c, attr) for _, c in counters),
        )
    out.single(
        "chorus_bitswap_unsolicited_blocks_total", "counter",
        "blocks peers sent that nobody asked them for (dropped)",
        sum(c.unsolicited for _, c in counters),
    )
    for attr, name, help_text in _EXCHANGE_FIELDS:
        family = f"chorus_bitswap_protocol_{name}_total"
        out.family(family, "counter", f"{help_text}, by Bitswap protocol (where known)")
        for protocol, value in sorted(_by_protocol(counters, mine.peer_protocol, attr).items()):
            out.sample(family, value, {"protocol": protocol})
    out.single(
        "chorus_bitswap_peers", "gauge", "peers this node exchanged blocks with", len(counters)
    )


def _by_protocol(
    counters: Iterable[tuple[object, Any]], protocols: dict[object, str], attr: str
) -> dict[str, int]:
    totals: dict[str, int] = {}
    for peer, c in counters:
        protocol = protocols.get(peer)
        if protocol is not None:
            totals[protocol] = totals.get(protocol, 0) + getattr(c, attr)
    return totals


def metrics_routes(daemon: Daemon) -> list[BaseRoute]:
    async def metrics(request: Request) -> Response:
        return Response(await render_metrics(daemon), media_type=CONTENT_TYPE)

    return [Route("/metrics", metrics, methods=["GET"])]
