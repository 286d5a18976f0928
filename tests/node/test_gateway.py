"""The /ipfs/ gateway (node/gateway.py) against real `chorus daemon` processes.

Functional tests check what a player and a verifying client rely on: seeks return
exactly the file's bytes, caching headers, directories, raw blocks and CARs that
verify, entity-bytes CARs that hold only the blocks a byte range needs, and content
fetched from another daemon. Hostile tests send what a browser never would (path
traversal in every spelling, broken CIDs and ranges, slow and silent sockets) with
`http.client` and raw sockets, and check the daemon keeps answering throughout.
The pure helpers (Range, entity-bytes, sniffing, target parsing) are tested first,
without a daemon.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import pytest

from node.gateway import (
    GatewayError,
    Unsatisfiable,
    entity_span,
    etag_matches,
    negotiate,
    parse_entity_bytes,
    parse_range,
    parse_target,
    sniff_content_type,
)
from node.sample_audio import synth_track
from protocol.car import (
    CAR_END,
    NEED_DATA,
    CarBlock,
    CarDecoder,
    CarHeader,
    encode_block,
    encode_header,
)
from protocol.cid import DAG_PB, RAW, cid_to_text, make_cid, parse_cid, verify_block
from protocol.dag import links_of
from protocol.dagpb import PBLink, PBNode, encode_node
from protocol.reader import read_file
from protocol.unixfs import DataType, UnixFSData, encode_data
from tests.daemons import DaemonProcess

integration = pytest.mark.integration

MIB = 1024 * 1024


# -- pure helpers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-99", 1000, (0, 100)),
        ("bytes=500-", 1000, (500, 1000)),
        ("bytes=-100", 1000, (900, 1000)),
        ("bytes=-5000", 1000, (0, 1000)),
        ("bytes=0-99999999999999999999", 1000, (0, 1000)),
        ("bytes=990-2000", 1000, (990, 1000)),
        ("BYTES = 1-1", 1000, (1, 2)),
        ("bytes=2000-3000, 10-19", 1000, (10, 20)),  # first satisfiable range
        ("bytes=10-19,100-109", 1000, (10, 20)),
        ("bytes=abc", 1000, None),  # invalid: ignored, whole file
        ("bytes=5-1", 1000, None),
        ("bytes=1-2-3", 1000, None),
        ("bytes=", 1000, None),
        ("items=0-5", 1000, None),
        ("bytes", 1000, None),
        ("bytes=\u0663-\u0665", 1000, None),  # Arabic-Indic digits: not HTTP digits
        ("bytes=\uff11-\uff12", 1000, None),  # fullwidth digits
        ("bytes=" + ",".join(f"{i}-{i}" for i in range(1000)), 5000, (0, 1)),
    ],
)
def test_parse_range(header, size, expected):
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"),
    [("bytes=1000-", 1000), ("bytes=-0", 1000), ("bytes=0-", 0), ("bytes=-5", 0),
     ("bytes=99999999999999999999999-", 10), ("bytes=5000-6000,7000-", 1000)],
)
def test_parse_range_unsatisfiable(header, size):
    with pytest.raises(Unsatisfiable):
        parse_range(header, size)


def test_entity_bytes():
    assert parse_entity_bytes("0:*") == (0, None)
    assert parse_entity_bytes("-1024:*") == (-1024, None)
    assert parse_entity_bytes("499:-1000") == (499, -1000)
    assert entity_span(0, None, 5000) == (0, 5000)
    assert entity_span(-1024, None, 5000) == (3976, 5000)
    assert entity_span(-99999, None, 5000) == (0, 5000)
    assert entity_span(499, -1000, 5000) == (499, 4001)
    assert entity_span(100, 99999, 5000) == (100, 5000)
    assert entity_span(499, -1000, 1000) is None  # zero-length: only the root
    assert entity_span(0, None, 0) is None
    for bad in ("", "1", "a:b", "1:2:3", "5:1", "-1:-5", "1:**", "9" * 30 + ":*",
                "\u0661:*", "0:\u0665"):  # non-ASCII digits
        with pytest.raises(GatewayError) as info:
            parse_entity_bytes(bad)
        assert info.value.status == 400


def test_parse_target():
    target = parse_target(b"/ipfs/bafyabc/a%20b/c/")
    assert (target.cid_text, target.segments, target.trailing_slash) == (
        "bafyabc", ("a b", "c"), True)
    assert parse_target(b"/ipfs/Qm/a%2Fb").segments == ("a/b",)
    assert parse_target(b"/ipfs/Qm//a///b").redirect == "/ipfs/Qm/a/b"
    assert parse_target(b"/ipfs//Qm/").redirect == "/ipfs/Qm/"
    for bad in (b"/ipfs/", b"/ipfs//", b"/ipfs/Qm/../x", b"/ipfs/Qm/%2e%2e/x",
                b"/ipfs/Qm/%2E%2e", b"/ipfs/Qm/./x", b"/ipfs/Qm/%2e", b"/ipfs/%ff",
                b"/ipfs/..", b"/ipfs/Qm//../x"):
        with pytest.raises(GatewayError) as info:
            parse_target(bad)
        assert info.value.status == 400, bad


def test_negotiate():
    assert negotiate({}, None).kind == "deserialized"
    assert negotiate({}, "text/html,*/*;q=0.8").kind == "deserialized"
    assert negotiate({"format": ["raw"]}, "text/html").kind == "raw"
    raw = negotiate({}, "application/vnd.ipld.raw")
    assert raw.kind == "raw" and raw.from_accept
    car = negotiate({}, "application/vnd.ipld.car; version=1; order=dfs; dups=y")
    assert car.kind == "car" and car.dups
    assert negotiate({"format": ["car"]}, None).dups is False
    # format wins over Accept
    assert negotiate({"format": ["car"]}, "application/vnd.ipld.raw").kind == "car"
    assert negotiate({}, "application/vnd.ipld.raw;q=0.5, application/vnd.ipld.car").kind == "car"
    for query, accept, status in [
        ({"format": ["xyz"]}, None, 400),
        ({"format": ["tar"]}, None, 501),
        ({"format": ["car"], "car-version": ["2"]}, None, 406),
        ({}, "application/vnd.ipld.car; version=2", 406),
        ({"format": ["car"], "car-order": ["random"]}, None, 406),
    ]:
        with pytest.raises(GatewayError) as info:
            negotiate(query, accept)
        assert info.value.status == status


def test_etag_matches():
    assert etag_matches('"abc"', '"abc"')
    assert etag_matches('W/"abc"', '"abc"')
    assert etag_matches('"x", "abc"', '"abc"')
    assert etag_matches("*", '"abc"')
    assert not etag_matches('"abcd"', '"abc"')


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"ID3\x04\x00\x00\x00\x00\x00\x00", "audio/mpeg"),
        (b"\xff\xfb\x90\x64\x00", "audio/mpeg"),
        (b"\xff\xf1\x50\x80", "audio/aac"),
        (b"OggS\x00\x02", "audio/ogg"),
        (b"fLaC\x00\x00\x00\x22", "audio/flac"),
        (b"RIFF\x24\x08\x00\x00WAVEfmt ", "audio/wav"),
        (b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00", "audio/mp4"),
        (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00", "video/mp4"),
        (b"FORM\x00\x00\x00\x00AIFF", "audio/aiff"),
        (b"\x89PNG\r\n\x1a\n\x00", "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"GIF89a", "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"<!DOCTYPE html><html>", "text/html; charset=utf-8"),
        (b'<?xml version="1.0"?><svg xmlns=', "image/svg+xml"),
        (b"hello, world\n", "text/plain; charset=utf-8"),
        ("ünïcödé ".encode() * 40 + "é".encode()[:1], "text/plain; charset=utf-8"),
        (b"\x00\x01\x02\x03binary", "application/octet-stream"),
        (b"", "text/plain; charset=utf-8"),
    ],
)
def test_sniff_content_type(head, expected):
    assert sniff_content_type(head) == expected


def test_sniff_prefers_the_file_name():
    assert sniff_content_type(b"\x00\x01", "song.MP3") == "audio/mpeg"
    assert sniff_content_type(b"ID3", "notes.txt") == "text/plain; charset=utf-8"
    assert sniff_content_type(b"ID3", "no-extension") == "audio/mpeg"


# -- HTTP helpers --------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def request(base: str, path: str, headers: dict[str, str] | None = None,
            method: str = "GET", timeout: float = 60) -> Reply:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
    finally:
        conn.close()


def raw_request(base: str, data: bytes, timeout: float = 10) -> bytes:
    """Send bytes as they are (no client-side normalisation); return the whole answer."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def car_blocks(body: bytes) -> tuple[CarHeader, list[CarBlock]]:
    decoder = CarDecoder()
    decoder.receive_data(body)
    decoder.receive_data(b"")
    header = None
    blocks = []
    while True:
        event = decoder.next_event()
        if event is CAR_END:
            break
        assert event is not NEED_DATA
        if isinstance(event, CarHeader):
            header = event
        else:
            assert isinstance(event, CarBlock)
            verify_block(event.cid, event.data)  # every block hashes to its CID
            blocks.append(event)
    assert header is not None
    return header, blocks


