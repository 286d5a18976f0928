"""The chorus JSON API under `/api/chorus/v1/`: the node, its ledger and proofs, the
co-op's tallies (node/coop_api.py), and releases, keys, plays and ballots for the web
app (node/web_api.py).

Rules of this file: the API is a table of `Operation`s — method, path, handler,
and the JSON Schemas of what it answers. The routes *and* the OpenAPI 3.1 document
served at `/api/chorus/v1/openapi.json` are both generated from that one table, so
they cannot drift apart (tests/node/test_chorus_api.py runs schemathesis against the
document). A new endpoint is a new `Operation` in `operations()`; nothing else.

Every answer is JSON. Every error, whoever raises it (a handler, the router's 404 or
405, the auth guard's 401/403, the body limit's 413), has one shape:

    {"error": {"code": "not_found", "message": "no release bafy..."}}

`code` is a stable snake_case word from ERROR_CODES (clients branch on it);
`message` is for people and may change. The HTTP status agrees with the code.

Only GET (and the HEAD Starlette derives from it) is served by the public listener
(`public=True`); writes are added to the local listener only, and node/auth.py
lets them through only from localhost with the node's API token.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from protocol.cid import cid_to_text

from .coop import SCHEMAS as COOP_SCHEMAS
from .ledger_views import SCHEMAS as LEDGER_SCHEMAS
from .peer_ids import PEER_ID_SCHEMA

if TYPE_CHECKING:
    from .daemon import Daemon

__all__ = [
    "API_PREFIX",
    "ERROR_CODES",
    "ApiError",
    "Operation",
    "api_description",
    "chorus_api_routes",
    "error_response",
    "openapi_document",
    "operations",
]

API_PREFIX = "/api/chorus/v1"
API_VERSION = "1.0.0"

log = logging.getLogger("chorus.api")

#: HTTP status -> the `code` of the error object. A handler may use a more precise
#: code (e.g. "quota_exceeded" with 507) by raising ApiError with it.
ERROR_CODES: Mapping[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    500: "internal",
    503: "unavailable",
}


class ApiError(Exception):
    """A request the chorus API refuses: HTTP status, error code, message."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or ERROR_CODES.get(status, "error")
        self.message = message


