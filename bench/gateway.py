"""Gateway speed: seeks on a hot track, and time to first byte of local and cold tracks.

Starts two real daemons on 127.0.0.1 (A holds the content, B is connected to A and
holds nothing) and measures, in one run:
  * seeks: 64 KiB `Range` requests at random offsets of a 20 MiB track on A, from
    16 client threads with keep-alive `http.client` connections, for --seconds:
    requests/s, MB/s and p50/p95/p99 latency (after a short warm-up), in --rounds
    runs (median, min-max);
  * the same load against a bare hypercorn (trio worker) app that answers every
    request with 64 KiB from memory: the ceiling of the HTTP stack on this machine,
    which the gateway's figure is to be read against (--no-ceiling skips it);
  * time to first byte of a track A holds (first request for it), ~20 tracks of
    2-5 MiB, p50/p95, and the time to its last byte;
  * the same for cold tracks: B serves them while fetching their blocks from A.
Run: `python bench/gateway.py [--seconds 10] [--clients 16] [--tracks 20] [--rounds 3]`.
Targets (the HTTP issue): >= 1,000 seeks/s; cold first byte p95 < 100 ms on loopback.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.daemons import daemons

MIB = 1024 * 1024
SEEK = 64 * 1024

CEILING_APP = """
import sys, trio
from hypercorn.config import Config
from hypercorn.trio import serve
BODY = bytes(65536)
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 206,
                "headers": [(b"content-length", b"65536"), (b"content-type", b"audio/wav")]})
    await send({"type": "http.response.body", "body": BODY})
config = Config()
config.bind = ["127.0.0.1:" + sys.argv[1]]
config.accesslog = None
trio.run(serve, app, config)
"""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def seek_load(base: str, path: str, size: int, clients: int, seconds: float,
              warmup: float = 1.0) -> tuple[int, float, list[float]]:
    """(requests, seconds measured, latencies) of random 64 KiB ranges of `path`."""
    parts = urlsplit(base)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    start_at = time.perf_counter() + warmup
    stop_at = start_at + seconds

    def client(index: int) -> None:
        rng = random.Random(index)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        mine = latencies[index]
        while True:
            offset = rng.randrange(size - SEEK)
            began = time.perf_counter()
            if began >= stop_at:
                break
            conn.request("GET", path, headers={"Range": f"bytes={offset}-{offset + SEEK - 1}"})
            response = conn.getresponse()
            body = response.read()
            done = time.perf_counter()
            if response.status != 206 or len(body) != SEEK:
                errors.append(f"{response.status} {len(body)}")
                break
            if began >= start_at:
                mine.append(done - began)
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit(f"seek load failed: {errors[:3]}")
    merged = [value for mine in latencies for value in mine]
    return len(merged), seconds, merged


def first_byte(base: str, path: str) -> tuple[float, float, int]:
    """Seconds to the first body byte and to the last, and the bytes received."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    began = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    head = response.read(1)
    first = time.perf_counter() - began
    received = len(head)
    while piece := response.read(1 << 20):
        received += len(piece)
    whole = time.perf_counter() - began
    conn.close()
    if response.status != 200:
        raise SystemExit(f"GET {path} answered {response.status}")
    return first, whole, received


def ceiling(clients: int, seconds: float) -> tuple[int, float, list[float]]:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", CEILING_APP, str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        return seek_load(f"http://127.0.0.1:{port}", "/", 20 * MIB, clients, seconds)
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="seek load duration")
    parser.add_argument("--clients", type=int, default=16, help="concurrent seek clients")
    parser.add_argument("--tracks", type=int, default=20, help="tracks for first-byte times")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved gateway/ceiling runs")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the bare hypercorn run")
    args = parser.parse_args()
    console = Console(width=120)
    table = Table(title=f"chorus gateway over loopback ({os.cpu_count()} cores)")
    for column in ("what", "count", "rate", "p50 ms", "p95 ms", "p99 ms", "note"):
        table.add_column(column, justify="left" if column in ("what", "note") else "right")
    rng = random.Random(2024)
    with tempfile.TemporaryDirectory(prefix="chorus-bench-") as tmp:
        work = Path(tmp)
        big = work / "track20.bin"
        big.write_bytes(rng.randbytes(20 * MIB))
        local_paths, cold_paths = [], []
        for i in range(args.tracks):
            for paths, tag in ((local_paths, "local"), (cold_paths, "cold")):
                path = work / f"{tag}{i}.bin"
                path.write_bytes(rng.randbytes(rng.randrange(2 * MIB, 5 * MIB)))
                paths.append(path)
        with daemons(work, 2, dht=False) as (a, b):
            b.connect(a)
            cid = a.add(big)
            # Interleaved rounds, as bench/fetch.py does: this machine's speed drifts
            # (shared cores), so each gateway run is read next to a ceiling run.
            runs: dict[str, list[tuple[int, float, list[float]]]] = {"gateway": [], "ceiling": []}
            for _ in range(args.rounds):
                runs["gateway"].append(seek_load(a.api, f"/ipfs/{cid}", 20 * MIB,
                                                 args.clients, args.seconds))
                if not args.no_ceiling:
                    runs["ceiling"].append(ceiling(args.clients, args.seconds))
            ratios = [g[0] / c[0] for g, c in zip(runs["gateway"], runs["ceiling"], strict=False)]
            for name, label in (("gateway", f"64 KiB seeks, 20 MiB track, {args.clients} clients"),
                                ("ceiling", "  ceiling: bare hypercorn-trio, 64 KiB in memory")):
                if not runs[name]:
                    continue
                rates = [count / seconds for count, seconds, _ in runs[name]]
                median = sorted(runs[name], key=lambda run: run[0])[len(runs[name]) // 2]
                latencies = median[2]
                note = (f"{statistics.median(rates) * SEEK / 1e6:.0f} MB/s"
                        if name == "gateway" else "same client, no gateway")
                if name == "gateway" and ratios:
                    note += f", {statistics.median(ratios):.2f} of ceiling"
                table.add_row(label, str(sum(len(run[2]) for run in runs[name])),
                              f"{statistics.median(rates):,.0f} req/s "
                              f"({min(rates):,.0f}-{max(rates):,.0f})",
                              *(f"{percentile(latencies, f) * 1e3:.1f}" for f in (0.5, 0.95, 0.99)),
                              note)
            for label, node, paths in (("local", a, local_paths), ("cold (from A)", b, cold_paths)):
                cids = [a.add(path) for path in paths]
                firsts, wholes, sizes = [], [], []
                for track_cid in cids:
                    first, whole, received = first_byte(node.api, f"/ipfs/{track_cid}")
                    firsts.append(first)
                    wholes.append(whole)
                    sizes.append(received)
                assert sizes == [path.stat().st_size for path in paths], "short body"
                mbps = sum(sizes) / sum(wholes) / 1e6
                table.add_row(f"first byte, {label} 2-5 MiB track", str(len(firsts)), "",
                              *(f"{percentile(firsts, f) * 1e3:.1f}" for f in (0.5, 0.95, 0.99)),
                              f"max {max(firsts) * 1e3:.0f} ms")
                table.add_row(f"  last byte, {label}", str(len(wholes)), f"{mbps:.0f} MB/s",
                              *(f"{percentile(wholes, f) * 1e3:.1f}" for f in (0.5, 0.95, 0.99)),
                              f"median {statistics.median(sizes) / MIB:.1f} MiB")
    console.print(table)


if __name__ == "__main__":
    main()
