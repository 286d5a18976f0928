"""Ten daemons on loopback taking receipts at a co-op's rate: nothing lost, same books.

A real co-op in miniature: a genesis signed by a board, ten `chorus daemon`
processes joined to it and connected in a random mesh (each to the next in a ring
plus two random others), and listeners whose receipts are written on the node they
listen through. Each listener's receipts are signed here (as the listener's own
node would) and submitted to its home node at an aggregate rate of --rate receipts/s
for --seconds: every --batch-interval (0.1 s) each node's client posts what became
due as one `POST /ledger/submit-batch` (0: one `POST /ledger/submit` per receipt).

Measured, in one run:
  * achieved write rate, and the latency from a receipt's due time to its
    acknowledgement (median, p99);
  * entries lost: acknowledged by a node but missing on some node at the end (target 0);
  * time from the last acknowledged write until every node holds every entry
    (identical feed heads), and until every node's `/tally` is identical (target
    <= 5 s);
  * CPU (share of one core, over the load) and peak RSS of each daemon;
  * how the entries travelled: gossip batches received, entries repaired by sync;
  * baseline in the same run: one daemon alone taking the same per-node rate
    (--baseline), to show what the swarm's replication costs on top of submission.
The 10**6-entry audit figure comes from `bench/ledger.py --entries 1000000` (export
and `verify_export`), which this script runs with --audit N.

Run: `python bench/swarm.py [--nodes 10] [--rate 1000] [--seconds 30]`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from nacl.signing import SigningKey
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.entry import sign_entry
from node.gossip import encode_batch
from tests.daemons import ROOT, DaemonProcess, init_in_coop, start_all, wait_for

#: Tree heads off: each node would sign its own at its own moment and the books would
#: differ for as long as gossip takes; sync at its default interval (30 s) — the
#: entries must travel by gossip, sync is the repair path.
FLAGS = ["--no-dht", "--tree-head-interval", "0"]
ROOT_CID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


@dataclass
class Listener:
    key: SigningKey
    home: int
    seq: int = 0
    prev: bytes | None = None
    sent: dict[str, int] = field(default_factory=dict)  # host -> cumulative bytes


def start_swarm(work: Path, count: int) -> list[DaemonProcess]:
    """A co-op of `count` daemons, every one started and connected in a mesh."""
    first = DaemonProcess(work / "node0", extra=FLAGS)
    first.cli("key", "new", "board")
    first.cli("key", "new", "till")
    genesis = work / "bench.genesis"
    first.cli("coop", "create", "--name", "Swarm bench", "--board", "board",
              "--treasury", "till", "-o", str(genesis), "--json")
    nodes = [first]
    for i in range(1, count):
        init_in_coop(work / f"node{i}", genesis)
        nodes.append(DaemonProcess(work / f"node{i}", extra=FLAGS))
    start_all(nodes)
    rng = random.Random(7)
    for i, node in enumerate(nodes):
        targets = {(i + 1) % count, *rng.sample(range(count), min(2, count))} - {i}
        if targets:
            node.cli("swarm", "connect", *(nodes[t].addr for t in sorted(targets)))
    return nodes


def publish_release(nodes: list[DaemonProcess]) -> str:
    """An artist's release of the track every receipt names, written on node 0 and
    waited for on every node: receipts for content nobody published are anomalies
    the tally lists one by one (a /tally of megabytes), not a co-op's normal day."""
    artist = SigningKey.generate()
    entry = sign_entry(
        artist, 1, None, int(time.time() * 1000) - 1000, "release",
        {"title": "Swarm bench", "payees": [{"key": artist.verify_key.encode(), "bps": 10_000}],
         "tracks": [{"cid": ROOT_CID, "title": "one", "duration_ms": 180_000,
                     "size": 4_194_304, "mime": "audio/ogg"}]},
    )
    token = (nodes[0].data / "api_token").read_text().strip()
    request = urllib.request.Request(
        f"{nodes[0].api}/api/chorus/v1/ledger/submit", data=entry.encoded, method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert json.loads(response.read())["verdict"] == "append"
    author = artist.verify_key.encode().hex()
    wait_for(lambda: all(author in feed_heads(node) for node in nodes), timeout=60,
             interval=0.2, what="the release on every node")
    return author


def make_receipts(listeners: list[Listener], hosts: list[str], total: int) -> list[list[bytes]]:
    """`total` receipts round-robin over the listeners, grouped by home node, in the
    order each must be submitted (a feed's entries in seq order)."""
    per_node: list[list[bytes]] = [[] for _ in range(1 + max(lst.home for lst in listeners))]
    now = int(time.time() * 1000)
    for n in range(total):
        listener = listeners[n % len(listeners)]
        host = hosts[(n // len(listeners) + listener.home) % len(hosts)]
        listener.sent[host] = listener.sent.get(host, 0) + 262_144
        listener.seq += 1
        entry = sign_entry(
            listener.key, listener.seq, listener.prev, now + listener.seq, "receipt",
            {"host": host, "epoch": 0, "bytes": listener.sent[host], "roots": [ROOT_CID]},
        )
        listener.prev = entry.id_bytes
        per_node[listener.home].append(entry.encoded)
    return per_node


class Submitter(threading.Thread):
    """Posts one node's receipts at `rate`/s on one keep-alive connection: each as its
    own `/ledger/submit` (batch_interval 0), or every `batch_interval` seconds what
    became due since, as one `/ledger/submit-batch` (a player's client flushing its
    listeners' receipts). Latency runs from when a receipt was due to its answer."""

    def __init__(self, node: DaemonProcess, entries: list[bytes], rate: float,
                 batch_interval: float) -> None:
        super().__init__(daemon=True)
        self.node, self.entries, self.rate = node, entries, rate
        self.batch_interval = batch_interval
        self.acked: list[str] = []
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.requests = 0
        self.last_ack = 0.0
        self.start_at = 0.0

    def run(self) -> None:
        url = urlsplit(self.node.api)
        token = (self.node.data / "api_token").read_text().strip()
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}"}
        n = 0
        while n < len(self.entries):
            due = self.start_at + n / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay if not self.batch_interval else max(delay, self.batch_interval))
            now = time.monotonic()
            if self.batch_interval:
                due_now = max(n + 1, int((now - self.start_at) * self.rate))
                last = min(len(self.entries), due_now, n + 1024)  # MAX_BATCH
            else:
                last = n + 1
            self._post(n, last)
            n = last
        self.conn.close()

    def _post(self, first: int, last: int) -> None:
        batch = self.entries[first:last]
        if self.batch_interval:
            path, body = "/api/chorus/v1/ledger/submit-batch", encode_batch(batch)
            kind = "application/msgpack"
        else:
            path, body, kind = "/api/chorus/v1/ledger/submit", batch[0], "application/octet-stream"
        self.conn.request("POST", path, body=body, headers={**self.headers, "Content-Type": kind})
        response = self.conn.getresponse()
        answer = response.read()
        done = time.monotonic()
        self.requests += 1
        if response.status != 200:
            self.errors.append(f"{response.status} {answer[:200]!r}")
            return
        document = json.loads(answer)
        results = document["results"] if self.batch_interval else [document]
        for n, result in enumerate(results, start=first):
            if "verdict" not in result:
                self.errors.append(f"refused: {result}")
                continue
            self.acked.append(result["id"])
            self.latencies.append(done - (self.start_at + n / self.rate))
        self.last_ack = done


def feed_heads(node: DaemonProcess) -> dict[str, tuple[int, str]]:
    heads: dict[str, tuple[int, str]] = {}
    after = None
    while True:
        query = "/ledger/heads?limit=4096" + (f"&after={after}" if after else "")
        page = node.chorus_api("GET", query)
        for feed in page["feeds"]:
            heads[feed["author"]] = (feed["seq"], feed["head"])
        if not page["more"]:
            return heads
        after = page["feeds"][-1]["author"]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def diagnose(nodes: list[DaemonProcess], submitters: list[Submitter]) -> None:
    """What each node holds and did, when the books never became identical."""
    for i, (node, submitter) in enumerate(zip(nodes, submitters, strict=True)):
        state = node.chorus_api("GET", "/ledger")
        gossip = {}
        with urllib.request.urlopen(f"{node.api}/metrics", timeout=30) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("chorus_gossip_") and not line.startswith("#"):
                    name, value = line.split()
                    if float(value):
                        gossip[name[len("chorus_gossip_"):]] = int(float(value))
        print(f"node {i}: acked {len(submitter.acked)} errors {len(submitter.errors)} "
              f"size {state['size']} pending {state['pending']} counters {state['counters']} "
              f"sync {state['sync']} replication {state['replication']} gossip {gossip}")


def run_load(nodes: list[DaemonProcess], rate: float, seconds: float,
             listeners_per_node: int, batch_interval: float, counters: bool = False) -> dict:
    count = len(nodes)
    listeners = [Listener(SigningKey.generate(), home=i % count)
                 for i in range(listeners_per_node * count)]
    hosts = [node.peer_id for node in nodes]
    total = int(rate * seconds)
    publish_release(nodes)
    for node in nodes:  # a member's dashboard open on every node: figures watched
        node.chorus_api("GET", "/tally")
    per_node = make_receipts(listeners, hosts, total)
    pids = [node.proc.pid for node in nodes]
    cpu_before = [cpu_seconds(pid) for pid in pids]
    submitters = [
        Submitter(node, entries, rate / count, batch_interval)
        for node, entries in zip(nodes, per_node, strict=True)
    ]
    start = time.monotonic() + 0.5
    for submitter in submitters:
        submitter.start_at = start
        submitter.start()
    for submitter in submitters:
        submitter.join()
    load_time = max(s.last_ack for s in submitters) - start
    last_write = max(s.last_ack for s in submitters)
    acked = {entry for s in submitters for entry in s.acked}
    expected = {lst.key.verify_key.encode().hex(): lst.seq for lst in listeners}

    def all_heads_complete() -> list | None:
        shots = [feed_heads(node) for node in nodes]
        complete = all(shots[0].get(author, (0, ""))[0] == seq
                       for author, seq in expected.items())
        if complete and all(shot == shots[0] for shot in shots):
            return shots
        return None

    try:
        wait_for(all_heads_complete, timeout=300, interval=0.25,
                 what="every node to hold every entry")
    except AssertionError:
        diagnose(nodes, submitters)
        raise
    heads_time = time.monotonic() - last_write

    def tallies_equal() -> bool:
        """All nodes' /tally, asked side by side (one tally of 30,000 entries takes
        about a second on a loaded machine: asked in turn, ten would add ten)."""
        tallies: list[str] = [""] * len(nodes)

        def ask(i: int) -> None:
            tallies[i] = json.dumps(nodes[i].chorus_api("GET", "/tally"), sort_keys=True)

        askers = [threading.Thread(target=ask, args=(i,)) for i in range(len(nodes))]
        for asker in askers:
            asker.start()
        for asker in askers:
            asker.join()
        return all(t == tallies[0] for t in tallies)

    wait_for(tallies_equal, timeout=300, interval=0.25, what="identical tallies")
    tally_time = time.monotonic() - last_write
    cpu = [(cpu_seconds(pid) - before) for pid, before in zip(pids, cpu_before, strict=True)]
    window = time.monotonic() - start
    lost = 0
    for node in nodes:
        present = 0
        for entry_id in random.Random(1).sample(sorted(acked), min(200, len(acked))):
            try:
                node.chorus_api("GET", f"/ledger/entries/{entry_id}")
                present += 1
            except Exception:  # noqa: BLE001 - an HTTPError 404 is a lost entry
                pass
        lost = max(lost, min(200, len(acked)) - present)
    statuses = [node.chorus_api("GET", "/ledger") for node in nodes]
    if counters:
        diagnose(nodes, submitters)
    latencies = sorted(x for s in submitters for x in s.latencies)
    return {
        "total": total,
        "acked": len(acked),
        "errors": sum(len(s.errors) for s in submitters),
        "requests": sum(s.requests for s in submitters),
        "first_errors": [e for s in submitters for e in s.errors][:3],
        "load_time": load_time,
        "achieved_rate": len(acked) / load_time if load_time > 0 else 0.0,
        "latency_median_ms": 1000 * statistics.median(latencies) if latencies else 0.0,
        "latency_p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else 0,
        "heads_time": heads_time,
        "tally_time": tally_time,
        "lost_in_sample": lost,
        "sizes": [s["size"] for s in statuses],
        "cpu_share": [c / window for c in cpu],
        "rss_mib": [peak_rss_mib(pid) for pid in pids],
        "sync_stored": [(s.get("sync") or {}).get("entries_stored", 0) for s in statuses],
        "gossip": [s.get("replication") for s in statuses],
        "feeds_expected": len(expected),
        "window": window,
    }


def report(console: Console, title: str, nodes: list[DaemonProcess], result: dict) -> None:
    console.print(
        f"[bold]{title}[/]: {result['acked']}/{result['total']} receipts acknowledged in "
        f"{result['load_time']:.1f} s = {result['achieved_rate']:.0f}/s in "
        f"{result['requests']} requests; latency due-to-acknowledged "
        f"median {result['latency_median_ms']:.1f} ms, p99 {result['latency_p99_ms']:.1f} ms; "
        f"errors {result['errors']} {result['first_errors']}"
    )
    console.print(
        f"  every node holds every entry {result['heads_time']:.2f} s after the last write; "
        f"identical tallies after {result['tally_time']:.2f} s; "
        f"entries lost (200 sampled per node) {result['lost_in_sample']}"
    )
    table = Table("node", "log size", "CPU (share of a core)", "peak RSS MiB",
                  "entries via sync", "gossip entries in")
    for i in range(len(nodes)):
        gossip = result["gossip"][i] or {}
        table.add_row(
            str(i), str(result["sizes"][i]), f"{result['cpu_share'][i]:.2f}",
            f"{result['rss_mib'][i]:.0f}", str(result["sync_stored"][i]),
            str(gossip.get("received", "-")),
        )
    console.print(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--rate", type=float, default=1000.0, help="receipts/s, all nodes")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--listeners", type=int, default=10, help="listeners per node")
    parser.add_argument("--batch-interval", type=float, default=0.1, metavar="S",
                        help="each node's client posts what became due every S seconds "
                             "as one /ledger/submit-batch (0: one /ledger/submit each)")
    parser.add_argument("--gossip-interval", type=float, default=None, metavar="S",
                        help="the daemons' --gossip-interval (default: theirs)")
    parser.add_argument("--baseline", action="store_true",
                        help="first, one daemon alone at the per-node rate")
    parser.add_argument("--audit", type=int, default=0, metavar="N",
                        help="also run bench/ledger.py's export + audit at N entries")
    parser.add_argument("--counters", action="store_true",
                        help="print every node's ledger, sync and gossip counters at the end")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.gossip_interval is not None:
        FLAGS.extend(["--gossip-interval", str(args.gossip_interval)])
    console = Console()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="chorus-swarm-") as tmp:
        work = Path(tmp)
        if args.baseline:
            nodes = start_swarm(work / "alone", 1)
            try:
                results["alone"] = run_load(nodes, args.rate / args.nodes, args.seconds,
                                            args.listeners, args.batch_interval)
                report(console, "baseline: one daemon at the per-node rate", nodes,
                       results["alone"])
            finally:
                for node in nodes:
                    node.stop()
        nodes = start_swarm(work / "swarm", args.nodes)
        try:
            results["swarm"] = run_load(nodes, args.rate, args.seconds, args.listeners,
                                        args.batch_interval, args.counters)
            report(console, f"{args.nodes} daemons at {args.rate:.0f} receipts/s", nodes,
                   results["swarm"])
        finally:
            for node in nodes:
                node.stop()
    if args.audit:
        subprocess.run([sys.executable, str(ROOT / "bench" / "ledger.py"),
                        "--entries", str(args.audit)], check=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