def error_response(
    status: int,
    code: str | None,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The chorus error object as a response (also used by node/auth.py)."""
    body = {"error": {"code": code or ERROR_CODES.get(status, "error"), "message": message}}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


Handler = Callable[[Request], Awaitable[Any]]


@dataclass(frozen=True)
class Operation:
    """One endpoint: what serves it and what the OpenAPI document says about it.

    `handler` returns a JSON-able value (sent with status 200) or a Response; it
    raises ApiError to refuse. `path` is relative to API_PREFIX.
    """

    method: str
    path: str
    operation_id: str
    summary: str
    handler: Handler
    response: dict[str, Any]
    tag: str = "node"
    description: str = ""
    parameters: Sequence[dict[str, Any]] = ()
    #: Error statuses this operation answers besides 500 (documented explicitly).
    errors: Sequence[int] = ()
    request_body: dict[str, Any] | None = None
    #: What a 200 answer is (`response` is its schema); JSON unless said otherwise.
    media_type: str = "application/json"

    @property
    def is_read(self) -> bool:
        return self.method == "GET"


# -- JSON Schemas of the answers --------------------------------------------------------

_COUNT = {"type": "integer", "minimum": 0}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "additionalProperties": False,
                "properties": {
                    "code": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
                    "message": {"type": "string"},
                },
            }
        },
    },
    "Coop": {
        "type": "object",
        "required": ["genesis", "topic"],
        "additionalProperties": False,
        "properties": {
            "genesis": {"type": "string", "description": "the co-op's genesis CID"},
            "topic": {"type": "string", "description": "the gossipsub topic of its ledger"},
        },
    },
    "Node": {
        "type": "object",
        "required": ["peer_id", "public_key", "addresses", "version", "agent", "coop"],
        "additionalProperties": False,
        "properties": {
            "peer_id": {"type": "string"},
            "public_key": {
                "type": "string",
                "pattern": "^[0-9a-f]{64}$",
                "description": "the node's Ed25519 public key, hex",
            },
            "addresses": {
                "type": "array",
                "items": {"type": "string"},
                "description": "libp2p listen multiaddrs",
            },
            "version": {"type": "string"},
            "agent": {"type": "string"},
            "coop": {
                "description": "the co-op this node belongs to, or null",
                "oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Coop"}],
            },
        },
    },
    "Exchange": {
        "type": "object",
        "description": "verified Bitswap block traffic with one peer since the daemon started",
        "required": [
            "blocks_sent",
            "bytes_sent",
            "blocks_received",
            "bytes_received",
            "unsolicited",
        ],
        "additionalProperties": False,
        "properties": {
            "blocks_sent": _COUNT,
            "bytes_sent": _COUNT,
            "blocks_received": _COUNT,
            "bytes_received": _COUNT,
            "unsolicited": _COUNT,
        },
    },
    "Penalty": {
        "type": "object",
        "required": ["strikes", "reason", "banned"],
        "additionalProperties": False,
        "properties": {
            "strikes": {"type": "integer", "minimum": 1},
            "reason": {"type": "string", "description": "the latest offence"},
            "banned": {"type": "boolean", "description": "refused right now"},
        },
    },
    "Peer": {
        "type": "object",
        "required": ["peer_id", "connected", "addresses", "protocol", "exchange", "penalty"],
        "additionalProperties": False,
        "properties": {
            "peer_id": {"type": "string"},
            "connected": {"type": "boolean"},
            "addresses": {"type": "array", "items": {"type": "string"}},
            "protocol": {
                "type": ["string", "null"],
                "description": "the Bitswap protocol the peer speaks to us, if known",
            },
            "exchange": {"$ref": "#/components/schemas/Exchange"},
            "penalty": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Penalty"}]},
        },
    },
    "Peers": {
        "type": "object",
        "required": ["peers"],
        "additionalProperties": False,
        "properties": {"peers": {"type": "array", "items": {"$ref": "#/components/schemas/Peer"}}},
    },
    "Pin": {
        "type": "object",
        "required": ["cid", "type"],
        "additionalProperties": False,
        "properties": {
            "cid": {"type": "string"},
            "type": {"enum": ["recursive", "direct", "indirect"]},
        },
    },
    "Pins": {
        "type": "object",
        "required": ["pins"],
        "additionalProperties": False,
        "properties": {"pins": {"type": "array", "items": {"$ref": "#/components/schemas/Pin"}}},
    },
    "Store": {
        "type": "object",
        "required": ["blocks", "bytes", "quota", "free"],
        "additionalProperties": False,
        "properties": {
            "blocks": _COUNT,
            "bytes": {**_COUNT, "description": "block payload bytes"},
            "quota": {"type": ["integer", "null"], "minimum": 0, "description": "null: none"},
            "free": {
                "type": ["integer", "null"],
                "minimum": 0,
                "description": "bytes left under the quota; null without a quota",
            },
        },
    },
}
SCHEMAS.update(LEDGER_SCHEMAS)  # the ledger's shapes, next to the views that make them
SCHEMAS.update(COOP_SCHEMAS)  # the co-op's figures (node/coop.py)
SCHEMAS["PeerId"] = PEER_ID_SCHEMA  # an exact pattern (node/peer_ids.py): swarm_api.py


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


# -- the operations ---------------------------------------------------------------------

PIN_KINDS = ("roots", "recursive", "direct", "indirect", "all")


def operations(daemon: Daemon) -> list[Operation]:
    """Every operation of the API, for `daemon`. Later issues append theirs here."""
    from .coop_api import coop_operations  # they build on this module
    from .ledger_api import ledger_operations
    from .swarm_api import swarm_operations
    from .web_api import web_operations

    return (
        node_operations(daemon)
        + ledger_operations(daemon)
        + coop_operations(daemon)
        + web_operations(daemon)
        + swarm_operations(daemon)
    )


def node_operations(daemon: Daemon) -> list[Operation]:
    """What the running node is, whom it talks to, what it stores."""
    from .rpc import VERSION  # the version /api/v0/version reports

    async def node(request: Request) -> dict[str, Any]:
        coop = None
        if daemon.gossip is not None and daemon.options.coop:
            coop = {"genesis": daemon.options.coop, "topic": daemon.gossip.topic}
        return {
            "peer_id": daemon.peer_id,
            "public_key": bytes(daemon.repo.identity.verify_key).hex(),
            "addresses": list(daemon.listen_addrs),
            "version": VERSION,
            "agent": f"chorus/{VERSION}",
            "coop": coop,
        }

    async def peers(request: Request) -> dict[str, Any]:
        return {"peers": _peer_list(daemon)}

    async def pins(request: Request) -> dict[str, Any]:
        kind = request.query_params.get("type", "roots")
        if kind not in PIN_KINDS:
            raise ApiError(400, f"type must be one of {', '.join(PIN_KINDS)}, not {kind!r}")

        store = daemon.repo.blockstore

        def listing() -> list[Any]:
            if kind == "roots":
                return store.pin_ls("recursive") + store.pin_ls("direct")
            return store.pin_ls(kind)

        found = await trio.to_thread.run_sync(listing)
        return {"pins": [{"cid": cid_to_text(cid), "type": k} for cid, k in found]}

    async def store_stat(request: Request) -> dict[str, Any]:
        stat = await trio.to_thread.run_sync(daemon.repo.blockstore.stat)
        free = None if stat.quota is None else max(stat.quota - stat.bytes, 0)
        return {"blocks": stat.blocks, "bytes": stat.bytes, "quota": stat.quota, "free": free}

    return [
        Operation(
            "GET", "/node", "getNode", "This node: peer ID, key, addresses, version, co-op",
            node, _ref("Node"),
        ),
        Operation(
            "GET", "/peers", "getPeers",
            "Peers: connected, exchanged blocks with, or penalised",
            peers, _ref("Peers"),
            description=(
                "Every peer that is connected, that this node exchanged Bitswap blocks "
                "with since it started, or that it penalised for misbehaving. Byte "
                "counts are of verified blocks (the basis of bandwidth receipts)."
            ),
        ),
        Operation(
            "GET", "/pins", "getPins", "Pinned content", pins, _ref("Pins"),
            parameters=[
                {
                    "name": "type",
                    "in": "query",
                    "required": False,
                    "description": (
                        "roots: recursive and direct pins (default); all: also every "
                        "block under a recursive pin (indirect)"
                    ),
                    "schema": {"enum": list(PIN_KINDS), "default": "roots"},
                }
            ],
            errors=[400],
        ),
        Operation(
            "GET", "/store", "getStore", "Blocks and bytes stored, quota", store_stat,
            _ref("Store"),
        ),
    ]


def _peer_list(daemon: Daemon) -> list[dict[str, Any]]:
    """The /peers answer, built without awaiting (a consistent snapshot)."""
    connected = set(daemon.host.get_connected_peers())
    counters = daemon.exchange.counters
    penalties = daemon.penalties
    protocols = getattr(daemon.exchange, "_peer_protocol", {})  # not public in bitswap.py
    network = daemon.host.get_network()
    everyone = connected | set(counters) | set(penalties.strikes)
    answer = []
    for peer in sorted(everyone, key=str):
        addresses: list[str] = []
        if peer in connected:
            try:
                for conn in network.get_connections(peer):
                    addresses += [str(a) for a in conn.get_transport_addresses()]
            except Exception:  # noqa: BLE001 - addresses are a nicety; a peer may vanish
                addresses = []
        c = counters.get(peer)
        strikes = penalties.strikes.get(peer, 0)
        protocol = protocols.get(peer)
        answer.append(
            {
                "peer_id": str(peer),
                "connected": peer in connected,
                "addresses": addresses,
                "protocol": str(protocol) if protocol is not None else None,
                "exchange": {
                    "blocks_sent": c.blocks_sent if c else 0,
                    "bytes_sent": c.bytes_sent if c else 0,
                    "blocks_received": c.blocks_received if c else 0,
                    "bytes_received": c.bytes_received if c else 0,
                    "unsolicited": c.unsolicited if c else 0,
                },
                "penalty": None
                if not strikes
                else {
                    "strikes": strikes,
                    "reason": penalties.reasons.get(peer, ""),
                    "banned": penalties.is_banned(peer),
                },
            }
        )
    return answer


# -- the OpenAPI document ---------------------------------------------------------------

_ERROR_CONTENT = {"application/json": {"schema": _ref("Error")}}
_STATUS_TEXT = {
    400: "Bad request (see the error message)",
    401: "No API token, or not this node's",
    403: "Writes are accepted only from the node's own machine",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict with the node's state (the error code says which)",
    413: "Request body too large",
    422: "Refused by the ledger's rules (the message names the rule)",
    500: "Internal error",
}


def openapi_document(ops: Sequence[Operation]) -> dict[str, Any]:
    """The OpenAPI 3.1 description of `ops` (which are what is mounted)."""
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        responses: dict[str, Any] = {
            "200": {"description": "OK", "content": {op.media_type: {"schema": op.response}}}
        }
        statuses = set(op.errors) | {500}
        if not op.is_read:
            statuses |= {401, 403, 413}
        for status in sorted(statuses):
            responses[str(status)] = {
                "description": _STATUS_TEXT.get(status, "Error"),
                "content": _ERROR_CONTENT,
            }
        entry: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
            "responses": responses,
        }
        if op.description:
            entry["description"] = op.description
        if op.parameters:
            entry["parameters"] = list(op.parameters)
        if op.request_body is not None:
            entry["requestBody"] = op.request_body
        if not op.is_read:
            entry["security"] = [{"apiToken": []}]
        paths.setdefault(API_PREFIX + op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chorus node API",
            "version": API_VERSION,
            "description": (
                "The chorus JSON API of one node. Reads are public; writes need the "
                "node's API token (Authorization: Bearer) and a loopback client. "
                "Errors are {\"error\": {\"code\", \"message\"}}. See docs/api.md."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "apiToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the token in <data dir>/api_token",
                }
            },
        },
    }


# -- routing ----------------------------------------------------------------------------


def _openapi_operation(document: dict[str, Any]) -> Operation:
    async def openapi(request: Request) -> dict[str, Any]:
        return document

    return Operation(
        "GET", "/openapi.json", "getOpenApi", "This document (OpenAPI 3.1)", openapi,
        {"type": "object", "required": ["openapi", "paths"]}, tag="meta",
    )


def _endpoint(by_method: dict[str, Operation]) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        op = by_method[method]  # the Route let only these methods through
        try:
            result = await op.handler(request)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message)
        except Exception as exc:
            log.exception("chorus API %s %s failed", request.method, request.url.path)
            return error_response(500, "internal", f"internal error ({type(exc).__name__})")
        return result if isinstance(result, Response) else JSONResponse(result)

    return endpoint


async def _http_error(request: Request, exc: Exception) -> Response:
    """The router's own refusals (404, 405), in the chorus error format."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = (
            f"no endpoint {request.method} {request.url.path} "
            f"(see {API_PREFIX}/openapi.json)"
        )
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, None, message, headers=exc.headers)


