"""Talking to a running daemon over its HTTP API, for the CLI.

The daemon owns the repo while it runs, so `chorus add`, `cat`, `get`, `pin` and
`repo` go through it — and then `get` and `pin add` can fetch from the swarm. The
daemon's address is in `<data dir>/api`; a stale file (daemon killed) is noticed by
a refused connection and treated as "no daemon".

Every request carries the node's API token (`<data dir>/api_token`, node/api_token.py)
as `Authorization: Bearer <token>`: the daemon refuses writes without it. A client
made from an address alone finds the token the way a local user would: it asks the
daemon where its repo is (`repo/stat`, a read) and uses that repo's token only if
the repo's `api` file names this very address — so a daemon cannot make the client
hand it another node's token.
"""

from __future__ import annotations

import http.client
import json
import mimetypes
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode, urlsplit

from protocol.errors import ChorusError

from .api_token import read_api_token

__all__ = ["DaemonClient", "DaemonError", "find_daemon"]

CHUNK = 1 << 20


class DaemonError(ChorusError):
    """The daemon refused a request; the message is the daemon's."""


def find_daemon(data_dir: Path) -> DaemonClient | None:
    """A client for the daemon using `data_dir`, or None if none is running."""
    try:
        url = (data_dir / "api").read_text("utf-8").strip()
    except OSError:
        return None
    if not url:
        return None
    client = DaemonClient(url, token=read_api_token(data_dir))
    try:
        client.call("version", timeout=3)
    except (OSError, http.client.HTTPException):
        return None
    return client


class DaemonClient:
    """Requests to the daemon at `base_url`, carrying `token` (found as described
    above when not given)."""

    def __init__(self, base_url: str, *, token: str | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"not a daemon API address: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port
        self.token = token
        self._token_sought = token is not None

    def _find_token(self) -> str | None:
        """The token of the repo the daemon runs on, if this process can read it and
        that repo's `api` file names this address."""
        self._token_sought = True
        try:
            repo = Path(self.call("repo/stat", timeout=10)["RepoPath"])
            parts = urlsplit((repo / "api").read_text("utf-8").strip())
        except (OSError, http.client.HTTPException, DaemonError, ValueError, KeyError, TypeError):
            return None
        if (parts.hostname, parts.port) != (self.host, self.port):
            return None
        return read_api_token(repo)

    def _request(
        self,
        path: str,
        params: dict[str, Any] | list[tuple[str, Any]] | None = None,
        *,
        body: Iterator[bytes] | bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> http.client.HTTPResponse:
        if not self._token_sought:
            self.token = self._find_token()
        query = urlencode(params or {}, doseq=True)
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        url = f"/api/v0/{path}" + (f"?{query}" if query else "")
        sent_headers = dict(headers or {})
        if self.token is not None:
            sent_headers["Authorization"] = f"Bearer {self.token}"
        try:
            conn.request(
                "POST",
                url,
                body=body,
                headers=sent_headers,
                encode_chunked=body is not None and not isinstance(body, bytes),
            )
        except (BrokenPipeError, ConnectionResetError) as exc:
            # The daemon may refuse (401, 403) without reading an upload and close the
            # connection: its answer is still there to read, and says why.
            try:
                response = conn.getresponse()
            except (OSError, http.client.HTTPException):
                raise exc from None
        else:
            response = conn.getresponse()
        if response.status != 200:
            raw = response.read()
            try:
                message = json.loads(raw)["Message"]
            except (ValueError, KeyError, TypeError):
                message = raw.decode("utf-8", "replace") or f"HTTP {response.status}"
            raise DaemonError(message)
        return response

    def call(self, path: str, params: Any = None, *, timeout: float | None = None) -> Any:
        """A request whose answer is one JSON document."""
        with self._request(path, params, timeout=timeout) as response:
            return json.loads(response.read() or b"null")

    def lines(self, path: str, params: Any = None, body=None, headers=None) -> Iterator[Any]:
        """A request whose answer is NDJSON, one document per line as it arrives.

        A line in Kubo's error shape (an error after the status was sent) raises
        DaemonError, and so does an answer cut short (the daemon died): iterating an
        HTTPResponse ends quietly on a truncated chunked body, `read1` does not."""
        with self._request(path, params, body=body, headers=headers) as response:
            pending = b""
            for piece in _pieces(response, path):
                *complete, pending = (pending + piece).split(b"\n")
                for line in complete:
                    if line.strip():
                        yield _document(line)
            if pending.strip():
                yield _document(pending)

    def stream(self, path: str, params: Any = None) -> Iterator[bytes]:
        """A request whose answer is raw bytes, in pieces as they arrive."""
        with self._request(path, params) as response:
            yield from _pieces(response, path)

    def upload(self, path: str, params: Any, files: list[Path], *, hidden: bool) -> Iterator[Any]:
        """POST files/directories as Kubo's multipart form; NDJSON answer."""
        boundary = uuid.uuid4().hex
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        return self.lines(path, params, body=_multipart(files, boundary, hidden), headers=headers)


def _pieces(response: http.client.HTTPResponse, path: str) -> Iterator[bytes]:
    """The body as it arrives; DaemonError if it ends before its end (the daemon died)."""
    while True:
        try:
            piece = response.read1(CHUNK)
        except (http.client.IncompleteRead, OSError) as exc:
            raise DaemonError(
                f"the daemon's answer to {path} was cut short: {type(exc).__name__}"
            ) from None
        if not piece:
            return
        yield piece


def _document(line: bytes) -> Any:
    document = json.loads(line)
    if isinstance(document, dict) and document.get("Type") == "error" and "Message" in document:
        raise DaemonError(str(document["Message"]))
    return document


def _part_header(boundary: str, name: str, content_type: str) -> bytes:
    return (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{quote(name, safe="")}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()


def _multipart(paths: list[Path], boundary: str, hidden: bool) -> Iterator[bytes]:
    for top in paths:
        for rel, full in _walk(top, hidden):
            if full.is_dir() and not full.is_symlink():
                yield _part_header(boundary, rel, "application/x-directory") + b"\r\n"
                continue
            kind = mimetypes.guess_type(full.name)[0] or "application/octet-stream"
            yield _part_header(boundary, rel, kind)
            with full.open("rb") as src:
                yield from _read(src)
            yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def _read(src: BinaryIO) -> Iterator[bytes]:
    while piece := src.read(CHUNK):
        yield piece


def _walk(top: Path, hidden: bool) -> Iterator[tuple[str, Path]]:
    yield top.name, top
    if top.is_dir() and not top.is_symlink():
        for root, dirs, files in os.walk(top):
            dirs.sort()
            if not hidden:
                dirs[:] = [d for d in dirs if not d.startswith(".")]
            base = Path(root)
            rel_base = base.relative_to(top.parent).as_posix()
            for name in sorted(dirs):
                yield f"{rel_base}/{name}", base / name
            for name in sorted(files):
                if hidden or not name.startswith("."):
                    yield f"{rel_base}/{name}", base / name
