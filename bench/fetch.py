"""Fetch throughput between two chorus daemons, next to the raw libp2p ceiling.

Starts two real daemons on 127.0.0.1 and measures, in one run:
  * ceiling: raw py-libp2p stream throughput between the same two processes (the
    libp2p perf protocol, /perf/1.0.0, 256 KiB writes), B downloading from A;
  * fetch: B pins a 64 MiB file added on A (Bitswap: want-blocks, verification,
    SQLite store), MB/s and the ratio to the ceiling;
  * time to first byte of a 5 MiB track B does not have (`/api/v0/cat`);
  * fetch of the same 64 MiB from a Helia peer (an independent IPFS implementation).
Run: `python bench/fetch.py [--size MiB] [--no-helia]`.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.client import DaemonClient
from tests.daemons import daemons

MIB = 1024 * 1024


def ttfb(api: str, cid: str) -> tuple[float, float]:
    """Seconds to the first byte and to the last byte of `cat CID` through the API."""
    parts = urlsplit(api)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    start = time.perf_counter()
    conn.request("POST", f"/api/v0/cat?arg={cid}")
    response = conn.getresponse()
    response.read(1)
    first = time.perf_counter() - start
    while response.read(1 << 20):
        pass
    return first, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=64, help="fetch size in MiB")
    parser.add_argument("--no-helia", action="store_true", help="skip the Helia peer")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved perf/fetch pairs")
    args = parser.parse_args()
    size = args.size * MIB
    console = Console(width=120)
    table = Table(title=f"chorus fetch over loopback ({os.cpu_count()} cores)")
    for column in ("what", "bytes", "seconds", "MB/s (min-max)", "ratio to ceiling (median)"):
        table.add_column(column, justify="left" if column == "what" else "right")
    with tempfile.TemporaryDirectory(prefix="chorus-bench-") as tmp:
        work = Path(tmp)
        big = work / "big.bin"
        big.write_bytes(os.urandom(size))
        track = work / "track.bin"
        track.write_bytes(os.urandom(5 * MIB))
        with daemons(work, 2, dht=False) as (a, b):
            b.connect(a)
            client_b = DaemonClient(b.api)
            cid = a.add(big)
            # Interleave ceiling and fetch runs: this machine's speed drifts between
            # runs (shared cores), so each fetch is compared with the perf run beside it.
            ratios, rates, ceilings = [], [], []
            for _ in range(args.rounds):
                perf = client_b.call("diag/perf", {"arg": a.addr, "bytes": size})
                ceiling = perf["Bytes"] / perf["Seconds"]
                start = time.perf_counter()
                client_b.call("pin/add", {"arg": cid})
                rate = size / (time.perf_counter() - start)
                client_b.call("pin/rm", {"arg": cid})
                list(client_b.lines("repo/gc"))
                ceilings.append(ceiling)
                rates.append(rate)
                ratios.append(rate / ceiling)
            ceiling = statistics.median(ceilings)
            for label, values in (("raw libp2p stream (perf)", ceilings),
                                  ("bitswap fetch + store", rates)):
                median = statistics.median(values)
                spread = f"{min(values) / 1e6:.0f}-{max(values) / 1e6:.0f}"
                table.add_row(label, str(size), f"{size / median:.2f}",
                              f"{median / 1e6:.1f} ({spread})",
                              f"{statistics.median(ratios):.2f}" if "fetch" in label else "1.00")
            track_cid = a.add(track)
            first, whole = ttfb(b.api, track_cid)
            table.add_row("5 MiB track: first byte", "1", f"{first:.3f}", "", "")
            table.add_row("5 MiB track: last byte", str(5 * MIB), f"{whole:.3f}",
                          f"{5 * MIB / whole / 1e6:.1f}", "")
            if not args.no_helia:
                from tests.helia_peer import HeliaPeer
                from tests.vectors.content import deterministic_bytes

                with HeliaPeer() as helia:
                    helia_cid = helia.add(size=size, seed="bench", profile="kubo-v0")
                    b.cli("swarm", "connect", helia.multiaddrs[0])
                    start = time.perf_counter()
                    client_b.call("pin/add", {"arg": helia_cid})
                    elapsed = time.perf_counter() - start
                    got = b.cli("cat", helia_cid).stdout
                    assert got == deterministic_bytes(size, "bench"), "bytes from Helia differ"
                    rate = size / elapsed
                    table.add_row("bitswap fetch from Helia", str(size), f"{elapsed:.2f}",
                                  f"{rate / 1e6:.1f}", f"{rate / ceiling:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
