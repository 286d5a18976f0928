"""kill -9 at random instants, one scenario per operation, and what must survive it.

The resilience promise (DESIGN.md: "a crash at any instant loses no acknowledged entry
and leaves nothing half-written") is tested here the blunt way: real `chorus daemon`
and `chorus` CLI processes, SIGKILL at an instant drawn from a seeded RNG, then the
checks a member would run after a power cut:

* `chorus repo verify` exits 0 (every block re-hashed, SQLite's integrity_check);
* `chorus ledger verify` exits 0 (every entry, feed, tree head and Merkle node);
* every operation that had *returned success* before the kill is still there:
  an added CID reads back the same bytes and is pinned; a pin is listed and its DAG
  is complete locally; a fetched CID is complete locally; every acknowledged ledger
  entry id is in the log; after a sync that returned, the synced entries are present;
  a tally after restart equals a tally computed from the surviving log;
* the repo is usable again at once: the kill left no lock that stops the next
  `Repo.open` or daemon start (flock dies with its process).

The checks run right after the kill, on the dead process's repo (so "complete
locally" means local: nothing can be fetched to hide a loss), and the CLI commands
run in this process (`cli.main.main`, the same code and exit code as the console
script, without 0.8 s of imports per call); then the daemon is restarted, and the
time from kill to "verified and serving again" is the scenario's recovery time.

Scenarios: `add-daemon`, `add-offline`, `pin`, `fetch`, `append`, `sync`, `tally`
(`SCENARIOS`). Each takes its own RNG, `random.Random(f"{seed}:{operation}")`, so a
failure is replayed by its seed alone (the message of every failure carries it; the
CI test takes `CHORUS_CRASH_SEED`, bench/crash.py `--seed`). A failed check does not
raise: it is recorded in the scenario's `OperationStats`, and the scenario goes on
only when the failure left its processes in a known state (it stops otherwise), so
the bench can report every failure of a long run in one table.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from cli.main import main as chorus_main
from ledger.entry import decode_entry, sign_entry
from ledger.jsonview import body_to_json, id_text
from node.client import DaemonClient, DaemonError
from node.repo import Repo
from protocol.cid import parse_cid
from protocol.reader import read_file
from tests.daemons import ROOT, DaemonProcess, start_all, wait_for

__all__ = [
    "SCENARIOS",
    "CrashCheckFailed",
    "CrashRun",
    "OperationStats",
]

#: No automatic tree heads (a tally counts them; exact equality needs none), and a
#: sync interval long enough that only the syncs a scenario starts happen.
QUIET = ("--tree-head-interval", "0", "--sync-interval", "3600")
MiB = 1024 * 1024


class CrashCheckFailed(AssertionError):
    """Something the crash must not have broken is broken; the message says what."""


@dataclass
class OperationStats:
    """One operation's figures over a run (a row of bench/crash.py's table)."""

    operation: str
    #: SIGKILLs sent to a running daemon or CLI process.
    kills: int = 0
    #: Kills that landed while the operation under test had not yet returned.
    mid_operation: int = 0
    #: Acknowledged operations (adds, pins, fetches, entries, syncs, tallies) found
    #: intact after the kills, counted once per check.
    checked: int = 0
    failures: list[str] = field(default_factory=list)
    #: Seconds from each kill to: offline checks passed and the node serving again.
    recover: list[float] = field(default_factory=list)

    @property
    def mean_recover(self) -> float:
        return sum(self.recover) / len(self.recover) if self.recover else 0.0


def check(condition: object, message: str) -> None:
    if not condition:
        raise CrashCheckFailed(message)


def chorus(data: Path, *args: str) -> tuple[int, str, str]:
    """`chorus --data DATA ARGS` run in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = chorus_main(["--data", str(data), *args])
    return code, out.getvalue(), err.getvalue()


