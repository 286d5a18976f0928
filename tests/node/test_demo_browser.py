"""`chorus demo` in a real browser: the listener opens node 3's web app on the running
demo co-op, plays a track (seeking to its middle: a Range request the gateway answers
206), sees the play counted and the next play's price doubled, votes on the artist's
question and has the ledger verified — with a screenshot of each view and not one
error in the page's console. Then Ctrl-C stops the demo and its daemons."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from node.demo import PLAYS, PROPOSAL_OPTIONS, PROPOSAL_TITLE, RELEASE_TITLE, TRACKS
from tests.browser import chromium
from tests.cli.test_demo import _processes_in
from tests.daemons import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.browser]

STARTED_TIMEOUT = 120  # s, for the demo to tell its story and print the URLs
#: The track the listener plays in the browser (the demo's listener paid for it already).
PLAYED = 2
TRACK = TRACKS[PLAYED][1]
BALLOT = PROPOSAL_OPTIONS[1]


def artifacts(tmp_path: Path) -> Path:
    """Where screenshots go: $CHORUS_ARTIFACTS if set, else the test's tmp_path/artifacts."""
    base = Path(os.environ.get("CHORUS_ARTIFACTS", tmp_path / "artifacts"))
    folder = base / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class _Demo:
    """`chorus demo --keep DIR`, running until Ctrl-C; its output read as it comes."""

    def __init__(self, keep: Path) -> None:
        env = {key: value for key, value in os.environ.items() if key != "CHORUS_DATA"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "demo", "--keep", str(keep)], cwd=ROOT,
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        self.waiting = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if "press Ctrl-C to stop" in line:
                self.waiting.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def urls(self) -> list[str]:
        return [line.split()[2] for line in self.lines
                if line.startswith("  node ") and "?token=" in line]

    def interrupt(self, timeout: float = 60) -> int:
        """Ctrl-C, as at the terminal; its exit status (killed if it would not stop)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.reader.join(10)
        return code


def test_the_listener_plays_votes_and_audits_on_the_demo_coop(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    shots = artifacts(tmp_path)
    kept = tmp_path / "demo"
    demo = _Demo(kept)
    try:
        assert demo.waiting.wait(STARTED_TIMEOUT), demo.output
        assert demo.proc.poll() is None, demo.output
        urls = demo.urls()
        assert len(urls) == 3, demo.output
        url = urls[2]  # node 3: the listener's node
        base = "http://" + urlsplit(url).netloc
        with urllib.request.urlopen(f"{base}/api/chorus/v1/releases", timeout=10) as response:
            (release,) = json.loads(response.read())["releases"]
        assert release["title"] == RELEASE_TITLE
        track = next(t for t in release["tracks"] if t["title"] == TRACK)
        with urllib.request.urlopen(f"{base}/api/chorus/v1/coop", timeout=10) as response:
            play_price = json.loads(response.read())["params"]["play_price"]
        daemons = _processes_in(kept)
        assert len(daemons) == 3, daemons

        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{url}&as=listener")

            # Listen: the demo's release, the listener's wallet and next prices.
            expect(page.get_by_role("heading", name=RELEASE_TITLE)).to_be_visible()
            expect(page.get_by_label("Acting as")).to_have_value("listener")
            expect(page.locator("#token-state")).to_have_text("writes enabled")
            expect(page.locator("#wallet-line")).to_contain_text("Wallet of listener")
            for _, title, _ in TRACKS:
                expect(page.get_by_role("button", name=f"Play {title}")).to_be_visible()
            price = page.locator(f'[data-price="{track["cid"]}"]')
            before = play_price * 2 ** PLAYS.count(PLAYED)  # the demo's plays doubled it
            expect(price).to_have_text(f"{before:,} µc")
            page.screenshot(path=shots / "listen.png", full_page=True)

            # Play, then seek to the middle: the player asks the gateway for a range. On
            # loopback the player would have the whole file before the seek, so the page's
            # network is slowed until then (faster than playback: it starts at once).
            cdp = page.context.new_cdp_session(page)
            cdp.send("Network.enable")
            cdp.send("Network.emulateNetworkConditions", {
                "offline": False, "latency": 0, "downloadThroughput": 300_000,
                "uploadThroughput": -1})
            page.get_by_role("button", name=f"Play {TRACK}").click()
            page.wait_for_function(
                "() => { const a = document.getElementById('audio');"
                " return Number.isFinite(a.duration) && a.currentTime > 0.2; }",
                timeout=20_000)
            with page.expect_response(_seek_range) as seek:
                page.evaluate("() => { const a = document.getElementById('audio');"
                              " a.currentTime = a.duration / 2; }")
            answer = seek.value
            assert answer.url == f"{base}/ipfs/{track['cid']}"
            assert answer.status == 206, (answer.status, answer.headers)
            first, total = _content_range(answer.headers["content-range"])
            assert total // 4 < first <= total // 2, answer.headers["content-range"]
            cdp.send("Network.emulateNetworkConditions", {
                "offline": False, "latency": 0, "downloadThroughput": -1,
                "uploadThroughput": -1})
            page.wait_for_function(
                "() => { const a = document.getElementById('audio');"
                " return !a.seeking && a.currentTime > a.duration / 2; }", timeout=10_000)
            page.screenshot(path=shots / "playing.png", full_page=True)

            # The node counts the play at the threshold: the next play costs twice as much.
            expect(page.locator("#play-line")).to_contain_text("recorded (paid)", timeout=30_000)
            expect(price).to_have_text(f"{2 * before:,} µc", timeout=10_000)
            expect(page.locator("#status")).to_contain_text(
                f"recorded (paid): next play {2 * before:,} µc")
            page.screenshot(path=shots / "played.png", full_page=True)

            page.get_by_role("tab", name="Artist").click()
            expect(page.locator("#artist")).to_contain_text(f"Payees of {RELEASE_TITLE}")
            page.screenshot(path=shots / "artist.png", full_page=True)

            # Vote: the artist's question, open to artists and listeners.
            page.get_by_role("tab", name="Vote").click()
            expect(page.get_by_role("heading", name=PROPOSAL_TITLE)).to_be_visible()
            page.get_by_role("radio", name=BALLOT, exact=True).check()
            page.get_by_role("button", name="Cast ballot").click()
            expect(page.locator("#status")).to_contain_text(f'listener voted "{BALLOT}"')
            assert "not counted" not in page.locator("#status").inner_text()
            expect(page.locator("#proposals")).to_contain_text(f"Your ballot{BALLOT}")
            expect(page.locator("#proposals")).to_contain_text("Counted1")
            page.screenshot(path=shots / "vote.png", full_page=True)

            page.get_by_role("tab", name="Node").click()
            expect(page.get_by_role("table", name="Peers")).to_be_visible()  # nodes 1 and 2
            page.screenshot(path=shots / "node.png", full_page=True)

            # Audit: the node verifies its copy of the ledger, and it is green.
            page.get_by_role("tab", name="Audit").click()
            expect(page.locator("#audit")).to_contain_text("Entries")
            page.get_by_role("button", name="Verify the ledger").click()
            verdict = page.locator("#verify-result .verdict")
            expect(verdict).to_have_text("Ledger verified: no errors, no anomalies.")
            expect(verdict).to_have_class("verdict ok")
            page.screenshot(path=shots / "audit.png", full_page=True)

        assert errors == []
        assert sorted(p.name for p in shots.iterdir()) == sorted(
            f"{view}.png" for view in ("listen", "playing", "played", "artist", "vote",
                                       "node", "audit"))

        assert demo.interrupt() == 0, demo.output
    finally:
        if demo.proc.poll() is None:
            demo.interrupt()
    output = demo.output
    assert "stopping the co-op" in output
    assert output.count("daemon stopped") == 3, output
    assert f"kept {kept}" in output.replace("\n", "")
    # The kept repos outlive the demo; their daemons do not.
    assert all((kept / f"node{n}" / "api_token").exists() for n in (1, 2, 3))
    assert list(kept.glob("node*/api")) == []
    assert _processes_in(kept) == []
    for entry in daemons:
        assert not Path(f"/proc/{entry.split(':')[0]}").exists(), entry


def _seek_range(response: Any) -> bool:
    """A response to the player's Range request from somewhere after the start."""
    wanted = response.request.headers.get("range", "bytes=0-")
    return "/ipfs/" in response.url and wanted != "bytes=0-"


def _content_range(value: str) -> tuple[int, int]:
    """`bytes FIRST-LAST/TOTAL` -> (FIRST, TOTAL)."""
    match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", value)
    assert match, value
    return int(match[1]), int(match[3])
