"""`chorus demo`, the README's main job, as a newcomer runs it: a subprocess that builds a
co-op of three daemons, tells its story and leaves nothing behind — with `--once`, and
stopped with Ctrl-C (SIGINT) while it runs.

The demo makes its directory with `tempfile.mkdtemp`, so each test points TMPDIR at
a directory of its own: empty again afterwards means the demo removed what it made.
Its daemons run with that directory as their working directory, which is how the
tests find any left running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.daemons import ROOT

pytestmark = pytest.mark.integration


def _env(tmp: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "CHORUS_DATA"}
    env["TMPDIR"] = str(tmp)
    return env


def _processes_in(tmp: Path) -> list[str]:
    """Processes (pid and command line) whose working directory is under `tmp`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cwd.startswith(str(tmp)):
            found.append(f"{entry.name}: {cmdline}")
    return found


def _assert_clean(tmp: Path, pids: list[int] = ()) -> None:
    assert list(tmp.iterdir()) == [], "the demo left files behind"
    assert _processes_in(tmp) == [], "the demo left processes running"
    for pid in pids:  # the demo's daemons: stopped and reaped
        assert not Path(f"/proc/{pid}").exists(), pid


def test_once_tells_the_story_and_leaves_nothing(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "demo", "--once", "--json"],
        cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=170,
    )
    story = result.stderr
    assert result.returncode == 0, story
    summary = json.loads(result.stdout)
    assert summary["ok"] is True and summary["error"] is None
    assert summary["audit"] == {"ok": True, "node2": True, "export": True}
    assert "audit passed" in story

    # The three nodes printed the very same tally (`chorus ledger tally --json`).
    tallies = summary["tallies"]
    assert set(tallies) == {"node1", "node2", "node3"}
    assert tallies["node1"] == tallies["node2"] == tallies["node3"]
    books = tallies["node1"]
    assert books["coop"] == summary["coop"]["id"] and books["anomalies"] == []

    # Stream to own: the first track's price doubles with each paid play, and the
    # tally's figures are what the plays said.
    listener, artist = summary["keys"]["listener"], summary["keys"]["artist"]
    first = summary["release"]["tracks"][0]["cid"]
    prices = [play["price"] for play in summary["plays"] if play["track"] == first]
    assert prices == [2000, 4000, 8000]
    assert all(play["outcome"] == "paid" for play in summary["plays"])
    assert books["plays"][listener][first]["paid"] == 3
    assert books["plays"][listener][first]["spent"] == 14_000
    assert "2,000 → 4,000 → 8,000" in story  # the table the newcomer sees
    paid = sum(play["price"] for play in summary["plays"])
    assert books["balances"][listener] == 50_000 - paid
    assert books["earnings"] == {artist: paid * 7 // 10}
    # Node 3's first fetch of each track came from the hosts, which earned hosting pay.
    hosts = {host["peer"] for play in summary["plays"] for host in play["hosts"]}
    node_ids = {summary["nodes"][name]["peer_id"] for name in ("node1", "node2")}
    assert hosts and hosts <= node_ids
    (figures,) = books["epochs"].values()
    assert set(figures["host_bytes"]) == hosts and sum(figures["host_pay"].values()) > 0

    # The artist's question to the artists and listeners, open for an hour and counted
    # by the tally: what the web app's Vote view offers the listener.
    proposal = summary["proposal"]
    assert proposal["counted"] is True
    vote = books["votes"][proposal["id"]]
    assert vote["title"] == proposal["title"] and vote["options"] == proposal["options"]
    assert len(vote["options"]) == 3 and vote["classes"] == ["artist", "listener"]
    assert vote["closes"] - vote["opens"] == 3_600_000 and vote["ballots"] == {}
    assert "the artist puts a question to the artists and listeners" in story

    for name, node in summary["nodes"].items():
        assert node["url"].startswith("http://127.0.0.1:") and "/?token=" in node["url"]
        assert f"{node['url']}" in story, name
    _assert_clean(tmp_path, [node["pid"] for node in summary["nodes"].values()])


def test_ctrl_c_stops_the_running_demo_and_cleans_up(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "demo"], cwd=ROOT, env=_env(tmp_path),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    waiting = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if "press Ctrl-C to stop" in line:
                waiting.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert waiting.wait(150), "\n".join(lines)
        assert proc.poll() is None
        urls = [line.split()[2] for line in lines if line.startswith("  node ")
                and "?token=" in line]
        assert len(urls) == 3, "\n".join(lines)
        # The printed addresses are the running nodes' web apps, with their API tokens.
        for url in urls:
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.headers["Content-Type"].startswith("text/html")
            parts = urlsplit(url)
            token = parse_qs(parts.query)["token"][0]
            request = urllib.request.Request(
                f"http://{parts.netloc}/api/chorus/v1/coop",
                headers={"Authorization": f"Bearer {token}"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert json.loads(response.read())["name"] == "Demo Co-op"
        assert len(_processes_in(tmp_path)) >= 3  # the three daemons

        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, "\n".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    output = "\n".join(lines)
    assert "stopping the co-op" in output
    assert output.count("daemon stopped") == 3, output
    assert "removed " in output
    _assert_clean(tmp_path)
