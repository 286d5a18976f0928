"""The operator's peer block list in the chorus API: `/api/chorus/v1/swarm/blocked`.

    GET    /swarm/blocked                  the blocked peers, and what the gate refused
    POST   /swarm/blocked  {"peers": [...]} block peers; their connections close at once
    DELETE /swarm/blocked?peer=ID&peer=ID   unblock peers; they may connect again

What a block does, and why it is runtime state: node/swarm_blocklist.py. Writes need
the node's API token like every write (node/auth.py). A request names 1 to
`MAX_PEERS_PER_REQUEST` peers, each exactly a peer ID (node/peer_ids.py: the schema's
pattern is exact, so what it allows is what the handler takes); a request with one
bad peer ID changes nothing. The list holds at most MAX_BLOCKED peers (409 past it).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from libp2p.peer.id import ID
from starlette.requests import Request

from .chorus_api import ApiError, Operation
from .json_schema import object_schema
from .peer_ids import InvalidPeerId, parse_peer_id
from .swarm_blocklist import MAX_BLOCKED, BlocklistFull, block_and_disconnect, unblock

if TYPE_CHECKING:
    from .daemon import Daemon

__all__ = ["MAX_PEERS_PER_REQUEST", "swarm_operations"]

#: Peers one request may name: plenty for a partition or an incident, and a bound on
#: the work (and connection closes) one request can cause.
MAX_PEERS_PER_REQUEST = 64

_PEER_ID = {"$ref": "#/components/schemas/PeerId"}  # node/peer_ids.py, in chorus_api.SCHEMAS
_COUNT = {"type": "integer", "minimum": 0}
_PEER_LIST = {"type": "array", "items": _PEER_ID}


BLOCKED = object_schema(
    {
        "peers": {
            "type": "array",
            "items": object_schema(
                {
                    "peer_id": _PEER_ID,
                    "since": {**_COUNT, "description": "when it was blocked, Unix ms"},
                    "connected": {
                        "type": "boolean",
                        "description": "a connection exists (only while one is closing)",
                    },
                }
            ),
            "description": "oldest block first",
        },
        "capacity": {**_COUNT, "description": "the most peers the list may hold"},
        "refused_dials": {**_COUNT, "description": "dials to blocked peers refused"},
        "refused_connections": {
            **_COUNT,
            "description": "connections with blocked peers closed as they opened",
        },
    },
    "The operator's block list: runtime state, empty when the daemon starts.",
)
BLOCK_REQUEST = object_schema(
    {
        "peers": {
            "type": "array",
            "items": _PEER_ID,
            "minItems": 1,
            "maxItems": MAX_PEERS_PER_REQUEST,
        }
    }
)
BLOCK_RESULT = object_schema(
    {
        "added": {**_PEER_LIST, "description": "peers that were not blocked before"},
        "disconnected": {**_PEER_LIST, "description": "peers whose connections closed"},
        "blocked": {**_COUNT, "description": "peers blocked now, in all"},
    }
)
UNBLOCK_RESULT = object_schema(
    {
        "removed": {**_PEER_LIST, "description": "peers that were blocked"},
        "blocked": {**_COUNT, "description": "peers still blocked, in all"},
    }
)


def _no_params(request: Request) -> None:
    if request.query_params:
        name = sorted(request.query_params)[0]
        raise ApiError(400, f"unknown query parameter {name!r} (this endpoint takes none)")


def _peers(values: Any, where: str) -> list[ID]:
    """1..MAX_PEERS_PER_REQUEST peer IDs; 400 naming the first bad one."""
    if not isinstance(values, list) or not values:
        raise ApiError(400, f"{where} must name at least one peer ID")
    if len(values) > MAX_PEERS_PER_REQUEST:
        raise ApiError(
            400, f"{where} names {len(values)} peers; at most {MAX_PEERS_PER_REQUEST} at once"
        )
    peers = []
    for value in values:
        try:
            peers.append(parse_peer_id(value))
        except InvalidPeerId as exc:
            raise ApiError(400, f"{where}: {exc}") from None
    return peers


def _block_request(raw: bytes) -> list[ID]:
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(
            400, f'the body is not JSON ({exc}); send {{"peers": [PEER_ID, ...]}}'
        ) from None
    if not isinstance(value, dict) or "peers" not in value:
        raise ApiError(400, 'the body must be a JSON object {"peers": [PEER_ID, ...]}')
    unknown = sorted(set(value) - {"peers"})
    if unknown:
        raise ApiError(400, f'unknown member "{unknown[0]}" in the body (it takes "peers")')
    return _peers(value["peers"], '"peers"')


def swarm_operations(daemon: Daemon) -> list[Operation]:
    """The block list's three operations (mounted by node/chorus_api.py)."""

    async def blocked(request: Request) -> dict[str, Any]:
        _no_params(request)
        blocklist = daemon.blocklist
        connected = set(daemon.host.get_connected_peers())
        return {
            "peers": [
                {"peer_id": str(b.peer), "since": b.since_ms, "connected": b.peer in connected}
                for b in blocklist.entries()
            ],
            "capacity": blocklist.capacity,
            "refused_dials": blocklist.refused_dials,
            "refused_connections": blocklist.refused_connections,
        }

    async def block(request: Request) -> dict[str, Any]:
        _no_params(request)
        peers = _block_request(await request.body())
        blocklist = daemon.blocklist
        if daemon.host.get_id() in peers:
            raise ApiError(409, "a node cannot block itself", code="self")
        try:
            added, disconnected = await block_and_disconnect(daemon.host, blocklist, peers)
        except BlocklistFull as exc:
            raise ApiError(409, str(exc), code="blocklist_full") from None
        return {
            "added": [str(p) for p in added],
            "disconnected": [str(p) for p in disconnected],
            "blocked": len(blocklist),
        }

    async def unblock_peers(request: Request) -> dict[str, Any]:
        unknown = sorted(set(request.query_params) - {"peer"})
        if unknown:
            raise ApiError(400, f"unknown query parameter {unknown[0]!r} (it takes peer)")
        peers = _peers(request.query_params.getlist("peer"), "the peer parameters")
        removed = unblock(daemon.host, daemon.blocklist, peers)
        return {"removed": [str(p) for p in removed], "blocked": len(daemon.blocklist)}

    return [
        Operation(
            "GET", "/swarm/blocked", "getSwarmBlocked",
            "The peers the operator blocked, and what the block refused",
            blocked, BLOCKED, tag="swarm", errors=[400],
            description=(
                "Blocked peers can neither dial this node nor be dialled by it; gossip "
                "and sync never hear from them. The list is runtime state: it is empty "
                "each time the daemon starts."
            ),
        ),
        Operation(
            "POST", "/swarm/blocked", "postSwarmBlocked",
            "Block peers: close their connections now and refuse them until unblocked",
            block, BLOCK_RESULT, tag="swarm", errors=[400, 409],
            description=(
                f"All or nothing: one bad peer ID (400) or a list past {MAX_BLOCKED} "
                "peers (409 blocklist_full) blocks none. Blocking a blocked peer again "
                "is not an error (it is not in `added`). 409 `self` for the node's own ID."
            ),
            request_body={
                "required": True,
                "content": {"application/json": {"schema": BLOCK_REQUEST}},
            },
        ),
        Operation(
            "DELETE", "/swarm/blocked", "deleteSwarmBlocked",
            "Unblock peers: they may connect again (dial them, or wait for bootstrap)",
            unblock_peers, UNBLOCK_RESULT, tag="swarm", errors=[400],
            parameters=[
                {
                    "name": "peer",
                    "in": "query",
                    "required": True,
                    "description": "a peer to unblock (repeat for more)",
                    "schema": {
                        "type": "array",
                        "items": _PEER_ID,
                        "minItems": 1,
                        "maxItems": MAX_PEERS_PER_REQUEST,
                    },
                    "style": "form",
                    "explode": True,
                }
            ],
        ),
    ]
