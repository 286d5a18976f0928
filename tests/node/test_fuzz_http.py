"""Fuzzing the HTTP face: parameter parsers directly, then the whole app in-process.

The pure parsers (Range, entity-bytes, format negotiation, If-None-Match, the
`/ipfs/` target) get arbitrary text and must answer or raise their typed error. Then
hypothesis drives the real ASGI app (node/http_app.py's `build_app` over a real
SQLite repo holding a multi-block file, a directory, a raw block and a ledger with a
tree head; the daemon is built but not run, so nothing listens and nothing reaches
the network: gateway requests carry `Cache-Control: only-if-cached`, RPC requests
`offline=true`) with arbitrary paths, query strings and headers. Every answer must be
a 2xx/3xx/4xx with a typed error body (gateway: "<status> <reason>" text; chorus API:
{"error": {"code", "message"}}; Kubo RPC: its {"Message", "Code", "Type"} object,
which Kubo sends with status 500 for a refused command, so there "internal error"
is what marks an untyped failure), never a 5xx from an exception, and the app keeps
answering afterwards. The gossip batch decoder (node/gossip.py) is fuzzed here too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import pytest
import trio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from ledger.entry import decode_entry
from ledger.jsonview import id_text
from node.daemon import Daemon, DaemonOptions
from node.gateway import (
    GatewayError,
    Unsatisfiable,
    entity_span,
    etag_matches,
    negotiate,
    parse_entity_bytes,
    parse_range,
    parse_target,
)
from node.http_app import build_app
from node.repo import Repo
from protocol.cid import RAW, cid_to_text, make_cid
from protocol.importer import build_directory, import_bytes
from tests.fuzz.strategies import mutants
from tests.fuzz.targets import TARGETS, fuzz_examples, seeds

# -- the gossip batch envelope (node/gossip.py) ----------------------------------------------


def test_gossip_batch_seeds_are_accepted() -> None:
    assert all(TARGETS["gossip_batch"].check(seed) for seed in TARGETS["gossip_batch"].make_seeds())


@settings(max_examples=fuzz_examples(500), deadline=None)
@given(st.binary(max_size=200) | mutants(seeds("gossip_batch")))
def test_gossip_batches(data: bytes) -> None:
    TARGETS["gossip_batch"].check(data)


# -- pure parameter parsers ------------------------------------------------------------------

_header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60)
_range_text = st.lists(
    st.sampled_from(["bytes", "=", "-", ",", " ", "0", "1", "9", "99999999999999999999", "x"]),
    max_size=12,
).map("".join)


@settings(max_examples=fuzz_examples(1000), deadline=None)
@given(_range_text | _header_text, st.integers(0, 2**40))
@example("bytes=-0", 0)
@example("bytes=0-0", 0)
@example("bytes=\u0663-", 10)  # a non-ASCII digit
def test_parse_range_answers_or_is_unsatisfiable(value: str, size: int) -> None:
    try:
        span = parse_range(value, size)
    except Unsatisfiable:
        return
    if span is not None:
        start, end = span
        assert 0 <= start < end <= size


@settings(max_examples=fuzz_examples(800), deadline=None)
@given(st.from_regex(r"-?[0-9]{1,20}:(-?[0-9]{1,20}|\*)", fullmatch=True) | st.text(max_size=30),
       st.integers(0, 2**40))
def test_entity_bytes_parse_or_400(text: str, size: int) -> None:
    try:
        first, last = parse_entity_bytes(text)
    except GatewayError as exc:
        assert exc.status == 400
        return
    span = entity_span(first, last, size)
    if span is not None:
        assert 0 <= span[0] < span[1] <= size


_format_query = st.dictionaries(
    st.sampled_from(["format", "car-version", "car-order", "car-dups", "dag-scope", "x"]),
    st.lists(st.sampled_from(["raw", "car", "tar", "dag-json", "1", "2", "dfs", "unk", "y", "n",
                              ""]) | st.text(max_size=8), min_size=1, max_size=2),
    max_size=4,
)
_accept = st.none() | _header_text | st.lists(st.sampled_from([
    "application/vnd.ipld.car", "application/vnd.ipld.raw", "*/*", "text/html", ";q=0",
    ";q=nan", ";q=1e999", ";version=2", ";order=unk", ";dups=y", ", ", ";q=-1"]),
    max_size=6).map("".join)


@settings(max_examples=fuzz_examples(800), deadline=None)
@given(_format_query, _accept)
def test_negotiate_answers_or_raises_gateway_error(query: dict, accept: str | None) -> None:
    try:
        chosen = negotiate(query, accept)
    except GatewayError as exc:
        assert exc.status in (400, 406, 501)
        return
    assert chosen.kind in ("deserialized", "raw", "car")


@settings(max_examples=fuzz_examples(500), deadline=None)
@given(_header_text, st.text("abcXYZ0189-_./", max_size=20).map(lambda t: f'"{t}"'))
def test_etag_matches_never_raises(header: str, etag: str) -> None:
    """Any If-None-Match text is an answer; one that lists our ETag (weak or not) matches."""
    assert etag_matches(header, etag) in (True, False)
    assert etag_matches(f"{header}, W/{etag}", etag)


@settings(max_examples=fuzz_examples(800), deadline=None)
@given(st.binary(max_size=80).map(lambda b: b"/ipfs/" + b) | st.binary(max_size=40))
@example(b"/ipfs/%ff")
@example(b"/ipfs/Qm/%2e%2E")
@example(b"/ipfs//")
def test_parse_target_answers_or_400(raw: bytes) -> None:
    try:
        target = parse_target(raw)
    except GatewayError as exc:
        assert exc.status == 400
        return
    assert target.cid_text and "/" not in target.cid_text


# -- the whole app, in-process ---------------------------------------------------------------


@dataclass
class App:
    app: Starlette
    token: str
    file: str  # a 3-leaf file (CIDv0), so ranges cross blocks
    directory: str  # holds it as "track.bin"
    raw: str
    entry: str  # an entry id in the ledger
    author: str


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    repo = Repo.init(tmp_path_factory.mktemp("fuzz-http") / "node")
    try:
        store = repo.blockstore
        data = os.urandom(600_000)
        root = import_bytes(data, emit=store.put)
        directory = build_directory([("track.bin", root)], emit=store.put)
        store.pin_add(directory.cid)
        raw = make_cid(b"a raw block", version=1, codec=RAW)
        store.put(raw, b"a raw block")
        repo.ledger.write(repo.identity, "note", {"text": "hello"}, 1_000)
        repo.ledger.write(repo.identity, "note", {"text": "again"}, 2_000)
        repo.ledger.sign_tree_head(repo.identity, 3_000)
        entry = decode_entry(repo.ledger.at(0).data)
        daemon = Daemon(repo, DaemonOptions(dht=False, tree_head_interval=0))
        yield App(build_app(daemon), repo.api_token, cid_to_text(root.cid),
                  cid_to_text(directory.cid), cid_to_text(raw), id_text(entry.id_bytes),
                  entry.author.hex())
    finally:
        repo.close()


async def _call(app: Starlette, method: str, raw_path: bytes, query: bytes,
                headers: list[tuple[bytes, bytes]]) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request through the ASGI app; the client never disconnects early."""
    from urllib.parse import unquote_to_bytes

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": unquote_to_bytes(raw_path).decode("utf-8", "replace"),
        "raw_path": raw_path, "query_string": query, "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8080"), *headers],
        "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8080),
    }
    sent: list[dict] = []
    delivered = False

    async def receive() -> dict:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: dict) -> None:
        sent.append(message)

    with trio.fail_after(20):
        await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def call(app: App, method: str, raw_path: bytes, query: bytes = b"",
         headers: list[tuple[bytes, bytes]] = ()) -> tuple[int, dict[bytes, bytes], bytes]:
    auth = [(b"authorization", f"Bearer {app.token}".encode())]
    return trio.run(_call, app.app, method, raw_path, query, [*auth, *headers])


