"""A `read(n)` file interface over an iterator of byte pieces.

tarfile and other stdlib readers want file objects; chorus produces content as
iterators of pieces (the UnixFS reader, HTTP responses). This bridges the two
without holding more than one piece plus what the reader asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

__all__ = ["PieceReader"]


class PieceReader:
    def __init__(
        self, pieces: Iterable[bytes], on_piece: Callable[[int], None] | None = None
    ) -> None:
        self._pieces = iter(pieces)
        self._buffer = bytearray()
        self._on_piece = on_piece

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buffer) < n:
            piece = next(self._pieces, None)
            if piece is None:
                break
            if self._on_piece is not None:
                self._on_piece(len(piece))
            self._buffer += piece
        if n < 0 or n >= len(self._buffer):
            out = bytes(self._buffer)
            self._buffer.clear()
        else:
            out = bytes(self._buffer[:n])
            del self._buffer[:n]
        return out