def chorus_process(data: Path, *args: str) -> subprocess.Popen[bytes]:
    """The `chorus` CLI as its own process (the one that gets killed)."""
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "--data", str(data), *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def verify_offline(data: Path) -> None:
    """`chorus repo verify` and `chorus ledger verify` on a repo no process holds.

    Opening the repo also proves that the killed process left no lock behind."""
    for args in (("repo", "verify"), ("ledger", "verify", "--workers", "1")):
        code, out, err = chorus(data, *args)
        check(code == 0, f"`chorus {' '.join(args)}` exited {code} after the kill: "
                         f"{err.strip()} {out.strip()[-2000:]}")


def store_digest(data: Path) -> str:
    """A digest of what the repo's two databases hold (rows, not file bytes: SQLite
    may checkpoint its WAL into the main file on close without changing a row)."""
    digest = hashlib.sha256()
    for name in ("blocks.sqlite", "ledger.sqlite"):
        conn = sqlite3.connect(f"file:{data / name}?mode=ro", uri=True)
        try:
            for line in conn.iterdump():
                digest.update(line.encode())
        finally:
            conn.close()
    return digest.hexdigest()


def local_bytes(data: Path, cid: str) -> bytes:
    """The file `cid` read from the repo's own blockstore (BlockNotFound if a block
    is missing: nothing is fetched)."""
    with Repo.open(data) as repo:
        return b"".join(read_file(parse_cid(cid), repo.blockstore.get))


def recursive_pins(data: Path) -> set[str]:
    with Repo.open(data) as repo:
        return {str(pin.cid) for pin in repo.blockstore.pin_ls("recursive")}


def log_ids(data: Path) -> list[str]:
    with Repo.open(data) as repo:
        return [id_text(record.id) for record in repo.ledger.iter_log()]


def connect(node: DaemonProcess, other: DaemonProcess) -> None:
    DaemonClient(node.api).call("swarm/connect", {"arg": other.addr})


def add_via_api(node: DaemonProcess, path: Path) -> str:
    """`chorus add -Q PATH` through the daemon, without a CLI process."""
    lines = list(DaemonClient(node.api).upload("add", {"quieter": "true"}, [path], hidden=False))
    return lines[-1]["Hash"]


def kill_pid(proc: subprocess.Popen[Any]) -> bool:
    """SIGKILL `proc` if it still runs; True if it did."""
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def output_of_killed(proc: subprocess.Popen[bytes], what: str) -> bytes:
    """The output of a killed CLI process. Its pipes must close at once: a child it
    left behind (a pool worker) would hold them open, and live on, forever."""
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        raise CrashCheckFailed(f"30 s after `{what}` was killed its output is still open: "
                               "it left a child process running") from None
    return out


class CrashRun:
    """One run of scenarios under `work`, with per-operation stats in `stats`."""

    def __init__(self, work: Path, seed: int, *, log: Callable[[str], None] = print) -> None:
        self.work = work
        self.seed = seed
        self.log = log
        self.stats: dict[str, OperationStats] = {}

    def failures(self) -> list[str]:
        return [f for s in self.stats.values() for f in s.failures]

    def run(self, operation: str, rounds: int) -> OperationStats:
        """Run `rounds` kills of `operation` (a key of SCENARIOS)."""
        stats = self.stats.setdefault(operation, OperationStats(operation))
        rng = random.Random(f"{self.seed}:{operation}")
        work = self.work / operation
        work.mkdir(parents=True, exist_ok=True)
        scenario = SCENARIOS[operation](self, rng, work, stats)
        try:
            scenario.run(rounds)
        except CrashCheckFailed as exc:
            self._fail(stats, scenario.round, str(exc))
        except Exception as exc:  # noqa: BLE001 - reported with the seed, like a failed check
            self._fail(stats, scenario.round, f"{type(exc).__name__}: {exc}")
        finally:
            scenario.close()
        return stats

    def _fail(self, stats: OperationStats, round_number: int, message: str) -> None:
        text = (f"{stats.operation} round {round_number} (seed {self.seed}; replay with "
                f"CHORUS_CRASH_SEED={self.seed} or bench/crash.py --seed {self.seed}): {message}")
        stats.failures.append(text)
        self.log(text)


