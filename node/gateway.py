"""The IPFS path gateway and trustless gateway: `GET/HEAD /ipfs/{cid}[/path]`.

Listeners play tracks by CID in a browser, so this is what an `<audio>` element
talks to: UnixFS files streamed with `Range` (seeking), `ETag`/`If-None-Match` and
immutable caching, directories as `index.html` or a listing; and, for clients that
verify everything themselves, single blocks (`?format=raw`) and CARv1 streams
(`?format=car`, with `dag-scope` and `entity-bytes`). It follows the IPFS
specifications (specs.ipfs.tech/http-gateways/path-gateway/ and
.../trustless-gateway/); docs/gateway.md lists every header and each decision.

Theory of operation
-------------------
A request goes through four steps, each a function you can read alone:

    raw path  --parse_target-->  root CID + decoded path segments   (400, 301)
    query + Accept  --negotiate-->  deserialized | raw | car        (400, 406, 501)
    root + segments  --Gateway._resolve-->  terminal node + roots   (404, 412, 504)
    terminal  --_file/_directory/_raw/_car-->  a `_Reply`            (200, 206, 304, 416)

The pure parts (target, Range, entity-bytes, Accept, sniffing, ETags, the listing
page) take text and return values; they know nothing of sockets or blocks.

Blocks are read through `_Feed`, one per response: the local store first (in a
worker thread), then the swarm through `BlockService.get` (the gateway knows
nothing of Bitswap). Waiting for the swarm happens in the trio thread, never in a
worker thread, whose pool is shared with Bitswap serving and the RPC. Once a block
has been missing, the feed fetches the blocks the walk needs next, READ_AHEAD at a
time, so a cold track streams instead of paying a round trip per block; the first
missing block is fetched alone, since the time to first byte waits for it.
Decoded nodes (file nodes with their children's sizes and offsets, leaves with
their bytes, directories with their entries) are kept in a byte-bounded LRU:
decoding an 80-link dag-pb node costs ~1.5 ms of pure Python, far more than
serving a cached 64 KiB range, and nothing ever changes under a CID. A read whose
nodes are all cached runs on the event loop with no worker-thread hop at all.

This is a raw ASGI app rather than Starlette request/response objects: a seek is
a few hundred microseconds of work and every layer shows in the request rate, and
a streamed body needs its own nursery (disconnect watcher, read-ahead fetches).
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
import threading
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, quote, unquote_to_bytes

import trio
from multiformats import CID
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.routing import BaseRoute, Route

from protocol.car import encode_block, encode_header
from protocol.cid import DAG_PB, RAW, cid_to_text, parse_cid
from protocol.dag import links_of
from protocol.dagpb import decode_node
from protocol.errors import DecodeError, InvalidCID, NotAFile
from protocol.reader import MAX_DEPTH, DirEntry, list_directory
from protocol.unixfs import DataType, UnixFSError, decode_data

from .errors import BlockNotFound

if TYPE_CHECKING:
    from .daemon import Daemon

__all__ = [
    "Gateway",
    "GatewayError",
    "Target",
    "Unsatisfiable",
    "entity_span",
    "etag_matches",
    "gateway_routes",
    "negotiate",
    "parse_entity_bytes",
    "parse_range",
    "parse_target",
    "sniff_content_type",
]

log = logging.getLogger("chorus.gateway")

#: What the path-gateway spec requires for everything under /ipfs/.
IMMUTABLE = b"public, max-age=29030400, immutable"
#: Bumped whenever the generated listing page changes (it is part of its ETag).
DIR_INDEX_VERSION = "chorus-1"
#: Bytes looked at to guess a file's type (what browsers' sniffers look at).
SNIFF_BYTES = 512
#: Bodies up to this size are read whole and sent in one message; larger ones stream.
SMALL_BODY = 1024 * 1024
#: A streamed body is sent in pieces of about this size (a 256 KiB chunk is one leaf).
PIECE = 256 * 1024
#: Blocks fetched ahead of the reader once a response needs the swarm.
READ_AHEAD = 16
#: Seconds to find the root and the path's blocks before answering 504.
RESOLVE_TIMEOUT = 30.0
#: Decoded nodes kept in memory, by (approximate) bytes.
NODE_CACHE_BYTES = 48 * 1024 * 1024
#: Sniffed content types and parsed CIDs kept, by count.
SMALL_CACHE_ENTRIES = 4096

_T = TypeVar("_T")

_CAR_TYPE = "application/vnd.ipld.car"
_RAW_TYPE = "application/vnd.ipld.raw"
_IDENTITY = 0x00


class GatewayError(Exception):
    """A request the gateway answers with an error status and a plain-text reason."""

    def __init__(
        self, status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = list(headers)


class Unsatisfiable(Exception):
    """A valid `Range` none of whose ranges overlaps the file."""


# -- the request target --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """`/ipfs/{cid}/{a}/{b}[/]` split up: the CID text, the decoded segments, and
    whether the path ended in a slash. `path` is the request path as received
    (still percent-encoded), for `X-Ipfs-Path` and redirects."""

    cid_text: str
    segments: tuple[str, ...]
    trailing_slash: bool
    path: str
    #: Set when the path had empty segments (`//`): where the canonical form is.
    redirect: str | None = None


def parse_target(raw_path: bytes) -> Target:
    """Split a raw `/ipfs/...` request path; raise GatewayError(400) for a path that
    can never name content: no CID, a segment that is not UTF-8, `.` or `..` in
    any spelling (`%2e%2e` too). Empty segments (`//`) are not errors: the target
    carries the canonical path to redirect to."""
    try:
        text = raw_path.decode("ascii")
    except UnicodeDecodeError:
        raise GatewayError(400, "the request path is not ASCII") from None
    if not text.startswith("/ipfs/"):
        raise GatewayError(400, f"not an /ipfs/ path: {text!r}")
    parts = text[len("/ipfs/") :].split("/")
    trailing = len(parts) > 1 and parts[-1] == ""
    inner = parts[:-1] if trailing else parts
    present = [part for part in inner if part]
    if not present:
        raise GatewayError(400, "no CID in the path: expected /ipfs/{cid}[/path]")
    decoded: list[str] = []
    for part in present:
        try:
            segment = unquote_to_bytes(part).decode("utf-8")
        except UnicodeDecodeError:
            raise GatewayError(400, f"path segment {part!r} is not UTF-8") from None
        if segment in (".", ".."):
            raise GatewayError(
                400, f"'.' and '..' are not allowed in content paths (got {part!r} in {text!r})"
            )
        decoded.append(segment)
    redirect = None
    if len(present) != len(inner):
        redirect = "/ipfs/" + "/".join(present) + ("/" if trailing else "")
    return Target(decoded[0], tuple(decoded[1:]), trailing, text, redirect)


# -- Range (RFC 9110 section 14) -----------------------------------------------------------

_RANGE_ITEM = re.compile(r"([0-9]+)-([0-9]*)|-([0-9]+)")  # ASCII: \d takes any script's digits
#: Positions longer than this many digits are past the end of any file.
_MAX_DIGITS = 18
_HUGE = 10**_MAX_DIGITS


def _position(digits: str) -> int:
    return int(digits) if len(digits) <= _MAX_DIGITS else _HUGE


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """The byte range [start, end) to send for a `Range` header on a `size`-byte file.

    None means "ignore the header and send the whole file": another unit, or a
    ranges-specifier that is not valid (`bytes=abc`, `bytes=5-1`), which RFC 9110
    lets a server ignore. Several ranges are answered with the first satisfiable
    one, in request order (a single-part 206; see docs/gateway.md). Raises
    Unsatisfiable when the specifier is valid but no range overlaps the file.
    """
    unit, sep, specs = value.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    ranges: list[tuple[int | None, int | None]] = []
    for item in specs.split(","):
        item = item.strip()
        if not item:
            continue
        match = _RANGE_ITEM.fullmatch(item)
        if match is None:
            return None
        first, last, suffix = match.groups()
        if suffix is not None:
            ranges.append((None, _position(suffix)))
            continue
        start = _position(first)
        end = _position(last) if last else None
        if end is not None and end < start:
            return None
        ranges.append((start, end))
    if not ranges:
        return None
    for start, last in ranges:
        if start is None:  # suffix: the last `last` bytes
            if last and size:
                return max(0, size - last), size
        elif start < size:
            return start, size if last is None else min(last, size - 1) + 1
    raise Unsatisfiable(value)


# -- entity-bytes (trustless gateway) ------------------------------------------------------

_ENTITY_BYTES = re.compile(r"(-?[0-9]{1,18}):(-?[0-9]{1,18}|\*)")


def parse_entity_bytes(text: str) -> tuple[int, int | None]:
    """`from:to` (inclusive, negative counts from the end, `*` is the end of file)."""
    match = _ENTITY_BYTES.fullmatch(text)
    if match is None:
        raise GatewayError(
            400, f"entity-bytes must be from:to with integers or '*' as 'to', not {text!r}"
        )
    first = int(match[1])
    last = None if match[2] == "*" else int(match[2])
    if last is not None and (first >= 0) == (last >= 0) and first > last:
        raise GatewayError(400, f"entity-bytes {text!r}: 'from' is after 'to'")
    return first, last


def entity_span(first: int, last: int | None, size: int) -> tuple[int, int] | None:
    """The byte range [start, end) an entity-bytes pair selects in a `size`-byte file,
    clipped to the file; None when it selects nothing (then only the root is sent)."""
    start = first if first >= 0 else max(0, size + first)
    final = size - 1 if last is None else (last if last >= 0 else size + last)
    final = min(final, size - 1)
    if start > final:
        return None
    return start, final + 1


# -- response format negotiation -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Format:
    """What to answer with: 'deserialized' (files, listings), 'raw' or 'car'."""

    kind: str
    #: For CARs: send a block each time the walk meets it (dups=y), or once.
    dups: bool = False
    #: True when only the Accept header asked for it (then Content-Location is sent).
    from_accept: bool = False


_UNSUPPORTED_FORMATS = {"tar", "dag-json", "dag-cbor", "json", "cbor", "ipns-record"}
_FORMAT_TYPES = {"raw": _RAW_TYPE, "car": _CAR_TYPE}


def _media_ranges(accept: str) -> list[tuple[str, dict[str, str], float]]:
    ranges = []
    for position, item in enumerate(accept.split(",")):
        kind, *params = (part.strip() for part in item.split(";"))
        values: dict[str, str] = {}
        for param in params:
            name, _, value = param.partition("=")
            values[name.strip().lower()] = value.strip().strip('"')
        try:
            q = float(values.pop("q", "1"))
        except ValueError:
            q = 0.0
        ranges.append((kind.lower(), values, q - position * 1e-6))  # stable on ties
    ranges.sort(key=lambda r: -r[2])
    return ranges


def negotiate(query: dict[str, list[str]], accept: str | None) -> Format:
    """Pick the response format from `?format=` (which wins) or `Accept`."""
    requested = query.get("format", [""])[-1]
    car_params: dict[str, str] = {}
    from_accept = False
    if requested:
        if requested in _UNSUPPORTED_FORMATS:
            raise GatewayError(501, f"format={requested} is not served by this gateway "
                               "(chorus serves files, format=raw and format=car)")
        if requested not in _FORMAT_TYPES:
            raise GatewayError(400, f"unknown format {requested!r}: use raw or car")
        kind = requested
        for kind_, params, q in _media_ranges(accept or ""):
            if kind_ == _CAR_TYPE and q > 0:
                car_params = params
                break
    else:
        kind = "deserialized"
        for kind_, params, q in _media_ranges(accept or ""):
            if q <= 0:
                continue
            if kind_ == _RAW_TYPE:
                kind, from_accept = "raw", True
                break
            if kind_ == _CAR_TYPE:
                kind, car_params, from_accept = "car", params, True
                break
    if kind != "car":
        return Format(kind, from_accept=from_accept)
    version = query.get("car-version", [car_params.get("version", "1")])[-1]
    order = query.get("car-order", [car_params.get("order", "dfs")])[-1]
    dups = query.get("car-dups", [car_params.get("dups", "n")])[-1]
    if version != "1":
        raise GatewayError(406, f"CAR version {version!r} is not served: only version=1")
    if order not in ("dfs", "unk", ""):
        raise GatewayError(406, f"CAR order {order!r} is not served: only order=dfs")
    if dups not in ("y", "n", ""):
        raise GatewayError(406, f"CAR dups {dups!r} is not understood: y or n")
    return Format("car", dups=dups == "y", from_accept=from_accept)


# -- content types -------------------------------------------------------------------------

_TEXT = "text/plain; charset=utf-8"
_HTML = "text/html; charset=utf-8"
_OCTETS = "application/octet-stream"

_BY_EXTENSION = {
    "mp3": "audio/mpeg", "ogg": "audio/ogg", "oga": "audio/ogg", "opus": "audio/ogg",
    "flac": "audio/flac", "wav": "audio/wav", "m4a": "audio/mp4", "aac": "audio/aac",
    "aif": "audio/aiff", "aiff": "audio/aiff", "mid": "audio/midi", "midi": "audio/midi",
    "mp4": "video/mp4", "m4v": "video/mp4", "webm": "video/webm", "mkv": "video/x-matroska",
    "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif",
    "webp": "image/webp", "avif": "image/avif", "svg": "image/svg+xml", "ico": "image/x-icon",
    "html": _HTML, "htm": _HTML, "css": "text/css; charset=utf-8",
    "js": "text/javascript; charset=utf-8", "mjs": "text/javascript; charset=utf-8",
    "json": "application/json", "txt": _TEXT, "md": "text/markdown; charset=utf-8",
    "xml": "application/xml", "pdf": "application/pdf", "wasm": "application/wasm",
    "car": _CAR_TYPE, "zip": "application/zip", "gz": "application/gzip",
}  # fmt: skip

_MP4_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}
_BINARY_CONTROLS = frozenset(
    [*range(0x00, 0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20)]
)


def _looks_like_text(head: bytes) -> bool:
    if any(byte in _BINARY_CONTROLS for byte in head):
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a character cut by the 512-byte window is fine
        return exc.start >= len(head) - 3 and exc.reason == "unexpected end of data"
    return True


def sniff_content_type(head: bytes, name: str | None = None) -> str:
    """A Content-Type for a file from its name's extension, else its first bytes.

    Audio first (this is a music co-op): MP3 (ID3 tag or an MPEG audio frame
    header), Ogg, FLAC, WAV, AIFF, MP4/M4A (by `ftyp` brand), AAC (ADTS), then the
    common images, PDF, WebAssembly, and text (HTML and SVG recognised); anything
    else is application/octet-stream.
    """
    if name and "." in name:
        known = _BY_EXTENSION.get(name.rsplit(".", 1)[1].lower())
        if known:
            return known
    if head.startswith(b"ID3"):
        return "audio/mpeg"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        if head[1] & 0x06:  # layer bits set: MPEG audio layer I-III
            return "audio/mpeg"
        return "audio/aac"  # layer 00 is ADTS
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"RIFF") and len(head) >= 12:
        form = head[8:12]
        if form == b"WAVE":
            return "audio/wav"
        if form == b"WEBP":
            return "image/webp"
        if form == b"AVI ":
            return "video/x-msvideo"
    if head.startswith(b"FORM") and head[8:12] in (b"AIFF", b"AIFC"):
        return "audio/aiff"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _MP4_AUDIO_BRANDS:
            return "audio/mp4"
        if brand in (b"avif", b"avis"):
            return "image/avif"
        if brand == b"qt  ":
            return "video/quicktime"
        return "video/mp4"
    if head.startswith(b"\x1aE\xdf\xa3"):
        return "video/webm"
    if head.startswith(b"MThd"):
        return "audio/midi"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"\x00asm"):
        return "application/wasm"
    if head.startswith(b"PK\x03\x04"):
        return "application/zip"
    if head.startswith(b"\x1f\x8b"):
        return "application/gzip"
    if not _looks_like_text(head):
        return _OCTETS
    lowered = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if lowered.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return _HTML
    if lowered.startswith(b"<svg") or (lowered.startswith(b"<?xml") and b"<svg" in lowered):
        return "image/svg+xml"
    return _TEXT


# -- ETags ---------------------------------------------------------------------------------


def etag_matches(header: str, etag: str) -> bool:
    """Whether `If-None-Match: header` matches `etag` (weak comparison, as RFC 9110 says
    If-None-Match compares)."""
    ours = etag.removeprefix("W/")
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == ours:
            return True
    return False


# -- the directory listing -----------------------------------------------------------------


def _human_size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # unreachable


def directory_html(path: str, cid_text: str, entries: Sequence[tuple[str, str, int | None]],
                   has_parent: bool) -> bytes:
    """The listing page: every name escaped, every link percent-encoded and relative
    to the directory (whose URL ends in '/'), sizes as IPFS DAG sizes (Tsize)."""
    shown = html.escape(unquote_to_bytes(path).decode("utf-8", "replace"))
    rows = []
    if has_parent:
        rows.append('<tr><td><a href="../">..</a></td><td></td><td></td></tr>')
    for name, child, tsize in entries:
        rows.append(
            f'<tr><td><a href="./{html.escape(quote(name, safe=""))}">{html.escape(name)}</a>'
            f'</td><td><a class="cid" href="/ipfs/{child}">{child}</a></td>'
            f'<td class="size">{_human_size(tsize)}</td></tr>'
        )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Index of {shown}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td{{padding:.2em 1em .2em 0}}.cid{{font-family:monospace;font-size:.8em;color:#666}}
.size{{text-align:right}}</style></head>
<body><h1>Index of {shown}</h1>
<p class="cid">{html.escape(cid_text)} &middot;
<a href="?format=car">CAR</a> &middot; <a href="?format=raw">block</a></p>
<table>
<tr><th>Name</th><th>CID</th><th>Size (DAG)</th></tr>
{"".join(rows)}
</table></body></html>
"""
    return page.encode("utf-8")


