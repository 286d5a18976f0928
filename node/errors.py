"""Typed errors of the node's storage layer: the blockstore, pins and the repo.

They extend the protocol hierarchy (`protocol.errors.ChorusError`), so the CLI and
the HTTP layer can catch "anything chorus refused" in one place, while each class
carries the facts a caller needs to react (the missing CID, the quota figures)
as attributes instead of only in the message.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from multiformats import CID

from protocol.cid import cid_to_text
from protocol.errors import ChorusError

__all__ = [
    "BlockNotFound",
    "PinError",
    "QuotaExceeded",
    "RepoError",
    "StoreCorrupt",
]


class BlockNotFound(ChorusError, KeyError):
    """A block the caller needs is not in the store.

    Also a `KeyError`, since that is what a lookup by key raises in Python; `str()`
    is overridden because KeyError would otherwise print the message in quotes.
    """

    def __init__(self, cid: CID, context: str = "") -> None:
        self.cid = cid
        self.context = context
        super().__init__(cid)

    def __str__(self) -> str:
        # Built when shown, not when raised: misses are common (serving wants) and
        # rendering a CID is not free.
        message = f"block {cid_to_text(self.cid)} not found in the blockstore"
        return f"{message} ({self.context})" if self.context else message


class QuotaExceeded(ChorusError):
    """A write that would take the store past its storage quota; nothing was stored."""

    def __init__(self, quota: int, used: int, requested: int) -> None:
        self.quota = quota
        self.used = used
        self.requested = requested
        super().__init__(
            f"storage quota exceeded: quota {quota} bytes, {used} used, "
            f"{requested} more requested ({used + requested - quota} over)"
        )


class StoreCorrupt(ChorusError):
    """Bytes on disk that no longer match their CID, or a database SQLite calls malformed.

    `cids` names the blocks found bad (may be empty when the damage is to the file's
    structure rather than to a block), `path` the file.
    """

    def __init__(self, message: str, *, cids: Iterable[CID] = (), path: Path | None = None) -> None:
        self.cids = tuple(cids)
        self.path = path
        super().__init__(message)


class PinError(ChorusError):
    """A pin operation that makes no sense for the pin set as it is (e.g. unpinning a
    CID that is not pinned, or removing a block that a pin protects)."""


class RepoError(ChorusError):
    """The data directory is missing, not initialised, locked by another process, or
    its config cannot be read."""