def dag_walk(cid, blocks: dict[bytes, bytes]) -> list:
    """Every CID of the DAG under `cid`, depth-first pre-order, each once."""
    order, seen, stack = [], set(), [cid]
    while stack:
        current = stack.pop()
        if bytes(current) in seen:
            continue
        seen.add(bytes(current))
        order.append(current)
        stack.extend(reversed(links_of(current, blocks[bytes(current)])))
    return order


# -- the daemon and its content ------------------------------------------------------------


@dataclass
class Content:
    node: DaemonProcess
    track: bytes  # 3 MiB + 17, default profile (CIDv0, dag-pb leaves)
    track_cid: str
    raw_track_cid: str  # the same bytes, --cid-version 1 --raw-leaves
    deep: bytes  # 45 MiB: three levels (root, 2 internal nodes, 180 leaves)
    deep_cid: str
    wav: bytes
    wav_cid: str
    empty_cid: str
    zeros_cid: str  # 1 MiB of zeros: four identical leaves
    site_cid: str  # index.html, style.css, sub/notes.txt
    music_cid: str  # no index: hostile and non-ASCII names
    music_names: list[str]

    @property
    def api(self) -> str:
        return self.node.api


@pytest.fixture(scope="module")
def content(tmp_path_factory) -> Iterator[Content]:
    tmp = tmp_path_factory.mktemp("gateway")
    rng = random.Random(7)
    track = rng.randbytes(3 * MIB + 17)
    (tmp / "track.bin").write_bytes(track)
    deep = rng.randbytes(45 * MIB)
    (tmp / "deep.bin").write_bytes(deep)
    wav = synth_track("Gateway test", seconds=6.0)
    (tmp / "song.wav").write_bytes(wav)
    (tmp / "empty").write_bytes(b"")
    (tmp / "zeros").write_bytes(bytes(MIB))
    site = tmp / "site"
    (site / "sub").mkdir(parents=True)
    (site / "index.html").write_text("<!doctype html><title>chorus</title><p>hello</p>")
    (site / "style.css").write_text("p { color: teal }")
    (site / "sub" / "notes.txt").write_text("liner notes\n")
    music = tmp / "music"
    music.mkdir()
    names = ["<img src=x onerror=alert(1)>.txt", "a song.wav", "ünïcödé & \"quotes\".txt",
             "javascript:alert(1)"]
    for name in names:
        (music / name).write_bytes(name.encode() * 3)
    node = DaemonProcess(tmp / "node", dht=False).start()
    try:
        yield Content(
            node=node,
            track=track,
            track_cid=node.add(tmp / "track.bin"),
            raw_track_cid=node.add(tmp / "track.bin", "--cid-version", "1"),
            deep=deep,
            deep_cid=node.add(tmp / "deep.bin"),
            wav=wav,
            wav_cid=node.add(tmp / "song.wav"),
            empty_cid=node.add(tmp / "empty"),
            zeros_cid=node.add(tmp / "zeros"),
            site_cid=node.add(site, "-r"),
            music_cid=node.add(music, "-r"),
            music_names=names,
        )
    finally:
        node.stop()


