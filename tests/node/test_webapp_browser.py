"""The web app in a real browser: the page a listener, an artist, a member and an
auditor use, on a daemon in a co-op whose plays count after one second."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.browser import chromium
from tests.node.test_web_api import plays_in_ledger, web_coop

pytestmark = [pytest.mark.integration, pytest.mark.browser]

VIEWS = ("listen", "artist", "vote", "node", "audit")


def artifacts(tmp_path: Path) -> Path:
    """Where screenshots go: $CHORUS_ARTIFACTS if set, else the test's tmp_path."""
    base = Path(os.environ.get("CHORUS_ARTIFACTS", tmp_path))
    folder = base / "webapp"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_the_web_app_lists_plays_votes_and_audits(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    shots = artifacts(tmp_path)
    with web_coop(tmp_path, count_after_ms=1000, seconds=(4.0, 5.0)) as coop:
        node = coop.node
        node.cli("vote", "propose", "--title", "Longer epochs", "--text", "A month?",
                 "--option", "yes", "--option", "no", "--opens", "now", "--closes", "+1h",
                 "--as", "artist")
        track = coop.release["tracks"][0]
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(node.cli("web", "--as", "listener").stdout.decode().strip())

            # The token is kept for this tab and gone from the address bar.
            expect(page.get_by_role("heading", name="Loopback Songs")).to_be_visible()
            assert "token" not in page.url and "listener" not in page.url
            assert page.evaluate("sessionStorage.getItem('chorus.token')") == coop.token
            expect(page.get_by_label("Acting as")).to_have_value("listener")
            expect(page.locator("#token-state")).to_have_text("writes enabled")
            price = page.locator(f'[data-price="{track["cid"]}"]')
            expect(price).to_have_text("2,000 µc")
            expect(page.locator(f'[data-owned="{track["cid"]}"]')).to_have_text(" 0 of 9")
            expect(page.locator("#wallet-line")).to_contain_text("1,000,000 µc")
            page.screenshot(path=shots / "listen.png", full_page=True)

            # Every view, through the tabs (the keyboard moves between them too).
            page.get_by_role("tab", name="Listen").focus()
            page.keyboard.press("ArrowRight")
            artist = page.get_by_role("tab", name="Artist")
            expect(artist).to_have_attribute("aria-selected", "true")
            expect(artist).to_be_focused()
            expect(page.locator("#artist")).to_contain_text("Payees of Loopback Songs")
            page.screenshot(path=shots / "artist.png", full_page=True)

            page.get_by_role("tab", name="Vote").click()
            expect(page.get_by_role("heading", name="Longer epochs")).to_be_visible()
            page.get_by_role("radio", name="no", exact=True).check()
            page.get_by_role("button", name="Cast ballot").click()
            expect(page.locator("#status")).to_contain_text('listener voted "no"')
            expect(page.locator("#proposals")).to_contain_text("Your ballotno")
            page.screenshot(path=shots / "vote.png", full_page=True)

            page.get_by_role("tab", name="Node").click()
            expect(page.locator("#node")).to_contain_text(node.peer_id)
            expect(page.get_by_role("table", name="Pinned content")).to_contain_text(track["cid"])
            page.screenshot(path=shots / "node.png", full_page=True)

            page.get_by_role("tab", name="Audit").click()
            expect(page.locator("#audit")).to_contain_text("Entries")
            page.get_by_role("button", name="Verify the ledger").click()
            expect(page.locator("#verify-result")).to_contain_text("Ledger verified")
            page.screenshot(path=shots / "audit.png", full_page=True)

            # Play: real playback reaches the 1 s threshold; the node records the play.
            page.get_by_role("tab", name="Listen").click()
            page.get_by_role("button", name=f"Play {track['title']}").click()
            expect(page.locator("#play-line")).to_contain_text("Play recorded (paid)",
                                                               timeout=20_000)
            expect(price).to_have_text("4,000 µc")
            expect(page.locator(f'[data-owned="{track["cid"]}"]')).to_have_text(" 1 of 9")
            expect(page.locator("#status")).to_contain_text("recorded (paid): next play 4,000 µc")
            expect(page.locator("#wallet-line")).to_contain_text("998,000 µc")
            page.screenshot(path=shots / "played.png", full_page=True)

            # Played to the end and started again: another play, at the doubled price.
            expect(page.locator("#play-line")).to_contain_text("Last play recorded (paid)",
                                                               timeout=15_000)
            page.evaluate("document.getElementById('audio').play()")
            expect(price).to_have_text("8,000 µc", timeout=20_000)
            expect(page.locator("#wallet-line")).to_contain_text("994,000 µc")

            # The chart has bars now that money moved.
            page.get_by_role("tab", name="Audit").click()
            expect(page.locator("svg.chart rect.bar-plays")).to_have_count(1)
            page.screenshot(path=shots / "audit-chart.png", full_page=True)
            audio = page.evaluate(
                "() => { const a = document.getElementById('audio');"
                " return {error: a.error && a.error.code, src: a.currentSrc}; }")
        plays = plays_in_ledger(coop, coop.keys["listener"])
        assert len(plays) == 2
        assert all(p["body"]["track"] == track["cid"] for p in plays)
        assert all(p["body"]["played_ms"] >= 1000 for p in plays)
        assert audio == {"error": None, "src": f"{node.api}/ipfs/{track['cid']}"}
        assert errors == []
        assert sorted(p.name for p in shots.iterdir()) == sorted(
            [f"{view}.png" for view in VIEWS] + ["played.png", "audit-chart.png"])


def test_without_a_token_or_a_co_op_the_page_only_reads(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from tests.daemons import DaemonProcess

    node = DaemonProcess(tmp_path / "node", dht=False).start()
    try:
        with chromium() as browser:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{node.api}/#audit")
            expect(page.locator("#token-state")).to_have_text("read-only: no API token")
            expect(page.locator("#coop-name")).to_have_text("· in no co-op")
            expect(page.get_by_role("tab", name="Audit")).to_have_attribute("aria-selected", "true")
            expect(page.get_by_role("button", name="Verify the ledger")).to_be_disabled()
            for name, text in (("Listen", "No releases"), ("Artist", "no earnings"),
                               ("Vote", "nothing to vote on"), ("Node", node.peer_id)):
                page.get_by_role("tab", name=name).click()
                expect(page.get_by_role("tabpanel")).to_contain_text(text)
            assert page.evaluate("sessionStorage.getItem('chorus.token')") is None
        assert errors == []
    finally:
        node.stop()
