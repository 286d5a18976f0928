"""Who may write: the node's API token, from localhost only. Reads are public.

Rules of this file: everything that decides whether a request may change the node
lives here, as data (the tables below) and two pure functions (`classify`, then
`decide`); the middleware only applies the verdict. Nothing else in the HTTP layer
checks auth. Paths are taken as the router sees them (`scope["path"]`, already
percent-decoded), and the read-only list matches whole command names only.

Theory of operation. Every HTTP request is classified from its method and path
alone — before any byte of its body is read — as a READ or a WRITE:

    /api/v0/<command>       WRITE unless <command> is in READ_ONLY_RPC, whatever the
                            method (ipfshttpclient and Kubo's own client POST
                            everything, so the method says nothing there)
    anything else           READ for GET, HEAD and OPTIONS; WRITE for any other method
    websocket connections   WRITE (none are served yet; decide when one is)

Unknown RPC commands are writes: a command added to node/rpc.py needs a token until
someone decides here that it changes nothing. A WRITE is let through only if

    1. the client is on a loopback address (127.0.0.0/8, ::1, ::ffff:127.x.x.x),
       else 403 — checked first, so no one off the machine can probe the token; and
    2. it carries `Authorization: Bearer <the token in <data dir>/api_token>`,
       compared in constant time, else 401 with `WWW-Authenticate: Bearer`.

Refusals speak the dialect of the API asked: Kubo's `{"Message", "Code", "Type"}`
under /api/v0/, the chorus error object under /api/chorus/v1/ (node/chorus_api.py),
plain text elsewhere. Proxy headers (X-Forwarded-For, Forwarded) are ignored: a
reverse proxy on the same machine makes every client look local, but the token is
still required.

`BodyLimit` (second in the chain, so only authorised requests are read) caps chorus
API request bodies at CHORUS_API_MAX_BODY: a larger Content-Length, or a streamed
body that grows past it, gets 413 before the endpoint runs. The body is read whole
into memory for that — it is small by definition — and replayed to the endpoint.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from starlette.middleware import Middleware
from starlette.responses import JSONResponse, PlainTextResponse, Response

from .api_token import token_matches
from .chorus_api import API_PREFIX as CHORUS_PREFIX
from .chorus_api import error_response as chorus_error

if TYPE_CHECKING:
    from .daemon import Daemon

__all__ = [
    "CHORUS_API_MAX_BODY",
    "READ_ONLY_RPC",
    "Access",
    "AuthGuard",
    "BodyLimit",
    "Decision",
    "auth_middleware",
    "classify",
    "decide",
    "is_loopback",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

RPC_PREFIX = "/api/v0/"

#: Kubo RPC commands that change nothing on the node, so need no token. Left out on
#: purpose: `add`, `block/put|rm`, `dag/import`, `pin/add|rm`, `repo/gc` (change the
#: store), `swarm/connect` (dials out), `pubsub/pub` (speaks for the node),
#: `diag/perf` (makes the node dial any address and pull up to gigabytes: an
#: amplifier), `shutdown`.
#: `cat`, `get` and `dag/export` may fetch blocks from the swarm, as the public
#: gateway does; `repo/verify` re-hashes the store (costly, but changes nothing).
READ_ONLY_RPC: frozenset[str] = frozenset(
    {
        "id",
        "version",
        "cat",
        "get",
        "block/get",
        "block/stat",
        "dag/export",
        "pin/ls",
        "refs/local",
        "repo/stat",
        "repo/verify",
        "swarm/peers",
        "bitswap/stat",
        "pubsub/ls",
        "gossip/stat",
    }
)

#: Methods that read, outside /api/v0/.
READ_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS"})

#: Largest request body the chorus API accepts (ledger entries, release metadata and
#: votes are kilobytes; audio goes in through /api/v0/add).
CHORUS_API_MAX_BODY = 1024 * 1024


class Access(enum.Enum):
    READ = "read"
    WRITE = "write"


class Decision(enum.Enum):
    """What the guard does with one request."""

    ALLOW = "allow"
    NO_TOKEN = "no token"  # no `Authorization: Bearer` header
    BAD_TOKEN = "bad token"  # a token, but not this node's
    NOT_LOCAL = "not local"  # a write from off the machine


def classify(scope_type: str, method: str, path: str) -> Access:
    """READ or WRITE for a request, from its ASGI scope type, method and path."""
    if scope_type != "http":
        return Access.WRITE
    if path.startswith(RPC_PREFIX):
        command = path[len(RPC_PREFIX) :].strip("/")
        return Access.READ if command in READ_ONLY_RPC else Access.WRITE
    return Access.READ if method.upper() in READ_METHODS else Access.WRITE


def is_loopback(client: tuple[str, int] | list[Any] | None) -> bool:
    """True for a client on 127.0.0.0/8, ::1 or an IPv4-mapped loopback address;
    False for anything else, including an unknown client (fail closed)."""
    if not client:
        return False
    try:
        address = ipaddress.ip_address(str(client[0]).split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of the one `Authorization: Bearer` header, or None (none, several,
    another scheme, or not ASCII)."""
    values = [v for k, v in headers if k.lower() == b"authorization"]
    if len(values) != 1:
        return None
    try:
        scheme, _, token = values[0].decode("ascii").strip().partition(" ")
    except UnicodeDecodeError:
        return None
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def decide(
    access: Access,
    client: tuple[str, int] | list[Any] | None,
    headers: list[tuple[bytes, bytes]],
    expected_token: str,
) -> Decision:
    """The guard's verdict: reads pass; writes need a loopback client, then the token."""
    if access is Access.READ:
        return Decision.ALLOW
    if not is_loopback(client):
        return Decision.NOT_LOCAL
    presented = bearer_token(headers)
    if presented is None:
        return Decision.NO_TOKEN
    if not token_matches(expected_token, presented):
        return Decision.BAD_TOKEN
    return Decision.ALLOW