def blocks_of(content: Content, cid: str) -> dict[bytes, bytes]:
    """Every block under `cid`, via the gateway's own CAR (checked in its own test)."""
    reply = request(content.api, f"/ipfs/{cid}?format=car")
    assert reply.status == 200
    _, blocks = car_blocks(reply.body)
    return {bytes(b.cid): b.data for b in blocks}


# -- files and ranges ----------------------------------------------------------------------


@integration
@pytest.mark.parametrize("which", ["track_cid", "raw_track_cid", "deep_cid"])
def test_random_seeks_return_the_files_bytes(content, which):
    cid = getattr(content, which)
    data = content.deep if which == "deep_cid" else content.track
    size = len(data)
    rng = random.Random(which)
    parts = urlsplit(content.api)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    cases = [(0, 0), (0, size - 1), (size - 1, size - 1), (262143, 262144), (262144, 262144 * 3)]
    for _ in range(150):
        start = rng.randrange(size)
        cases.append((start, min(size - 1, start + rng.choice([0, 1, 100, 65535, 300_000]))))
    for start, last in cases:
        conn.request("GET", f"/ipfs/{cid}", headers={"Range": f"bytes={start}-{last}"})
        response = conn.getresponse()
        body = response.read()
        assert response.status == 206
        assert response.getheader("Content-Range") == f"bytes {start}-{last}/{size}"
        assert int(response.getheader("Content-Length")) == last - start + 1
        assert body == data[start : last + 1], (start, last)
    for header, expected in [(f"bytes={size - 1000}-", data[-1000:]), ("bytes=-777", data[-777:]),
                             ("bytes=-99999999", data)]:
        conn.request("GET", f"/ipfs/{cid}", headers={"Range": header})
        response = conn.getresponse()
        assert (response.status, response.read()) == (206, expected)
    conn.close()


@integration
def test_whole_file_head_and_caching_headers(content):
    cid = content.track_cid
    get = request(content.api, f"/ipfs/{cid}")
    assert get.status == 200 and get.body == content.track
    assert get.headers["content-length"] == str(len(content.track))
    assert get.headers["etag"] == f'"{cid}"'
    assert get.headers["cache-control"] == "public, max-age=29030400, immutable"
    assert get.headers["accept-ranges"] == "bytes"
    assert get.headers["x-ipfs-path"] == f"/ipfs/{cid}"
    assert get.headers["x-ipfs-roots"] == cid
    assert get.headers["x-content-type-options"] == "nosniff"
    assert get.headers["content-type"] == "application/octet-stream"
    deep = request(content.api, f"/ipfs/{content.deep_cid}")
    assert deep.status == 200 and hashlib.sha256(deep.body).digest() == hashlib.sha256(
        content.deep).digest()


@integration
@pytest.mark.parametrize("path_headers", [
    ("/ipfs/{track}", {}),
    ("/ipfs/{track}", {"Range": "bytes=100-199"}),
    ("/ipfs/{track}", {"Range": "bytes=99999999-"}),
    ("/ipfs/{track}", {"If-None-Match": '"{track}"'}),
    ("/ipfs/{track}?format=raw", {}),
    ("/ipfs/{track}?format=car&dag-scope=block", {}),
    ("/ipfs/{site}", {}),
    ("/ipfs/{site}/", {}),
    ("/ipfs/{music}/", {}),
    ("/ipfs/{site}/missing", {}),
    ("/ipfs/not-a-cid", {}),
    ("/ipfs/{wav}", {"Range": "bytes=0-"}),
])
def test_head_is_get_without_the_body(content, path_headers):
    path, headers = path_headers
    names = {"track": content.track_cid, "site": content.site_cid, "music": content.music_cid,
             "wav": content.wav_cid}
    path = path.format(**names)
    headers = {k: v.format(**names) for k, v in headers.items()}
    get = request(content.api, path, headers)
    head = request(content.api, path, headers, method="HEAD")
    assert head.body == b""
    assert head.status == get.status
    drop = {"date"}
    assert {k: v for k, v in head.headers.items() if k not in drop} == {
        k: v for k, v in get.headers.items() if k not in drop}


