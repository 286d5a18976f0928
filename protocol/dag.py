"""What any layer needs to know about a block without knowing UnixFS: its children.

Pinning, garbage collection and CAR export walk DAGs through `links_of`; only the
two content codecs IPFS adds with (dag-pb and raw) are understood.
"""

from __future__ import annotations

from multiformats import CID

from .cid import DAG_PB, RAW
from .dagpb import decode_node
from .errors import DecodeError

__all__ = ["links_of"]


def links_of(cid: CID, data: bytes) -> list[CID]:
    """The CIDs `data` (the block named `cid`) links to, in order."""
    code = cid.codec.code
    if code == RAW:
        return []
    if code == DAG_PB:
        return [link.cid for link in decode_node(data).links]
    raise DecodeError(f"cannot walk {cid}: codec {cid.codec.name} is not dag-pb or raw")
