"""Self-contained proof bundles: what a node hands out so anyone can check it offline.

An inclusion bundle says "entry E is at index i of my log, and my log of size n has
root R; here is the audit path, and here is my signed tree head for n". A
consistency bundle says "my log of size m is a prefix of my log of size n; here are
both signed tree heads and the proof". Each bundle carries the signed entries
themselves (base64 of their canonical bytes), so verifying needs nothing but the
bundle and, to know *whose* log it is, the node's public key.

`verify_bundle` checks, in order: the bundle's shape, the tree heads' signatures and
kind, that they were signed by the expected node (if given), that their sizes match
the bundle, then the RFC 9162 proof against their roots. Any failure is a
`BundleError` (or the merkle module's ProofError) naming what failed.

Bundles are JSON (the chorus API returns them, `chorus ledger proof` writes them):

    {"type": "inclusion", "index": i, "size": n, "entry": b64, "hashes": [hex...],
     "tree_head": b64}
    {"type": "consistency", "old_size": m, "new_size": n, "hashes": [hex...],
     "old_tree_head": b64, "new_tree_head": b64}
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from protocol.errors import ChorusError

from .entry import EntryError, SignedEntry, decode_entry
from .kinds import TREE_HEAD
from .merkle import leaf_hash, verify_consistency, verify_inclusion
from .schema import SchemaError

__all__ = [
    "BundleError",
    "VerifiedBundle",
    "consistency_bundle",
    "inclusion_bundle",
    "verify_bundle",
]


class BundleError(ChorusError, ValueError):
    """A proof bundle that is malformed or does not prove what it claims."""


@dataclass(frozen=True, slots=True)
class VerifiedBundle:
    kind: str
    node: bytes  # the log owner's public key (signer of the tree heads)
    size: int
    root: bytes
    entry: SignedEntry | None = None
    index: int | None = None
    old_size: int | None = None
    old_root: bytes | None = None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def inclusion_bundle(
    entry: bytes, index: int, size: int, hashes: list[bytes], tree_head: bytes
) -> dict[str, Any]:
    return {
        "type": "inclusion",
        "index": index,
        "size": size,
        "entry": _b64(entry),
        "hashes": [h.hex() for h in hashes],
        "tree_head": _b64(tree_head),
    }


def consistency_bundle(
    old_size: int, new_size: int, hashes: list[bytes], old_head: bytes, new_head: bytes
) -> dict[str, Any]:
    return {
        "type": "consistency",
        "old_size": old_size,
        "new_size": new_size,
        "hashes": [h.hex() for h in hashes],
        "old_tree_head": _b64(old_head),
        "new_tree_head": _b64(new_head),
    }


def _field(bundle: dict[str, Any], name: str, kind: type) -> Any:
    value = bundle.get(name)
    if type(value) is not kind:
        raise BundleError(f"bundle field {name!r} must be a {kind.__name__}")
    return value


def _entry_field(bundle: dict[str, Any], name: str) -> SignedEntry:
    try:
        data = base64.b64decode(_field(bundle, name, str), validate=True)
    except ValueError:  # binascii.Error, or text that is not ASCII
        raise BundleError(f"bundle field {name!r} is not base64") from None
    try:
        return decode_entry(data)
    except EntryError as exc:
        raise BundleError(f"bundle field {name!r}: {exc}") from None


def _hashes(bundle: dict[str, Any]) -> list[bytes]:
    raw = _field(bundle, "hashes", list)
    try:
        return [bytes.fromhex(item) for item in raw]
    except (TypeError, ValueError):
        raise BundleError("bundle hashes must be hex strings") from None


def _tree_head(bundle: dict[str, Any], name: str, size: int, node: bytes | None) -> SignedEntry:
    head = _entry_field(bundle, name)
    if head.kind != TREE_HEAD.kind:
        raise BundleError(f"{name} is a {head.kind!r} entry, not a tree head")
    try:  # a signed entry of kind tree_head may still lack a size or a 32-byte root
        TREE_HEAD.check(head.body)
    except SchemaError as exc:
        raise BundleError(f"{name} is not a valid tree head: {exc}") from None
    if node is not None and head.author != node:
        raise BundleError(
            f"{name} is signed by {head.author.hex()}, not by the expected node {node.hex()}"
        )
    if head.body.get("size") != size:
        raise BundleError(f"{name} is for size {head.body.get('size')}, the bundle says {size}")
    return head


def verify_bundle(bundle: Any, *, node: bytes | None = None) -> VerifiedBundle:
    """Check a bundle; return what it proves. `node`: the log owner's key, if known."""
    if not isinstance(bundle, dict):
        raise BundleError("a proof bundle is a JSON object")
    kind = bundle.get("type")
    if kind == "inclusion":
        index, size = _field(bundle, "index", int), _field(bundle, "size", int)
        entry = _entry_field(bundle, "entry")
        head = _tree_head(bundle, "tree_head", size, node)
        root = head.body["root"]
        verify_inclusion(leaf_hash(entry.encoded), index, size, _hashes(bundle), root)
        return VerifiedBundle("inclusion", head.author, size, root, entry=entry, index=index)
    if kind == "consistency":
        old_size, new_size = _field(bundle, "old_size", int), _field(bundle, "new_size", int)
        new_head = _tree_head(bundle, "new_tree_head", new_size, node)
        old_head = _tree_head(bundle, "old_tree_head", old_size, new_head.author)
        old_root, new_root = old_head.body["root"], new_head.body["root"]
        verify_consistency(old_size, new_size, old_root, new_root, _hashes(bundle))
        return VerifiedBundle(
            "consistency", new_head.author, new_size, new_root,
            old_size=old_size, old_root=old_root,
        )
    raise BundleError(f"unknown bundle type {kind!r} (inclusion or consistency)")