@integration
def test_if_none_match_gives_304_and_etags_differ_per_format(content):
    cid = content.track_cid
    etags = {}
    for suffix in ("", "?format=raw", "?format=car", "?format=car&dag-scope=block",
                   "?format=car&entity-bytes=0:99"):
        reply = request(content.api, f"/ipfs/{cid}{suffix}")
        assert reply.status == 200
        etag = reply.headers["etag"]
        assert etag.startswith('"') and etag.endswith('"')
        etags[suffix] = etag
        again = request(content.api, f"/ipfs/{cid}{suffix}", {"If-None-Match": etag})
        assert (again.status, again.body) == (304, b"")
        assert again.headers["etag"] == etag
        weak = request(content.api, f"/ipfs/{cid}{suffix}", {"If-None-Match": f'"x", W/{etag}'})
        assert weak.status == 304
    assert len(set(etags.values())) == len(etags)
    assert etags["?format=raw"] == f'"{cid}.raw"'
    stale = request(content.api, f"/ipfs/{cid}", {"If-None-Match": '"something-else"'})
    assert stale.status == 200
    # If-Range with another validator: the whole file, not the range
    whole = request(content.api, f"/ipfs/{cid}", {"Range": "bytes=0-9", "If-Range": '"old"'})
    assert whole.status == 200 and len(whole.body) == len(content.track)
    part = request(content.api, f"/ipfs/{cid}", {"Range": "bytes=0-9", "If-Range": f'"{cid}"'})
    assert (part.status, part.body) == (206, content.track[:10])


@integration
def test_empty_file(content):
    reply = request(content.api, f"/ipfs/{content.empty_cid}")
    assert (reply.status, reply.body, reply.headers["content-length"]) == (200, b"", "0")
    ranged = request(content.api, f"/ipfs/{content.empty_cid}", {"Range": "bytes=0-"})
    assert ranged.status == 416 and ranged.headers["content-range"] == "bytes */0"