# -- decoded nodes -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class _File:
    """A UnixFS file node (or a raw block) decoded once: its own bytes, and its
    children with their byte counts and offsets within this node."""

    size: int
    data: bytes
    children: tuple[CID, ...] = ()
    sizes: tuple[int, ...] = ()
    starts: tuple[int, ...] = ()
    kind: str = "file"


@dataclass(frozen=True, slots=True, eq=False)
class _Directory:
    entries: tuple[DirEntry, ...]
    index: dict[str, CID]
    kind: str = "directory"


@dataclass(frozen=True, slots=True, eq=False)
class _Other:
    """A node the gateway does not deserialize: 'hamt', 'symlink', 'metadata',
    'opaque' (a codec other than dag-pb and raw) or 'invalid' (malformed)."""

    kind: str
    detail: str


_Node = _File | _Directory | _Other


def _decode_file(cid: CID, block: bytes) -> _File:
    """A file node, with protocol/reader.read_file's checks (the reader re-decodes
    every node on every read, which is why the gateway keeps its own)."""
    if cid.codec.code == RAW:
        return _File(len(block), block)
    if cid.codec.code != DAG_PB:
        raise UnixFSError(f"{cid}: codec {cid.codec.name} is not dag-pb or raw")
    node = decode_node(block)
    if node.data is None:
        raise UnixFSError(f"{cid}: dag-pb node without UnixFS Data")
    fs = decode_data(node.data)
    if fs.type not in (DataType.FILE, DataType.RAW):
        raise NotAFile(f"{cid} is a UnixFS {fs.type.name.lower()}, not a file")
    return _file_from(cid, node.links, fs)


