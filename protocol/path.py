"""IPFS content paths: `CID`, `CID/a/b`, `/ipfs/CID/a/b`, as every IPFS tool accepts them."""

from __future__ import annotations

from multiformats import CID

from .cid import parse_cid
from .errors import InvalidCID

__all__ = ["parse_content_path"]


def parse_content_path(text: str) -> tuple[CID, str]:
    """Split a content path into its root CID and the rest (no leading slash)."""
    value = text.strip()
    if value.startswith("/ipfs/"):
        value = value[len("/ipfs/") :]
    elif value.startswith("ipfs://"):
        value = value[len("ipfs://") :]
    elif value.startswith("/"):
        raise InvalidCID(f"unsupported content path {text!r} (only /ipfs/ paths)")
    root, _, rest = value.partition("/")
    parts = [part for part in rest.split("/") if part]
    if any(part in (".", "..") for part in parts):
        raise InvalidCID(f"content path {text!r} may not contain '.' or '..'")
    return parse_cid(root), "/".join(parts)
