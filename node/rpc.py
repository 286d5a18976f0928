"""The Kubo RPC subset under `/api/v0/`: what ipfshttpclient, `ipfs --api` and the CLI speak.

The `chorus` CLI talks to a running daemon through this (as `ipfs` talks to Kubo),
because the daemon owns the repo; ipfshttpclient 0.7.0 and other Kubo RPC clients
work against it unchanged (docs/kubo.md lists what is supported and every place
chorus answers differently from Kubo).

Conventions, as Kubo has them
-----------------------------
* Only POST. Any other method gets 405 (`Allow: POST`); an unknown command gets
  Kubo's plain-text `404 page not found`.
* Arguments are in the query string: `arg=` repeated for positional arguments,
  options by name. Booleans are read as Go's `strconv.ParseBool` reads them
  (`true`/`True`/`1`/`t`..., which covers ipfshttpclient's `True`/`False`), plus
  `yes`/`no` and the empty string (true). Options chorus does not know are ignored,
  as Kubo ignores `stream-channels` and `encoding`; options it knows but cannot
  honour (`trickle=true`, `chunker=rabin`, ...) are refused, never silently dropped.
* Answers are JSON, NDJSON (one JSON value per line) or raw bytes. Errors are
  `{"Message", "Code", "Type": "error"}`: HTTP 500 with Code 0 when the request was
  understood but failed, 400 with Code 1 when the request itself is wrong (missing
  `arg`, malformed option or body), 413 for an upload over the limit. An error that
  happens after a stream has started is sent as that same object on a last line
  (ipfshttpclient raises it as `PartialErrorResponse`).
* `offline=true` (a global option in Kubo) keeps `cat`, `get`, `block/get|stat`,
  `pin/add` to the local store: a missing block is an error at once instead of a
  search of the swarm.

Uploads
-------
`add`, `block/put` and `dag/import` take Kubo's multipart body: one part per file or
directory, the path in the part's `filename` (percent-encoded, so `/` arrives as
`%2F`), directories as empty parts of type `application/x-directory`, symlinks as
parts of type `application/symlink` whose body is the target. The body is parsed as
it streams (python-multipart's push parser) and written straight to a private
staging directory inside the repo (`.add-*`, removed afterwards, whatever happens) —
never held in memory or spooled to /tmp. Paths are confined to that directory:
`.`/`..`, NUL bytes, a path through a file or symlink, or the same path twice are
refused. A body larger than `max_upload_bytes` (config.json `"rpc":
{"max_upload_bytes": N}`, default 16 GiB) is refused with 413; the rest of the body
is first read and dropped (up to DRAIN_BYTES), so that clients which send their
whole body before reading the answer (requests, hence ipfshttpclient) see the 413
rather than a reset connection.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import errno
import json
import logging
import os
import platform
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol
from urllib.parse import unquote_plus

import trio
from multiformats import CID, multihash
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from protocol.cid import (
    DAG_PB,
    MAX_BLOCK_SIZE,
    RAW,
    cid_to_text,
    make_cid,
    parse_cid,
)
from protocol.dag import links_of
from protocol.dagpb import decode_node
from protocol.errors import ChorusError, DecodeError
from protocol.importer import ImportOptions
from protocol.path import parse_content_path
from protocol.reader import iter_dag, read_file, resolve_path, stat_node
from protocol.unixfs import decode_data

from .adder import AddResult, add_paths
from .bootstrap import parse_peer_addr
from .car import export_car, import_car
from .errors import BlockNotFound, RepoError
from .pieces import PieceReader
from .repo import REPO_VERSION

if TYPE_CHECKING:
    from .daemon import Daemon

__all__ = [
    "DEFAULT_MAX_UPLOAD",
    "DRAIN_BYTES",
    "SOFT_BLOCK_LIMIT",
    "ApiError",
    "rpc_routes",
]

log = logging.getLogger("chorus.api")
VERSION = "0.1.0"

#: Largest upload body (all parts and their headers) accepted by default.
DEFAULT_MAX_UPLOAD = 16 * 1024**3
#: After an upload passes its limit, at most this much more is read and dropped so
#: the client gets the 413; past it the connection is simply closed.
DRAIN_BYTES = 256 * 1024 * 1024
#: Parts (files, directories, symlinks) in one upload.
MAX_UPLOAD_ENTRIES = 1_000_000
#: Components of one upload path.
MAX_PATH_DEPTH = 256
#: Bytes of one part's headers (a deep path, percent-encoded, is long).
MAX_PART_HEADER = 64 * 1024
#: Bytes of a symlink's target.
MAX_SYMLINK_TARGET = 4096
#: `block/put` refuses blocks above this unless `allow-big-block=true`, as Kubo does;
#: MAX_BLOCK_SIZE (2 MiB) is refused always.
SOFT_BLOCK_LIMIT = 1024 * 1024
#: The only chunker chorus imports with (Kubo's default).
CHUNKER = "size-262144"

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_DIRECTORY = "application/x-directory"
_SYMLINK = "application/symlink"
_TRUE = frozenset({"1", "t", "true", "yes", "y", ""})
_FALSE = frozenset({"0", "f", "false", "no", "n"})
#: Codecs `block/put` accepts (chorus walks and serves only these).
_BLOCK_CODECS = {"raw": RAW, "dag-pb": DAG_PB}
#: Kubo's legacy `format` names: (codec, CID version).
_BLOCK_FORMATS = {
    "v0": (DAG_PB, 0),
    "protobuf": (DAG_PB, 1),
    "dag-pb": (DAG_PB, 1),
    "raw": (RAW, 1),
}


class ApiError(Exception):
    """A request the API refuses, with the HTTP status to send."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


def _error_body(message: str, status: int = 500) -> dict[str, Any]:
    # Kubo: Code 1 (ErrClient) answers a bad request, Code 0 (ErrNormal) a failure.
    return {"Message": message, "Code": 1 if 400 <= status < 500 else 0, "Type": "error"}


def _error(message: str, status: int = 500) -> JSONResponse:
    return JSONResponse(_error_body(message, status), status_code=status)