def _file_from(cid: CID, links: Sequence[Any], fs: Any) -> _File:
    if len(fs.blocksizes) != len(links):
        raise UnixFSError(f"{cid}: {len(links)} links but {len(fs.blocksizes)} blocksizes")
    own = fs.data or b""
    starts = []
    position = len(own)
    for size in fs.blocksizes:
        starts.append(position)
        position += size
    if fs.filesize is not None and fs.filesize != position:
        raise UnixFSError(f"{cid}: filesize {fs.filesize} but content adds up to {position}")
    return _File(
        position, own, tuple(link.cid for link in links), tuple(fs.blocksizes), tuple(starts)
    )


def _classify(cid: CID, block: bytes) -> _Node:
    """What the gateway serves a node as. A block that is not valid UnixFS is
    `_Other('invalid')`, not an error: its raw bytes and CAR block are still served
    (trustless responses never need to deserialize it)."""
    try:
        return _classify_valid(cid, block)
    except (DecodeError, NotAFile) as exc:
        return _Other("invalid", f"not readable UnixFS ({exc})")


def _classify_valid(cid: CID, block: bytes) -> _Node:
    if cid.codec.code == RAW:
        return _File(len(block), block)
    if cid.codec.code != DAG_PB:
        return _Other("opaque", f"codec {cid.codec.name}")
    node = decode_node(block)
    if node.data is None:
        raise UnixFSError(f"{cid}: dag-pb node without UnixFS Data")
    fs = decode_data(node.data)
    if fs.type in (DataType.FILE, DataType.RAW):
        return _file_from(cid, node.links, fs)
    if fs.type == DataType.DIRECTORY:
        entries = tuple(list_directory(cid, lambda _cid: block))
        return _Directory(entries, {entry.name: entry.cid for entry in entries})
    if fs.type == DataType.HAMT_SHARD:
        return _Other("hamt", "a HAMT-sharded directory")
    if fs.type == DataType.SYMLINK:
        return _Other("symlink", f"a symlink to {(fs.data or b'').decode('utf-8', 'replace')!r}")
    return _Other("metadata", "a UnixFS metadata node")