_segment = (st.sampled_from(["track.bin", "..", "%2e%2e", ".", "%ff", "%2F", "", "a b", "%00"])
            | st.text(max_size=12).map(lambda t: quote(t, safe="")))
_params = st.lists(st.tuples(
    st.sampled_from(["format", "dag-scope", "entity-bytes", "filename", "download",
                     "car-version", "car-order", "car-dups", "arg", "offset", "length", "start",
                     "limit", "after", "size", "old", "new", "force", "peer", "x"]),
    st.sampled_from(["raw", "car", "tar", "all", "entity", "block", "0:*", "-5:-1", "1:0", "0",
                     "-1", "1", "99999999999999999999", "true", "yes", "", "\u0663"])
    | st.text(max_size=10),
), max_size=5)
_real_range = st.builds("bytes={}-{}".format, st.integers(0, 700_000),
                        st.sampled_from([""]) | st.integers(0, 700_000).map(str))
_headers = st.lists(st.tuples(
    st.sampled_from([b"range", b"if-none-match", b"accept", b"if-modified-since"]),
    (_real_range | _range_text | _header_text | _accept.map(lambda a: a or "")).map(
        lambda t: t.encode("latin-1")),
), max_size=3)


def _gateway_error_ok(status: int, body: bytes) -> None:
    assert status < 500 or status == 501, (status, body)
    if status >= 400:
        assert body.startswith(str(status).encode()), body


