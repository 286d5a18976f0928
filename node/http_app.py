"""The daemon's HTTP face: one ASGI app on trio (hypercorn's trio worker + starlette).

    /ipfs/...          path and trustless gateway (node/gateway.py)
    /api/v0/...        Kubo RPC subset (node/rpc.py) — local listener only
    /api/chorus/v1/... chorus JSON API (node/chorus_api.py) — reads public, writes local
    /metrics           Prometheus (node/metrics.py) — local listener only
    /, /app/...        the web app (node/web_ui.py, node/webapp/) — local listener only
Writes need the node's API token and a loopback client (node/auth.py).

The local listener (`--http`, default 127.0.0.1:8080) serves everything; an optional
public listener (`--gateway`) serves only what is safe to expose. Both run as tasks
of the daemon's nursery and stop with it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from .auth import auth_middleware
from .chorus_api import chorus_api_routes
from .gateway import gateway_routes
from .metrics import metrics_routes, request_metrics
from .rpc import rpc_routes
from .web_ui import web_ui_routes

if TYPE_CHECKING:
    from .daemon import Daemon

__all__ = ["build_app", "serve_http"]


def build_app(daemon: Daemon, *, public: bool = False) -> Starlette:
    """The app for one listener; `public` leaves out everything that is local-only."""
    routes: list[BaseRoute] = [*gateway_routes(daemon)]
    routes += chorus_api_routes(daemon, public=public)
    if not public:
        routes += rpc_routes(daemon)
        routes += metrics_routes(daemon)
        routes += web_ui_routes()
    return Starlette(routes=routes, middleware=[*request_metrics(daemon), *auth_middleware(daemon)])


async def serve_http(
    daemon: Daemon,
    bind: str,
    *,
    public: bool = False,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve on `bind` (host:port, port 0 = any); report the URL once bound."""
    config = Config()
    config.bind = [bind]
    config.accesslog = None
    config.errorlog = logging.getLogger("chorus.http.server")
    config.graceful_timeout = 1.0
    # A client that trickles its request (slowloris) is dropped after this long idle.
    config.read_timeout = 30

    async def run(*, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED):
        await serve(build_app(daemon, public=public), config, task_status=task_status)

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(run)
        task_status.started(binds[0].replace("0.0.0.0", "127.0.0.1"))