def _step(node: _Node, segment: str, target: Target, index: int) -> CID:
    """The child named `segment` of the directory `node` (the `index`-th segment)."""
    if not isinstance(node, _Directory):
        walked = "/".join(["/ipfs", target.cid_text,
                           *(quote(s, safe="") for s in target.segments[:index])])
        if isinstance(node, _Other) and node.kind == "hamt":
            raise GatewayError(501, f"{walked} is a HAMT-sharded directory, which chorus "
                               "does not traverse")
        what = node.detail if isinstance(node, _Other) else "a file"
        raise GatewayError(404, f"{walked} is {what}, not a directory, so it has no {segment!r}")
    child = node.index.get(segment)
    if child is None:
        walked = "/".join(["/ipfs", target.cid_text,
                           *(quote(s, safe="") for s in target.segments[:index])])
        raise GatewayError(404, f"no link named {segment!r} under {walked}")
    return child


def _cost(node: _Node) -> int:
    if isinstance(node, _File):
        return 128 + len(node.data) + 96 * len(node.children)
    if isinstance(node, _Directory):
        return 128 + 160 * len(node.entries)
    return 128


class _LRU:
    """A thread-safe least-recently-used map bounded by a total cost."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[bytes, tuple[Any, int]] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    def get(self, key: bytes) -> Any:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: bytes, value: Any, cost: int = 1) -> None:
        if cost > self.capacity:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._total -= old[1]
            self._items[key] = (value, cost)
            self._total += cost
            while self._total > self.capacity:
                _, (_, dropped) = self._items.popitem(last=False)
                self._total -= dropped

    def __contains__(self, key: bytes) -> bool:
        with self._lock:
            return key in self._items


class _ClientGone(Exception):
    """The client disconnected before there was anything to answer."""


class _NotCached(Exception):
    """A read from memory met a node that is not cached (read it through a feed)."""


class _Client:
    """The other end of one request: has it gone? Remembered once seen, so the
    watchers of successive phases (resolution, then the body) agree."""

    def __init__(self, receive: Callable[[], Awaitable[Any]]) -> None:
        self._receive = receive
        self.gone = False

    async def wait_gone(self) -> None:
        while not self.gone:
            if (await self._receive())["type"] == "http.disconnect":
                self.gone = True


# -- block feed: store, swarm, read-ahead --------------------------------------------------


class _Feed:
    """Where one response's blocks come from, and how it reads ahead.

    Everything here runs in the trio thread: waiting for the swarm never holds a
    worker thread (the pool is shared with Bitswap serving and the RPC). Reads from
    the store go to a worker thread; a block the store lacks is fetched through
    `BlockService.get`. The first such miss makes the response "remote": from then
    on `want` starts fetches of the blocks the walk needs next (READ_AHEAD of
    them, as tasks of the response's nursery), and the walk takes them from here.
    Blocks fetched ahead are held only until the walk takes them, and the fetches
    die with the response.
    """

    def __init__(self, gateway: Gateway, nursery: trio.Nursery | None) -> None:
        self._gateway = gateway
        self._nursery = nursery
        self.remote = False
        self._hint: Sequence[CID] = ()
        self._started: set[bytes] = set()
        self._pending: dict[bytes, trio.Event] = {}
        self._arrived: dict[bytes, bytes] = {}
        self._failed: dict[bytes, Exception] = {}

    def want(self, cids: Sequence[CID]) -> None:
        """Hint: the walk needs these next (acted on once the response is remote)."""
        self._hint = cids
        if self.remote:
            self._start(cids)

    def _start(self, cids: Sequence[CID]) -> None:
        if self._nursery is None:
            return
        for cid in cids:
            key = bytes(cid)
            if key in self._started or key in self._gateway.nodes:
                continue
            self._started.add(key)
            event = self._pending[key] = trio.Event()
            self._nursery.start_soon(self._fetch, cid, key, event)

    async def _fetch(self, cid: CID, key: bytes, event: trio.Event) -> None:
        try:
            self._arrived[key] = await self._gateway.blocks.get(cid)  # the store first
        except Exception as exc:  # noqa: BLE001 - handed to whoever takes the block
            self._failed[key] = exc
        finally:
            event.set()

    def ahead(self, cid: CID) -> bool:
        """Whether a read-ahead fetch has (or is getting) this block."""
        return bytes(cid) in self._pending

    async def take(self, cid: CID) -> bytes:
        """A block the read-ahead fetched (waiting for it if it is still coming)."""
        key = bytes(cid)
        event = self._pending.pop(key)
        await event.wait()
        self._started.discard(key)  # a block met again later is fetched again
        failure = self._failed.pop(key, None)
        if failure is not None:
            raise failure
        return self._arrived.pop(key)

    async def swarm(self, cid: CID) -> bytes:
        """A block the store lacks: fetch it now and, once it is here, read ahead.
        (Not before: the first block is what the time to first byte waits for, and
        a provider answers wants in order, so it must not queue behind the window.)"""
        data = await self._gateway.blocks.get(cid)
        if not self.remote:
            self.remote = True
            self._start(self._hint)
        return data


# -- replies -------------------------------------------------------------------------------

#: A streamed body: its pieces, produced in the trio thread from the response's feed.
Producer = Callable[[_Feed], AsyncIterator[bytes]]


@dataclass(slots=True)
class _Reply:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    stream: Producer | None = None


def _error_reply(status: int, message: str, extra: Sequence[tuple[bytes, bytes]] = ()) -> _Reply:
    body = f"{status} {message}\n".encode()
    headers = [
        (b"content-type", _TEXT.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"access-control-allow-origin", b"*"),
        *extra,
    ]
    return _Reply(status, headers, body)


def _content_disposition(query: dict[str, list[str]], default: str | None) -> bytes | None:
    """`Content-Disposition` for `?filename=` / `?download=true`, as the spec asks
    (ASCII fallback with '_' for other characters, plus the UTF-8 form)."""
    name = query.get("filename", [default or ""])[-1]
    download = query.get("download", ["false"])[-1].lower() == "true"
    if not name and not download:
        return None
    disposition = "attachment" if download else "inline"
    if name:
        ascii_name = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else "_" for c in name)
        disposition += f'; filename="{ascii_name}"'
        if ascii_name != name:
            disposition += f"; filename*=UTF-8''{quote(name, safe='')}"
    return disposition.encode("ascii")


# -- the gateway ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Request:
    """What the handlers need from one HTTP request, read once from the ASGI scope."""

    target: Target
    query: dict[str, list[str]]
    query_string: str
    #: HEAD: the same status and headers as GET, and no body (so none is read).
    head: bool
    client: _Client
    headers: dict[bytes, str] = field(default_factory=dict)

    def header(self, name: bytes) -> str | None:
        return self.headers.get(name)


_WANTED_HEADERS = frozenset(
    [b"range", b"if-none-match", b"if-range", b"accept", b"cache-control", b"service-worker"]
)


class Gateway:
    """The `/ipfs/` ASGI app over a daemon's block service and store."""

    def __init__(self, daemon: Daemon, *, cache_bytes: int = NODE_CACHE_BYTES) -> None:
        self.daemon = daemon
        self.blocks = daemon.blocks
        self.store = daemon.repo.blockstore
        #: Decoded nodes by CID bytes (`_File`, `_Directory`, `_Other`).
        self.nodes = _LRU(cache_bytes)
        self._types = _LRU(SMALL_CACHE_ENTRIES)
        self._cids = _LRU(SMALL_CACHE_ENTRIES)
        self._texts = _LRU(SMALL_CACHE_ENTRIES)

    # -- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            return
        client = _Client(receive)
        try:
            reply = await self._respond(scope, client)
        except _ClientGone:
            return
        except GatewayError as exc:
            reply = _error_reply(exc.status, exc.message, exc.headers)
        except BlockNotFound as exc:  # a block under the root, nobody has it
            reply = _error_reply(404, f"{scope.get('path')}: {exc}")
        except (DecodeError, NotAFile) as exc:  # a malformed node under the root
            reply = _error_reply(404, f"{scope.get('path')} is not readable UnixFS: {exc}")
        except Exception as exc:
            log.exception("gateway %s failed", scope.get("path"))
            reply = _error_reply(500, f"internal error: {type(exc).__name__}: {exc}")
        await send({"type": "http.response.start", "status": reply.status,
                    "headers": reply.headers})
        if scope["method"] == "HEAD" or reply.stream is None:
            await send({"type": "http.response.body",
                        "body": b"" if scope["method"] == "HEAD" else reply.body})
            return
        await self._stream(reply.stream, client, send)

    async def _stream(self, produce: Producer, client: _Client,
                      send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        """Send a streamed body; stop (and stop fetching) if the client goes away.
        A failure after the headers went out aborts the connection, so the client
        sees a short body rather than a wrong one."""
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:

            async def watch_disconnect() -> None:
                await client.wait_gone()
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_disconnect)
            try:
                async with aclosing(produce(_Feed(self, nursery))) as pieces:
                    pending: list[bytes | memoryview] = []
                    held = 0
                    async for piece in pieces:
                        pending.append(piece)
                        held += len(piece)
                        if held >= PIECE:
                            await send({"type": "http.response.body",
                                        "body": b"".join(pending), "more_body": True})
                            pending, held = [], 0
                await send({"type": "http.response.body", "body": b"".join(pending),
                            "more_body": False})
            except Exception as exc:  # noqa: BLE001 - re-raised below, outside the nursery
                failure = exc
            nursery.cancel_scope.cancel()
        if failure is not None:
            log.warning("gateway: stream aborted after the headers were sent: %s", failure)
            raise failure

    # -- one request -----------------------------------------------------------------------

    async def _respond(self, scope: dict[str, Any], client: _Client) -> _Reply:
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
        target = parse_target(raw_path)
        query_string = scope.get("query_string", b"").decode("latin-1")
        query = parse_qs(query_string, keep_blank_values=True) if query_string else {}
        request = _Request(target, query, query_string, scope["method"] == "HEAD", client)
        for name, value in scope["headers"]:
            if name in _WANTED_HEADERS:
                request.headers[name] = value.decode("latin-1")
        if target.redirect is not None:
            return self._redirect(target.redirect, query_string)
        if (request.header(b"service-worker") or "").strip() == "script" and (
            not target.segments and not target.trailing_slash
        ):
            raise GatewayError(400, "a service worker may not take the scope of a whole "
                               "content root; register it under /ipfs/{cid}/")
        wanted = negotiate(query, request.header(b"accept"))
        root = self._parse_cid(target.cid_text)
        only_cached = "only-if-cached" in (request.header(b"cache-control") or "")
        resolved = self._resolve_cached(root, target)
        if resolved is None:
            resolved = await self._watching(
                client, lambda: self._resolve(root, target, only_cached), target.path)
        terminal, node, roots = resolved
        common = [
            (b"x-ipfs-path", target.path.encode("ascii")),
            (b"x-ipfs-roots", ",".join(self._text(c) for c in roots).encode("ascii")),
            (b"vary", b"Accept"),
            (b"x-content-type-options", b"nosniff"),
            (b"access-control-allow-origin", b"*"),
            (b"access-control-expose-headers",
             b"Content-Range, Content-Length, X-Ipfs-Path, X-Ipfs-Roots"),
        ]
        if wanted.from_accept:
            separator = "&" if query_string else ""
            location = f"{target.path}?{query_string}{separator}format={wanted.kind}"
            common.append((b"content-location", location.encode("latin-1")))
        if wanted.kind == "raw":
            return await self._raw(request, terminal, common)
        if wanted.kind == "car":
            return await self._car(request, root, roots, terminal, node, wanted, common)
        if isinstance(node, _Directory):
            return await self._directory(request, terminal, node, roots, common)
        if isinstance(node, _File):
            name = target.segments[-1] if target.segments else None
            return await self._file(request, terminal, node, name, common)
        if node.kind == "invalid":
            raise GatewayError(404, f"{target.path} is {node.detail}")
        raise GatewayError(501, f"{target.path} is {node.detail}, which this gateway does not "
                           "render; ask for ?format=raw or ?format=car&dag-scope=block")

    def _redirect(self, location: str, query_string: str) -> _Reply:
        if query_string:
            location += "?" + query_string
        body = f'<a href="{html.escape(location)}">Moved Permanently</a>.\n'.encode()
        return _Reply(301, [
            (b"location", location.encode("latin-1")),
            (b"cache-control", IMMUTABLE),
            (b"content-type", _HTML.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"x-content-type-options", b"nosniff"),
        ], body)

    def _parse_cid(self, text: str) -> CID:
        key = text.encode("utf-8", "surrogatepass")
        cached = self._cids.get(key)
        if cached is not None:
            return cached
        try:
            cid = parse_cid(text)
        except InvalidCID as exc:
            raise GatewayError(400, f"invalid CID in the path: {exc}") from None
        self._cids.put(key, cid)
        return cid

    def _text(self, cid: CID) -> str:
        key = bytes(cid)
        text = self._texts.get(key)
        if text is None:
            text = cid_to_text(cid)
            self._texts.put(key, text)
        return text

    # -- blocks and nodes --------------------------------------------------------------------

    async def _block(self, cid: CID, feed: _Feed) -> bytes:
        """A block's verified bytes: read ahead, the store (worker thread), the swarm."""
        if feed.ahead(cid):
            return await feed.take(cid)
        try:
            return await trio.to_thread.run_sync(self.store.get, cid)
        except BlockNotFound:
            return await feed.swarm(cid)

    async def _load(self, cid: CID, feed: _Feed, decode: Callable[[CID, bytes], _Node]) -> _Node:
        """A node from the cache, or read and decoded (one worker-thread hop when the
        block is local: decoding an 80-link node is ~1.5 ms, too long for the loop)."""
        key = bytes(cid)
        node = self.nodes.get(key)
        if node is not None:
            return node
        if not feed.ahead(cid):
            try:
                return await trio.to_thread.run_sync(self._read_local, cid, decode)
            except BlockNotFound:
                data = await feed.swarm(cid)
        else:
            data = await feed.take(cid)
        return await trio.to_thread.run_sync(self._decode, cid, data, decode)

    def _read_local(self, cid: CID, decode: Callable[[CID, bytes], _Node]) -> _Node:
        return self._decode(cid, self.store.get(cid), decode)

    def _decode(self, cid: CID, data: bytes, decode: Callable[[CID, bytes], _Node]) -> _Node:
        node = decode(cid, data)
        self.nodes.put(bytes(cid), node, _cost(node))
        return node

    async def _file_node(self, cid: CID, feed: _Feed) -> _File:
        node = await self._load(cid, feed, _decode_file)
        if not isinstance(node, _File):
            raise UnixFSError(f"{cid} is inside a file but is not a file node")
        return node

    # -- resolution ------------------------------------------------------------------------

    async def _node(self, cid: CID, only_cached: bool) -> _Node:
        """The classified node at `cid`, for resolution: 404 when nobody has it, 412
        when it is not local and the client said only-if-cached."""
        node = self.nodes.get(bytes(cid))
        if node is not None:
            return node
        try:
            return await trio.to_thread.run_sync(self._read_local, cid, _classify)
        except BlockNotFound:
            if only_cached:
                raise GatewayError(412, f"{self._text(cid)} is not on this node "
                                   "(Cache-Control: only-if-cached)") from None
        try:
            data = await self.blocks.get(cid)
        except BlockNotFound as exc:
            raise GatewayError(404, f"block {self._text(cid)} not found: {exc}") from None
        return await trio.to_thread.run_sync(self._decode, cid, data, _classify)

    async def _resolve(self, root: CID, target: Target,
                       only_cached: bool) -> tuple[CID, _Node, list[CID]]:
        """Follow the path from `root` one segment at a time (names are compared
        decoded, so `%2F` inside a segment can never act as a separator)."""
        node = await self._node(root, only_cached)
        roots = [root]
        for index, segment in enumerate(target.segments):
            child = _step(node, segment, target, index)
            node = await self._node(child, only_cached)
            roots.append(child)
        return roots[-1], node, roots

    async def _watching(self, client: _Client, work: Callable[[], Awaitable[_T]],
                        what: str) -> _T:
        """Run `work` (which may wait for the swarm) within RESOLVE_TIMEOUT, else 504,
        and give it up as soon as the client disconnects: a flood of requests for
        content nobody has must not leave the node looking for it on behalf of
        clients that are gone. Only slow paths come here (a nursery per request
        would show in the seek rate)."""
        result: list[_T] = []
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:

            async def watch_disconnect() -> None:
                await client.wait_gone()
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_disconnect)
            try:
                with trio.fail_after(RESOLVE_TIMEOUT):
                    result.append(await work())
            except Exception as exc:  # noqa: BLE001 - re-raised outside the nursery
                failure = exc
            nursery.cancel_scope.cancel()
        if isinstance(failure, trio.TooSlowError):
            raise GatewayError(504, f"could not fetch {what} within {RESOLVE_TIMEOUT:.0f} s",
                               [(b"retry-after", b"30")])
        if failure is not None:
            raise failure
        if not result:
            raise _ClientGone
        return result[0]

    def _resolve_cached(self, root: CID, target: Target) -> tuple[CID, _Node, list[CID]] | None:
        """`_resolve` from memory alone (no timeout scope, no await); None on a miss."""
        node = self.nodes.get(bytes(root))
        if node is None:
            return None
        roots = [root]
        for index, segment in enumerate(target.segments):
            child = _step(node, segment, target, index)
            node = self.nodes.get(bytes(child))
            if node is None:
                return None
            roots.append(child)
        return roots[-1], node, roots

    # -- reading files -----------------------------------------------------------------------

    def _cached_pieces(self, node: _File, start: int, end: int,
                       depth: int = 0) -> Iterator[memoryview]:
        """The bytes [start, end) of the file `node` from memory alone; raises
        _NotCached at the first node that is not in the cache."""
        if depth > MAX_DEPTH:
            raise UnixFSError(f"file DAG deeper than {MAX_DEPTH} levels")
        own = node.data
        if start < len(own):
            yield memoryview(own)[start:min(end, len(own))]
        for index, position, size in _overlapping(node, start, end):
            child = self.nodes.get(bytes(node.children[index]))
            if child is None:
                raise _NotCached
            _check_child(node, index, child)
            yield from self._cached_pieces(child, max(0, start - position),
                                           min(size, end - position), depth + 1)

    async def _pieces(self, node: _File, start: int, end: int, feed: _Feed,
                      depth: int = 0) -> AsyncIterator[memoryview]:
        """The bytes [start, end) of the file `node`, walking only the children that
        overlap the range (the order and checks of protocol/reader.read_file), with
        the next READ_AHEAD siblings hinted to the feed before each child is read."""
        if depth > MAX_DEPTH:
            raise UnixFSError(f"file DAG deeper than {MAX_DEPTH} levels")
        own = node.data
        if start < len(own):
            yield memoryview(own)[start:min(end, len(own))]
        wanted = list(_overlapping(node, start, end))
        for number, (index, position, size) in enumerate(wanted):
            feed.want(_upcoming(node, wanted, number))
            child = await self._file_node(node.children[index], feed)
            _check_child(node, index, child)
            async for piece in self._pieces(child, max(0, start - position),
                                            min(size, end - position), feed, depth + 1):
                yield piece

    def _produce_file(self, node: _File, start: int, end: int) -> Producer:
        def produce(feed: _Feed) -> AsyncIterator[memoryview]:
            return self._pieces(node, start, end, feed)

        return produce

    async def _read(self, request: _Request, node: _File, start: int, end: int) -> bytes:
        """[start, end) as one bytes object (small reads: seeks, the sniffing head).
        From memory on the event loop when every node is cached."""
        try:
            return b"".join(self._cached_pieces(node, start, end))
        except _NotCached:
            pass
        return await self._watching(request.client, lambda: self._read_through(node, start, end),
                                    request.target.path)

    async def _read_through(self, node: _File, start: int, end: int) -> bytes:
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            feed = _Feed(self, nursery)
            try:
                async with aclosing(self._pieces(node, start, end, feed)) as pieces:
                    data = b"".join([piece async for piece in pieces])
            except Exception as exc:  # noqa: BLE001 - re-raised outside the nursery
                failure = exc
            nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return data

    async def _content_type(self, request: _Request, cid: CID, node: _File,
                            name: str | None) -> str:
        if name and "." in name:
            known = _BY_EXTENSION.get(name.rsplit(".", 1)[1].lower())
            if known:
                return known
        key = bytes(cid)
        sniffed = self._types.get(key)
        if sniffed is None:
            head = await self._read(request, node, 0, min(SNIFF_BYTES, node.size))
            sniffed = sniff_content_type(head)
            self._types.put(key, sniffed)
        return sniffed

    # -- deserialized responses ---------------------------------------------------------------

    async def _file(self, request: _Request, cid: CID, node: _File, name: str | None,
                    common: list[tuple[bytes, bytes]]) -> _Reply:
        etag = f'"{self._text(cid)}"'
        headers = [(b"etag", etag.encode()), (b"cache-control", IMMUTABLE),
                   (b"accept-ranges", b"bytes"), *common]
        if_none_match = request.header(b"if-none-match")
        if if_none_match and etag_matches(if_none_match, etag):
            return _Reply(304, headers)
        filename = request.query.get("filename", [None])[-1]
        content_type = await self._content_type(request, cid, node, filename or name)
        headers.append((b"content-type", content_type.encode()))
        disposition = _content_disposition(request.query, None)
        if disposition:
            headers.append((b"content-disposition", disposition))
        size = node.size
        status, start, end = 200, 0, size
        range_header = request.header(b"range")
        if_range = request.header(b"if-range")
        if range_header and (if_range is None or if_range.strip() == etag):
            try:
                chosen = parse_range(range_header, size)
            except Unsatisfiable:
                return _error_reply(416, f"range {range_header!r} is outside the "
                                    f"{size}-byte file", [
                    (b"content-range", f"bytes */{size}".encode()),
                    (b"accept-ranges", b"bytes"), (b"etag", etag.encode()),
                ])
            if chosen is not None:
                status, (start, end) = 206, chosen
                headers.append((b"content-range", f"bytes {start}-{end - 1}/{size}".encode()))
        headers.append((b"content-length", str(end - start).encode()))
        if request.head:
            return _Reply(status, headers)
        if end - start <= SMALL_BODY:
            return _Reply(status, headers, await self._read(request, node, start, end))
        return _Reply(status, headers, stream=self._produce_file(node, start, end))

    async def _directory(self, request: _Request, cid: CID, node: _Directory, roots: list[CID],
                         common: list[tuple[bytes, bytes]]) -> _Reply:
        target = request.target
        if not target.trailing_slash:
            return self._redirect(target.path + "/", request.query_string)
        index = node.index.get("index.html")
        if index is not None:
            index_node = self.nodes.get(bytes(index)) or await self._watching(
                request.client, lambda: self._node(index, False), target.path + "index.html")
            if isinstance(index_node, _File):
                roots_header = ",".join(self._text(c) for c in [*roots, index]).encode()
                headers = [(n, v) if n != b"x-ipfs-roots" else (n, roots_header)
                           for n, v in common]
                return await self._file(request, index, index_node, "index.html", headers)
        cid_text = self._text(cid)
        etag = f'"DirIndex-{DIR_INDEX_VERSION}_CID-{cid_text}"'
        headers = [(b"etag", etag.encode()), (b"cache-control", IMMUTABLE), *common]
        if_none_match = request.header(b"if-none-match")
        if if_none_match and etag_matches(if_none_match, etag):
            return _Reply(304, headers)
        entries = [(e.name, self._text(e.cid), e.tsize) for e in node.entries]
        body = directory_html(target.path, cid_text, entries, bool(target.segments))
        headers += [(b"content-type", _HTML.encode()),
                    (b"content-length", str(len(body)).encode())]
        return _Reply(200, headers, body)

    # -- trustless responses -------------------------------------------------------------------

    async def _raw(self, request: _Request, cid: CID,
                   common: list[tuple[bytes, bytes]]) -> _Reply:
        cid_text = self._text(cid)
        etag = f'"{cid_text}.raw"'
        headers = [(b"etag", etag.encode()), (b"cache-control", IMMUTABLE),
                   (b"accept-ranges", b"none"), *common]
        if_none_match = request.header(b"if-none-match")
        if if_none_match and etag_matches(if_none_match, etag):
            return _Reply(304, headers)
        try:
            data = await self._watching(request.client, lambda: self._block(cid, _Feed(self, None)),
                                        request.target.path)
        except BlockNotFound as exc:
            raise GatewayError(404, f"block {cid_text} not found: {exc}") from None
        disposition = _content_disposition(request.query, f"{cid_text}.bin") or b""
        disposition = disposition.replace(b"inline", b"attachment", 1)
        headers += [(b"content-type", _RAW_TYPE.encode()),
                    (b"content-disposition", disposition),
                    (b"content-length", str(len(data)).encode())]
        return _Reply(200, headers, data)

    async def _car(self, request: _Request, root: CID, roots: list[CID], terminal: CID,
                   node: _Node, wanted: Format, common: list[tuple[bytes, bytes]]) -> _Reply:
        query = request.query
        scope = query.get("dag-scope", ["all"])[-1]
        if scope not in ("all", "entity", "block"):
            raise GatewayError(400, f"dag-scope must be all, entity or block, not {scope!r}")
        span: tuple[int, int] | None = None
        entity_bytes = query.get("entity-bytes", [None])[-1]
        if entity_bytes is not None:
            first, last = parse_entity_bytes(entity_bytes)
            scope = "entity"
            if isinstance(node, _File):
                if first >= 0 and node.size and first >= node.size:
                    raise GatewayError(400, f"entity-bytes {entity_bytes} starts past the end "
                                       f"of the {node.size}-byte file")
                span = entity_span(first, last, node.size)
                if span is None:
                    scope = "block"
        if scope == "entity" and isinstance(node, _Other) and node.kind == "hamt":
            raise GatewayError(501, f"{self._text(terminal)} is a HAMT-sharded directory, "
                               "whose entity (all its shards) chorus does not pick out; use "
                               "dag-scope=all or dag-scope=block")
        if scope != "block" and isinstance(node, _Other) and node.kind == "opaque":
            raise GatewayError(501, f"chorus walks only dag-pb and raw DAGs, and "
                               f"{self._text(terminal)} is {node.detail}: use dag-scope=block")
        if scope != "block" and isinstance(node, _Other) and node.kind == "invalid":
            raise GatewayError(404, f"{self._text(terminal)} is {node.detail}, so its DAG "
                               "cannot be walked: use dag-scope=block")
        variant = f"{request.target.path}|{scope}|{span}|{wanted.dups}"
        digest = hashlib.sha256(variant.encode("utf-8")).hexdigest()[:16]
        etag = f'"{self._text(terminal)}.car.{digest}"'
        headers = [(b"etag", etag.encode()), (b"cache-control", IMMUTABLE),
                   (b"accept-ranges", b"none"), *common]
        if_none_match = request.header(b"if-none-match")
        if if_none_match and etag_matches(if_none_match, etag):
            return _Reply(304, headers)
        dups = "y" if wanted.dups else "n"
        disposition = _content_disposition(request.query, f"{self._text(terminal)}.car") or b""
        headers += [
            (b"content-type", f"{_CAR_TYPE}; version=1; order=dfs; dups={dups}".encode()),
            (b"content-disposition", disposition.replace(b"inline", b"attachment", 1)),
        ]
        if scope == "entity" and span is None:
            # A file's entity is its whole DAG; a directory's is its node (HAMT shards,
            # which would belong to it, are not read by chorus).
            scope = "all" if isinstance(node, _File) else "block"
        path_blocks = roots[:-1]

        async def produce(feed: _Feed) -> AsyncIterator[bytes]:
            yield encode_header([root])
            async for cid, data in self._car_blocks(feed, path_blocks, terminal, scope, span,
                                                    wanted.dups):
                yield encode_block(cid, data)

        return _Reply(200, headers, stream=produce)

    async def _car_blocks(self, feed: _Feed, path: list[CID], terminal: CID, scope: str,
                          span: tuple[int, int] | None,
                          dups: bool) -> AsyncIterator[tuple[CID, bytes]]:
        """The CAR's blocks, depth-first pre-order: the path's directories, then the
        terminal's block, its whole DAG ('all'), or what a byte range needs."""
        seen: set[bytes] = set()

        def fresh(cid: CID) -> bool:
            if cid.hashfun.code == _IDENTITY:
                return False  # the spec forbids identity blocks in CARs
            key = bytes(cid)
            if key in seen and not dups:
                return False
            seen.add(key)
            return True

        for cid in path:
            if fresh(cid):
                yield cid, await self._block(cid, feed)
        if scope == "block":
            if fresh(terminal):
                yield terminal, await self._block(terminal, feed)
        elif span is not None:
            async for item in self._range_blocks(feed, terminal, span[0], span[1], None, 0,
                                                 fresh):
                yield item
        else:
            # Pre-order, iteratively (a hostile DAG may be deep): each level keeps its
            # links and the next index, and hints the siblings that follow.
            stack: list[tuple[list[CID], int]] = [([terminal], 0)]
            while stack:
                links, index = stack[-1]
                if index == len(links):
                    stack.pop()
                    continue
                stack[-1] = (links, index + 1)
                cid = links[index]
                feed.want(links[index + 1 : index + 1 + READ_AHEAD])
                if not fresh(cid):
                    continue
                data = await self._block(cid, feed)
                yield cid, data
                if cid.codec.code != RAW:
                    children = await trio.to_thread.run_sync(links_of, cid, data)
                    if children:
                        stack.append((children, 0))

    async def _range_blocks(self, feed: _Feed, cid: CID, start: int, end: int,
                            expected: int | None, depth: int,
                            fresh: Callable[[CID], bool]) -> AsyncIterator[tuple[CID, bytes]]:
        """The blocks a verifier needs for bytes [start, end) of a file: this node and
        the children overlapping the range, recursively (what read_file visits)."""
        if depth > MAX_DEPTH:
            raise UnixFSError(f"{cid}: file DAG deeper than {MAX_DEPTH} levels")
        if fresh(cid):
            data = await self._block(cid, feed)
            yield cid, data
            node = self.nodes.get(bytes(cid))
            if node is None:
                node = await trio.to_thread.run_sync(self._decode, cid, data, _decode_file)
            if not isinstance(node, _File):
                raise UnixFSError(f"{cid} is inside a file but is not a file node")
        else:
            node = await self._file_node(cid, feed)
        if expected is not None and node.size != expected:
            raise UnixFSError(f"{cid}: holds {node.size} bytes, parent says {expected}")
        wanted = list(_overlapping(node, start, end))
        for number, (index, position, size) in enumerate(wanted):
            feed.want(_upcoming(node, wanted, number))
            async for item in self._range_blocks(feed, node.children[index],
                                                 max(0, start - position),
                                                 min(size, end - position), size, depth + 1,
                                                 fresh):
                yield item


