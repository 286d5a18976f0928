"""Who may write to a node: the API token (node/api_token.py) and the guard (node/auth.py).

Unit tests drive the pure decision and the ASGI middleware directly; integration
tests run real daemons and speak HTTP to them — from loopback, and from this
machine's own non-loopback address to see the 403.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import logging
import os
import re
import secrets
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from node.api_token import TOKEN_FILE, read_api_token, token_matches
from node.auth import (
    READ_ONLY_RPC,
    Access,
    AuthGuard,
    BodyLimit,
    Decision,
    classify,
    decide,
    is_loopback,
)
from node.client import DaemonClient
from node.errors import RepoError
from node.repo import Repo
from tests.daemons import DaemonProcess

TOKEN_TEXT = re.compile(r"[A-Za-z0-9_-]{43}")  # 32 bytes, url-safe base64, no padding


# -- helpers shared with test_chorus_api.py and test_metrics.py -----------------------------


ListeningDaemon = DaemonProcess  # http=/gateway= choose the listeners


class Answer:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def request(base: str, method: str, path: str, *, headers: dict[str, str] | None = None,
            body: bytes | None = None, source: str | None = None,
            host: str | None = None) -> Answer:
    """One HTTP request to the daemon at `base` (optionally to `host` instead of the
    address in `base`, and from the local address `source`)."""
    from urllib.parse import urlsplit

    parts = urlsplit(base)
    conn = http.client.HTTPConnection(
        host or parts.hostname, parts.port, timeout=30,
        source_address=(source, 0) if source else None,
    )
    try:
        # Refused before the body was read, the answer is there all the same.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        conn.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_of(node: DaemonProcess) -> str:
    token = read_api_token(node.data)
    assert token is not None
    return token


def objects(node: DaemonProcess) -> int:
    return request(node.api, "POST", "/api/v0/repo/stat").json()["NumObjects"]


# -- the token file -----------------------------------------------------------------------


def test_init_writes_a_private_random_token(tmp_path: Path) -> None:
    with Repo.init(tmp_path / "a") as a, Repo.init(tmp_path / "b") as b:
        assert TOKEN_TEXT.fullmatch(a.api_token)
        assert a.api_token != b.api_token
        path = a.path / TOKEN_FILE
        assert path.read_text().strip() == a.api_token
        if os.name == "posix":
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert not list(a.path.glob(f".{TOKEN_FILE}.*"))  # no staging file left
    with Repo.open(tmp_path / "a") as again:
        assert again.api_token == a.api_token


def test_a_repo_from_before_tokens_gets_one_on_open(tmp_path: Path, caplog) -> None:
    Repo.init(tmp_path).close()
    (tmp_path / TOKEN_FILE).unlink()
    with caplog.at_level(logging.INFO, logger="chorus.repo"), Repo.open(tmp_path) as repo:
        assert TOKEN_TEXT.fullmatch(repo.api_token)
    assert any("created the API token" in r.getMessage() for r in caplog.records)
    assert read_api_token(tmp_path) == repo.api_token
    if os.name == "posix":
        assert stat.S_IMODE((tmp_path / TOKEN_FILE).stat().st_mode) == 0o600


def test_a_malformed_token_file_is_refused_by_name(tmp_path: Path) -> None:
    Repo.init(tmp_path).close()
    (tmp_path / TOKEN_FILE).write_text("short\n")
    with pytest.raises(RepoError, match=r"api_token does not hold an API token"):
        Repo.open(tmp_path)
    assert read_api_token(tmp_path) is None  # clients just send no token


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_a_token_readable_by_others_is_made_private(tmp_path: Path, caplog) -> None:
    Repo.init(tmp_path).close()
    os.chmod(tmp_path / TOKEN_FILE, 0o644)
    with caplog.at_level(logging.WARNING, logger="chorus.repo"):
        Repo.open(tmp_path).close()
    assert stat.S_IMODE((tmp_path / TOKEN_FILE).stat().st_mode) == 0o600
    assert any("readable by others" in r.getMessage() for r in caplog.records)


def test_token_comparison() -> None:
    token = secrets.token_urlsafe(32)
    assert token_matches(token, token)
    assert not token_matches(token, token[:-1])
    assert not token_matches(token, token + "x")
    assert not token_matches(token, "é")


# -- the decision -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "access"),
    [
        ("POST", "/api/v0/version", Access.READ),
        ("POST", "/api/v0/cat", Access.READ),
        ("POST", "/api/v0/cat/", Access.READ),
        ("POST", "/api/v0/pin/ls", Access.READ),
        ("POST", "/api/v0/refs/local", Access.READ),
        ("POST", "/api/v0/block/rm", Access.WRITE),
        ("POST", "/api/v0/block/put", Access.WRITE),
        ("GET", "/api/v0/id", Access.READ),
        ("POST", "/api/v0/add", Access.WRITE),
        ("POST", "/api/v0/add/", Access.WRITE),
        ("GET", "/api/v0/add", Access.WRITE),
        ("POST", "/api/v0/pin/add", Access.WRITE),
        ("POST", "/api/v0/pin/rm", Access.WRITE),
        ("POST", "/api/v0/repo/gc", Access.WRITE),
        ("POST", "/api/v0/swarm/connect", Access.WRITE),
        ("POST", "/api/v0/pubsub/pub", Access.WRITE),
        ("POST", "/api/v0/diag/perf", Access.WRITE),
        ("POST", "/api/v0/shutdown", Access.WRITE),
        ("POST", "/api/v0/no/such/command", Access.WRITE),  # unknown: fail closed
        ("GET", "/api/chorus/v1/node", Access.READ),
        ("HEAD", "/api/chorus/v1/node", Access.READ),
        ("POST", "/api/chorus/v1/plays", Access.WRITE),
        ("PUT", "/api/chorus/v1/node", Access.WRITE),
        ("DELETE", "/api/chorus/v1/pins", Access.WRITE),
        ("GET", "/ipfs/bafkqaaa", Access.READ),
        ("POST", "/ipfs/bafkqaaa", Access.WRITE),
        ("GET", "/metrics", Access.READ),
    ],
)
def test_classify(method: str, path: str, access: Access) -> None:
    assert classify("http", method, path) is access


def test_websockets_are_writes() -> None:
    assert classify("websocket", "GET", "/api/chorus/v1/live") is Access.WRITE


def test_every_read_only_command_is_one_the_rpc_could_serve() -> None:
    # A typo in the allow-list would silently make a command need a token.
    assert all(re.fullmatch(r"[a-z]+(/[a-z]+)?", name) for name in READ_ONLY_RPC)


@pytest.mark.parametrize(
    ("client", "loopback"),
    [
        (("127.0.0.1", 1), True),
        (("127.8.9.10", 1), True),
        (("::1", 1), True),
        (("::ffff:127.0.0.1", 1), True),
        (("192.0.2.7", 1), False),
        (("10.0.0.1", 1), False),
        (("::ffff:192.0.2.7", 1), False),
        (("fe80::1%eth0", 1), False),
        (("0.0.0.0", 1), False),
        (("not an address", 1), False),
        (None, False),
    ],
)
def test_is_loopback(client, loopback: bool) -> None:
    assert is_loopback(client) is loopback


def test_decide() -> None:
    token = secrets.token_urlsafe(32)
    local, remote = ("127.0.0.1", 5000), ("192.0.2.7", 5000)
    good = [(b"authorization", f"Bearer {token}".encode())]
    assert decide(Access.READ, remote, [], token) is Decision.ALLOW
    assert decide(Access.WRITE, local, good, token) is Decision.ALLOW
    assert decide(Access.WRITE, local, [(b"Authorization", f"bearer  {token} ".encode())],
                  token) is Decision.ALLOW
    assert decide(Access.WRITE, remote, good, token) is Decision.NOT_LOCAL
    assert decide(Access.WRITE, local, [], token) is Decision.NO_TOKEN
    assert decide(Access.WRITE, local, [(b"authorization", f"Basic {token}".encode())],
                  token) is Decision.NO_TOKEN
    assert decide(Access.WRITE, local, good + good, token) is Decision.NO_TOKEN
    assert decide(Access.WRITE, local, [(b"authorization", b"Bearer \xff")],
                  token) is Decision.NO_TOKEN
    assert decide(Access.WRITE, local, [(b"authorization", b"Bearer nope")],
                  token) is Decision.BAD_TOKEN


# -- the middleware, driven as ASGI ---------------------------------------------------------


async def asgi_call(app, method: str, path: str, *, client=("127.0.0.1", 40000),
                    headers: list[tuple[bytes, bytes]] | None = None,
                    body: list[bytes] | None = None) -> tuple[int, dict[bytes, bytes], bytes]:
    """Call an ASGI app once; `body` in pieces (more_body for all but the last)."""
    pieces = list(body or [b""])
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": b"", "root_path": "", "headers": headers or [],
        "client": client, "server": ("127.0.0.1", 8080),
    }

    async def receive():
        if pieces:
            piece = pieces.pop(0)
            return {"type": "http.request", "body": piece, "more_body": bool(pieces)}
        await trio.sleep_forever()

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), payload


async def echo_app(scope, receive, send):
    """Answers 200 with the request body it read."""
    data = b""
    while True:
        message = await receive()
        data += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": data})


async def test_guard_refuses_in_the_dialect_of_each_api() -> None:
    token = secrets.token_urlsafe(32)
    guard = AuthGuard(echo_app, token=token)
    remote = ("192.0.2.7", 5555)

    status, headers, body = await asgi_call(guard, "POST", "/api/v0/add", client=remote)
    assert status == 403
    assert json.loads(body)["Type"] == "error" and "loopback" in json.loads(body)["Message"]

    status, headers, body = await asgi_call(guard, "POST", "/api/chorus/v1/plays", client=remote)
    assert status == 403 and json.loads(body)["error"]["code"] == "forbidden"

    status, headers, body = await asgi_call(guard, "POST", "/api/chorus/v1/plays")
    assert status == 401 and json.loads(body)["error"]["code"] == "unauthorized"
    assert headers[b"www-authenticate"].startswith(b"Bearer")

    status, headers, body = await asgi_call(guard, "DELETE", "/ipfs/bafkqaaa")
    assert status == 401 and headers[b"content-type"].startswith(b"text/plain")

    # Reads pass from anywhere; a right token from loopback passes a write.
    assert (await asgi_call(guard, "POST", "/api/v0/cat", client=remote))[0] == 200
    assert (await asgi_call(guard, "GET", "/api/chorus/v1/node", client=remote))[0] == 200
    ok = await asgi_call(guard, "POST", "/api/v0/add", body=[b"data"],
                         headers=[(b"authorization", f"Bearer {token}".encode())])
    assert ok == (200, {}, b"data")


async def test_body_limit_for_the_chorus_api() -> None:
    limited = BodyLimit(echo_app, limit=10)
    status, _, body = await asgi_call(limited, "POST", "/api/chorus/v1/x",
                                      headers=[(b"content-length", b"11")])
    assert status == 413 and json.loads(body)["error"]["code"] == "payload_too_large"
    status, _, body = await asgi_call(limited, "POST", "/api/chorus/v1/x",
                                      body=[b"123456", b"7890", b"1"])  # chunked, no length
    assert status == 413
    assert await asgi_call(limited, "POST", "/api/chorus/v1/x", body=[b"12345", b"67890"]) == (
        200, {}, b"1234567890")
    # Other APIs are not limited here (uploads to /api/v0/add are gigabytes).
    assert (await asgi_call(limited, "POST", "/api/v0/add", body=[b"x" * 100]))[0] == 200


# -- real daemons ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator[DaemonProcess]:
    daemon = DaemonProcess(tmp_path_factory.mktemp("auth") / "node").start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.mark.integration
def test_the_token_file_is_private(node: DaemonProcess) -> None:
    path = node.data / TOKEN_FILE
    assert TOKEN_TEXT.fullmatch(path.read_text().strip())
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.integration
def test_writes_without_the_right_token_are_refused(node: DaemonProcess) -> None:
    before = objects(node)
    form = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\nhello\r\n--b--\r\n")
    upload = {"Content-Type": "multipart/form-data; boundary=b"}

    missing = request(node.api, "POST", "/api/v0/add", headers=upload, body=form)
    assert missing.status == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert missing.json()["Type"] == "error" and "API token" in missing.json()["Message"]

    wrong = request(node.api, "POST", "/api/v0/add", body=form,
                    headers={**upload, **bearer(secrets.token_urlsafe(32))})
    assert wrong.status == 401
    assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]

    for command in ("pin/add?arg=bafkqaaa", "pin/rm?arg=bafkqaaa", "repo/gc",
                    "swarm/connect?arg=/ip4/127.0.0.1/tcp/1", "diag/perf?arg=x", "shutdown"):
        assert request(node.api, "POST", f"/api/v0/{command}").status == 401, command
    assert request(node.api, "POST", "/api/chorus/v1/node").json()["error"]["code"] == (
        "unauthorized")
    assert objects(node) == before  # nothing was stored
    assert request(node.api, "POST", "/api/v0/version").status == 200  # still running

    right = request(node.api, "POST", "/api/v0/add?pin=false", body=form,
                    headers={**upload, **bearer(token_of(node))})
    assert right.status == 200 and json.loads(right.body.splitlines()[-1])["Name"] == "x"


@pytest.mark.integration
def test_reads_need_no_token(node: DaemonProcess, tmp_path: Path) -> None:
    track = tmp_path / "t.bin"
    track.write_bytes(os.urandom(300_000))
    cid = node.add(track)
    for command in ("id", "version", f"cat?arg={cid}", "pin/ls", "repo/stat", "swarm/peers",
                    "bitswap/stat", "pubsub/ls", f"dag/export?arg={cid}", f"get?arg={cid}"):
        assert request(node.api, "POST", f"/api/v0/{command}").status == 200, command
    assert request(node.api, "POST", f"/api/v0/cat?arg={cid}").body == track.read_bytes()
    for path in ("/api/chorus/v1/node", "/api/chorus/v1/store", "/metrics"):
        assert request(node.api, "GET", path).status == 200, path


@pytest.mark.integration
def test_the_cli_sends_the_token(node: DaemonProcess, tmp_path: Path) -> None:
    track = tmp_path / "song.bin"
    track.write_bytes(os.urandom(600_000))
    cid = node.add(track)  # `chorus add` through the daemon: a write
    assert node.cli("cat", cid).stdout == track.read_bytes()
    assert node.cli_json("pin", "ls", "--json")["Keys"][cid]["Type"] == "recursive"
    node.cli("pin", "rm", cid)
    assert cid not in node.cli_json("pin", "ls", "--json")["Keys"]

    # With another token in the file the daemon refuses, and the CLI says why.
    path = node.data / TOKEN_FILE
    real = path.read_text()
    path.write_text(secrets.token_urlsafe(32) + "\n")
    try:
        refused = node.cli("add", "-Q", str(track), check=False)
    finally:
        path.write_text(real)
    assert refused.returncode != 0
    assert "token" in refused.stderr.decode()
    assert "Traceback" not in refused.stderr.decode()


@pytest.mark.integration
def test_a_client_from_an_address_finds_the_token_only_of_that_daemon(
    node: DaemonProcess,
) -> None:
    client = DaemonClient(node.api)  # no token given: found through repo/stat
    assert list(client.lines("repo/gc")) is not None  # a write
    assert client.token == token_of(node)

    # A server that claims this node's repo as its own must not be handed its token.
    seen: list[str | None] = []

    class Impostor(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.headers.get("Authorization"))
            body = json.dumps({"RepoPath": str(node.data)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Impostor)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        impostor = DaemonClient(f"http://127.0.0.1:{server.server_port}")
        impostor.call("version")
    finally:
        server.shutdown()
        server.server_close()
    assert impostor.token is None
    assert seen and all(header is None for header in seen)


def test_a_write_from_off_the_machine_is_forbidden() -> None:
    """Checked on the middleware with a non-loopback `scope["client"]`: tests here
    may only send traffic to loopback, so no real off-machine client is used."""
    trio.run(_forbidden_through_asgi)


async def _forbidden_through_asgi() -> None:
    token = secrets.token_urlsafe(32)
    guard = AuthGuard(echo_app, token=token)
    status, _, body = await asgi_call(guard, "POST", "/api/v0/repo/gc", client=("192.0.2.7", 1),
                                      headers=[(b"authorization", f"Bearer {token}".encode())])
    assert status == 403 and json.loads(body)["Type"] == "error"
