"""What every h11-style decoder in chorus shares: the input buffer and its sentinels.

The CAR decoder and the Bitswap frame decoder are both fed bytes with
`receive_data` (`b""` = the input ended) and asked for the next event; this holds
the buffer they consume from, compacting it as they go so memory stays at about
one event plus the caller's last chunk.
"""

from __future__ import annotations

__all__ = ["IncrementalInput", "Sentinel"]


class Sentinel:
    """A named marker value (`NEED_DATA`, `END_OF_STREAM`, ...), compared with `is`."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


class IncrementalInput:
    """Buffered input for an incremental decoder; subclasses consume from `_start`."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._buffer = bytearray()
        self._start = 0  # first unconsumed byte in _buffer
        self._consumed = 0  # stream offset of _buffer[_start]
        self._ended = False

    @property
    def offset(self) -> int:
        """Bytes of the stream consumed as whole events so far."""
        return self._consumed

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as an event."""
        return len(self._buffer) - self._start

    def receive_data(self, data: bytes) -> None:
        """Feed the next bytes of the stream; `b""` means the input has ended."""
        if self._ended:
            raise RuntimeError(f"{self._what}: received data after the end of the input")
        if not data:
            self._ended = True
            return
        if self._start and self._start * 2 >= len(self._buffer):
            del self._buffer[: self._start]
            self._start = 0
        self._buffer += data