def _overlapping(node: _File, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(index, offset, size) of the children of `node` overlapping [start, end), in order
    (empty children skipped, as protocol/reader.read_file skips them)."""
    starts, sizes = node.starts, node.sizes
    for index in range(max(0, bisect_right(starts, start) - 1), len(starts)):
        position = starts[index]
        if position >= end:
            return
        size = sizes[index]
        if size and position + size > start:
            yield index, position, size


def _upcoming(node: _File, wanted: list[tuple[int, int, int]], number: int) -> list[CID]:
    """The READ_AHEAD children the walk reads after `wanted[number]`."""
    return [node.children[index] for index, _, _ in wanted[number + 1 : number + 1 + READ_AHEAD]]


def _check_child(parent: _File, index: int, child: _File) -> None:
    if child.size != parent.sizes[index]:
        raise UnixFSError(f"{parent.children[index]}: holds {child.size} bytes, "
                          f"parent says {parent.sizes[index]}")


class _AnyPath(PathConvertor):
    """Starlette's `path` is `.*`, which stops at a newline: `/ipfs/CID/%0A` would miss
    the route and get the router's bare 404. The gateway judges every path itself."""

    regex = "[\\s\\S]*"


register_url_convertor("anypath", _AnyPath())


def gateway_routes(daemon: Daemon) -> list[BaseRoute]:
    """`GET`/`HEAD /ipfs/...` (any other method: 405 from Starlette)."""
    return [Route("/ipfs/{path:anypath}", Gateway(daemon), methods=["GET", "HEAD"])]