@integration
def test_media_element_headers_for_a_wav(content):
    """What an <audio> element needs to play and seek: 206 to `bytes=0-`, a
    Content-Range, Accept-Ranges, and an audio type (a browser plays it for real in
    test_gateway_browser.py)."""
    cid = content.wav_cid
    first = request(content.api, f"/ipfs/{cid}", {"Range": "bytes=0-"})
    size = len(content.wav)
    assert first.status == 206
    assert first.headers["content-range"] == f"bytes 0-{size - 1}/{size}"
    assert first.headers["accept-ranges"] == "bytes"
    assert first.headers["content-type"] == "audio/wav"
    assert first.headers["content-length"] == str(size)
    assert first.body == content.wav
    seek = request(content.api, f"/ipfs/{cid}", {"Range": f"bytes={size // 2}-"})
    assert seek.status == 206 and seek.body == content.wav[size // 2 :]
    assert seek.headers["content-type"] == "audio/wav"
    named = request(content.api, f"/ipfs/{content.track_cid}?filename=take%201.mp3")
    assert named.headers["content-type"] == "audio/mpeg"
    assert named.headers["content-disposition"] == 'inline; filename="take 1.mp3"'
    download = request(content.api, f"/ipfs/{cid}?filename=s%C3%B6ng.wav&download=true",
                       method="HEAD")
    assert download.headers["content-disposition"] == (
        "attachment; filename=\"s_ng.wav\"; filename*=UTF-8''s%C3%B6ng.wav")


# -- directories ---------------------------------------------------------------------------


@integration
def test_directory_redirect_index_and_listing(content):
    site, music = content.site_cid, content.music_cid
    moved = request(content.api, f"/ipfs/{site}?x=1")
    assert moved.status == 301
    assert moved.headers["location"] == f"/ipfs/{site}/?x=1"
    sub = request(content.api, f"/ipfs/{site}/sub")
    assert (sub.status, sub.headers["location"]) == (301, f"/ipfs/{site}/sub/")
    index = request(content.api, f"/ipfs/{site}/")
    assert index.status == 200
    assert index.body == b"<!doctype html><title>chorus</title><p>hello</p>"
    assert index.headers["content-type"] == "text/html; charset=utf-8"
    roots = index.headers["x-ipfs-roots"].split(",")
    assert roots[0] == site and len(roots) == 2
    css = request(content.api, f"/ipfs/{site}/style.css")
    assert (css.status, css.headers["content-type"]) == (200, "text/css; charset=utf-8")
    notes = request(content.api, f"/ipfs/{site}/sub/notes.txt")
    assert (notes.status, notes.body) == (200, b"liner notes\n")
    assert notes.headers["x-ipfs-path"] == f"/ipfs/{site}/sub/notes.txt"
    assert len(notes.headers["x-ipfs-roots"].split(",")) == 3
    listing = request(content.api, f"/ipfs/{site}/sub/")
    assert listing.status == 200 and b"notes.txt" in listing.body
    assert listing.headers["etag"].startswith('"DirIndex-')
    assert request(content.api, f"/ipfs/{site}/sub/", {
        "If-None-Match": listing.headers["etag"]}).status == 304

    page = request(content.api, f"/ipfs/{music}/")
    assert page.status == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    text = page.body.decode()
    assert "<img" not in text  # every name escaped
    assert "&lt;img src=x onerror=alert(1)&gt;.txt" in text
    assert 'href="./javascript%3Aalert%281%29"' in text  # relative, never a javascript: URL
    odd = quote('ünïcödé & "quotes".txt', safe="")
    assert f'href="./{odd}"' in text
    assert "B</td>" in text  # sizes
    for name in content.music_names:
        got = request(content.api, f"/ipfs/{music}/{quote(name, safe='')}")
        assert (got.status, got.body) == (200, name.encode() * 3), name


@integration
def test_missing_paths_are_404(content):
    for path, words in [
        (f"/ipfs/{content.site_cid}/missing.html", "missing.html"),
        (f"/ipfs/{content.site_cid}/sub/nope/deeper", "nope"),
        (f"/ipfs/{content.track_cid}/inside", "not a directory"),
        (f"/ipfs/{content.site_cid}/sub%2Fnotes.txt", "sub/notes.txt"),
    ]:
        reply = request(content.api, path)
        assert reply.status == 404, path
        assert words in reply.body.decode(), reply.body


# -- trustless: raw blocks and CARs --------------------------------------------------------


@integration
def test_format_raw_is_the_block(content):
    for cid_text in (content.track_cid, content.raw_track_cid, content.site_cid):
        reply = request(content.api, f"/ipfs/{cid_text}?format=raw")
        assert reply.status == 200
        verify_block(parse_cid(cid_text), reply.body)  # the body hashes to the CID
        assert reply.headers["content-type"] == "application/vnd.ipld.raw"
        assert reply.headers["content-disposition"] == f'attachment; filename="{cid_text}.bin"'
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert reply.headers["content-length"] == str(len(reply.body))
    negotiated = request(content.api, f"/ipfs/{content.track_cid}",
                         {"Accept": "application/vnd.ipld.raw"})
    assert negotiated.headers["content-type"] == "application/vnd.ipld.raw"
    assert negotiated.headers["content-location"] == f"/ipfs/{content.track_cid}?format=raw"
    raw_root = request(content.api, f"/ipfs/{content.raw_track_cid}?format=raw").body
    leaf = links_of(parse_cid(content.raw_track_cid), raw_root)[0]
    got = request(content.api, f"/ipfs/{cid_to_text(leaf)}?format=raw")
    assert got.body == content.track[: 256 * 1024]
    probe = request(content.api, "/ipfs/bafkqaaa?format=raw")  # the spec's probe path
    assert (probe.status, probe.body) == (200, b"")


@integration
@pytest.mark.parametrize("which", ["track_cid", "raw_track_cid"])
def test_format_car_holds_the_whole_verified_dag(content, which):
    cid_text = getattr(content, which)
    root = parse_cid(cid_text)
    reply = request(content.api, f"/ipfs/{cid_text}?format=car")
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/vnd.ipld.car; version=1; order=dfs; dups=n"
    assert reply.headers["content-disposition"] == f'attachment; filename="{cid_text}.car"'
    header, blocks = car_blocks(reply.body)
    assert header.roots == (root,)
    store = {bytes(b.cid): b.data for b in blocks}
    assert [b.cid for b in blocks] == dag_walk(root, store)  # depth-first pre-order, once each
    assert b"".join(read_file(root, lambda c: store[bytes(c)])) == content.track
    accepted = request(content.api, f"/ipfs/{cid_text}", {"Accept": "application/vnd.ipld.car"})
    assert accepted.body == reply.body
    assert accepted.headers["content-location"] == f"/ipfs/{cid_text}?format=car"


@integration
def test_car_of_a_path_has_the_path_blocks_first(content):
    site = content.site_cid
    reply = request(content.api, f"/ipfs/{site}/sub/notes.txt?format=car")
    header, blocks = car_blocks(reply.body)
    roots = reply.headers["x-ipfs-roots"].split(",")
    assert [cid_to_text(b.cid) for b in blocks] == roots  # site, sub, notes.txt
    assert header.roots == (parse_cid(site),)
    assert blocks[-1].data.endswith(b"liner notes\n") or b"liner notes" in blocks[-1].data
    block = request(content.api, f"/ipfs/{site}?format=car&dag-scope=block")
    assert [cid_to_text(b.cid) for b in car_blocks(block.body)[1]] == [site]
    everything = request(content.api, f"/ipfs/{site}?format=car")
    assert len(car_blocks(everything.body)[1]) == 5  # site, index, style, sub, notes
    entity = request(content.api, f"/ipfs/{site}?format=car&dag-scope=entity")
    assert len(car_blocks(entity.body)[1]) == 1  # a directory's entity is its node
    probe = request(content.api, "/ipfs/bafkqaaa?format=car")
    probe_header, probe_blocks = car_blocks(probe.body)
    assert probe_header.roots == (parse_cid("bafkqaaa"),) and probe_blocks == []


@integration
@pytest.mark.parametrize("which", ["track_cid", "raw_track_cid", "deep_cid"])
def test_entity_bytes_car_holds_only_what_the_range_needs(content, which):
    cid_text = getattr(content, which)
    data = content.deep if which == "deep_cid" else content.track
    root = parse_cid(cid_text)
    size = len(data)
    chunk = 256 * 1024
    cases = {
        "300000:600000": (300000, 600001),
        "0:0": (0, 1),
        "-1024:*": (size - 1024, size),
        f"{chunk}:{2 * chunk - 1}": (chunk, 2 * chunk),
        "499:-1000": (499, size - 1000 + 1),
    }
    for spec, (start, end) in cases.items():
        reply = request(content.api, f"/ipfs/{cid_text}?format=car&entity-bytes={spec}")
        assert reply.status == 200, (spec, reply.body)
        _, blocks = car_blocks(reply.body)
        store = {bytes(b.cid): b.data for b in blocks}
        assert blocks[0].cid == root
        got = b"".join(read_file(root, lambda c, s=store: s[bytes(c)], start, end - start))
        assert got == data[start:end], spec  # enough to verify exactly that range
        leaves = (end - 1) // chunk - start // chunk + 1
        internal = 1 if size <= 174 * chunk else 1 + ((end - 1) // (174 * chunk)
                                                      - start // (174 * chunk) + 1)
        assert len(blocks) == internal + leaves, (spec, len(blocks))
    past = request(content.api, f"/ipfs/{cid_text}?format=car&entity-bytes={size}:*")
    assert past.status == 400
    nothing = request(content.api, f"/ipfs/{cid_text}?format=car&entity-bytes=10:-{size}")
    assert [b.cid for b in car_blocks(nothing.body)[1]] == [root]  # zero-length: the root
    whole = request(content.api, f"/ipfs/{cid_text}?format=car&entity-bytes=0:*")
    full = request(content.api, f"/ipfs/{cid_text}?format=car&dag-scope=entity")
    assert len(car_blocks(whole.body)[1]) == len(car_blocks(full.body)[1])


@integration
def test_car_dups(content):
    cid = content.zeros_cid
    once = request(content.api, f"/ipfs/{cid}?format=car")
    assert once.headers["content-type"].endswith("dups=n")
    assert len(car_blocks(once.body)[1]) == 2  # the root and the one distinct leaf
    every = request(content.api, f"/ipfs/{cid}",
                    {"Accept": "application/vnd.ipld.car; version=1; order=dfs; dups=y"})
    assert every.headers["content-type"] == (
        "application/vnd.ipld.car; version=1; order=dfs; dups=y")
    _, blocks = car_blocks(every.body)
    assert len(blocks) == 5 and len({bytes(b.cid) for b in blocks}) == 2
    ranged = request(content.api, f"/ipfs/{cid}?format=car&car-dups=y&entity-bytes=0:-1")
    assert len(car_blocks(ranged.body)[1]) == 5
    assert request(content.api, f"/ipfs/{cid}").body == bytes(MIB)
    assert request(content.api, f"/ipfs/{cid}", {"Range": "bytes=-5"}).body == bytes(5)


# -- hostile input -------------------------------------------------------------------------


@integration
def test_path_traversal_in_every_spelling(content):
    site = content.site_cid
    for raw, status in [
        (f"/ipfs/{site}/../x", 400),
        (f"/ipfs/{site}/%2e%2e/x", 400),
        (f"/ipfs/{site}/%2E%2E", 400),
        (f"/ipfs/{site}/.%2e/sub", 400),
        (f"/ipfs/{site}/sub/../../../etc/passwd", 400),
        (f"/ipfs/{site}/./index.html", 400),
        ("/ipfs/../../etc/passwd", 400),
        (f"/ipfs/{site}/%ff%fe", 400),
        (f"/ipfs/{site}/sub%2F..%2F..%2Fetc", 404),
        (f"/ipfs/{site}/index.html%00.txt", 404),
    ]:
        answer = raw_request(content.api, f"GET {raw} HTTP/1.1\r\nHost: x\r\n"
                             "Connection: close\r\n\r\n".encode())
        assert status_of(answer) == status, (raw, answer[:300])
    collapsed = raw_request(content.api, f"GET /ipfs/{site}//sub//notes.txt HTTP/1.1\r\n"
                            "Host: x\r\nConnection: close\r\n\r\n".encode())
    assert status_of(collapsed) == 301
    assert f"\r\nlocation: /ipfs/{site}/sub/notes.txt\r\n".encode() in collapsed


@integration
def test_invalid_cids_are_400_with_a_reason(content):
    for text in ["not-a-cid", "Qm123", "bafy" + "!" * 10, "z" * 600, "QmYwAPJzv5CZsnA625s3Xf2ne"
                 "mtYgPpHdWEz79ojWnPbdGX", "b" + "a" * 58, "%00", "f0155"]:
        reply = request(content.api, f"/ipfs/{text}")
        assert reply.status == 400, (text, reply.status)
        assert reply.body.startswith(b"400 ") and b"CID" in reply.body
        assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert request(content.api, "/ipfs/").status == 400


@integration
def test_hostile_ranges(content):
    cid = content.track_cid
    size = len(content.track)
    full = {"bytes=abc", "bytes=5-1", "bytes=--1", "bytes=1-2,x", "chunks=0-1", "bytes=0x10-"}
    for header in full:
        reply = request(content.api, f"/ipfs/{cid}", {"Range": header})
        assert (reply.status, len(reply.body)) == (200, size), header
    huge = request(content.api, f"/ipfs/{cid}", {"Range": "bytes=0-99999999999999999999"})
    assert huge.status == 206 and huge.headers["content-range"] == f"bytes 0-{size - 1}/{size}"
    many = ",".join(f"{i * 10}-{i * 10 + 4}" for i in range(1000))
    reply = request(content.api, f"/ipfs/{cid}", {"Range": f"bytes={many}"})
    assert reply.status == 206 and reply.body == content.track[:5]
    assert reply.headers["content-range"] == f"bytes 0-4/{size}"
    for header in (f"bytes={size}-", "bytes=-0", f"bytes={'9' * 40}-"):
        reply = request(content.api, f"/ipfs/{cid}", {"Range": header})
        assert reply.status == 416, header
        assert reply.headers["content-range"] == f"bytes */{size}"
    reply = request(content.api, f"/ipfs/{cid}", {"Range": "bytes=" + "1" * 8000 + "-"})
    assert reply.status == 416
    too_long = raw_request(content.api, (f"GET /ipfs/{cid} HTTP/1.1\r\nHost: x\r\nRange: bytes="
                                         + "0-1," * 10000 + "\r\n\r\n").encode())
    # h11 takes it when it arrives at once (its 16 KiB limit is on incomplete heads):
    # then it is 10,000 ranges, and the first is served; otherwise a 4xx.
    assert status_of(too_long) in (206, 400, 431)
    if status_of(too_long) == 206:
        assert f"content-range: bytes 0-1/{size}".encode() in too_long


@integration
def test_unknown_formats_and_methods(content):
    cid = content.track_cid
    assert request(content.api, f"/ipfs/{cid}?format=xyz").status == 400
    assert request(content.api, f"/ipfs/{cid}?format=tar").status == 501
    assert request(content.api, f"/ipfs/{cid}?format=car&dag-scope=everything").status == 400
    assert request(content.api, f"/ipfs/{cid}?format=car&entity-bytes=a:b").status == 400
    assert request(content.api, f"/ipfs/{cid}", {"Accept": "application/vnd.ipld.car;version=2"}
                   ).status == 406
    # node/auth.py answers other methods first (writes need the token); then 405.
    for method in ("POST", "DELETE", "PUT"):
        assert request(content.api, f"/ipfs/{cid}", method=method).status in (401, 403, 405)
    refused = request(content.api, f"/ipfs/{cid}", {"Service-Worker": "script"})
    assert refused.status == 400
    allowed = request(content.api, f"/ipfs/{content.site_cid}/", {"Service-Worker": "script"})
    assert allowed.status == 200
    absent = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    cached = request(content.api, f"/ipfs/{absent}", {"Cache-Control": "only-if-cached"})
    assert cached.status == 412
    garbage = raw_request(content.api, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 10)
    assert garbage == b"" or status_of(garbage) == 400
    assert request(content.api, f"/ipfs/{cid}", {"Range": "bytes=0-0"}).status == 206


@integration
def test_slow_and_silent_clients_do_not_block_others(content):
    """One socket dribbles its request headers a byte at a time, another asks for the
    45 MiB file and never reads, a third opens and says nothing: meanwhile normal
    requests are answered as fast as ever."""
    parts = urlsplit(content.api)
    address = (parts.hostname, parts.port)
    stop = threading.Event()

    def dribble() -> None:
        with socket.create_connection(address) as sock:
            for byte in f"GET /ipfs/{content.track_cid} HTTP/1.1\r\nHost: x\r\nX-Slow: ".encode():
                if stop.is_set():
                    return
                sock.sendall(bytes([byte]))
                time.sleep(0.05)
            while not stop.wait(0.1):
                sock.sendall(b"a")

    silent = socket.create_connection(address)
    silent.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    silent.sendall(f"GET /ipfs/{content.deep_cid} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    idle = socket.create_connection(address)
    slow = threading.Thread(target=dribble, daemon=True)
    slow.start()
    try:
        time.sleep(0.5)
        latencies = []
        for i in range(40):
            start = time.perf_counter()
            reply = request(content.api, f"/ipfs/{content.track_cid}",
                            {"Range": f"bytes={i * 1000}-{i * 1000 + 65535}"}, timeout=10)
            latencies.append(time.perf_counter() - start)
            assert reply.status == 206
            assert reply.body == content.track[i * 1000 : i * 1000 + 65536]
        listing = request(content.api, f"/ipfs/{content.music_cid}/", timeout=10)
        assert listing.status == 200
        latencies.sort()
        assert latencies[len(latencies) // 2] < 0.5, latencies
    finally:
        stop.set()
        slow.join(5)
        silent.close()
        idle.close()
    assert content.node.proc is not None and content.node.proc.poll() is None
    assert request(content.api, f"/ipfs/{content.track_cid}", method="HEAD").status == 200


@integration
def test_client_that_leaves_mid_stream(content):
    parts = urlsplit(content.api)
    for _ in range(5):
        with socket.create_connection((parts.hostname, parts.port)) as sock:
            sock.sendall(f"GET /ipfs/{content.deep_cid} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    for _ in range(5):
        with socket.create_connection((parts.hostname, parts.port)) as sock:
            sock.sendall(f"GET /ipfs/{content.deep_cid}?format=car HTTP/1.1\r\n"
                         "Host: x\r\n\r\n".encode())
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    reply = request(content.api, f"/ipfs/{content.track_cid}", {"Range": "bytes=5-9"})
    assert reply.body == content.track[5:10]


@integration
def test_requests_for_content_nobody_has_do_not_starve_the_node(content):
    """60 clients ask for CIDs nobody has and give up after a second (the node looks
    for them in the swarm meanwhile, without holding a worker thread, and stops when
    they leave); local content is served at normal speed throughout."""
    parts = urlsplit(content.api)

    def ask_and_leave(index: int) -> None:
        absent = cid_to_text(make_cid(f"absent {index}".encode()))
        with socket.create_connection((parts.hostname, parts.port)) as sock:
            sock.sendall(f"GET /ipfs/{absent} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            sock.settimeout(1.0)
            with contextlib.suppress(TimeoutError):
                sock.recv(100)

    askers = [threading.Thread(target=ask_and_leave, args=(i,)) for i in range(60)]
    for thread in askers:
        thread.start()
    began = time.perf_counter()
    for i in range(20):
        reply = request(content.api, f"/ipfs/{content.raw_track_cid}",
                        {"Range": f"bytes={i * 7919}-{i * 7919 + 4095}"}, timeout=10)
        assert reply.body == content.track[i * 7919 : i * 7919 + 4096]
    listing = request(content.api, f"/ipfs/{content.site_cid}/sub/", timeout=10)
    assert listing.status == 200
    assert time.perf_counter() - began < 5
    for thread in askers:
        thread.join()
    assert request(content.api, f"/ipfs/{content.wav_cid}", method="HEAD").status == 200


def _node(links: list[tuple[object, int]], *, kind: DataType = DataType.FILE,
          data: bytes | None = None, names: list[str] | None = None,
          sizes: list[int] | None = None) -> bytes:
    """A dag-pb UnixFS node over (cid, size) links; `sizes` may lie about them."""
    blocksizes = tuple(sizes if sizes is not None else [size for _, size in links])
    fs = UnixFSData(kind, data=data, blocksizes=blocksizes if kind == DataType.FILE else ())
    pb_links = tuple(PBLink(cid, (names or [""] * len(links))[i], size)
                     for i, (cid, size) in enumerate(links))
    return encode_node(PBNode(pb_links, encode_data(fs)))


@integration
def test_malformed_dags_are_refused_and_the_node_keeps_serving(content, tmp_path):
    """DAGs whose blocks hash correctly but whose UnixFS lies: sizes that do not add
    up, a directory inside a file, garbage dag-pb, a chain deeper than any file, a
    directory with an unusable name. Each is a clear 404 (or, once a stream has
    started, an aborted body) and nothing else is disturbed."""
    blocks: list[tuple[object, bytes]] = []

    def put(data: bytes, codec: int = DAG_PB) -> object:
        cid = make_cid(data, codec=codec)
        blocks.append((cid, data))
        return cid

    leaf = put(b"x" * 10, RAW)
    liar = put(_node([(leaf, 10)], sizes=[1000]))  # says 1000 bytes, holds 10
    count = put(_node([(leaf, 10), (leaf, 10)], sizes=[10]))  # 2 links, 1 blocksize
    folder = put(_node([(leaf, 10)], kind=DataType.DIRECTORY, names=["a"]))
    nested = put(_node([(folder, 10)]))  # a directory inside a file
    garbage = put(b"\xff\xff\xff")
    deep = leaf
    for _ in range(20):
        deep = put(_node([(deep, 10)]))
    bad_name = put(_node([(leaf, 10)], kind=DataType.DIRECTORY, names=["a/b"]))
    big = put(b"y" * 262144, RAW)
    short = put(b"y" * 1000, RAW)  # the fifth child claims 256 KiB
    streamed = put(_node([(big, 262144)] * 4 + [(short, 262144)]))
    car = tmp_path / "hostile.car"
    car.write_bytes(encode_header([liar]) + b"".join(encode_block(c, d) for c, d in blocks))
    content.node.cli("car", "import", "--no-pin-roots", str(car))
    for cid in (liar, count, nested, garbage, deep, bad_name):
        text = cid_to_text(cid)
        for method in ("GET", "HEAD"):
            reply = request(content.api, f"/ipfs/{text}", method=method)
            assert reply.status == 404, (text, method, reply.status, reply.body)
        assert b"UnixFS" in request(content.api, f"/ipfs/{text}").body
        assert request(content.api, f"/ipfs/{text}/a").status == 404
    # a lie found only after the headers went out: the body stops short
    parts = urlsplit(content.api)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("GET", f"/ipfs/{cid_to_text(streamed)}")
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Content-Length") == str(5 * 262144)
    with pytest.raises(http.client.IncompleteRead):
        response.read()
    conn.close()
    # the blocks themselves are still served raw (they do hash to their CIDs)
    raw = request(content.api, f"/ipfs/{cid_to_text(garbage)}?format=raw")
    assert (raw.status, raw.body) == (200, b"\xff\xff\xff")
    block = request(content.api, f"/ipfs/{cid_to_text(garbage)}?format=car&dag-scope=block")
    assert [b.data for b in car_blocks(block.body)[1]] == [b"\xff\xff\xff"]
    assert request(content.api, f"/ipfs/{cid_to_text(garbage)}?format=car").status == 404
    # the CAR walk meets the lie after the headers went out: no final chunk
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("GET", f"/ipfs/{cid_to_text(liar)}?format=car&entity-bytes=0:5")
    response = conn.getresponse()
    assert response.status == 200
    with pytest.raises(http.client.IncompleteRead):
        response.read()
    conn.close()
    ranged = request(content.api, f"/ipfs/{content.track_cid}", {"Range": "bytes=10-19"})
    assert ranged.body == content.track[10:20]


# -- content another daemon holds ----------------------------------------------------------


@integration
def test_content_only_another_daemon_has_is_fetched_through_the_gateway(content, tmp_path):
    holder = content.node
    rng = random.Random(99)
    files = {}
    for name, size, extra in [("cold-v0", 2 * MIB + 3, ()), ("cold-v1", 3 * MIB + 11,
                              ("--cid-version", "1")), ("cold-range", 5 * MIB, ()),
                              ("cold-car", 1 * MIB + 5, ())]:
        path = tmp_path / name
        data = rng.randbytes(size)
        path.write_bytes(data)
        files[name] = (holder.add(path, *extra), data)
    reader = DaemonProcess(tmp_path / "reader", dht=False).start()
    try:
        reader.connect(holder)
        for name in ("cold-v0", "cold-v1"):
            cid, data = files[name]
            reply = request(reader.api, f"/ipfs/{cid}")
            assert reply.status == 200 and reply.body == data, name
        cid, data = files["cold-range"]
        start = 3 * MIB + 12345
        reply = request(reader.api, f"/ipfs/{cid}", {"Range": f"bytes={start}-{start + 99999}"})
        assert reply.status == 206 and reply.body == data[start : start + 100000]
        cid, data = files["cold-range"]
        parts = urlsplit(reader.api)
        for _ in range(3):  # leave mid-stream, while blocks are still being fetched
            with socket.create_connection((parts.hostname, parts.port)) as sock:
                sock.sendall(f"GET /ipfs/{cid} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                assert sock.recv(1024).startswith(b"HTTP/1.1 200")
        again = request(reader.api, f"/ipfs/{cid}")
        assert again.status == 200 and again.body == data
        cid, data = files["cold-car"]
        reply = request(reader.api, f"/ipfs/{cid}?format=car")
        _, blocks = car_blocks(reply.body)
        store = {bytes(b.cid): b.data for b in blocks}
        assert b"".join(read_file(parse_cid(cid), lambda c: store[bytes(c)])) == data
    finally:
        reader.stop()

