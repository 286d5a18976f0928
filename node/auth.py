"""Who may write: the node's API token, from localhost only.

(Being written: see the HTTP issue.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.middleware import Middleware

if TYPE_CHECKING:
    from .daemon import Daemon

__all__ = ["auth_middleware"]


def auth_middleware(daemon: Daemon) -> list[Middleware]:
    return []
