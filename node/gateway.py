"""The IPFS path gateway and trustless gateway: `GET/HEAD /ipfs/{cid}[/path]`.

(Being written: see the HTTP issue.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from .daemon import Daemon

__all__ = ["gateway_routes"]


def gateway_routes(daemon: Daemon) -> list[BaseRoute]:
    return []
