"""Prometheus /metrics: the exposition format, the HTTP request middleware, and real
daemons whose counters move when one fetches a track from the other."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.metrics import (
    CONTENT_TYPE,
    Exposition,
    Histogram,
    NodeMetrics,
    RequestMetrics,
    route_family,
)
from tests.daemons import DaemonProcess, wait_for
from tests.node.test_auth import asgi_call, request

COOP = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"

# -- a tiny parser of the text format (enough to check ours strictly) -----------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{(.*)\}})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')
_SUFFIXES = ("_bucket", "_sum", "_count")

Labels = frozenset[tuple[str, str]]


class Scrape:
    def __init__(self, text: str) -> None:
        self.types: dict[str, str] = {}
        self.helps: dict[str, str] = {}
        self.samples: dict[tuple[str, Labels], float] = {}
        assert text.endswith("\n")
        for line in text.splitlines():
            if line.startswith("# HELP "):
                name, _, help_text = line[7:].partition(" ")
                assert name not in self.helps, f"HELP for {name} twice"
                self.helps[name] = help_text
            elif line.startswith("# TYPE "):
                name, _, kind = line[7:].partition(" ")
                assert kind in ("counter", "gauge", "histogram", "summary", "untyped")
                assert name not in self.types, f"TYPE for {name} twice"
                self.types[name] = kind
            else:
                match = _SAMPLE.match(line)
                assert match, f"not a sample line: {line!r}"
                name, raw_labels, raw_value = match.groups()
                labels = self._labels(raw_labels or "")
                family = self.family_of(name)
                assert family in self.types, f"{name} has no TYPE line before it"
                key = (name, labels)
                assert key not in self.samples, f"{line!r} repeats a series"
                self.samples[key] = float(raw_value)

    @staticmethod
    def _labels(raw: str) -> Labels:
        pairs = []
        rest = raw
        while rest:
            match = _LABEL.match(rest)
            assert match, f"bad labels {raw!r}"
            pairs.append((match.group(1), match.group(2)))
            rest = rest[match.end():]
        return frozenset(pairs)

    def family_of(self, name: str) -> str:
        if name in self.types:
            return name
        for suffix in _SUFFIXES:
            if name.endswith(suffix) and name[: -len(suffix)] in self.types:
                return name[: -len(suffix)]
        return name

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, frozenset(labels.items()))]

    def total(self, name: str, **labels: str) -> float:
        """Sum of the series of `name` whose labels include `labels`."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and want <= ls)


def scrape(node: DaemonProcess) -> Scrape:
    answer = request(node.api, "GET", "/metrics")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == CONTENT_TYPE
    text = answer.body.decode("utf-8")
    parsed = Scrape(text)
    _cross_check_with_prometheus_client(text, parsed)
    return parsed


