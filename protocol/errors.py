"""The typed errors every decoder and validator in chorus raises.

One hierarchy, so callers can catch "anything chorus refused" (`ChorusError`) or
one precise cause; every message names the input that was refused and why.
"""

from __future__ import annotations


class ChorusError(Exception):
    """Base of every error chorus raises on purpose."""


class DecodeError(ChorusError, ValueError):
    """Bytes that do not follow the format they claim to be in."""


class InvalidCID(DecodeError):
    """Text or bytes that are not a CID chorus can use."""


class BlockError(ChorusError):
    """A block that cannot be accepted."""


class BlockMismatch(BlockError):
    """A block's bytes do not hash to the CID it was offered under."""


class BlockTooLarge(BlockError):
    """A block above the 2 MiB limit every IPFS implementation agrees on."""


class UnsupportedHash(BlockError):
    """A CID whose multihash function chorus does not verify."""


class ImportError_(ChorusError):
    """Content that cannot be imported as UnixFS (e.g. a directory too large to be unsharded)."""


class NotAFile(ChorusError):
    """A DAG that is not a UnixFS file where a file was needed."""