@settings(max_examples=fuzz_examples(300), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.sampled_from(["file", "directory", "raw", "junk", "identity"]), st.text(max_size=12),
       st.lists(_segment, max_size=3), _params, _headers, st.sampled_from(["GET", "HEAD"]))
def test_gateway_requests(app: App, which: str, junk: str, segments: list[str],
                          params: list[tuple[str, str]], headers: list, method: str) -> None:
    cid = {"file": app.file, "directory": app.directory, "raw": app.raw,
           "junk": quote(junk, safe="") or "x", "identity": "bafkqaaa"}[which]
    path = "/".join(["/ipfs", cid, *segments]).encode("ascii")
    status, _, body = call(app, method, path, urlencode(params).encode(),
                           [(b"cache-control", b"only-if-cached"), *headers])
    _gateway_error_ok(status, body if method == "GET" else str(status).encode())


def test_a_path_with_a_newline_reaches_the_gateway(app: App) -> None:
    """Found by test_gateway_requests: Starlette's `path` stops at a newline, so this
    path missed the gateway and got the router's bare "Not Found"."""
    for tail in (b"%0A0", b"a%0Ab", b"%0D%0A"):
        status, _, body = call(app, "GET", b"/ipfs/" + app.file.encode() + b"/" + tail, b"", [])
        assert status == 404 and body.startswith(b"404"), (tail, status, body)


_RPC = ["cat", "get", "block/get", "block/stat", "pin/ls", "dag/export", "refs/local", "id",
        "version", "repo/stat", "swarm/peers", "bitswap/stat", "nonexistent"]


@settings(max_examples=fuzz_examples(250), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.sampled_from(_RPC), st.lists(st.sampled_from(["file", "directory", "raw", "path",
                                                        "text"]), max_size=2),
       st.text(max_size=20), _params)
def test_rpc_requests(app: App, command: str, args: list[str], text: str,
                      params: list[tuple[str, str]]) -> None:
    values = {"file": app.file, "directory": app.directory, "raw": app.raw,
              "path": f"/ipfs/{app.directory}/track.bin", "text": text}
    query = [*(("arg", values[a]) for a in args), *params, ("offline", "true")]
    status, _, body = call(app, "POST", f"/api/v0/{command}".encode(), urlencode(query).encode())
    if status == 500:  # Kubo's way of refusing a command: a typed error object
        error = json.loads(body)
        assert error["Type"] == "error" and not error["Message"].startswith("internal error"), body
    else:
        assert status < 500, (status, body)


_API = ["/ledger", "/ledger/log", "/ledger/heads", "/ledger/tree-heads", "/ledger/export",
        "/ledger/entries/{id}", "/ledger/proof/inclusion/{id}", "/ledger/proof/consistency",
        "/tally", "/wallets/{key}", "/releases", "/proposals", "/pins", "/store", "/peers",
        "/keys", "/node", "/coop", "/ledger/entries/{junk}", "/wallets/{junk}"]


@settings(max_examples=fuzz_examples(300), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.sampled_from(_API), st.text(max_size=20), _params)
@example("/ledger/log", "", [("start", "\u0663")])
@example("/ledger/proof/consistency", "", [("old", "2"), ("new", "1")])
@example("/ledger/proof/inclusion/{id}", "", [("size", "0")])
def test_chorus_api_requests(app: App, template: str, junk: str,
                             params: list[tuple[str, str]]) -> None:
    path = template.format(id=app.entry, key=app.author, junk=quote(junk, safe="") or "x")
    status, _, body = call(app, "GET", f"/api/chorus/v1{path}".encode(),
                                 urlencode(params).encode())
    assert status < 500, (status, body)
    if status >= 400:
        error = json.loads(body)
        assert set(error) == {"error"} and set(error["error"]) == {"code", "message"}, body


def test_the_app_keeps_answering_after_hostile_requests(app: App) -> None:
    """After everything above (same module app): a range read and an API read work."""
    for path, query in [(b"/ipfs/" + app.directory.encode() + b"/%2e%2e", b""),
                        (b"/api/chorus/v1/ledger/log", b"start=-1"),
                        (b"/api/v0/cat", b"arg=%ff&offline=true")]:
        call(app, "POST" if path.startswith(b"/api/v0") else "GET", path, query)
    status, _, body = call(app, "GET", f"/ipfs/{app.file}".encode(),
                                 headers=[(b"range", b"bytes=262140-262150")])
    assert status == 206 and len(body) == 11
    status, _, body = call(app, "GET", b"/api/chorus/v1/ledger/log")
    assert status == 200 and json.loads(body)