# -- arguments ---------------------------------------------------------------------------


def _flag(request: Request, name: str, default: bool) -> bool:
    value = request.query_params.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ApiError(f"invalid boolean for option {name!r}: {value!r}", 400)


def _int(request: Request, name: str, default: int | None, *, minimum: int = 0) -> int | None:
    value = request.query_params.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ApiError(f"invalid integer for option {name!r}: {value!r}", 400) from None
    if number < minimum:
        raise ApiError(f"option {name!r} must be at least {minimum}, not {number}", 400)
    return number


def _args(request: Request, what: str = "arg") -> list[str]:
    values = request.query_params.getlist("arg")
    if not values:
        raise ApiError(f'argument "{what}" is required', 400)
    return values


def _ndjson(items: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    """Stream `items` one per line; an error after the first line becomes a last
    line in Kubo's error shape (the status is already sent)."""

    async def body() -> AsyncIterator[bytes]:
        try:
            async for item in items:
                yield (json.dumps(item) + "\n").encode()
        except (ChorusError, OSError, ValueError) as exc:
            yield (json.dumps(_error_body(str(exc))) + "\n").encode()

    return StreamingResponse(body(), media_type="application/x-ndjson")


def _lines(items: Iterable[dict[str, Any]]) -> Response:
    """An NDJSON answer computed in full before it is sent."""
    body = "".join(json.dumps(item) + "\n" for item in items)
    return Response(body, media_type="application/x-ndjson")


def _max_upload(daemon: Daemon) -> int:
    """config.json `"rpc": {"max_upload_bytes": N}`, else DEFAULT_MAX_UPLOAD."""
    section = daemon.repo.config.extra.get("rpc", {})
    value = (
        section.get("max_upload_bytes", DEFAULT_MAX_UPLOAD) if isinstance(section, dict) else None
    )
    if type(value) is not int or value <= 0:
        raise RepoError(
            f"config.json: rpc.max_upload_bytes must be a positive number of bytes, not {value!r}"
        )
    return value


# -- routes ------------------------------------------------------------------------------


def rpc_routes(daemon: Daemon) -> list[Route]:
    store = daemon.repo.blockstore
    blocks = daemon.blocks
    upload_limit = _max_upload(daemon)

    async def resolve(text: str, offline: bool = False) -> CID:
        root, subpath = parse_content_path(text)
        if not subpath:
            return root
        if offline:
            return await trio.to_thread.run_sync(resolve_path, root, subpath, store.get)
        return await blocks.resolve(root, subpath)

    async def get_block(cid: CID, offline: bool) -> bytes:
        if offline:
            return await trio.to_thread.run_sync(store.get, cid)
        return await blocks.get(cid)

    async def ensure_dag(cid: CID, offline: bool) -> None:
        if offline:
            await trio.to_thread.run_sync(_check_local_dag, store, cid)
        else:
            await blocks.ensure_dag(cid)

    async def staging_dir(prefix: str) -> Path:
        made = await trio.to_thread.run_sync(
            lambda: tempfile.mkdtemp(prefix=prefix, dir=daemon.repo.path)
        )
        return Path(made)

    async def remove_staging(path: Path) -> None:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(lambda: shutil.rmtree(path, ignore_errors=True))

    # -- node ----------------------------------------------------------------------------

    async def id_(request: Request) -> Response:
        asked = request.query_params.getlist("arg")
        if asked and asked[0] != daemon.peer_id:
            raise ApiError(
                f"chorus answers `id` only for itself ({daemon.peer_id}), not for {asked[0]}"
            )
        public_key = daemon.host.get_public_key().serialize()
        suffix = f"/p2p/{daemon.peer_id}"
        return JSONResponse(
            {
                "ID": daemon.peer_id,
                "PublicKey": base64.b64encode(public_key).decode("ascii"),
                "Addresses": [a if a.endswith(suffix) else a + suffix for a in daemon.listen_addrs],
                "AgentVersion": f"chorus/{VERSION}",
                "ProtocolVersion": "ipfs/0.1.0",
                "Protocols": sorted(str(p) for p in daemon.host.get_mux().get_protocols()),
            }
        )

    async def version(request: Request) -> Response:
        return JSONResponse(
            {
                "Version": VERSION,
                "Commit": "",
                "Repo": str(REPO_VERSION),
                "System": _system(),
                "Golang": "",
                "Python": platform.python_version(),
            }
        )

    async def swarm_peers(request: Request) -> Response:
        peers = []
        network = daemon.host.get_network()
        for peer in daemon.host.get_connected_peers():
            addr = ""
            for conn in network.get_connections(peer):
                try:
                    addrs = conn.get_transport_addresses()
                    addr = str(addrs[0]) if addrs else ""
                except Exception:  # noqa: BLE001 - an address is a nicety
                    addr = ""
            peers.append({"Addr": addr, "Peer": str(peer)})
        return JSONResponse({"Peers": peers})

    async def swarm_connect(request: Request) -> Response:
        done = []
        for text in _args(request, "address"):
            try:
                info = parse_peer_addr(text)
            except ValueError as exc:
                raise ApiError(str(exc), 400) from None
            try:
                with trio.fail_after(15):
                    await daemon.host.connect(info)
            except Exception as exc:  # noqa: BLE001 - report any dial failure
                raise ApiError(f"connect {info.peer_id} failure: {exc}") from None
            done.append(f"connect {info.peer_id} success")
        return JSONResponse({"Strings": done})

    # -- content -------------------------------------------------------------------------

    async def add(request: Request) -> Response:
        settings = _add_settings(request)
        _boundary(request)  # a wrong body type is refused before anything is written
        staging = await staging_dir(".add-")
        try:
            tree = _UploadTree(staging)
            await _receive(request, upload_limit, tree)
            if not tree.tops:
                raise ApiError("no file in the upload", 400)
            if settings.wrap and tree.has_unnamed:
                raise ApiError("a file without a name cannot be wrapped in a directory", 400)
            paths = [tree.named] if settings.wrap else list(tree.tops)
            result = await trio.to_thread.run_sync(
                lambda: add_paths(
                    paths,
                    None if settings.only_hash else store,
                    settings.options,
                    recursive=True,
                    hidden=True,  # the client chose what to send (Kubo filters client-side)
                    pin=settings.pin,
                )
            )
        finally:
            await remove_staging(staging)
        added = _name_added(result, tree, wrapped=settings.wrap)
        if settings.pin and not settings.only_hash:
            daemon.announce([cid for name, cid, _ in added if "/" not in name])
        if settings.silent:
            return _lines([])
        return _lines(
            {"Name": name, "Hash": cid_to_text(cid), "Size": str(size)} for name, cid, size in added
        )

    async def cat(request: Request) -> Response:
        offline = _flag(request, "offline", False)
        offset = _int(request, "offset", 0) or 0
        length = _int(request, "length", None)
        cid = await resolve(_args(request, "ipfs-path")[0], offline)
        root = await get_block(cid, offline)
        info = stat_node(cid, lambda _cid: root)
        if info.kind == "directory":
            raise ApiError("this dag node is a directory")
        if info.kind not in ("file", "raw"):
            raise ApiError(f"{cid_to_text(cid)} is a UnixFS {info.kind}, not a file")
        if offset > info.size:
            raise ApiError(f"offset was past the end of file ({offset} > {info.size})")
        remaining = info.size - offset if length is None else min(length, info.size - offset)
        if offline:
            body = _read_in_thread(store.get, cid, offset, length)
        else:
            body = blocks.read(cid, offset, length)
        return StreamingResponse(
            body,
            media_type="application/octet-stream",
            headers={"X-Content-Length": str(remaining), "X-Stream-Output": "1"},
        )

    async def get(request: Request) -> Response:
        offline = _flag(request, "offline", False)
        archive = _flag(request, "archive", False)
        compress = _flag(request, "compress", False)
        level = _int(request, "compression-level", -1, minimum=-1)
        if level is not None and level > 9:
            raise ApiError("compression level must be between 1 and 9", 400)
        compress = compress or (level is not None and level > 0)
        text = _args(request, "ipfs-path")[0]
        cid = await resolve(text, offline)
        await ensure_dag(cid, offline)
        name = text.rstrip("/").split("/")[-1] if "/" in text.strip("/") else cid_to_text(cid)
        zlevel = 6 if level is None or level <= 0 else level
        info = await trio.to_thread.run_sync(stat_node, cid, store.get)
        if compress and not archive and info.kind in ("file", "raw"):
            # Kubo: a single file, compressed but not archived, is a plain gzip stream.
            return StreamingResponse(
                _thread_stream(_gzip_file(store.get, cid, zlevel)),
                media_type="application/gzip",
            )
        producer = _tar_producer(store.get, cid, name)
        if compress:
            producer = _gzipped(producer, zlevel)
        return StreamingResponse(
            _thread_stream(producer),
            media_type="application/gzip" if compress else "application/x-tar",
        )

    # -- blocks --------------------------------------------------------------------------

    async def block_get(request: Request) -> Response:
        offline = _flag(request, "offline", False)
        cid = parse_cid(_args(request, "cid")[0])
        data = await get_block(cid, offline)
        return Response(data, media_type="application/octet-stream")

    async def block_stat(request: Request) -> Response:
        offline = _flag(request, "offline", False)
        cid = parse_cid(_args(request, "cid")[0])
        try:
            size = await trio.to_thread.run_sync(store.size_of, cid)
        except BlockNotFound:
            if offline:
                raise
            size = len(await blocks.get(cid))
        return JSONResponse({"Key": cid_to_text(cid), "Size": size})

    async def block_put(request: Request) -> Response:
        spec = _block_spec(request)
        allow_big = _flag(request, "allow-big-block", False)
        pin = _flag(request, "pin", False)
        _boundary(request)
        parts = _BlockParts()
        stored: list[dict[str, Any]] = []
        pinned: list[CID] = []

        async def flush() -> None:
            while parts.done:
                data = parts.done.pop(0)
                cid = _block_cid(data, spec, allow_big)
                await trio.to_thread.run_sync(store.put, cid, data)
                if pin:
                    await trio.to_thread.run_sync(lambda c=cid: store.pin_add(c, recursive=True))
                    pinned.append(cid)
                stored.append({"Key": cid_to_text(cid), "Size": len(data)})

        await _receive(request, upload_limit, parts, flush)
        if not stored:
            raise ApiError("no block in the upload", 400)
        if pinned:
            daemon.announce(pinned)
        return _lines(stored)

    async def block_rm(request: Request) -> Response:
        force = _flag(request, "force", False)
        quiet = _flag(request, "quiet", False)
        cids = [parse_cid(text) for text in _args(request, "cid")]
        lines = []
        for cid in cids:
            error = ""
            try:
                await trio.to_thread.run_sync(store.delete, cid)
            except BlockNotFound as exc:
                if force:
                    continue
                error = str(exc)
            except ChorusError as exc:
                error = str(exc)
            if error or not quiet:
                lines.append({"Hash": cid_to_text(cid), "Error": error})
        return _lines(lines)

    async def refs_local(request: Request) -> Response:
        def produce(emit: Callable[[bytes], None]) -> None:
            batch: list[str] = []
            for cid in store.all_cids():
                batch.append(json.dumps({"Ref": cid_to_text(cid), "Err": ""}) + "\n")
                if len(batch) >= 512:
                    emit("".join(batch).encode())
                    batch.clear()
            if batch:
                emit("".join(batch).encode())

        return StreamingResponse(_thread_stream(produce), media_type="application/x-ndjson")

    # -- pins ----------------------------------------------------------------------------

    async def pin_add(request: Request) -> Response:
        recursive = _flag(request, "recursive", True)
        progress = _flag(request, "progress", False)
        offline = _flag(request, "offline", False)
        cids = [await resolve(text, offline) for text in _args(request, "ipfs-path")]

        async def events() -> AsyncIterator[dict[str, Any]]:
            fetched = 0
            received = [0]

            def count(n: int) -> None:
                received[0] += n

            for cid in cids:
                if offline:
                    pass  # pin_add below checks presence (recursively: the whole DAG)
                elif recursive:
                    stats = await blocks.ensure_dag(cid, count)
                    fetched += stats.fetched
                else:
                    await blocks.get(cid)
                if progress:
                    yield {"Progress": fetched, "Bytes": received[0]}
                await trio.to_thread.run_sync(lambda c=cid: store.pin_add(c, recursive=recursive))
            daemon.announce(cids)
            yield {"Pins": [cid_to_text(cid) for cid in cids]}

        if progress:
            return _ndjson(events())
        last: dict[str, Any] = {}
        async for event in events():
            last = event
        return JSONResponse(last)

    async def pin_rm(request: Request) -> Response:
        recursive = _flag(request, "recursive", True)
        cids = [await resolve(text, True) for text in _args(request, "ipfs-path")]
        for cid in cids:
            await trio.to_thread.run_sync(lambda c=cid: store.pin_rm(c, recursive=recursive))
        return JSONResponse({"Pins": [cid_to_text(cid) for cid in cids]})

    async def pin_ls(request: Request) -> Response:
        kind = request.query_params.get("type", "all") or "all"
        if kind not in ("all", "recursive", "direct", "indirect"):
            raise ApiError(
                f"invalid type {kind!r}, must be one of {{direct, indirect, recursive, all}}", 400
            )
        stream = _flag(request, "stream", False)
        asked = request.query_params.getlist("arg")
        if asked:
            every = await trio.to_thread.run_sync(store.pin_ls, "all")
            kinds = {bytes(cid): k for cid, k in every}
            pins = []
            for text in asked:
                cid = await resolve(text, True)
                found = kinds.get(bytes(cid))
                if found is None or kind not in ("all", found):
                    raise ApiError(f"path '{text}' is not pinned")
                pins.append((cid, found))
        else:
            pins = await trio.to_thread.run_sync(store.pin_ls, kind)
        if stream:
            return _lines({"Cid": cid_to_text(cid), "Type": k} for cid, k in pins)
        return JSONResponse({"Keys": {cid_to_text(cid): {"Type": k} for cid, k in pins}})

    # -- repo ----------------------------------------------------------------------------

    async def repo_gc(request: Request) -> Response:
        quiet = _flag(request, "quiet", False)
        removed = await trio.to_thread.run_sync(store.gc)
        if quiet:
            return _lines([])
        return _lines({"Key": {"/": cid_to_text(cid)}} for cid in removed)

    async def repo_verify(request: Request) -> Response:
        report = await trio.to_thread.run_sync(lambda: store.verify(structure=True))
        return JSONResponse(
            {
                "Checked": report.checked,
                "Corrupt": [cid_to_text(cid) for cid in report.corrupt],
                "Problems": list(report.problems),
                "Ok": report.ok,
            }
        )

    async def repo_stat(request: Request) -> Response:
        stat = await trio.to_thread.run_sync(store.stat)
        return JSONResponse(
            {
                "NumObjects": stat.blocks,
                "RepoSize": stat.bytes,
                "StorageMax": stat.quota,
                "RepoPath": str(daemon.repo.path),
                "Version": str(REPO_VERSION),
            }
        )

    # -- DAGs as CAR ---------------------------------------------------------------------

    async def dag_export(request: Request) -> Response:
        offline = _flag(request, "offline", False)
        cid = await resolve(_args(request, "root")[0], offline)
        await ensure_dag(cid, offline)

        def produce(emit: Callable[[bytes], None]) -> None:
            export_car(store, cid, _Emitter(emit))

        return StreamingResponse(_thread_stream(produce), media_type="application/vnd.ipld.car")

    async def dag_import(request: Request) -> Response:
        pin_roots = _flag(request, "pin-roots", True)
        _boundary(request)
        staging = await staging_dir(".car-")
        try:
            tree = _UploadTree(staging)
            await _receive(request, upload_limit, tree)
            if not tree.tops:
                raise ApiError("no file in the upload", 400)
            results = []
            for path in tree.tops:
                if path.is_dir() or path.is_symlink():
                    raise ApiError(f"dag/import takes CAR files, not {path.name!r}", 400)

                def run(p: Path = path):
                    with p.open("rb") as src:
                        return import_car(store, src, pin_roots=pin_roots)

                results.append(await trio.to_thread.run_sync(run))
        finally:
            await remove_staging(staging)
        lines: list[dict[str, Any]] = []
        for result in results:
            for root in result.roots:
                lines.append({"Root": {"Cid": {"/": cid_to_text(root)}, "PinErrorMsg": ""}})
            lines.append({"Stats": {"BlockCount": result.blocks, "BlockBytesCount": result.bytes}})
        return _lines(lines)

    # -- swarm, gossip, diagnostics --------------------------------------------------------

    async def bitswap_stat(request: Request) -> Response:
        counters = daemon.exchange.counters
        ledgers = {
            str(peer): {
                "BlocksSent": c.blocks_sent,
                "DataSent": c.bytes_sent,
                "BlocksReceived": c.blocks_received,
                "DataReceived": c.bytes_received,
                "Unsolicited": c.unsolicited,
            }
            for peer, c in counters.items()
        }
        penalties = daemon.penalties
        return JSONResponse(
            {
                "BlocksReceived": sum(c.blocks_received for c in counters.values()),
                "DataReceived": sum(c.bytes_received for c in counters.values()),
                "BlocksSent": sum(c.blocks_sent for c in counters.values()),
                "DataSent": sum(c.bytes_sent for c in counters.values()),
                "Peers": [str(p) for p in daemon.host.get_connected_peers()],
                "Ledgers": ledgers,
                "Penalised": {
                    str(peer): {"Strikes": n, "Reason": penalties.reasons.get(peer, "")}
                    for peer, n in penalties.strikes.items()
                },
            }
        )

    async def diag_perf(request: Request) -> Response:
        """Raw libp2p stream throughput from a peer (the libp2p perf protocol)."""
        from multiaddr import Multiaddr

        target = _args(request, "address")[0]
        size = _int(request, "bytes", 64 * 1024 * 1024) or 0
        final: dict[str, Any] = {}
        with trio.fail_after(120):
            async for report in daemon.perf.measure_performance(Multiaddr(target), 0, size):
                if report["type"] == "final":
                    final = dict(report)
        return JSONResponse(
            {"Seconds": final.get("time_seconds"), "Bytes": final.get("download_bytes")}
        )

    def _gossip():
        if daemon.gossip is None:
            raise ApiError("this node belongs to no co-op, so it runs no gossip topic", 400)
        return daemon.gossip

    async def pubsub_ls(request: Request) -> Response:
        return JSONResponse({"Strings": [daemon.gossip.topic] if daemon.gossip else []})

    async def pubsub_pub(request: Request) -> Response:
        gossip = _gossip()
        topic = _args(request, "topic")[0]
        if topic.startswith("u") and topic != gossip.topic:  # Kubo's multibase form
            try:
                topic = base64.urlsafe_b64decode(topic[1:] + "==").decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                raise ApiError(f"bad topic encoding {topic!r}", 400) from None
        if topic != gossip.topic:
            raise ApiError(f"this node only publishes on its co-op topic {gossip.topic}", 400)
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form()
            try:
                parts = [v for _, v in form.multi_items() if not isinstance(v, str)]
                data = await parts[0].read() if parts else b""
            finally:
                await form.close()
        else:
            data = await request.body()
        await gossip.publish(data)
        return Response(b"", status_code=200)

    async def gossip_stat(request: Request) -> Response:
        gossip = _gossip()
        return JSONResponse(
            {
                "Topic": gossip.topic,
                "Counters": dataclasses.asdict(gossip.counters),
                "MeshPeers": sorted(str(p) for p in gossip.mesh_peers()),
            }
        )

    async def shutdown(request: Request) -> Response:
        daemon.stop()
        return Response(b"", status_code=200)

    async def not_found(request: Request) -> Response:
        await _drain(request)
        return PlainTextResponse("404 page not found\n", status_code=404)

    def endpoint(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def wrapped(request: Request) -> Response:
            if request.method != "POST":
                return PlainTextResponse(
                    "405 - Method Not Allowed\n", status_code=405, headers={"Allow": "POST"}
                )
            try:
                return await handler(request)
            except ApiError as exc:
                response = _error(str(exc), exc.status)
            except ClientDisconnect:
                return Response(b"", status_code=400)  # nobody is listening any more
            except (ChorusError, FileNotFoundError, ValueError) as exc:
                response = _error(str(exc))
            except Exception as exc:
                log.exception("API %s failed", request.url.path)
                response = _error(f"internal error: {type(exc).__name__}: {exc}")
            await _drain(request)
            return response

        return wrapped

    routes = {
        "id": id_,
        "version": version,
        "swarm/peers": swarm_peers,
        "swarm/connect": swarm_connect,
        "add": add,
        "cat": cat,
        "get": get,
        "block/get": block_get,
        "block/put": block_put,
        "block/stat": block_stat,
        "block/rm": block_rm,
        "refs/local": refs_local,
        "pin/add": pin_add,
        "pin/rm": pin_rm,
        "pin/ls": pin_ls,
        "repo/gc": repo_gc,
        "repo/verify": repo_verify,
        "repo/stat": repo_stat,
        "dag/export": dag_export,
        "dag/import": dag_import,
        "bitswap/stat": bitswap_stat,
        "diag/perf": diag_perf,
        "pubsub/ls": pubsub_ls,
        "pubsub/pub": pubsub_pub,
        "gossip/stat": gossip_stat,
        "shutdown": shutdown,
    }
    # Every method reaches the endpoint, which answers 405 itself as Kubo words it.
    return [
        *(
            Route(f"/api/v0/{name}", endpoint(handler), methods=_METHODS)
            for name, handler in routes.items()
        ),
        Route("/api/v0/{rest:path}", not_found, methods=_METHODS),
    ]


def _system() -> str:
    """`System` as Kubo writes it: GOARCH/GOOS (amd64/linux)."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "i686": "386", "i386": "386"}.get(
        machine, machine
    )
    return f"{arch}/{platform.system().lower()}"


# -- add -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _AddSettings:
    options: ImportOptions
    only_hash: bool
    pin: bool
    wrap: bool
    silent: bool


#: Options of Kubo's `add` that chorus cannot honour when true.
_ADD_REFUSED_FLAGS = ("trickle", "nocopy", "inline", "preserve-mode", "preserve-mtime")


def _add_settings(request: Request) -> _AddSettings:
    """`add`'s options, checked before any byte of the body is read."""
    cid_version = _int(request, "cid-version", 0)
    if cid_version not in (0, 1):
        raise ApiError(f"unknown CID version {cid_version}", 400)
    chunker = request.query_params.get("chunker", "") or CHUNKER
    if chunker != CHUNKER:
        raise ApiError(
            f"chunker {chunker!r} is not supported: chorus imports with {CHUNKER} "
            "(Kubo's default) only, so its CIDs match `ipfs add`",
            400,
        )
    hash_name = request.query_params.get("hash", "") or "sha2-256"
    if hash_name != "sha2-256":
        raise ApiError(f"hash {hash_name!r} is not supported: chorus imports with sha2-256", 400)
    for name in _ADD_REFUSED_FLAGS:
        if _flag(request, name, False):
            raise ApiError(f"{name}=true is not supported by chorus's add", 400)
    for name in ("to-files", "mode", "mtime"):
        if request.query_params.get(name):
            raise ApiError(f"option {name!r} is not supported by chorus's add", 400)
    raw = _flag(request, "raw-leaves", cid_version == 1)
    return _AddSettings(
        options=ImportOptions(cid_version=cid_version, raw_leaves=raw),
        only_hash=_flag(request, "only-hash", False),
        pin=_flag(request, "pin", True),
        wrap=_flag(request, "wrap-with-directory", False),
        silent=_flag(request, "silent", False),
    )


def _name_added(
    result: AddResult, tree: _UploadTree, *, wrapped: bool
) -> list[tuple[str, CID, int]]:
    """Kubo's names for what `add_paths` reports: upload paths, `""` for the wrapping
    directory, the CID for a file that came without a name."""
    named: list[tuple[str, CID, int]] = []
    if wrapped:
        prefix = tree.named.name
        for item in result.added:
            name = "" if item.name == prefix else item.name[len(prefix) + 1 :]
            named.append((name, item.cid, item.size))
        return named
    # Each top's entries end with the top itself, the only one without a "/".
    tops = iter(tree.tops)
    for item in result.added:
        name = item.name
        if "/" not in name:
            top = next(tops)
            if top.parent == tree.unnamed:
                name = cid_to_text(item.cid)
        named.append((name, item.cid, item.size))
    return named


# -- multipart uploads ---------------------------------------------------------------------


class _PartSink(Protocol):
    """Receives the parts of a multipart body as the parser finds them."""

    def begin(self, headers: dict[str, bytes]) -> None: ...
    def data(self, chunk: bytes) -> None: ...
    def end(self) -> None: ...
    def close(self) -> None: ...


def _boundary(request: Request) -> bytes:
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype not in (b"multipart/form-data", b"multipart/mixed"):
        shown = ctype.decode("latin-1") or "none"
        raise ApiError(f"expected a multipart/form-data body (one part per file), got {shown}", 400)
    boundary = params.get(b"boundary", b"")
    if not boundary or len(boundary) > 70:
        raise ApiError("the multipart body has no usable boundary", 400)
    return boundary


def _parser(boundary: bytes, sink: _PartSink) -> MultipartParser:
    headers: dict[str, bytes] = {}
    field = bytearray()
    value = bytearray()

    def on_part_begin() -> None:
        headers.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        value.extend(data[start:end])

    def on_header_end() -> None:
        headers[field.decode("latin-1").strip().lower()] = bytes(value).strip()
        field.clear()
        value.clear()

    def on_headers_finished() -> None:
        sink.begin(dict(headers))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        sink.data(bytes(data[start:end]))

    def on_part_end() -> None:
        sink.end()

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
    }
    try:
        return MultipartParser(
            boundary, callbacks, max_header_count=32, max_header_size=MAX_PART_HEADER
        )
    except TypeError:  # python-multipart before 0.0.27 has no header limits
        return MultipartParser(boundary, callbacks)


async def _receive(
    request: Request,
    limit: int,
    sink: _PartSink,
    after_chunk: Callable[[], Any] | None = None,
) -> int:
    """Feed the request body through the multipart parser into `sink`; return its size.

    Refusals are 413 over `limit`, 400 for a malformed body or a path the sink
    refuses; the endpoint wrapper then drains the rest of the body (`_drain`).
    `after_chunk` (async) runs after each piece of body is parsed.
    """
    parser = _parser(_boundary(request), sink)
    stream = request.stream()
    received = 0
    try:
        async for chunk in stream:
            if not chunk:
                continue
            received += len(chunk)
            if received > limit:
                raise ApiError(
                    f"upload is larger than this node accepts: more than {limit} bytes "
                    "(config.json rpc.max_upload_bytes)",
                    413,
                )
            try:
                parser.write(chunk)
            except MultipartParseError as exc:
                raise ApiError(f"malformed multipart body: {exc}", 400) from None
            if after_chunk is not None:
                await after_chunk()
        if parser.state != MultipartState.END:
            raise ApiError("the multipart body ends before its closing boundary", 400)
        if after_chunk is not None:
            await after_chunk()
    finally:
        sink.close()
    return received


async def _drain(request: Request) -> None:
    """Read and drop what is left of a refused request's body (at most DRAIN_BYTES,
    for at most a minute), so that a client still sending it reads our answer instead
    of a reset connection, and the connection can be reused."""
    dropped = 0
    with trio.move_on_after(60):
        try:
            async for chunk in request.stream():
                dropped += len(chunk)
                if dropped > DRAIN_BYTES:
                    return
        except (RuntimeError, ClientDisconnect):
            return  # already read to the end, or the client left


def _media_type(value: bytes | None) -> str:
    if not value:
        return ""
    ctype, _ = parse_options_header(value.decode("latin-1"))
    return ctype.decode("latin-1")


def _part_filename(value: bytes | None) -> str:
    """The path a part names: its `filename`, percent-decoded as Kubo decodes it
    (`url.QueryUnescape`: `%2F` is `/`, `+` is a space). "" when there is none."""
    if not value:
        return ""
    _, params = parse_options_header(value.decode("latin-1"))
    raw = params.get(b"filename")
    if raw is None:
        return ""
    try:
        return unquote_plus(raw.decode("utf-8"), errors="strict")
    except UnicodeDecodeError:
        raise ApiError("an upload path is not UTF-8", 400) from None


def _upload_path(name: str) -> tuple[str, ...]:
    parts = tuple(part for part in name.split("/") if part)
    if not parts:
        raise ApiError(f"upload path {name!r} names nothing", 400)
    if len(parts) > MAX_PATH_DEPTH:
        raise ApiError(f"upload path is deeper than {MAX_PATH_DEPTH} directories", 400)
    for part in parts:
        if part in (".", "..") or "\x00" in part:
            raise ApiError(f"refusing upload path {name!r}", 400)
        if len(part.encode("utf-8", "surrogateescape")) > 255:
            raise ApiError(f"upload path {name!r} has a name longer than 255 bytes", 400)
    return parts


def _os_refusal(what: str, exc: OSError) -> ApiError:
    status = 400 if exc.errno in (errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL) else 500
    return ApiError(f"cannot store {what}: {exc.strerror or exc}", status)


class _UploadTree:
    """A multipart upload written out as files under a staging directory.

    Named parts go under `named/<path>`; parts without a filename (a bare stream, as
    ipfshttpclient sends an unnamed file object) under `unnamed/<n>`. `tops` lists
    the top-level entries in the order they first appeared, which is the order Kubo
    adds them in. Every path is checked against what the upload already made, so
    nothing is ever written through a symlink or outside the staging directory.
    """

    def __init__(self, root: Path) -> None:
        self.named = root / "named"
        self.unnamed = root / "unnamed"
        self.named.mkdir(mode=0o700)
        self.unnamed.mkdir(mode=0o700)
        self.tops: list[Path] = []
        self.entries = 0
        self._top_names: set[str] = set()
        self._kinds: dict[tuple[str, ...], str] = {}
        self._file: BinaryIO | None = None
        self._link: bytearray | None = None
        self._link_path: Path | None = None
        self._what = ""

    def begin(self, headers: dict[str, bytes]) -> None:
        self.entries += 1
        if self.entries > MAX_UPLOAD_ENTRIES:
            raise ApiError(f"upload has more than {MAX_UPLOAD_ENTRIES} entries", 400)
        ctype = _media_type(headers.get("content-type"))
        if ctype.startswith("multipart/"):
            raise ApiError(
                "nested multipart directories are not supported: send one part per "
                "file or directory, its path in the filename",
                400,
            )
        name = _part_filename(headers.get("content-disposition"))
        kind = {_DIRECTORY: "directory", _SYMLINK: "symlink"}.get(ctype, "file")
        if not name:
            if kind != "file":
                raise ApiError(f"a {kind} part needs a filename (its path)", 400)
            path = self.unnamed / str(len(self.tops))
            self.tops.append(path)
            self._open(path, "an unnamed file")
            return
        parts = _upload_path(name)
        path = self._claim(parts, kind)
        self._what = repr("/".join(parts))
        if kind == "directory":
            try:
                path.mkdir(mode=0o700, exist_ok=True)
            except OSError as exc:
                raise _os_refusal(self._what, exc) from None
        elif kind == "symlink":
            self._link = bytearray()
            self._link_path = path
        else:
            self._open(path, self._what)

    def _claim(self, parts: tuple[str, ...], kind: str) -> Path:
        joined = "/".join(parts)
        for depth in range(1, len(parts)):
            prefix = parts[:depth]
            have = self._kinds.setdefault(prefix, "directory")
            if have != "directory":
                raise ApiError(
                    f"upload path {joined!r} goes through {'/'.join(prefix)!r}, which is a {have}",
                    400,
                )
            if depth == 1:
                self._note_top(prefix[0])
        have = self._kinds.get(parts)
        if have is not None:
            if have == kind == "directory":
                return self.named.joinpath(*parts)
            raise ApiError(f"upload has {joined!r} twice", 400)
        self._kinds[parts] = kind
        if len(parts) == 1:
            self._note_top(parts[0])
        path = self.named.joinpath(*parts)
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise _os_refusal(repr(joined), exc) from None
        return path

    def _note_top(self, name: str) -> None:
        if name not in self._top_names:
            self._top_names.add(name)
            self.tops.append(self.named / name)

    def _open(self, path: Path, what: str) -> None:
        self._what = what
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError as exc:
            raise _os_refusal(what, exc) from None
        self._file = os.fdopen(fd, "wb", buffering=1 << 20)

    def data(self, chunk: bytes) -> None:
        if self._file is not None:
            try:
                self._file.write(chunk)
            except OSError as exc:
                raise _os_refusal(self._what, exc) from None
        elif self._link is not None:
            self._link.extend(chunk)
            if len(self._link) > MAX_SYMLINK_TARGET:
                raise ApiError(
                    f"symlink {self._what} has a target over {MAX_SYMLINK_TARGET} bytes", 400
                )
        # data in a directory part means nothing; Kubo ignores it too

    def end(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            try:
                file.close()
            except OSError as exc:
                raise _os_refusal(self._what, exc) from None
        elif self._link is not None and self._link_path is not None:
            target, self._link = bytes(self._link), None
            if not target or b"\x00" in target:
                raise ApiError(f"symlink {self._what} has an empty or invalid target", 400)
            try:
                os.symlink(os.fsdecode(target), self._link_path)
            except OSError as exc:
                raise _os_refusal(self._what, exc) from None

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            with contextlib.suppress(OSError):
                file.close()

    @property
    def has_unnamed(self) -> bool:
        return any(top.parent == self.unnamed for top in self.tops)


class _BlockParts:
    """`block/put`'s parts: each one block, kept in memory (2 MiB at most) until
    `done` is emptied by the caller after each piece of body."""

    def __init__(self) -> None:
        self.done: list[bytes] = []
        self._current: bytearray | None = None
        self._size = 0
        self.count = 0

    def begin(self, headers: dict[str, bytes]) -> None:
        if _media_type(headers.get("content-type")) in (_DIRECTORY, _SYMLINK):
            raise ApiError("block/put takes files (one block each), not directories", 400)
        self.count += 1
        self._current = bytearray()
        self._size = 0

    def data(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._current is not None:
            if self._size > MAX_BLOCK_SIZE:
                self._current = None  # keep counting, stop keeping
            else:
                self._current.extend(chunk)

    def end(self) -> None:
        if self._current is None:
            raise ApiError(
                f"block {self.count} is {self._size} bytes; chorus refuses blocks over "
                f"{MAX_BLOCK_SIZE} bytes (chunk the content with `add` instead)"
            )
        self.done.append(bytes(self._current))
        self._current = None

    def close(self) -> None:
        self._current = None


@dataclasses.dataclass(frozen=True, slots=True)
class _BlockSpec:
    codec: int
    version: int
    hash_name: str


def _block_spec(request: Request) -> _BlockSpec:
    """`block/put`'s CID settings: `cid-codec` (default raw, CIDv1), the legacy
    `format` (`v0` = CIDv0 dag-pb), `mhtype` (default sha2-256), `mhlen` (-1)."""
    codec_name = request.query_params.get("cid-codec", "")
    format_name = request.query_params.get("format", "")
    if format_name:
        if codec_name not in ("", "raw"):
            raise ApiError(
                'unable to use "format" (deprecated) and a custom "cid-codec" at the same time', 400
            )
        if format_name not in _BLOCK_FORMATS:
            raise ApiError(
                f"block format {format_name!r} is not supported: chorus stores raw and "
                "dag-pb blocks only (format v0, protobuf, dag-pb or raw)",
                400,
            )
        codec, version = _BLOCK_FORMATS[format_name]
    else:
        name = codec_name or "raw"
        if name not in _BLOCK_CODECS:
            raise ApiError(
                f"cid-codec {name!r} is not supported: chorus stores raw and dag-pb blocks only",
                400,
            )
        codec, version = _BLOCK_CODECS[name], 1
    hash_name = request.query_params.get("mhtype", "") or "sha2-256"
    if hash_name == "identity":
        raise ApiError("mhtype identity is not supported by block/put", 400)
    try:
        multihash.get(hash_name)
    except Exception:  # noqa: BLE001 - multiformats raises several types
        raise ApiError(f"unrecognized multihash function: {hash_name}", 400) from None
    if _int(request, "mhlen", -1, minimum=-1) != -1:
        raise ApiError("mhlen other than -1 (the hash's full length) is not supported", 400)
    if version == 0 and hash_name != "sha2-256":
        raise ApiError("only sha2-256 is allowed with CIDv0", 400)
    return _BlockSpec(codec, version, hash_name)


def _block_cid(data: bytes, spec: _BlockSpec, allow_big: bool) -> CID:
    """The CID `block/put` gives `data`, after the checks Kubo makes and one it does
    not: a dag-pb block must decode as dag-pb (pins, gc and exports walk it)."""
    if len(data) > SOFT_BLOCK_LIMIT and not allow_big:
        raise ApiError(
            f"produced block is over 1MiB ({len(data)} bytes): big blocks can't be exchanged "
            "with other peers. consider using UnixFS for automatic chunking of bigger files, "
            "or pass --allow-big-block to override"
        )
    if spec.hash_name == "sha2-256":
        cid = make_cid(data, version=spec.version, codec=spec.codec)
    else:
        digest = multihash.digest(data, spec.hash_name)
        cid = CID("base32", 1, spec.codec, digest)
    if spec.codec == DAG_PB:
        try:
            links_of(cid, data)
        except DecodeError as exc:
            raise ApiError(
                f"block does not decode as dag-pb, refusing to store it as such: {exc}"
            ) from None
    return cid


# -- streaming helpers ---------------------------------------------------------------------


class _Emitter:
    """A write-only file object handing what is written to `emit`."""

    def __init__(self, emit: Callable[[bytes], None]) -> None:
        self._emit = emit

    def write(self, data: bytes) -> int:
        self._emit(bytes(data))
        return len(data)


def _thread_stream(produce: Callable[[Callable[[bytes], None]], None]) -> AsyncIterator[bytes]:
    """Run `produce(emit)` in a worker thread and stream what it emits."""
    send, receive = trio.open_memory_channel[bytes](16)

    def emit(data: bytes) -> None:
        if data:
            trio.from_thread.run(send.send, data)

    async def body() -> AsyncIterator[bytes]:
        async with trio.open_nursery() as nursery:

            async def run() -> None:
                async with send:
                    with contextlib.suppress(trio.BrokenResourceError):  # the client left
                        await trio.to_thread.run_sync(produce, emit)

            nursery.start_soon(run)
            async with receive:
                async for piece in receive:
                    yield piece

    return body()


def _read_in_thread(
    get: Callable[[CID], bytes], cid: CID, offset: int, length: int | None
) -> AsyncIterator[bytes]:
    """A file's bytes from the local store only (`offline=true`)."""

    def produce(emit: Callable[[bytes], None]) -> None:
        for piece in read_file(cid, get, offset, length):
            emit(piece)

    return _thread_stream(produce)


def _gzipped(
    produce: Callable[[Callable[[bytes], None]], None], level: int
) -> Callable[[Callable[[bytes], None]], None]:
    """`produce`, its output gzip-compressed (what `compress=true` asks for)."""

    def run(emit: Callable[[bytes], None]) -> None:
        compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
        produce(lambda data: emit(compressor.compress(data)))
        emit(compressor.flush())

    return run


def _gzip_file(
    get: Callable[[CID], bytes], cid: CID, level: int
) -> Callable[[Callable[[bytes], None]], None]:
    def produce(emit: Callable[[bytes], None]) -> None:
        for piece in read_file(cid, get):
            emit(piece)

    return _gzipped(produce, level)


def _tar_producer(
    get: Callable[[CID], bytes], cid: CID, name: str
) -> Callable[[Callable[[bytes], None]], None]:
    """A tar of the UnixFS tree at `cid`, as `ipfs get` streams it: directories,
    files and symlinks under `name` (a single file is the member `name`)."""

    def produce(emit: Callable[[bytes], None]) -> None:
        with tarfile.open(fileobj=_Emitter(emit), mode="w|") as tar:  # type: ignore[call-overload]
            for rel, info in iter_dag(cid, get):
                member = tarfile.TarInfo(f"{name}/{rel}" if rel else name)
                member.mtime = 0
                if info.kind == "directory":
                    member.type = tarfile.DIRTYPE
                    member.mode = 0o755
                    tar.addfile(member)
                elif info.kind in ("file", "raw"):
                    member.size = info.size
                    member.mode = 0o644
                    tar.addfile(member, PieceReader(read_file(info.cid, get)))
                elif info.kind == "symlink":
                    member.type = tarfile.SYMTYPE
                    member.mode = 0o777
                    member.linkname = os.fsdecode(_symlink_target(info.cid, get))
                    tar.addfile(member)

    return produce


def _symlink_target(cid: CID, get: Callable[[CID], bytes]) -> bytes:
    data = decode_data(decode_node(get(cid)).data or b"")
    return data.data or b""


def _check_local_dag(store: Any, root: CID) -> None:
    """Raise BlockNotFound unless every block under `root` is in the local store."""
    stack = [root]
    seen: set[bytes] = set()
    while stack:
        cid = stack.pop()
        if bytes(cid) in seen:
            continue
        seen.add(bytes(cid))
        if cid.codec.code == RAW:
            if not store.has(cid):
                raise BlockNotFound(cid, f"part of the DAG under {root}; offline")
            continue
        try:
            data = store.get(cid)
        except BlockNotFound:
            raise BlockNotFound(cid, f"part of the DAG under {root}; offline") from None
        stack.extend(links_of(cid, data))
