"""The chorus JSON API under `/api/chorus/v1/`: releases, plays, ledger, tallies, proofs.

(Being written: see the HTTP issue.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from .daemon import Daemon

__all__ = ["chorus_api_routes"]


def chorus_api_routes(daemon: Daemon, *, public: bool = False) -> list[BaseRoute]:
    return []
