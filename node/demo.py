"""`chorus demo`: a throwaway co-op of three daemons on 127.0.0.1, run as its members would.

Everything happens through the `chorus` command, in subprocesses, exactly as a
person would type it (each command is shown as it runs, with `--data nodeN`
relative to the demo's directory, so it can be typed again there):

1. node 1 gets a repo and the founders' keys (board, treasury, artist) and writes
   the co-op's genesis (`coop create`, with a 2 s play threshold instead of 45 s so
   the story needs no waiting); nodes 2 and 3 join with the genesis file
   (`init --coop`), and node 3 makes the listener's key;
2. three daemons start (node 1 first; 2 and 3 bootstrap from it; 3 also dials 2);
3. the board admits the artist and the listener, the treasury tops the listener up,
   the artist puts a question to the artists and listeners (a vote open for an hour,
   for the web app's Vote view) and publishes a release of three tracks synthesised
   here with the standard library (node/sample_audio.py), and node 2 pins them: it
   hosts the release;
4. the listener plays tracks through node 3 — the blocks come from nodes 1 and 2 —
   and pays for each play, each repeat of a track at twice the price;
5. the three nodes' `ledger tally --json` must print the same figures, node 2 audits
   its copy of the ledger, and node 1's export is audited on node 3 against the
   genesis file, as an outside auditor would.

Each step checks what it was told (a play's price is the doubling the rules say,
the tallies agree, the audits pass) and fails with the step, the command and its
output otherwise. `CoopDemo` runs the story and stops the daemons; cli/demo.py
draws it, waits for Ctrl-C and removes the directory.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol.errors import ChorusError

from .sample_audio import synth_track

__all__ = ["CoopDemo", "DemoFailed", "DemoNode", "Narrator"]

COOP_NAME = "Demo Co-op"
GENESIS_FILE = "demo.genesis"
EXPORT_FILE = "node1-ledger.car"
RELEASE_TITLE = "Loopback Sessions"
#: A play counts after 2 s here (the default is 45 s), so every track can be played
#: in full in a moment.
COUNT_AFTER_MS = 2000
#: The listener's top-up, in µc.
TOPUP = 50_000
#: File name, title and seconds of the tracks the artist "records" (a release lists
#: its files in name order; the title is the file's stem).
TRACKS = (
    ("First Light.wav", "First Light", 4.0),
    ("Loopback.wav", "Loopback", 5.0),
    ("Three Nodes.wav", "Three Nodes", 6.0),
)
#: Studio-rate mono, 192 kB a second: each track is a few 256 KiB blocks, enough for
#: node 3 to fetch them from both hosts at once.
SAMPLE_RATE = 96_000
#: The question the artist puts to the artists and listeners (open for an hour).
PROPOSAL_TITLE = "Hosting share"
PROPOSAL_TEXT = "Give the hosts a larger part of each play?"
PROPOSAL_OPTIONS = ("raise it", "keep it", "lower it")
#: Which track each play is (indexes into TRACKS): the first one three times, so
#: its price doubles twice.
PLAYS = (0, 0, 1, 0, 2)
#: Daemon flags: loopback only, OS-chosen ports, no DHT (the three find each other
#: by bootstrap), no periodic tree heads (each node would sign its own at its own
#: moment and the tallies, which count entries, would differ until gossip caught up)
#: and a quick pull sync.
DAEMON_FLAGS = (
    "--listen", "/ip4/127.0.0.1/tcp/0", "--http", "127.0.0.1:0", "--no-dht",
    "--tree-head-interval", "0", "--sync-interval", "2",
)
READY_TIMEOUT = 60.0
AGREE_TIMEOUT = 45.0
STOP_TIMEOUT = 10.0


class DemoFailed(ChorusError):
    """A step did not do what it must: which step, the command, what it printed."""

    def __init__(self, step: str, message: str, command: str | None = None,
                 output: str = "") -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message
        self.command = command
        self.output = output

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "message": self.message, "command": self.command,
                "output": self.output}


class Narrator:
    """What the demo tells as it goes. The methods here say nothing; cli/demo.py
    draws them with rich. They may be called from more than one thread."""

    def begin(self, title: str) -> None:
        """A step starts."""

    def command(self, shown: str) -> None:
        """A `chorus ...` command is about to run."""

    def done(self, title: str, detail: str) -> None:
        """The step finished; `detail` is what it came to."""

    def waiting(self, text: str) -> AbstractContextManager[None]:
        """Something takes a while (a daemon starting, gossip spreading)."""
        return nullcontext()


@dataclass
class DemoNode:
    """One node of the demo: its repo (a directory of the demo's) and its daemon."""

    number: int
    role: str
    data: Path
    proc: subprocess.Popen[str] | None = None
    command: str = ""
    peer_id: str = ""
    addr: str = ""
    api: str = ""
    log: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    @property
    def name(self) -> str:
        """The repo's directory name, as commands name it: node1."""
        return f"node{self.number}"

    @property
    def label(self) -> str:
        return f"node {self.number}"

    @property
    def token(self) -> str:
        return (self.data / "api_token").read_text("utf-8").strip()

    @property
    def web_url(self) -> str:
        """The web app with the node's API token, so the page can write (loopback)."""
        return f"{self.api.rstrip('/')}/?token={self.token}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str) -> Any:
        """GET /api/chorus/v1{path} from this node's daemon, as JSON."""
        request = urllib.request.Request(
            f"{self.api.rstrip('/')}/api/chorus/v1{path}",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


class _Step:
    def __init__(self, title: str) -> None:
        self.title = title
        self.detail = ""


class CoopDemo:
    """The story, step by step, in `workdir` (which the caller makes and removes).

    Call `start`, `play`, `tally` and `audit` in that order (each narrates its
    steps and raises DemoFailed if one goes wrong), then `stop` — always, even after
    a failure or an interrupt: it stops whatever daemons run."""

    def __init__(self, workdir: Path, narrator: Narrator | None = None) -> None:
        self.workdir = workdir
        self.narrator = narrator or Narrator()
        roles = ("the founders' node: board, treasury, artist", "hosts the release",
                 "the listener's node")
        self.nodes = [DemoNode(i + 1, role, workdir / f"node{i + 1}")
                      for i, role in enumerate(roles)]
        self.keys: dict[str, str] = {}  # key name -> public key (hex)
        self.coop: dict[str, Any] = {}
        self.release: dict[str, Any] = {}
        self.proposal: dict[str, Any] = {}
        self.plays: list[dict[str, Any]] = []
        self.tallies: dict[str, dict[str, Any]] = {}
        self.audits: dict[str, dict[str, Any]] = {}
        self._step_title = "setting up"
        self._env = {k: v for k, v in os.environ.items() if k != "CHORUS_DATA"}
        self._env["PYTHONUNBUFFERED"] = "1"

    # -- names, for whoever draws the figures ---------------------------------------------

    @property
    def key_names(self) -> dict[str, str]:
        """Public key (hex) -> its name in the demo."""
        return {key: name for name, key in self.keys.items()}

    @property
    def peer_names(self) -> dict[str, str]:
        """Peer id -> "node N"."""
        return {node.peer_id: node.label for node in self.nodes if node.peer_id}

    # -- the story ---------------------------------------------------------------------------

    def start(self) -> None:
        """The co-op, its three running nodes, its members, the release and its host."""
        n1, n2, n3 = self.nodes
        with self._step("node 1 starts a repo and makes the founders' keys") as step:
            self._chorus(n1, "init")
            for name in ("board", "treasury", "artist"):
                made = self._chorus(n1, "key", "new", name, "--json", parse=True)
                self.keys[name] = made["public_key"]
            step.detail = "keys board, treasury and artist (Ed25519) in node 1's keystore"

        with self._step("the board signs the co-op's genesis") as step:
            self.coop = self._chorus(
                n1, "coop", "create", "--name", COOP_NAME, "--board", "board",
                "--treasury", "treasury", "--param", f"count_after_ms={COUNT_AFTER_MS}",
                "-o", GENESIS_FILE, "--json", parse=True,
            )
            step.detail = (f"co-op {self.coop['name']!r} is {self.coop['id']}; its rules are "
                           f"the defaults, except that a play counts after "
                           f"{COUNT_AFTER_MS // 1000} s (not 45 s)")

        with self._step("nodes 2 and 3 join the co-op with the genesis file") as step:
            for node in (n2, n3):
                self._chorus(node, "init", "--coop", GENESIS_FILE)
            made = self._chorus(n3, "key", "new", "listener", "--json", parse=True)
            self.keys["listener"] = made["public_key"]
            step.detail = "node 3 makes the listener's key: their wallet"

        with self._step("the artist records three short tracks") as step:
            album = self.workdir / "album"
            album.mkdir()
            total = 0
            for file_name, title, seconds in TRACKS:
                data = synth_track(title, seconds, rate=SAMPLE_RATE)
                (album / file_name).write_bytes(data)
                total += len(data)
            step.detail = (", ".join(f"{title} ({seconds:.0f} s)" for _, title, seconds in TRACKS)
                           + f": {total:,} bytes of WAV in album/, synthesised by chorus")

        with self._step("three daemons start on 127.0.0.1") as step:
            self._start_daemon(n1)
            self._await_daemons([n1])
            for node in (n2, n3):
                self._start_daemon(node, bootstrap=n1.addr)
            self._await_daemons([n2, n3])
            self._chorus(n3, "swarm", "connect", n2.addr)
            step.detail = "; ".join(f"{node.label} is {node.peer_id}" for node in self.nodes)

        listener = self.keys["listener"]
        with self._step("the board admits the members, the treasury tops up a wallet") as step:
            self._chorus(n1, "member", "admit", "artist", "--class", "artist", "--as", "board")
            self._chorus(n1, "member", "admit", listener, "--class", "listener",
                         "--as", "board")
            self._chorus(n1, "wallet", "topup", listener, str(TOPUP), "--as", "treasury")
            step.detail = f"the artist and the listener are members; the listener has {TOPUP:,} µc"

        with self._step("the artist puts a question to the artists and listeners") as step:
            self.proposal = self._chorus(
                n1, "vote", "propose", "--title", PROPOSAL_TITLE, "--text", PROPOSAL_TEXT,
                *(arg for option in PROPOSAL_OPTIONS for arg in ("--option", option)),
                "--opens", "now", "--closes", "+1h", "--class", "artist",
                "--class", "listener", "--as", "artist", "--json", parse=True,
            )
            step.detail = (f"proposal {PROPOSAL_TITLE!r} ({self.proposal['id']}): "
                           f"{', '.join(PROPOSAL_OPTIONS)}; open for an hour, the listener "
                           "can vote in node 3's web app")

        with self._step("the artist publishes a release on node 1") as step:
            self.release = self._chorus(n1, "release", "publish", "album", "--title",
                                        RELEASE_TITLE, "--as", "artist", "--json", parse=True)
            tracks = self.release["tracks"]
            step.detail = (f"{RELEASE_TITLE!r} ({self.release['id']}): {len(tracks)} tracks "
                           "added and pinned, signed by the artist")

        with self._step("node 2 hosts the release") as step:
            self._chorus(n2, "pin", "add", *(track["cid"] for track in tracks))
            step.detail = f"it fetched and pinned the {len(tracks)} tracks from node 1"

        with self._step("gossip carries the co-op's entries to every node") as step:
            size = self._agree(minimum=5)  # 2 admissions, a top-up, a proposal, a release
            step.detail = f"each node holds the same {size} entries"

    def play(self) -> None:
        """The listener plays tracks through node 3; each repeat costs twice as much."""
        n3 = self.nodes[2]
        price = self.coop["params"]["play_price"]
        paid: dict[str, int] = {}
        for index in PLAYS:
            track = self.release["tracks"][index]
            cid, title = track["cid"], track["title"]
            with self._step(f"the listener plays {title!r} through node 3") as step:
                answer = self._chorus(n3, "play", cid, "--as", "listener", "--json", parse=True)
                number = paid.get(cid, 0) + 1
                expected = price * 2 ** (number - 1)
                if answer["outcome"] != "paid" or answer["price"] != expected:
                    raise DemoFailed(
                        self._step_title,
                        f"play {number} of {title!r} should be paid {expected:,} µc; chorus "
                        f"play says {answer['outcome']}, {answer['price']:,} µc",
                        output=json.dumps(answer, indent=2),
                    )
                paid[cid] = number
                self.plays.append(answer)
                names = self.peer_names
                if answer["hosts"]:
                    served = sorted((names.get(h["peer"], h["peer"]), h["bytes"])
                                    for h in answer["hosts"])
                    hosts = ", ".join(f"{name} {count:,} B" for name, count in served)
                    source = f"blocks from {hosts}"
                else:
                    source = "blocks already on node 3"
                step.detail = (
                    f"paid {answer['price']:,} µc (play {number} of "
                    f"{answer['after']['plays_to_own']} toward owning it); {source}; "
                    f"wallet {answer['after']['balance']:,} µc"
                )

    def tally(self) -> dict[str, Any]:
        """Every node's `chorus ledger tally --json`, which must be the same."""
        with self._step("every node tallies the co-op's books") as step:
            self._agree(minimum=5 + len(PLAYS), tallies=True)
            with ThreadPoolExecutor(len(self.nodes)) as pool:
                printed = list(pool.map(
                    lambda node: self._chorus(node, "ledger", "tally", "--json"), self.nodes
                ))
            if len(set(printed)) != 1:
                raise DemoFailed(self._step_title, "the nodes' tallies differ",
                                 "chorus --data nodeN ledger tally --json",
                                 "\n".join(printed))
            for node, text in zip(self.nodes, printed, strict=True):
                self.tallies[node.name] = json.loads(text)
            value = self.tallies["node1"]
            self._check_spent(value)
            anomalies = len(value["anomalies"])
            step.detail = (f"nodes 1, 2 and 3 print the same tally: {value['entries']} entries, "
                           f"{anomalies} anomal{'y' if anomalies == 1 else 'ies'}")
        return self.tallies["node1"]

    def audit(self) -> None:
        """Node 2 audits its own copy; node 1's export is audited on node 3."""
        n1, n2, n3 = self.nodes
        with self._step("node 2 audits its copy of the ledger") as step:
            report = self._audit(n2)
            step.detail = self._audit_detail(report)
        with self._step("an auditor checks node 1's export on node 3") as step:
            self._chorus(n1, "ledger", "tree-head", "--sign")
            self._chorus(n1, "ledger", "export", "-o", EXPORT_FILE)
            report = self._audit(n3, EXPORT_FILE, "--genesis", GENESIS_FILE)
            mine = {k: v for k, v in report["tally"].items() if k != "entries"}
            theirs = {k: v for k, v in self.tallies["node1"].items() if k != "entries"}
            if mine != theirs:
                raise DemoFailed(self._step_title, "the figures recomputed from the export "
                                 "differ from the nodes' tallies",
                                 output=json.dumps({"export": mine, "nodes": theirs}, indent=1))
            heads = len(report["verify"]["tree_heads"])
            signed = ("1 signed tree head checks" if heads == 1
                      else f"{heads} signed tree heads check")
            step.detail = (self._audit_detail(report) + f"; {signed} out, and the figures "
                           "are the nodes' own")

    @property
    def audit_ok(self) -> bool:
        return len(self.audits) == 2 and all(a["ok"] for a in self.audits.values())

    def summary(self) -> dict[str, Any]:
        """What happened, for `chorus demo --once --json`."""
        return {
            "coop": {key: self.coop.get(key) for key in ("id", "name", "params")},
            "workdir": str(self.workdir),
            "keys": dict(self.keys),
            "nodes": {
                node.name: {"peer_id": node.peer_id, "api": node.api,
                            "url": node.web_url if node.api else None,
                            "pid": None if node.proc is None else node.proc.pid}
                for node in self.nodes
            },
            "release": self.release,
            "proposal": {key: self.proposal.get(key) for key in ("id", "counted")}
            | {"title": PROPOSAL_TITLE, "options": list(PROPOSAL_OPTIONS)},
            "plays": [
                {key: play[key] for key in ("track", "title", "outcome", "price", "hosts")}
                | {"balance": play["after"]["balance"], "paid": play["after"]["paid"]}
                for play in self.plays
            ],
            "tallies": self.tallies,
            "audit": {"ok": self.audit_ok,
                      **{name: report["ok"] for name, report in self.audits.items()}},
        }

    # -- running and stopping -----------------------------------------------------------------

    def exited(self) -> DemoNode | None:
        """A node whose daemon started and is no longer running, if any."""
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is not None:
                return node
        return None

    def stop(self, timeout: float = STOP_TIMEOUT) -> list[tuple[DemoNode, int]]:
        """Stop every daemon as Ctrl-C would (SIGINT), kill those still running after
        `timeout` seconds; (node, exit status) for each that ran."""
        started = [node for node in self.nodes if node.proc is not None]
        for node in started:
            if node.running:
                node.proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout
        stopped = []
        for node in started:
            try:
                code = node.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.proc.kill()
                code = node.proc.wait()
            stopped.append((node, code))
        return stopped

    # -- helpers ------------------------------------------------------------------------------

    @contextmanager
    def _step(self, title: str) -> Iterator[_Step]:
        self._step_title = title
        self.narrator.begin(title)
        step = _Step(title)
        try:
            yield step
        except DemoFailed:
            raise
        except (OSError, ValueError, KeyError, TypeError, urllib.error.URLError) as exc:
            raise DemoFailed(title, f"{type(exc).__name__}: {exc}") from exc
        self.narrator.done(title, step.detail)

    def _chorus(self, node: DemoNode | None, *args: str, parse: bool = False,
                check: bool = True, timeout: float = 120.0) -> Any:
        """Run `chorus [--data nodeN] ARGS` in the demo's directory; its stdout (parsed
        as JSON with `parse`). A non-zero exit fails the step unless not `check`."""
        argv = ([] if node is None else ["--data", node.name]) + list(args)
        shown = "chorus " + shlex.join(argv)
        self.narrator.command(shown)
        try:
            result = subprocess.run(
                [sys.executable, "-m", "cli.main", *argv], cwd=self.workdir, env=self._env,
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise DemoFailed(self._step_title, f"no answer in {timeout:.0f} s", shown) from None
        output = (result.stderr.strip() + "\n" + result.stdout.strip()).strip()
        if check and result.returncode != 0:
            raise DemoFailed(self._step_title, f"exited with status {result.returncode}",
                             shown, output)
        if not parse:
            return result.stdout
        try:
            return json.loads(result.stdout)
        except ValueError:
            raise DemoFailed(self._step_title, "did not print JSON", shown, output) from None

    def _start_daemon(self, node: DemoNode, bootstrap: str | None = None) -> None:
        argv = ["--data", node.name, "daemon", *DAEMON_FLAGS]
        if bootstrap:
            argv += ["--bootstrap", bootstrap]
        node.command = "chorus " + shlex.join(argv)
        self.narrator.command(node.command)
        # Its own session: a Ctrl-C at the terminal reaches the demo, which stops the
        # daemons in order, rather than all of them at once.
        node.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", *argv], cwd=self.workdir, env=self._env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )
        threading.Thread(target=self._pump, args=(node,), daemon=True).start()

    @staticmethod
    def _pump(node: DemoNode) -> None:
        """Read the daemon's output for as long as it runs (its address, its readiness,
        and a log to show if something goes wrong)."""
        assert node.proc is not None and node.proc.stdout is not None
        for line in node.proc.stdout:
            line = line.rstrip("\n")
            node.log.append(line)
            if line.startswith("peer ID "):
                node.peer_id = line.split()[2]
            elif line.startswith("swarm listening on ") and not node.addr:
                node.addr = line.split()[3]
            elif line.startswith("daemon is ready"):
                node.ready.set()

    def _await_daemons(self, nodes: list[DemoNode]) -> None:
        """Wait until each daemon says it is ready and has written its API file."""
        names = " and ".join(node.label for node in nodes)
        with self.narrator.waiting(f"waiting for {names} to be ready"):
            deadline = time.monotonic() + READY_TIMEOUT
            for node in nodes:
                assert node.proc is not None
                while not node.ready.wait(0.1):
                    if node.proc.poll() is not None:
                        raise DemoFailed(self._step_title, f"the daemon of {node.label} exited "
                                         f"with status {node.proc.returncode}", node.command,
                                         "\n".join(node.log[-40:]))
                    if time.monotonic() > deadline:
                        raise DemoFailed(self._step_title, f"{node.label} was not ready in "
                                         f"{READY_TIMEOUT:.0f} s", node.command,
                                         "\n".join(node.log[-40:]))
                api_file = node.data / "api"
                while not api_file.exists() or not api_file.read_text("utf-8").strip():
                    if time.monotonic() > deadline:
                        raise DemoFailed(self._step_title, f"{node.label} wrote no API file",
                                         node.command, "\n".join(node.log[-40:]))
                    time.sleep(0.05)
                node.api = api_file.read_text("utf-8").strip()

    def _agree(self, minimum: int, tallies: bool = False) -> int:
        """Wait until every node's log holds the same number (≥ `minimum`) of entries
        (and, with `tallies`, serves the same tally): gossip and sync at work."""
        with self.narrator.waiting("waiting for gossip to reach every node"):
            deadline = time.monotonic() + AGREE_TIMEOUT
            while True:
                sizes = [node.get("/ledger")["size"] for node in self.nodes]
                if sizes[0] >= minimum and len(set(sizes)) == 1:
                    if not tallies:
                        return sizes[0]
                    served = [node.get("/tally") for node in self.nodes]
                    if all(value == served[0] for value in served):
                        return sizes[0]
                if time.monotonic() > deadline:
                    raise DemoFailed(self._step_title, "the nodes did not agree in "
                                     f"{AGREE_TIMEOUT:.0f} s (entries: {sizes})")
                time.sleep(0.2)

    def _check_spent(self, value: dict[str, Any]) -> None:
        """The tally's spending per track is the sum of the prices `chorus play` showed."""
        spent: dict[str, int] = {}
        for answer in self.plays:
            spent[answer["track"]] = spent.get(answer["track"], 0) + answer["price"]
        counted = {track: stats["spent"]
                   for track, stats in value["plays"].get(self.keys["listener"], {}).items()}
        if counted != spent:
            raise DemoFailed(self._step_title, f"the tally has the listener spending {counted}, "
                             f"the plays said {spent}")

    def _audit(self, node: DemoNode, *args: str) -> dict[str, Any]:
        report = self._chorus(node, "ledger", "audit", *args, "--json", parse=True, check=False)
        self.audits[node.name if not args else "export"] = report
        if not report.get("ok"):
            failed = [check["rule"] for check in report.get("invariants", []) if not check["ok"]]
            raise DemoFailed(self._step_title, "the audit failed"
                             + (f": {', '.join(failed)}" if failed else ""),
                             "chorus " + shlex.join(["--data", node.name, "ledger", "audit",
                                                     *args, "--json"]),
                             json.dumps(report.get("verify", report), indent=1)[:4000])
        return report

    @staticmethod
    def _audit_detail(report: dict[str, Any]) -> str:
        verify = report["verify"]
        rules = len(report["invariants"])
        return (f"{verify['entries']} entries in {verify['feeds']} feeds, every signature and "
                f"chain verifies; the books balance ({rules} rules hold)")