class Scenario:
    """Set-up, then `rounds` times: start the operation, kill, check, restart."""

    def __init__(self, run: CrashRun, rng: random.Random, work: Path,
                 stats: OperationStats) -> None:
        self.crash = run
        self.rng = rng
        self.work = work
        self.stats = stats
        self.round = 0
        self.checked_upto = 0  # acknowledged items read back in full so far (to_check)
        self.daemons: list[DaemonProcess] = []

    def run(self, rounds: int) -> None:
        self.setup()
        for self.round in range(1, rounds + 1):
            self.one_round()

    def setup(self) -> None:
        raise NotImplementedError

    def one_round(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        for daemon in self.daemons:
            daemon.stop()

    def daemon(self, name: str, **options: Any) -> DaemonProcess:
        node = DaemonProcess(self.work / name, dht=False, extra=QUIET, **options)
        self.daemons.append(node)
        return node

    def file(self, size: int) -> Path:
        """Fresh random bytes (new blocks every round) of about `size` bytes."""
        path = self.work / f"r{self.round}-{self.rng.randrange(1 << 30)}.bin"
        path.write_bytes(self.rng.randbytes(size + self.rng.randrange(256 * 1024)))
        return path

    def to_check(self, acked: dict[str, Path]) -> list[tuple[str, Path]]:
        """What to read back in full this round: everything acknowledged since the
        last check, and a few older ones drawn at random (so a long run stays linear;
        `chorus repo verify` already re-hashes every block each round)."""
        items = list(acked.items())
        fresh, old = items[self.checked_upto:], items[:self.checked_upto]
        self.checked_upto = len(items)
        return self.rng.sample(old, min(3, len(old))) + fresh

    def delay(self, span: float, low: float = 0.0) -> float:
        return self.rng.uniform(low, 1.0) * span

    def kill_daemon(self, node: DaemonProcess) -> float:
        """SIGKILL the daemon; returns the instant (for the recovery time)."""
        assert node.proc is not None
        node.kill()
        self.stats.kills += 1
        return time.monotonic()

    def recovered(self, since: float) -> None:
        self.stats.recover.append(time.monotonic() - since)

    def wait_cli(self, proc: subprocess.Popen[bytes], what: str) -> tuple[int, bytes, bytes]:
        """The exit of a CLI whose daemon was killed: success, or a one-line error
        (never a hang, never a traceback)."""
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            kill_pid(proc)
            raise CrashCheckFailed(f"`{what}` still ran 60 s after its daemon was killed") from None
        check(b"Traceback" not in err,
              f"`{what}` printed a traceback when its daemon died: {err.decode()[-1500:]}")
        return proc.returncode, out, err


# -- content ------------------------------------------------------------------------------


class AddThroughDaemon(Scenario):
    """`chorus add` through a daemon that is killed at a random instant of the add
    (the add's own process survives and must exit 0 only for a stored, pinned file)."""

    SIZE = 6 * MiB

    def setup(self) -> None:
        self.node = self.daemon("node").start()
        self.added: dict[str, Path] = {}
        started = time.monotonic()
        first = self.file(self.SIZE)
        self.added[self.node.add(first)] = first
        self.span = time.monotonic() - started

    def one_round(self) -> None:
        source = self.file(self.SIZE)
        args = ["add", "-Q", "--no-progress", str(source)]
        if self.rng.random() < 0.5:
            args[1:1] = ["--cid-version", "1"]
        proc = chorus_process(self.node.data, *args)
        time.sleep(self.delay(self.span * 1.5, 0.05))  # a third of them finish first
        self.stats.mid_operation += proc.poll() is None
        killed = self.kill_daemon(self.node)
        code, out, _ = self.wait_cli(proc, "chorus add")
        if code == 0:
            self.added[out.decode().strip()] = source
        verify_offline(self.node.data)
        pinned = recursive_pins(self.node.data)
        for cid, path in self.to_check(self.added):
            check(cid in pinned, f"added {cid} is not pinned after the kill")
            check(local_bytes(self.node.data, cid) == path.read_bytes(),
                  f"added {cid} does not read back its bytes after the kill")
            self.stats.checked += 1
        self.node.start()
        self.recovered(killed)


class AddOffline(Scenario):
    """`chorus add` with no daemon: the CLI process itself is killed."""

    SIZE = 4 * MiB

    def setup(self) -> None:
        self.data = self.work / "repo"
        code, _, err = chorus(self.data, "init")
        check(code == 0, f"init failed: {err}")
        self.added: dict[str, Path] = {}
        first = self.file(self.SIZE)
        started = time.monotonic()
        proc = chorus_process(self.data, "add", "-Q", str(first))
        out, _ = proc.communicate(timeout=120)
        self.span = time.monotonic() - started
        self.added[out.decode().strip()] = first

    def one_round(self) -> None:
        source = self.file(self.SIZE)
        proc = chorus_process(self.data, "add", "-Q", "--no-progress", str(source))
        time.sleep(self.delay(self.span * 0.9, 0.15))
        self.stats.mid_operation += kill_pid(proc)
        self.stats.kills += 1
        killed = time.monotonic()
        out = output_of_killed(proc, "chorus add")
        if proc.returncode == 0:
            self.added[out.decode().strip()] = source
        verify_offline(self.data)
        pinned = recursive_pins(self.data)
        for cid, path in self.to_check(self.added):
            check(cid in pinned, f"added {cid} is not pinned after the kill")
            check(local_bytes(self.data, cid) == path.read_bytes(),
                  f"added {cid} does not read back its bytes after the kill")
            self.stats.checked += 1
        self.recovered(killed)


class Transfer(Scenario):
    """A source daemon holds fresh content each round; the daemon under test pulls it
    over Bitswap (`pin add`, or `get`/`cat`) and is killed at a random instant."""

    SIZE = 6 * MiB

    def setup(self) -> None:
        self.source = self.daemon("source")
        self.node = self.daemon("node")
        start_all([self.source, self.node])
        connect(self.node, self.source)
        self.done: dict[str, Path] = {}
        path = self.file(self.SIZE)
        cid = add_via_api(self.source, path)
        started = time.monotonic()
        self.operate(cid, path).communicate(timeout=120)
        self.span = time.monotonic() - started
        self.node.kill()  # the first round starts from a clean slate of kills
        self.node.start()
        connect(self.node, self.source)

    def operate(self, cid: str, path: Path) -> subprocess.Popen[bytes]:
        raise NotImplementedError

    def acknowledge(self, code: int, out: bytes, cid: str, path: Path) -> None:
        raise NotImplementedError

    def one_round(self) -> None:
        path = self.file(self.SIZE)
        cid = add_via_api(self.source, path)
        proc = self.operate(cid, path)
        time.sleep(self.delay(self.span * 1.5, 0.05))  # a third of them finish first
        self.stats.mid_operation += proc.poll() is None
        killed = self.kill_daemon(self.node)
        code, out, _ = self.wait_cli(proc, f"chorus {proc.args[5]}")
        self.acknowledge(code, out, cid, path)
        verify_offline(self.node.data)
        self.check_local()
        self.node.start()
        connect(self.node, self.source)
        self.recovered(killed)

    def check_local(self) -> None:
        for cid, path in self.to_check(self.done):
            try:
                held = local_bytes(self.node.data, cid)
            except Exception as exc:  # noqa: BLE001 - BlockNotFound and friends, reported
                raise CrashCheckFailed(f"{cid}, acknowledged before the kill, is not "
                                       f"complete locally: {exc}") from None
            check(held == path.read_bytes(), f"{cid} reads back other bytes after the kill")
            self.stats.checked += 1


class Pin(Transfer):
    def operate(self, cid: str, path: Path) -> subprocess.Popen[bytes]:
        return chorus_process(self.node.data, "pin", "add", cid)

    def acknowledge(self, code: int, out: bytes, cid: str, path: Path) -> None:
        if code == 0:
            self.done[cid] = path

    def check_local(self) -> None:
        pinned = recursive_pins(self.node.data)
        missing = [cid for cid in self.done if cid not in pinned]
        check(not missing, f"acknowledged pins are gone after the kill: {missing}")
        super().check_local()


class Fetch(Transfer):
    def operate(self, cid: str, path: Path) -> subprocess.Popen[bytes]:
        if self.rng.random() < 0.5:
            self.target: Path | None = None
            return chorus_process(self.node.data, "cat", cid)
        self.target = path.with_suffix(".got")
        return chorus_process(self.node.data, "get", cid, "-o", str(self.target),
                              "--no-progress")

    def acknowledge(self, code: int, out: bytes, cid: str, path: Path) -> None:
        expected = path.read_bytes()
        if self.target is None:  # cat
            if code == 0:
                check(out == expected, f"`chorus cat {cid}` exited 0 with {len(out)} of "
                                       f"{len(expected)} bytes when its daemon was killed")
                self.done[cid] = path
            return
        if code == 0:
            check(self.target.read_bytes() == expected,
                  f"`chorus get {cid}` exited 0 but wrote other bytes")
            self.done[cid] = path
            return
        leftovers = [p.name for p in self.target.parent.glob(f"*{self.target.name}*")]
        check(not leftovers, f"a failed `chorus get` left files behind: {leftovers}")


# -- ledger ---------------------------------------------------------------------------------


def make_coop(work: Path, rng: random.Random) -> tuple[DaemonProcess, Path, str]:
    """A node whose repo created a co-op with board "board" and treasury "till"."""
    founder = DaemonProcess(work / "founder", dht=False, extra=QUIET)
    for name in ("board", "till", "member"):
        founder.cli("key", "new", name)
    genesis = work / "coop.genesis"
    created = founder.cli_json("coop", "create", "--name", f"Crash {rng.randrange(10**6)}",
                               "--board", "board", "--treasury", "till", "-o", str(genesis),
                               "--json")
    return founder, genesis, created["id"]


def topups_in_log(data: Path, wallet: bytes) -> int:
    """Micro-credits topped up into `wallet` by the entries of the log, summed here
    from the raw entries (not by the tally under test)."""
    total = 0
    with Repo.open(data) as repo:
        for record in repo.ledger.iter_log():
            entry = decode_entry(record.data)
            if entry.kind == "topup" and entry.body.get("wallet") == wallet:
                total += entry.body["amount"]
    return total


class Append(Scenario):
    """Several clients append through the daemon's API (top-ups by the treasury,
    notes by a member and by the node) while the daemon is killed."""

    CLIENTS = 3

    def setup(self) -> None:
        self.node, _, self.coop = make_coop(self.work, self.rng)
        self.daemons.append(self.node)
        self.wallet = SigningKey(self.rng.randbytes(32)).verify_key.encode()
        self.acked: list[str] = []
        self.acked_topups = 0
        self.lock = threading.Lock()
        self.node.start()

    def client(self, number: int, stop: threading.Event) -> None:
        rng = random.Random(f"{self.crash.seed}:{self.round}:{number}")
        n = 0
        while not stop.is_set():
            n += 1
            key = ("till", "member", "self")[number % 3]
            amount = rng.randrange(1, 10_000)
            body: dict[str, Any] = ({"wallet": self.wallet, "amount": amount} if key == "till"
                                    else {"text": f"client {number} #{n}"})
            kind = "topup" if key == "till" else "note"
            try:
                answer = self.node.chorus_api("POST", "/ledger/entries", {
                    "key": key, "kind": kind, "body": body_to_json(body)})
            except (OSError, http.client.HTTPException, ValueError):
                return  # the daemon is gone: this write was never acknowledged
            with self.lock:
                self.acked.append(answer["id"])
                if kind == "topup":
                    self.acked_topups += amount

    def one_round(self) -> None:
        stop = threading.Event()
        clients = [threading.Thread(target=self.client, args=(i, stop))
                   for i in range(self.CLIENTS)]
        for thread in clients:
            thread.start()
        time.sleep(self.rng.uniform(0.3, 2.0))
        killed = self.kill_daemon(self.node)
        self.stats.mid_operation += 1  # the clients were writing
        stop.set()
        for thread in clients:
            thread.join(60)
        data = self.node.data
        verify_offline(data)
        held = set(log_ids(data))
        lost = [text for text in self.acked if text not in held]
        check(not lost, f"{len(lost)} acknowledged entries are gone: {lost[:3]}")
        self.stats.checked += len(self.acked)
        code, out, err = chorus(data, "ledger", "tally", "--json")
        check(code == 0, f"offline tally failed after the kill: {err}")
        offline = json.loads(out)
        in_log = topups_in_log(data, self.wallet)
        tallied = offline["topups"].get(self.wallet.hex(), 0)
        check(tallied == in_log, f"the tally counts {tallied} µc of top-ups, the surviving "
                                 f"log holds {in_log}")
        check(in_log >= self.acked_topups, f"acknowledged top-ups of {self.acked_topups} µc, "
                                           f"the log holds {in_log}")
        self.node.start()
        served = self.node.chorus_api("GET", "/tally")
        check(served == offline, "the restarted daemon's tally differs from the tally of "
                                 "the surviving log")
        self.recovered(killed)


class Sync(Scenario):
    """A node pulls a few thousand entries from a peer; either side is killed."""

    ENTRIES = 2500

    def setup(self) -> None:
        self.peer, genesis, self.coop = make_coop(self.work, self.rng)
        self.daemons.append(self.peer)
        code, _, err = chorus(self.work / "node", "init", "--coop", str(genesis))
        check(code == 0, f"init --coop failed: {err}")
        self.node = self.daemon("node")
        self.written: set[str] = set()  # committed on the peer before its start
        self.synced: set[str] = set()  # ids a returned sync promised the node holds
        self.write_on_peer()
        start_all([self.peer, self.node])
        started = time.monotonic()
        connect(self.node, self.peer)
        self.node.chorus_api("POST", f"/ledger/sync?peer={self.peer.peer_id}")
        wait_for(lambda: self.node.chorus_api("GET", "/ledger")["size"] >= len(self.written),
                 timeout=120, what="the first sync")
        self.span = time.monotonic() - started
        self.peer.stop()

    def write_on_peer(self) -> None:
        """ENTRIES new entries of a new author, committed in the peer's log while it
        is down (as if they had arrived while the node was offline)."""
        author = SigningKey(self.rng.randbytes(32))
        now = int(time.time() * 1000)
        prev = None
        batch = []
        for seq in range(1, self.ENTRIES + 1):
            entry = sign_entry(author, seq, prev, now, "note", {"text": f"round {self.round}"})
            prev = entry.id_bytes
            batch.append(entry)
        with Repo.open(self.peer.data) as repo:
            repo.ledger.submit(batch, now)
        self.written |= {id_text(e.id_bytes) for e in batch}

    def one_round(self) -> None:
        self.write_on_peer()
        starting = [self.peer] + ([self.node] if self.node.proc is None else [])
        start_all(starting)
        result: dict[str, Any] = {}

        def pull() -> None:
            with contextlib.suppress(OSError, http.client.HTTPException, ValueError,
                                     DaemonError):
                connect(self.node, self.peer)
                result["sync"] = self.node.chorus_api(
                    "POST", f"/ledger/sync?peer={self.peer.peer_id}")

        puller = threading.Thread(target=pull)
        before = set(self.written)
        puller.start()
        time.sleep(self.delay(self.span))
        victim = self.rng.choice([self.peer, self.node])
        self.stats.mid_operation += puller.is_alive()
        killed = self.kill_daemon(victim)
        puller.join(60)
        if "sync" in result:
            self.synced |= before
        other = self.node if victim is self.peer else self.peer
        other.stop()
        for side in (self.peer, self.node):
            verify_offline(side.data)
        on_peer = set(log_ids(self.peer.data))
        on_node = set(log_ids(self.node.data))
        lost = self.written - on_peer
        check(not lost, f"{len(lost)} committed entries are gone from the peer")
        missing = self.synced - on_node
        check(not missing, f"{len(missing)} entries of a sync that returned are not on the node")
        check(on_node <= on_peer, "the node holds entries its only peer never had")
        self.stats.checked += len(self.written) + len(self.synced)
        self.node.start()
        self.recovered(killed)


class Tally(Scenario):
    """`chorus ledger tally` / `audit` killed at random instants (offline, no daemon),
    and the daemon killed while it computes `/tally`: nothing is written, no lock is
    left, and the next tally equals the first."""

    ENTRIES = 3000

    def setup(self) -> None:
        self.node, _, self.coop = make_coop(self.work, self.rng)
        self.daemons.append(self.node)
        till = self.node.data / "keys" / "till.key"
        treasury = SigningKey(till.read_bytes()[:32])
        wallet = SigningKey(self.rng.randbytes(32)).verify_key.encode()
        now = int(time.time() * 1000)
        prev = None
        batch = []
        for seq in range(1, self.ENTRIES + 1):
            body = {"wallet": wallet, "amount": 1 + seq % 97}
            entry = sign_entry(treasury, seq, prev, now, "topup", body)
            prev = entry.id_bytes
            batch.append(entry)
        with Repo.open(self.node.data) as repo:
            repo.ledger.submit(batch, now)
        code, out, err = chorus(self.node.data, "ledger", "tally", "--json")
        check(code == 0, f"tally failed: {err}")
        self.expected = json.loads(out)
        self.digest = store_digest(self.node.data)
        self.spans: dict[str, float] = {}
        for verb in ("tally", "audit"):
            started = time.monotonic()
            proc = chorus_process(self.node.data, "ledger", verb, "--json")
            proc.communicate(timeout=120)
            check(proc.returncode == 0, f"`chorus ledger {verb}` failed on the fresh log")
            self.spans[verb] = time.monotonic() - started

    def one_round(self) -> None:
        if self.round % 4 == 0:
            self.kill_daemon_tally()
            return
        verb = self.rng.choice(["tally", "audit"])
        proc = chorus_process(self.node.data, "ledger", verb, "--json")
        time.sleep(self.delay(self.spans[verb], 0.4))
        self.stats.mid_operation += kill_pid(proc)
        self.stats.kills += 1
        killed = time.monotonic()
        output_of_killed(proc, f"chorus ledger {verb}")
        check(store_digest(self.node.data) == self.digest,
              f"a killed `chorus ledger {verb}` changed the repo's databases")
        code, out, err = chorus(self.node.data, "ledger", "tally", "--json")
        check(code == 0, f"tally after the kill failed (a stale lock?): {err}")
        check(json.loads(out) == self.expected, "the tally after the kill differs")
        self.stats.checked += 1
        verify_offline(self.node.data)
        self.recovered(killed)

    def kill_daemon_tally(self) -> None:
        self.node.start()

        def ask() -> None:
            with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
                self.node.chorus_api("GET", "/tally")

        asking = threading.Thread(target=ask)
        asking.start()
        time.sleep(self.rng.uniform(0.0, self.spans["tally"] / 2))
        self.stats.mid_operation += asking.is_alive()
        killed = self.kill_daemon(self.node)
        asking.join(60)
        verify_offline(self.node.data)
        self.node.start()
        served = self.node.chorus_api("GET", "/tally")
        check(served == self.expected, "the tally of the restarted daemon differs")
        self.stats.checked += 1
        self.node.stop()
        self.digest = store_digest(self.node.data)
        self.recovered(killed)


SCENARIOS: dict[str, Callable[[CrashRun, random.Random, Path, OperationStats], Scenario]] = {
    "add-daemon": AddThroughDaemon,
    "add-offline": AddOffline,
    "pin": Pin,
    "fetch": Fetch,
    "append": Append,
    "sync": Sync,
    "tally": Tally,
}

