"""The web app's files on the local listener: `/` and `/app/{name}` (node/webapp/).

The app is build-free — index.html, app.js (one plain ES module, no framework) and
app.css, shipped as package data — and loads nothing from anywhere but this node:
its data comes from the chorus API (/api/chorus/v1/) and its audio from the
gateway (/ipfs/{cid}, with Range requests, so the player can seek).

Rules of this file:

- Local listener only: node/http_app.py leaves these routes out of the public one.
  The page is the node owner's console; the public gateway is no UI.
- Files are read once, when the routes are made, and served from memory with an
  ETag (304 on If-None-Match). index.html names each asset with `?v=<its hash>`,
  so an asset asked for with its current hash is cached for a year (`immutable`)
  and anything else — the page itself, an old hash — is revalidated (`no-cache`):
  a new chorus version is picked up on the next load, with no build step.
- Every answer carries a Content-Security-Policy that allows this origin only and
  no inline script, `frame-ancestors 'none'` (no page of another site may frame
  the console and trick clicks into it) and `Referrer-Policy: no-referrer` (the
  URL the CLI prints holds `?token=`, until the page strips it).

The token: the page reads `?token=` once from its own URL, keeps it in
sessionStorage (this tab, this origin) and sends it as `Authorization: Bearer` on
writes; no response of the node ever contains it. node/auth.py decides as for any
other client.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

__all__ = ["ASSETS", "SECURITY_HEADERS", "WebFile", "load_webapp", "web_ui_routes"]

#: The files under node/webapp/ served at /app/{name}, and their media types.
ASSETS: Mapping[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
INDEX = "index.html"

SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_IMMUTABLE = "public, max-age=31536000, immutable"
_REVALIDATE = "no-cache"


@dataclass(frozen=True)
class WebFile:
    """One file of the app, ready to serve."""

    body: bytes
    media_type: str
    version: str  # the first 16 hex digits of its SHA-256

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


def _file(body: bytes, media_type: str) -> WebFile:
    return WebFile(body, media_type, hashlib.sha256(body).hexdigest()[:16])


def load_webapp() -> dict[str, WebFile]:
    """index.html and the assets, read from the package; index.html names each asset
    with its version."""
    root = resources.files("node").joinpath("webapp")
    files = {name: _file(root.joinpath(name).read_bytes(), media) for name, media in ASSETS.items()}
    page = root.joinpath(INDEX).read_text("utf-8")
    for name, found in files.items():
        page = page.replace(f'"/app/{name}"', f'"/app/{name}?v={found.version}"')
    files[INDEX] = _file(page.encode("utf-8"), "text/html; charset=utf-8")
    return files


def _serve(request: Request, found: WebFile, cache_control: str) -> Response:
    headers = {**SECURITY_HEADERS, "ETag": found.etag, "Cache-Control": cache_control}
    if found.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(found.body))
        return Response(b"", media_type=found.media_type, headers=headers)
    return Response(found.body, media_type=found.media_type, headers=headers)


def web_ui_routes() -> list[BaseRoute]:
    """`GET /` (the page) and `GET /app/{name}` (its assets)."""
    files = load_webapp()

    async def page(request: Request) -> Response:
        return _serve(request, files[INDEX], _REVALIDATE)

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        found = files.get(name) if name in ASSETS else None
        if found is None:
            return PlainTextResponse(
                f"no file {name!r} in the web app", status_code=404, headers=SECURITY_HEADERS
            )
        current = request.query_params.get("v") == found.version
        return _serve(request, found, _IMMUTABLE if current else _REVALIDATE)

    return [
        Route("/", page, methods=["GET", "HEAD"]),
        Route("/app/{name}", asset, methods=["GET", "HEAD"]),
    ]