#: decision -> (HTTP status, chorus error code, message, WWW-Authenticate value)
_REFUSALS: dict[Decision, tuple[int, str, str, str | None]] = {
    Decision.NO_TOKEN: (
        401,
        "unauthorized",
        "this request changes the node, so it needs the node's API token: send "
        "'Authorization: Bearer <token>' with the token from <data dir>/api_token",
        'Bearer realm="chorus"',
    ),
    Decision.BAD_TOKEN: (
        401,
        "unauthorized",
        "the API token sent is not this node's (see <data dir>/api_token)",
        'Bearer realm="chorus", error="invalid_token"',
    ),
    Decision.NOT_LOCAL: (
        403,
        "forbidden",
        "this request changes the node, so it is accepted only from the node's own "
        "machine (a loopback address)",
        None,
    ),
}


def refusal(decision: Decision, path: str) -> Response:
    """The response for a refused request, in the dialect of the API it addressed."""
    status, code, message, challenge = _REFUSALS[decision]
    headers = {"WWW-Authenticate": challenge} if challenge else {}
    if path.startswith(RPC_PREFIX):
        return JSONResponse(
            {"Message": message, "Code": 0, "Type": "error"}, status_code=status, headers=headers
        )
    if _is_chorus_api(path):
        return chorus_error(status, code, message, headers=headers)
    return PlainTextResponse(message + "\n", status_code=status, headers=headers)


def _is_chorus_api(path: str) -> bool:
    return path == CHORUS_PREFIX or path.startswith(CHORUS_PREFIX + "/")


class AuthGuard:
    """ASGI middleware applying `classify` and `decide` to every request."""

    def __init__(self, app: ASGIApp, *, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        access = classify(scope["type"], scope.get("method", "GET"), path)
        decision = decide(access, scope.get("client"), scope.get("headers", []), self.token)
        if decision is Decision.ALLOW:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # policy violation
        else:
            await refusal(decision, path)(scope, receive, send)


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: 413 for chorus API requests with a body over `limit` bytes."""

    def __init__(self, app: ASGIApp, *, limit: int = CHORUS_API_MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not _is_chorus_api(path):
            await self.app(scope, receive, send)
            return
        try:
            declared = _content_length(scope.get("headers", []))
            if declared is not None and declared > self.limit:
                raise _TooLarge
            messages = await self._read_body(receive)
        except _TooLarge:
            await self._too_large(scope, receive, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _read_body(self, receive: Receive) -> list[Message]:
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages  # the client left; the endpoint will see it
            size += len(message.get("body", b""))
            if size > self.limit:
                raise _TooLarge
            if not message.get("more_body", False):
                return messages

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = chorus_error(
            413,
            "payload_too_large",
            f"request bodies of the chorus API are limited to {self.limit} bytes",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for key, value in headers:
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def auth_middleware(daemon: Daemon) -> list[Middleware]:
    """The guard, then the chorus API body limit, for `build_app`."""
    return [
        Middleware(AuthGuard, token=daemon.repo.api_token),
        Middleware(BodyLimit, limit=CHORUS_API_MAX_BODY),
    ]
