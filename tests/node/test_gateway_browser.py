"""A real browser plays and seeks a track through the gateway."""

from __future__ import annotations

import pytest

from node.sample_audio import synth_track
from tests.browser import chromium
from tests.daemons import DaemonProcess

pytestmark = [pytest.mark.integration, pytest.mark.browser]

PLAY_AND_SEEK = """
async () => {
  const a = document.getElementById("track");
  a.muted = true;
  await a.play();
  await new Promise(r => setTimeout(r, 400));
  const before = a.currentTime;
  const seeked = new Promise(r => a.addEventListener("seeked", r, {once: true}));
  a.currentTime = 20;
  await seeked;
  await new Promise(r => setTimeout(r, 400));
  return {before, after: a.currentTime, duration: a.duration,
          error: a.error ? a.error.code : null, paused: a.paused};
}
"""


def test_audio_element_plays_and_seeks_through_range_requests(tmp_path):
    track = tmp_path / "seek.wav"
    track.write_bytes(synth_track("Seek test", seconds=30.0))
    node = DaemonProcess(tmp_path / "node", dht=False).start()
    try:
        cid = node.add(track)
        url = f"{node.api}/ipfs/{cid}"
        with chromium() as browser:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            responses: list[tuple[int, str | None]] = []
            page.on(
                "response", lambda r: responses.append((r.status, r.headers.get("content-range")))
            )
            page.set_content(f'<audio id="track" src="{url}" preload="auto"></audio>')
            result = page.evaluate(PLAY_AND_SEEK)
        assert result["error"] is None, result
        assert abs(result["duration"] - 30.0) < 0.1, result
        assert result["after"] >= 20.0 and not result["paused"], result
        assert any(status == 206 and rng for status, rng in responses), responses
        assert errors == []
    finally:
        node.stop()