def _cross_check_with_prometheus_client(text: str, parsed: Scrape) -> None:
    """prometheus_client (installed with py-libp2p) parses it to the same samples."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:  # the tiny parser above has checked the format already
        return
    theirs = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert theirs == parsed.samples


# -- unit: the exposition format, the histogram, the middleware -----------------------------


def test_exposition_escapes_and_refuses_a_family_twice() -> None:
    out = Exposition()
    out.family("x_total", "counter", "a \\ help\nline")
    out.sample("x_total", 3, {"path": 'a"b\\c\nd'})
    out.single("y", "gauge", "y", 1.5)
    out.single("z", "gauge", "z", math.inf)
    text = out.text()
    assert 'x_total{path="a\\"b\\\\c\\nd"} 3\n' in text
    assert "# HELP x_total a \\\\ help\\nline\n" in text
    assert "y 1.5\n" in text and "z +Inf\n" in text
    parsed = Scrape(text)
    assert parsed.value("x_total", path='a\\"b\\\\c\\nd') == 3
    with pytest.raises(ValueError, match="twice"):
        out.family("y", "gauge", "again")


def test_histogram_buckets_are_cumulative() -> None:
    histogram = Histogram(buckets=(0.1, 1.0))
    for seconds in (0.05, 0.5, 0.5, 3.0):
        histogram.observe(("rpc", "2xx"), seconds)
    out = Exposition()
    out.family("h", "histogram", "h")
    histogram.write(out, "h", ("family", "status_class"))
    parsed = Scrape(out.text())
    labels = {"family": "rpc", "status_class": "2xx"}
    assert [parsed.value("h_bucket", **labels, le=le) for le in ("0.1", "1.0", "+Inf")] == [
        1, 3, 4]
    assert parsed.value("h_count", **labels) == 4
    assert parsed.value("h_sum", **labels) == pytest.approx(4.05)


@pytest.mark.parametrize(
    ("path", "family"),
    [("/ipfs/bafy/x", "gateway"), ("/api/v0/add", "rpc"), ("/api/chorus/v1/node", "chorus_api"),
     ("/metrics", "metrics"), ("/", "other"), ("/favicon.ico", "other")],
)
def test_route_family(path: str, family: str) -> None:
    assert route_family(path) == family


async def test_request_metrics_counts_status_classes_and_failures() -> None:
    metrics = NodeMetrics()

    async def app(scope, receive, send):
        if scope["path"] == "/boom":
            raise RuntimeError("boom")
        status = 404 if scope["path"] == "/missing" else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"x"})

    counted = RequestMetrics(app, metrics=metrics)
    await asgi_call(counted, "GET", "/ipfs/bafy")
    await asgi_call(counted, "POST", "/api/v0/missing")
    await asgi_call(counted, "GET", "/missing")
    with pytest.raises(RuntimeError):
        await asgi_call(counted, "GET", "/boom")
    assert metrics.requests == {
        ("gateway", "2xx"): 1, ("rpc", "2xx"): 1, ("other", "4xx"): 1, ("other", "5xx"): 1}
    assert metrics.in_flight == 0
    assert sum(counts[-1] for counts in metrics.latency.counts.values()) == 4


# -- real daemons ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Iterator[tuple[DaemonProcess, DaemonProcess, Path]]:
    tmp = tmp_path_factory.mktemp("metrics")
    a = DaemonProcess(tmp / "a", coop=COOP).start()
    b = DaemonProcess(tmp / "b", coop=COOP).start()
    try:
        yield a, b, tmp
    finally:
        b.stop()
        a.stop()


EXPECTED_FAMILIES = {
    "chorus_info": "gauge",
    "chorus_store_blocks": "gauge",
    "chorus_store_bytes": "gauge",
    "chorus_bitswap_blocks_sent_total": "counter",
    "chorus_bitswap_bytes_sent_total": "counter",
    "chorus_bitswap_blocks_received_total": "counter",
    "chorus_bitswap_bytes_received_total": "counter",
    "chorus_bitswap_unsolicited_blocks_total": "counter",
    "chorus_bitswap_protocol_bytes_sent_total": "counter",
    "chorus_bitswap_protocol_bytes_received_total": "counter",
    "chorus_bitswap_protocol_blocks_sent_total": "counter",
    "chorus_bitswap_protocol_blocks_received_total": "counter",
    "chorus_bitswap_peers": "gauge",
    "chorus_peers_connected": "gauge",
    "chorus_peers_penalised": "gauge",
    "chorus_peers_banned": "gauge",
    "chorus_peers_blocked": "gauge",
    "chorus_ledger_entries": "gauge",
    "chorus_ledger_pending": "gauge",
    "chorus_ledger_pending_bytes": "gauge",
    "chorus_ledger_appended_total": "counter",
    "chorus_ledger_pending_dropped_total": "counter",
    "chorus_penalties_total": "counter",
    "chorus_dht_enabled": "gauge",
    "chorus_dht_provides_total": "counter",
    "chorus_dht_lookups_total": "counter",
    "chorus_gossip_published_total": "counter",
    "chorus_gossip_received_total": "counter",
    "chorus_gossip_dropped_invalid_total": "counter",
    "chorus_gossip_mesh_peers": "gauge",
    "chorus_http_requests_total": "counter",
    "chorus_http_request_duration_seconds": "histogram",
    "chorus_http_requests_in_flight": "gauge",
}


@pytest.mark.integration
def test_counters_move_when_a_track_is_fetched(pair) -> None:
    a, b, tmp = pair
    before_a, before_b = scrape(a), scrape(b)
    for name, kind in EXPECTED_FAMILIES.items():
        assert before_a.types.get(name) == kind, name
    (info_labels, info), = [(dict(ls), v) for (n, ls), v in before_a.samples.items()
                            if n == "chorus_info"]
    assert info == 1 and info_labels["peer_id"] == a.peer_id and info_labels["version"]

    track = tmp / "track.bin"
    size = 1_000_000  # 4 chunks + a root
    track.write_bytes(os.urandom(size))
    cid = a.add(track)
    b.connect(a)
    b.cli("get", cid, "-o", str(tmp / "got.bin"))

    after_a, after_b = scrape(a), scrape(b)
    received = (after_b.value("chorus_bitswap_bytes_received_total")
                - before_b.value("chorus_bitswap_bytes_received_total"))
    sent = (after_a.value("chorus_bitswap_bytes_sent_total")
            - before_a.value("chorus_bitswap_bytes_sent_total"))
    assert received >= size and sent == received
    assert after_b.value("chorus_bitswap_blocks_received_total") >= 5
    # Per protocol, where known: B learnt A's protocol from the stream A opened.
    by_protocol = after_b.total("chorus_bitswap_protocol_bytes_received_total")
    assert by_protocol == after_b.value("chorus_bitswap_bytes_received_total")
    assert after_b.value("chorus_bitswap_protocol_bytes_received_total",
                         protocol="/ipfs/bitswap/1.2.0") == by_protocol

    assert after_b.value("chorus_store_blocks") - before_b.value("chorus_store_blocks") == 5
    assert after_a.value("chorus_store_bytes") - before_a.value("chorus_store_bytes") >= size
    assert after_a.value("chorus_peers_connected") >= 1
    assert after_b.value("chorus_peers_connected") >= 1
    assert after_b.value("chorus_bitswap_peers") >= 1
    assert after_a.value("chorus_dht_enabled") == 1

    # The HTTP traffic of the CLI (`add` on A, `get` on B) was counted, per family.
    for before, after in ((before_a, after_a), (before_b, after_b)):
        rpc_ok = {"family": "rpc", "status_class": "2xx"}
        assert after.total("chorus_http_requests_total", **rpc_ok) > before.total(
            "chorus_http_requests_total", **rpc_ok)
        assert after.total("chorus_http_request_duration_seconds_count", **rpc_ok) == (
            after.total("chorus_http_requests_total", **rpc_ok))
        assert after.total("chorus_http_requests_total", family="metrics") >= 1


@pytest.mark.integration
def test_refused_writes_and_gossip_are_counted(pair) -> None:
    a, _, _ = pair
    refused = {"family": "rpc", "status_class": "4xx"}
    before = scrape(a).total("chorus_http_requests_total", **refused)
    assert request(a.api, "POST", "/api/v0/repo/gc").status == 401
    assert request(a.api, "GET", "/api/chorus/v1/nothing-here").status == 404
    after = scrape(a)
    assert after.total("chorus_http_requests_total", **refused) == before + 1
    assert after.total("chorus_http_requests_total", family="chorus_api",
                       status_class="4xx") >= 1
    topic = request(a.api, "POST", "/api/v0/pubsub/ls").json()["Strings"][0]
    published = after.value("chorus_gossip_published_total")
    import time as clock

    from nacl.signing import SigningKey

    from ledger.entry import sign_entry
    from node.client import DaemonClient

    entry = sign_entry(SigningKey.generate(), 1, None, int(clock.time() * 1000), "note",
                       {"text": "an entry"})
    DaemonClient(a.api)._request("pubsub/pub", {"arg": topic}, body=entry.encoded).read()
    wait_for(lambda: scrape(a).value("chorus_gossip_published_total") == published + 1,
             timeout=10, what="the published item to be counted")
