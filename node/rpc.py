"""The Kubo RPC subset under `/api/v0/`: what `ipfs`-style tools and the CLI speak.

The `chorus` CLI talks to a running daemon through this (as `ipfs` talks to Kubo),
because the daemon owns the repo. Requests are POST, arguments in the query string
(`arg=` repeated), responses JSON or NDJSON or raw bytes, errors HTTP 500 with
`{"Message", "Code", "Type": "error"}` as Kubo sends them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tarfile
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from protocol.cid import cid_to_text, parse_cid
from protocol.errors import ChorusError
from protocol.importer import ImportOptions
from protocol.path import parse_content_path
from protocol.reader import iter_dag

from .adder import add_paths
from .bootstrap import parse_peer_addr
from .car import export_car, import_car
from .pieces import PieceReader

if TYPE_CHECKING:
    from .daemon import Daemon

__all__ = ["ApiError", "rpc_routes"]

log = logging.getLogger("chorus.api")
VERSION = "0.1.0"


class ApiError(Exception):
    """A request the API refuses, with the HTTP status to send."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


def _error(message: str, status: int = 500) -> JSONResponse:
    return JSONResponse({"Message": message, "Code": 0, "Type": "error"}, status_code=status)


def _flag(request: Request, name: str, default: bool) -> bool:
    value = request.query_params.get(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in ("true", "1", "yes", ""):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ApiError(f"invalid boolean for {name}: {value!r}", 400)


def _int(request: Request, name: str, default: int | None) -> int | None:
    value = request.query_params.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ApiError(f"invalid integer for {name}: {value!r}", 400) from None
    if number < 0:
        raise ApiError(f"{name} must not be negative", 400)
    return number


def _args(request: Request) -> list[str]:
    values = request.query_params.getlist("arg")
    if not values:
        raise ApiError("argument \"arg\" is required", 400)
    return values


def _ndjson(items: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        async for item in items:
            yield (json.dumps(item) + "\n").encode()

    return StreamingResponse(body(), media_type="application/x-ndjson")


def rpc_routes(daemon: Daemon) -> list[Route]:
    store = daemon.repo.blockstore
    blocks = daemon.blocks

    async def resolve(text: str):
        root, subpath = parse_content_path(text)
        return await blocks.resolve(root, subpath) if subpath else root

    async def id_(request: Request) -> Response:
        key = daemon.repo.identity.verify_key
        return JSONResponse(
            {
                "ID": daemon.peer_id,
                "PublicKey": bytes(key).hex(),
                "Addresses": daemon.listen_addrs,
                "AgentVersion": f"chorus/{VERSION}",
                "ProtocolVersion": "ipfs/0.1.0",
                "Protocols": sorted(str(p) for p in daemon.host.get_mux().get_protocols()),
            }
        )

    async def version(request: Request) -> Response:
        return JSONResponse({"Version": VERSION, "Commit": "", "Repo": "1", "System": "chorus"})

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
        for text in _args(request):
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

    async def add(request: Request) -> Response:
        cid_version = _int(request, "cid-version", 0)
        if cid_version not in (0, 1):
            raise ApiError(f"unknown CID version {cid_version}", 400)
        raw_param = request.query_params.get("raw-leaves")
        raw = cid_version == 1 if raw_param is None else _flag(request, "raw-leaves", False)
        options = ImportOptions(cid_version=cid_version, raw_leaves=raw)
        only_hash = _flag(request, "only-hash", False)
        pin = _flag(request, "pin", True)
        hidden = _flag(request, "hidden", False)
        staging = Path(tempfile.mkdtemp(prefix=".add-", dir=daemon.repo.path))
        try:
            tops = await _receive_upload(request, staging)
            result = await trio.to_thread.run_sync(
                lambda: add_paths(
                    [staging / top for top in tops],
                    None if only_hash else store,
                    options,
                    recursive=True,
                    hidden=hidden,
                    pin=pin,
                )
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if pin and not only_hash and result.added:
            daemon.announce([result.root.cid])
        lines = [
            {"Name": item.name, "Hash": cid_to_text(item.cid), "Size": str(item.size)}
            for item in result.added
        ]
        return Response(
            "".join(json.dumps(line) + "\n" for line in lines),
            media_type="application/x-ndjson",
        )

    async def cat(request: Request) -> Response:
        cid = await resolve(_args(request)[0])
        offset = _int(request, "offset", 0) or 0
        length = _int(request, "length", None)
        return StreamingResponse(
            blocks.read(cid, offset, length), media_type="application/octet-stream"
        )

    async def get(request: Request) -> Response:
        text = _args(request)[0]
        cid = await resolve(text)
        await blocks.ensure_dag(cid)
        name = text.rstrip("/").split("/")[-1] if "/" in text.strip("/") else cid_to_text(cid)
        return StreamingResponse(_tar_stream(store, cid, name), media_type="application/x-tar")

    async def pin_add(request: Request) -> Response:
        recursive = _flag(request, "recursive", True)
        progress = _flag(request, "progress", False)
        cids = [await resolve(text) for text in _args(request)]

        async def events() -> AsyncIterator[dict[str, Any]]:
            fetched = 0
            received = [0]

            def count(n: int) -> None:
                received[0] += n

            for cid in cids:
                if recursive:
                    stats = await blocks.ensure_dag(cid, count)
                    fetched += stats.fetched
                else:
                    await blocks.get(cid)
                if progress:
                    yield {"Progress": fetched, "Bytes": received[0]}
                await trio.to_thread.run_sync(
                    lambda c=cid: store.pin_add(c, recursive=recursive)
                )
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
        cids = [parse_cid(text) for text in _args(request)]
        for cid in cids:
            await trio.to_thread.run_sync(lambda c=cid: store.pin_rm(c, recursive=recursive))
        return JSONResponse({"Pins": [cid_to_text(cid) for cid in cids]})

    async def pin_ls(request: Request) -> Response:
        kind = request.query_params.get("type", "all")
        if kind not in ("all", "recursive", "direct", "indirect"):
            raise ApiError(f"invalid type {kind!r}", 400)
        pins = await trio.to_thread.run_sync(store.pin_ls, kind)
        return JSONResponse({"Keys": {cid_to_text(cid): {"Type": k} for cid, k in pins}})

    async def repo_gc(request: Request) -> Response:
        removed = await trio.to_thread.run_sync(store.gc)
        body = "".join(json.dumps({"Key": {"/": cid_to_text(cid)}}) + "\n" for cid in removed)
        return Response(body, media_type="application/x-ndjson")

    async def repo_verify(request: Request) -> Response:
        report = await trio.to_thread.run_sync(store.verify)
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
                "Version": "1",
            }
        )

    async def dag_export(request: Request) -> Response:
        cid = await resolve(_args(request)[0])
        await blocks.ensure_dag(cid)
        send, receive = trio.open_memory_channel[bytes](16)

        class _Writer:
            def write(self, data: bytes) -> int:
                trio.from_thread.run(send.send, bytes(data))
                return len(data)

        async def body() -> AsyncIterator[bytes]:
            async with trio.open_nursery() as nursery:

                async def produce() -> None:
                    async with send:
                        await trio.to_thread.run_sync(export_car, store, cid, _Writer())

                nursery.start_soon(produce)
                async with receive:
                    async for piece in receive:
                        yield piece

        return StreamingResponse(body(), media_type="application/vnd.ipld.car")

    async def dag_import(request: Request) -> Response:
        pin_roots = _flag(request, "pin-roots", True)
        staging = Path(tempfile.mkdtemp(prefix=".car-", dir=daemon.repo.path))
        try:
            tops = await _receive_upload(request, staging)
            results = []
            for top in tops:
                path = staging / top

                def run(p: Path = path):
                    with p.open("rb") as src:
                        return import_car(store, src, pin_roots=pin_roots)

                results.append(await trio.to_thread.run_sync(run))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        lines = []
        for result in results:
            for root in result.roots:
                lines.append({"Root": {"Cid": {"/": cid_to_text(root)}, "PinErrorMsg": ""}})
            lines.append({"Stats": {"BlockCount": result.blocks, "BlockBytesCount": result.bytes}})
        body = "".join(json.dumps(line) + "\n" for line in lines)
        return Response(body, media_type="application/x-ndjson")

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

        target = _args(request)[0]
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
        topic = _args(request)[0]
        if topic.startswith("u") and topic != gossip.topic:  # Kubo's multibase form
            import base64

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
                "Recent": [
                    {"From": origin, "Data": item.hex()}
                    for origin, item in list(daemon.gossip_recent)[-100:]
                ],
            }
        )

    async def shutdown(request: Request) -> Response:
        daemon.stop()
        return Response(b"", status_code=200)

    def endpoint(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                return _error(str(exc), exc.status)
            except (ChorusError, FileNotFoundError, ValueError) as exc:
                return _error(str(exc))
            except Exception as exc:
                log.exception("API %s failed", request.url.path)
                return _error(f"internal error: {type(exc).__name__}: {exc}")

        return wrapped

    routes = {
        "id": id_,
        "version": version,
        "swarm/peers": swarm_peers,
        "swarm/connect": swarm_connect,
        "add": add,
        "cat": cat,
        "get": get,
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
    return [
        Route(f"/api/v0/{name}", endpoint(handler), methods=["POST"])
        for name, handler in routes.items()
    ]


async def _receive_upload(request: Request, staging: Path) -> list[str]:
    """Write a Kubo-style multipart upload into `staging`; return its top-level names.

    Parts name their path in `filename` (percent-encoded `/`); directories come as
    parts of type `application/x-directory`. Paths are confined to `staging`.
    """
    from urllib.parse import unquote

    form = await request.form(max_files=100_000, max_fields=100_000)
    tops: list[str] = []
    try:
        for _, value in form.multi_items():
            if isinstance(value, str):
                continue
            rel = unquote(value.filename or "")
            parts = [p for p in rel.split("/") if p]
            if not parts or any(p in (".", "..") for p in parts):
                raise ApiError(f"refusing upload path {rel!r}", 400)
            target = staging.joinpath(*parts)
            if parts[0] not in tops:
                tops.append(parts[0])
            content_type = (value.headers.get("content-type") or "").lower()
            if content_type.startswith("application/x-directory"):
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as out:
                while piece := await value.read(1 << 20):
                    out.write(piece)
    finally:
        await form.close()
    if not tops:
        raise ApiError("no file in the upload", 400)
    return tops


def _tar_stream(store, cid, name: str) -> AsyncIterator[bytes]:
    """A tar of the UnixFS tree at `cid` (what `ipfs get` streams), built in a thread."""
    send, receive = trio.open_memory_channel[bytes](16)

    class _Writer:
        def write(self, data: bytes) -> int:
            trio.from_thread.run(send.send, bytes(data))
            return len(data)

    def build() -> None:
        from protocol.reader import read_file

        with tarfile.open(fileobj=_Writer(), mode="w|") as tar:
            for rel, info in iter_dag(cid, store.get):
                member = tarfile.TarInfo(f"{name}/{rel}" if rel else name)
                member.mtime = 0
                if info.kind == "directory":
                    member.type = tarfile.DIRTYPE
                    member.mode = 0o755
                    tar.addfile(member)
                elif info.kind in ("file", "raw"):
                    member.size = info.size
                    member.mode = 0o644
                    tar.addfile(member, PieceReader(read_file(info.cid, store.get)))

    async def body() -> AsyncIterator[bytes]:
        async with trio.open_nursery() as nursery:

            async def produce() -> None:
                async with send:
                    await trio.to_thread.run_sync(build)

            nursery.start_soon(produce)
            async with receive:
                async for piece in receive:
                    yield piece

    return body()
