"""Peer IDs as operators type them (`12D3KooW...`, `Qm...`): one exact rule for the API.

Why it exists: the chorus API describes every input with a JSON Schema, and the
schemathesis contract test holds the node to it both ways — whatever matches the
schema must be accepted, whatever does not must be refused with 400. A peer ID is a
base58btc multihash, and base58 is not bit-aligned: `12D3KooW` followed by any 44
base58 digits is a valid Ed25519 peer ID only about a third of the time. So the
pattern is built here from the numeric *range* each kind of peer ID covers, and
`parse_peer_id` accepts exactly the strings it matches:

* Ed25519 keys (identity multihash of the 36-byte protobuf key):
  `00 24 08 01 12 20 <32 bytes>` -> `12D3KooW` + 44 digits, 52 characters;
* secp256k1 keys (identity multihash, compressed point starting 02 or 03):
  `00 25 08 02 12 21 <02|03> <32 bytes>` -> `16Uiu2HA` + ..., 53 characters;
* every other key type (RSA, ECDSA): the sha2-256 multihash of the key,
  `12 20 <32 bytes>` -> `Qm` + 44 digits, 46 characters.

Any 32-byte value is a syntactically valid key or digest here: a peer ID names a
key, it does not prove the key is a curve point. Pure: no I/O, no libp2p state; the
CLI imports this (through node/chorus_api.py) and py-libp2p only when a peer ID is
parsed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from libp2p.peer.id import ID

__all__ = [
    "MAX_PEER_ID_LENGTH",
    "PEER_ID_PATTERN",
    "PEER_ID_SCHEMA",
    "InvalidPeerId",
    "parse_peer_id",
]

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_VALUE = {char: index for index, char in enumerate(ALPHABET)}

#: (prefix bytes, length of the free part, first byte of the free part: low, high)
_KINDS = (
    (bytes.fromhex("002408011220"), 32, 0x00, 0xFF),  # Ed25519, identity multihash
    (bytes.fromhex("002508021221"), 33, 0x02, 0x03),  # secp256k1, identity multihash
    (bytes.fromhex("1220"), 32, 0x00, 0xFF),  # sha2-256 of any other key
)
MAX_PEER_ID_LENGTH = 53


class InvalidPeerId(ValueError):
    """Text that is not a libp2p peer ID in base58btc."""


def b58encode(data: bytes) -> str:
    """Bitcoin base58 (the peer ID text form): a '1' per leading zero byte, then digits."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, rest = divmod(number, 58)
        digits.append(ALPHABET[rest])
    return "1" * zeros + "".join(reversed(digits))


def _class(low: int, high: int) -> str:
    """A regex character class for the digits low..high (inclusive), as ASCII runs."""
    chars = ALPHABET[low : high + 1]
    if len(chars) == 1:
        return chars
    runs: list[str] = []
    start = previous = chars[0]
    for char in chars[1:] + "\0":
        if ord(char) == ord(previous) + 1:
            previous = char
            continue
        runs.append(start if start == previous else f"{start}-{previous}")
        start = previous = char
    return "[" + "".join(runs) + "]"


def _any(count: int) -> str:
    if count == 0:
        return ""
    every = _class(0, len(ALPHABET) - 1)
    return every if count == 1 else f"{every}{{{count}}}"


def _at_least(digits: str) -> str:
    """Strings of len(digits) whose value is >= digits."""
    if not digits or all(d == ALPHABET[0] for d in digits):
        return _any(len(digits))
    first, rest = _VALUE[digits[0]], digits[1:]
    parts = [digits[0] + _at_least(rest)]
    if first < len(ALPHABET) - 1:
        parts.append(_class(first + 1, len(ALPHABET) - 1) + _any(len(rest)))
    return "(?:" + "|".join(parts) + ")"


def _at_most(digits: str) -> str:
    """Strings of len(digits) whose value is <= digits."""
    if not digits or all(d == ALPHABET[-1] for d in digits):
        return _any(len(digits))
    first, rest = _VALUE[digits[0]], digits[1:]
    parts = [digits[0] + _at_most(rest)]
    if first > 0:
        parts.append(_class(0, first - 1) + _any(len(rest)))
    return "(?:" + "|".join(parts) + ")"


def _between(low: str, high: str) -> str:
    """Strings of the same length as `low` and `high` whose value is in low..high."""
    same = 0
    while same < len(low) and low[same] == high[same]:
        same += 1
    if same == len(low):
        return low
    a, b = _VALUE[low[same]], _VALUE[high[same]]
    tail = len(low) - same - 1
    parts = [low[same] + _at_least(low[same + 1 :])]
    if b - a > 1:
        parts.append(_class(a + 1, b - 1) + _any(tail))
    parts.append(high[same] + _at_most(high[same + 1 :]))
    return low[:same] + "(?:" + "|".join(parts) + ")"


def _kind_pattern(prefix: bytes, free: int, first_low: int, first_high: int) -> str:
    low = b58encode(prefix + bytes([first_low]) + b"\0" * (free - 1))
    high = b58encode(prefix + bytes([first_high]) + b"\xff" * (free - 1))
    if len(low) != len(high):  # never for the kinds above; the range is one length
        raise AssertionError(f"peer ID range {low}..{high} spans two lengths")
    return _between(low, high)


#: Exactly the base58 texts of Ed25519, secp256k1 and sha2-256 peer IDs.
PEER_ID_PATTERN = "^(?:" + "|".join(_kind_pattern(*kind) for kind in _KINDS) + ")$"
_PEER_ID = re.compile(PEER_ID_PATTERN)

#: The JSON Schema of a peer ID in the chorus API (components/schemas/PeerId).
PEER_ID_SCHEMA = {
    "type": "string",
    "pattern": PEER_ID_PATTERN,
    "description": "a libp2p peer ID, base58btc (12D3KooW..., 16Uiu2HA... or Qm...)",
}


def parse_peer_id(text: object) -> ID:
    """The peer ID `text` names; InvalidPeerId (naming the input) for anything else."""
    if not isinstance(text, str):
        raise InvalidPeerId(f"a peer ID is text, not {type(text).__name__}")
    if _PEER_ID.fullmatch(text) is None:
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise InvalidPeerId(
            f"{shown!r} is not a peer ID (base58: 12D3KooW... for Ed25519 keys, "
            "16Uiu2HA... for secp256k1, Qm... for others)"
        )
    from libp2p.peer.id import ID  # ~1 s to import: not for every CLI start (chorus_api)

    return ID.from_base58(text)
