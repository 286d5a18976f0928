"""Debian's chromium driven by Playwright, for tests that need a real browser.

Launched headless with the flags this sandbox needs (no sandbox as root, no
background networking: the machine has no network beyond loopback) and autoplay
allowed, so an <audio> element can play without a click.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


@contextmanager
def chromium() -> Iterator[object]:
    """A Playwright Browser on Debian's chromium (installed by `make test`)."""
    from playwright.sync_api import sync_playwright

    if shutil.which("chromium") is None:
        raise RuntimeError("chromium is not installed: run `make test` (it apt-installs it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()
