"""Prometheus `/metrics`.

(Being written: see the HTTP issue.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from .daemon import Daemon

__all__ = ["metrics_routes"]


def metrics_routes(daemon: Daemon) -> list[BaseRoute]:
    return []
