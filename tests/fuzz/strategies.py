"""Hypothesis strategies shared by the fuzz tests: mutants of valid encodings.

A mutant is a valid seed with 1-4 edits of the kinds that find decoder bugs (bit
flips, bytes set to boundary values, truncation, appended or inserted bytes, a run
deleted or duplicated): close enough to valid that it gets past the first checks,
which random bytes rarely do. Hypothesis shrinks a failing mutant to the fewest edits.
"""

from __future__ import annotations

from hypothesis import strategies as st

__all__ = ["mutants"]

_EDITS = st.sampled_from(["flip", "set", "truncate", "append", "insert", "delete", "duplicate"])


@st.composite
def _mutant(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        edit = draw(_EDITS)
        position = draw(st.integers(0, len(data)))
        if edit == "flip" and data:
            data[min(position, len(data) - 1)] ^= 1 << draw(st.integers(0, 7))
        elif edit == "set" and data:
            value = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xC0, 0xFF]) | st.integers(0, 255))
            data[min(position, len(data) - 1)] = value
        elif edit == "truncate":
            del data[position:]
        elif edit == "append":
            data += draw(st.binary(min_size=1, max_size=16))
        elif edit == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif edit == "delete":
            del data[position : position + draw(st.integers(1, 8))]
        elif edit == "duplicate":
            data[position:position] = data[position : position + draw(st.integers(1, 16))]
    return bytes(data)


def mutants(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """Mutants of `seeds` (a non-empty list of valid encodings)."""
    return _mutant(seeds)
