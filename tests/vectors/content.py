"""Deterministic file content shared by chorus's UnixFS test vectors.

The reference CIDs in ``unixfs.json`` are made by a separate implementation
(``tests/helia/import.mjs``, Node.js) and checked against chorus's Python
importer. Both sides must import exactly the same bytes, and a 45 MB file must
not be shipped or piped around, so the bytes are *defined* here and generated
on each side: ``import.mjs`` computes the very same thing with ``node:crypto``.
Change one and you must change the other (and regenerate the vectors).

Definition: the concatenation of ``sha256(f"{seed}:{k}".encode("utf-8")).digest()``
for ``k = 0, 1, 2, ...``, truncated to ``size`` bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

_DIGEST = 32


def deterministic_chunks(size: int, seed: str, piece: int = 1 << 20) -> Iterator[bytes]:
    """Yield ``deterministic_bytes(size, seed)`` in pieces of ``piece`` bytes (the last may be
    shorter; nothing is yielded for size 0). ``piece`` must be a positive multiple of 32."""
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    if piece <= 0 or piece % _DIGEST:
        raise ValueError(f"piece must be a positive multiple of {_DIGEST}, got {piece}")
    k = 0
    left = size
    while left > 0:
        n = min(piece, left)
        digests = []
        for _ in range(-(-n // _DIGEST)):
            digests.append(hashlib.sha256(f"{seed}:{k}".encode()).digest())
            k += 1
        yield b"".join(digests)[:n]
        left -= n


def deterministic_bytes(size: int, seed: str) -> bytes:
    """The first ``size`` bytes of sha256(f"{seed}:0") || sha256(f"{seed}:1") || ..."""
    return b"".join(deterministic_chunks(size, seed))