def api_description(
    daemon: Daemon, *, public: bool = False
) -> tuple[list[Operation], dict[str, Any]]:
    """What a listener mounts — with `public`, only GET operations — and the OpenAPI
    document it serves. Building it calls no handler, so it needs no running daemon."""
    ops = [op for op in operations(daemon) if op.is_read or not public]
    document: dict[str, Any] = {}
    ops.append(_openapi_operation(document))
    document.update(openapi_document(ops))
    return ops, document


def chorus_api_routes(daemon: Daemon, *, public: bool = False) -> list[BaseRoute]:
    """The API mounted at API_PREFIX; with `public`, only its GET operations."""
    ops, _ = api_description(daemon, public=public)
    by_path: dict[str, dict[str, Operation]] = {}
    for op in ops:
        by_path.setdefault(op.path, {})[op.method] = op
    routes = [
        Route(path, _endpoint(by_method), methods=list(by_method))
        for path, by_method in by_path.items()
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    mount = Mount(API_PREFIX, app=app)
    # A path parameter may hold any character, a newline (%0A) too; Mount matches the
    # rest of the path with ".*", which stops at a newline, so such a request would miss
    # the API and get the outer app's plain-text 404 instead of the error object.
    mount.path_regex = re.compile(mount.path_regex.pattern, re.DOTALL)
    return [mount]
