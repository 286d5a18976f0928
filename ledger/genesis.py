"""The co-op's genesis: its name, board and treasury keys and economic parameters, signed.

Why a signed document: every figure chorus computes (balances, splits, hosting pay,
vote results) is a pure function of the genesis and the set of valid entries
(docs/economics.md). Two nodes that disagreed about a single parameter would keep
different books while believing they are in the same co-op. So the genesis is one
canonical byte string whose CID *names* the co-op (and its gossip topic): a different
parameter is a different co-op, never a quiet disagreement. Every founding board key
signs it, so no one key can mint a co-op in the board's name.

Canonical form (docs/economics.md "Genesis"), the same rules as entries: a msgpack map
of exactly the keys ``board format name params sigs time treasury`` in UTF-8 byte
order, smallest integer and length encodings, bin for bytes, str for text, no floats,
no ext types, nothing after the map. `decode_genesis` re-encodes what it decoded and
demands byte equality, so one genesis has exactly one byte form and one id.

Signatures: Ed25519 by every board key over ``b"chorus/genesis/v1\\x00"`` + the
canonical map without ``sigs``. The domain prefix keeps a genesis signature from ever
being valid as an entry (``chorus/entry/v1``) or any other chorus signature.

Rules of this file, as in ledger/entry.py: pure and synchronous, no I/O, no clock
(``time`` is the caller's). Nothing a peer sends can make `decode_genesis` raise
anything but a `GenesisError` subclass.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
from nacl.exceptions import CryptoError
from nacl.signing import SigningKey, VerifyKey

from protocol.cid import CID, RAW, cid_to_text, make_cid
from protocol.errors import ChorusError, DecodeError

from .entry import entry_id_bytes

__all__ = [
    "DOMAIN",
    "GENESIS_FORMAT",
    "MAX_GENESIS_SIZE",
    "PARAM_NAMES",
    "BadGenesisSignature",
    "Genesis",
    "GenesisError",
    "GenesisTooLarge",
    "InvalidGenesis",
    "MalformedGenesis",
    "NonCanonicalGenesis",
    "Params",
    "create_genesis",
    "decode_genesis",
]

#: The ``format`` field of every genesis this version writes and reads.
GENESIS_FORMAT = "chorus/genesis/v1"
#: Prefix of every genesis signature: "what this signature is for", versioned.
DOMAIN = GENESIS_FORMAT.encode("ascii") + b"\x00"
#: Largest encoding accepted, checked before decoding (a full genesis with 64 board
#: and 64 treasury keys is under 10 KiB).
MAX_GENESIS_SIZE = 64 * 1024

KEY_SIZE = 32
SIGNATURE_SIZE = 64
MAX_KEYS = 64
MAX_NAME_LENGTH = 128
_MAX_U63 = (1 << 63) - 1
_KEYS = ("board", "format", "name", "params", "sigs", "time", "treasury")
_UNSIGNED_KEYS = tuple(key for key in _KEYS if key != "sigs")
# Underscores allowed between digits, as in 604_800_000; ASCII only (int() would
# also take Arabic-Indic digits and surrounding spaces).
_INT_TEXT = re.compile(r"-?[0-9]+(?:_[0-9]+)*")


# --- errors ---------------------------------------------------------------------------


class GenesisError(ChorusError):
    """Base of everything refused about a genesis document."""


class InvalidGenesis(GenesisError, ValueError):
    """Values given to `create_genesis` or `Params` that no genesis may hold."""


class MalformedGenesis(GenesisError, DecodeError):
    """Bytes that are not a genesis: bad msgpack, wrong keys, types or values."""


class NonCanonicalGenesis(MalformedGenesis):
    """A decodable genesis in a byte form other than its one canonical form (or with
    bytes after it): refused, or one co-op would have two names."""


class GenesisTooLarge(MalformedGenesis):
    """More than MAX_GENESIS_SIZE bytes; refused before decoding."""


class BadGenesisSignature(GenesisError):
    """A board key without a valid signature, or a signature by a key not on the board."""


# --- parameters -----------------------------------------------------------------------


@dataclass(frozen=True)
class Params:
    """The co-op's economic parameters (defaults = DESIGN.md's figures).

    Integers only: money is micro-credits (µc), shares are basis points (1/10000),
    durations milliseconds. Ranges are in `_RANGES` and docs/economics.md; a `Params`
    that breaks one cannot be built (InvalidGenesis naming the parameter).
    """

    play_price: int = 2000
    plays_to_own: int = 9
    count_after_ms: int = 45000
    artist_share_bps: int = 7000
    hosting_share_bps: int = 5000
    epoch_ms: int = 604_800_000
    ack_bytes_per_uc: int = 2500
    quorum_bps: int = 5000

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise InvalidGenesis naming the first parameter of a wrong type or range."""
        _check_params(self.as_dict(), "params", InvalidGenesis)

    def as_dict(self) -> dict[str, int]:
        """The parameters as the genesis ``params`` map holds them."""
        return {name: getattr(self, name) for name in PARAM_NAMES}

    @classmethod
    def from_overrides(
        cls, overrides: Mapping[str, str | int], base: Params | None = None
    ) -> Params:
        """`base` (the defaults) with ``--param name=value`` overrides applied.

        Values are integers or their decimal text (``"604_800_000"`` allowed); unknown
        names, booleans, floats and non-integer text are refused with InvalidGenesis
        naming the parameter, as is any value out of its range.
        """
        values = (base if base is not None else cls()).as_dict()
        for name, raw in overrides.items():
            if name not in values:
                raise InvalidGenesis(
                    f"unknown parameter {name!r}; known: {', '.join(PARAM_NAMES)}"
                )
            if type(raw) is int:
                values[name] = raw
            elif type(raw) is str and _INT_TEXT.fullmatch(raw.strip()):
                values[name] = int(raw.strip())
            else:
                raise InvalidGenesis(
                    f"parameter {name} must be an integer, got {raw!r}"
                )
        return cls(**values)


PARAM_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Params))

#: Inclusive range of each parameter. Upper bounds not set by the spec are 2**63-1,
#: like every other integer in the ledger.
_RANGES: Mapping[str, tuple[int, int]] = {
    "play_price": (1, _MAX_U63),
    "plays_to_own": (1, 32),
    "count_after_ms": (1, _MAX_U63),
    "artist_share_bps": (0, 10000),
    "hosting_share_bps": (0, 10000),
    "epoch_ms": (1, _MAX_U63),
    "ack_bytes_per_uc": (1, _MAX_U63),
    "quorum_bps": (0, 10000),
}
assert set(_RANGES) == set(PARAM_NAMES)


def _key_difference(value: dict[Any, Any], expected: Sequence[str]) -> str:
    """"missing a, b; unknown 'c'" for a map whose keys are not `expected`."""
    missing = ", ".join(sorted(set(expected) - set(value))) or "none"
    unknown = ", ".join(sorted(map(repr, set(value) - set(expected)))) or "none"
    return f"missing {missing}; unknown {unknown}"


def _check_params(value: object, path: str, error: type[GenesisError]) -> None:
    if type(value) is not dict:
        raise error(f"{path} must be a map, got {type(value).__name__}")
    if set(value) != set(PARAM_NAMES):
        raise error(f"{path} keys wrong: {_key_difference(value, PARAM_NAMES)}")
    for name in PARAM_NAMES:
        low, high = _RANGES[name]
        item = value[name]
        if type(item) is not int:
            raise error(f"{path}.{name} must be an integer, got {type(item).__name__}")
        if not low <= item <= high:
            raise error(f"{path}.{name} = {item} is outside {low}..{high}")


# --- the document ---------------------------------------------------------------------


@dataclass(frozen=True)
class Genesis:
    """A verified genesis and its canonical signed bytes.

    Only `create_genesis` and `decode_genesis` make valid ones; ``encoded`` is the
    truth and the other fields its decoded view. ``board`` and ``treasury`` are sorted
    public keys; ``sigs`` holds one ``(board key, signature)`` per board key, sorted.
    """

    name: str
    board: tuple[bytes, ...]
    treasury: tuple[bytes, ...]
    params: Params
    time: int
    sigs: tuple[tuple[bytes, bytes], ...]
    encoded: bytes = field(repr=False)

    @property
    def id_bytes(self) -> bytes:
        """Binary CIDv1 (raw, sha2-256) of the signed encoding, 36 bytes."""
        return entry_id_bytes(self.encoded)

    @property
    def id(self) -> CID:
        """The co-op's name: CIDv1 (raw, sha2-256) of the signed encoding."""
        return make_cid(self.encoded, version=1, codec=RAW)

    @property
    def id_text(self) -> str:
        """The id as Kubo prints a CIDv1 (base32, ``b...``)."""
        return cid_to_text(self.id)

    @property
    def signing_input(self) -> bytes:
        """The exact bytes every board signature covers: DOMAIN + unsigned map."""
        return _signing_input(
            list(self.board), self.name, self.params.as_dict(), self.time, list(self.treasury)
        )


# --- canonical encoding ---------------------------------------------------------------


def _pack(value: object) -> bytes:
    # As ledger/entry.py: bin for bytes, str for text, smallest encodings; strict
    # types so nothing is coerced (and tuples must be lists by now).
    return msgpack.packb(value, use_bin_type=True, strict_types=True)


def _unsigned_map(
    board: list[bytes], name: str, params: dict[str, int], time: int, treasury: list[bytes]
) -> dict[str, Any]:
    fields = {"board": board, "format": GENESIS_FORMAT, "name": name,
              "params": {key: params[key] for key in sorted(params)},
              "time": time, "treasury": treasury}
    return {key: fields[key] for key in _UNSIGNED_KEYS}


def _signing_input(
    board: list[bytes], name: str, params: dict[str, int], time: int, treasury: list[bytes]
) -> bytes:
    return DOMAIN + _pack(_unsigned_map(board, name, params, time, treasury))


def _signed_encoding(
    board: list[bytes], name: str, params: dict[str, int], time: int, treasury: list[bytes],
    sigs: list[list[bytes]],
) -> bytes:
    fields = _unsigned_map(board, name, params, time, treasury)
    fields["sigs"] = sigs
    return _pack({key: fields[key] for key in _KEYS})


# --- validation -----------------------------------------------------------------------


def _check_keys(value: object, path: str, error: type[GenesisError]) -> None:
    """1..MAX_KEYS 32-byte keys, unique, in ascending byte order (one byte form)."""
    if type(value) is not list:
        raise error(f"{path} must be an array of keys, got {type(value).__name__}")
    if not 1 <= len(value) <= MAX_KEYS:
        raise error(f"{path} has {len(value)} keys; allowed 1..{MAX_KEYS}")
    for position, key in enumerate(value):
        if type(key) is not bytes or len(key) != KEY_SIZE:
            raise error(f"{path}[{position}] must be a {KEY_SIZE}-byte public key (bin)")
    if len(set(value)) != len(value):
        raise error(f"{path} has duplicate keys")
    if value != sorted(value):
        raise error(f"{path} is not sorted by key bytes")


def _check_fields(
    board: object, fmt: object, name: object, params: object, time: object,
    treasury: object, error: type[GenesisError],
) -> None:
    """Every rule about the unsigned fields, raising `error` naming the field."""
    if type(fmt) is not str or fmt != GENESIS_FORMAT:
        raise error(f"format must be {GENESIS_FORMAT!r}, got {fmt!r}")
    if type(name) is not str or not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise error(f"name must be a string of 1..{MAX_NAME_LENGTH} characters, got {name!r}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise error("name is not valid UTF-8 (lone surrogate)") from None
    _check_keys(board, "board", error)
    _check_keys(treasury, "treasury", error)
    _check_params(params, "params", error)
    if type(time) is not int or not 0 <= time <= _MAX_U63:
        raise error(f"time must be integer milliseconds in 0..2**63-1, got {time!r}")


def _check_sigs_form(value: object) -> None:
    """``sigs``: an array of ``[bin32 key, bin64 signature]`` sorted by unique key.

    Which keys signed (and whether the signatures verify) is checked after the byte
    form, in `_verify_sigs`; here only the shape.
    """
    if type(value) is not list:
        raise MalformedGenesis(f"sigs must be an array, got {type(value).__name__}")
    if len(value) > MAX_KEYS:
        raise MalformedGenesis(f"sigs has {len(value)} items; at most {MAX_KEYS}")
    for position, item in enumerate(value):
        if (
            type(item) is not list
            or len(item) != 2
            or type(item[0]) is not bytes
            or len(item[0]) != KEY_SIZE
            or type(item[1]) is not bytes
            or len(item[1]) != SIGNATURE_SIZE
        ):
            raise MalformedGenesis(
                f"sigs[{position}] must be [{KEY_SIZE}-byte key, {SIGNATURE_SIZE}-byte "
                "signature]"
            )
    keys = [item[0] for item in value]
    if len(set(keys)) != len(keys):
        raise MalformedGenesis("sigs has two signatures by one key")
    if keys != sorted(keys):
        raise MalformedGenesis("sigs is not sorted by key bytes")


def _verify_sigs(board: tuple[bytes, ...], sigs: tuple[tuple[bytes, bytes], ...],
                 message: bytes) -> None:
    signers = {key for key, _ in sigs}
    for key in board:
        if key not in signers:
            raise BadGenesisSignature(f"board key {key.hex()} did not sign the genesis")
    for key, sig in sigs:
        if key not in board:
            raise BadGenesisSignature(f"sigs has a signature by {key.hex()}, not a board key")
        try:
            VerifyKey(key).verify(message, sig)
        except CryptoError:
            raise BadGenesisSignature(
                f"signature of board key {key.hex()} does not verify"
            ) from None


# --- the two ways in ------------------------------------------------------------------


def create_genesis(
    name: str,
    board_keys: Sequence[SigningKey],
    treasury: Sequence[bytes],
    params: Params,
    time_ms: int,
) -> Genesis:
    """Write and sign a co-op's genesis with every founding board key.

    ``board`` is the sorted public keys of `board_keys`; `treasury` keys (bytes or
    VerifyKeys) are sorted too. Raises InvalidGenesis naming the field for anything no
    genesis may hold (duplicate keys included).
    """
    if isinstance(board_keys, SigningKey | str | bytes):
        raise InvalidGenesis("board_keys must be a sequence of SigningKeys")
    if not isinstance(params, Params):
        raise InvalidGenesis(f"params must be a Params, got {type(params).__name__}")
    for position, key in enumerate(board_keys):
        if not isinstance(key, SigningKey):
            raise InvalidGenesis(f"board_keys[{position}] must be a nacl SigningKey")
    signers = sorted(board_keys, key=lambda k: bytes(k.verify_key))
    board = [bytes(key.verify_key) for key in signers]
    if isinstance(treasury, str | bytes | VerifyKey):
        raise InvalidGenesis("treasury must be a sequence of public keys")
    keys: list[bytes] = []
    for position, key in enumerate(treasury):
        if isinstance(key, VerifyKey | bytes | bytearray | memoryview):
            keys.append(bytes(key))
        else:
            raise InvalidGenesis(f"treasury[{position}] must be public key bytes")
    keys.sort()
    params.validate()
    values = params.as_dict()
    _check_fields(board, GENESIS_FORMAT, name, values, time_ms, keys, InvalidGenesis)
    message = _signing_input(board, name, values, time_ms, keys)
    sigs = [[bytes(key.verify_key), key.sign(message).signature] for key in signers]
    encoded = _signed_encoding(board, name, values, time_ms, keys, sigs)
    if len(encoded) > MAX_GENESIS_SIZE:  # pragma: no cover - bounded far below by the fields
        raise InvalidGenesis(f"genesis is {len(encoded)} bytes; the limit is {MAX_GENESIS_SIZE}")
    # Hand back the decoded view of our own bytes: a created and a received genesis
    # are indistinguishable (and the signatures are checked once more on the way).
    return decode_genesis(encoded)


def decode_genesis(data: bytes) -> Genesis:
    """Parse and verify a genesis from its signed bytes.

    Order of checks: size (GenesisTooLarge), strict msgpack and every field
    (MalformedGenesis naming it), byte-for-byte canonical form (NonCanonicalGenesis),
    then signatures: every board key signed, nobody else did, and each verifies
    (BadGenesisSignature). Nothing else escapes.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedGenesis(f"genesis must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_GENESIS_SIZE:
        raise GenesisTooLarge(f"genesis is {len(data)} bytes; the limit is {MAX_GENESIS_SIZE}")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,  # str must be valid UTF-8 and stays distinct from bin
            strict_map_key=True,  # map keys only str/bin (bin is refused below)
            use_list=True,
            timestamp=0,  # ext -1 decodes to a Timestamp object, refused as a type
        )
    except msgpack.ExtraData:
        raise NonCanonicalGenesis("trailing bytes after the genesis map") from None
    except (ValueError, TypeError, OverflowError, RecursionError, msgpack.UnpackException) as exc:
        raise MalformedGenesis(f"not msgpack: {type(exc).__name__}: {exc}") from None
    if type(value) is not dict:
        raise MalformedGenesis(f"genesis must be a msgpack map, got {type(value).__name__}")
    if set(value) != set(_KEYS):
        raise MalformedGenesis(f"genesis keys wrong: {_key_difference(value, _KEYS)}")
    board, name, params = value["board"], value["name"], value["params"]
    time, treasury, sigs = value["time"], value["treasury"], value["sigs"]
    _check_fields(board, value["format"], name, params, time, treasury, MalformedGenesis)
    _check_sigs_form(sigs)
    if _signed_encoding(board, name, params, time, treasury, sigs) != data:
        # Same logical genesis, other bytes: key order, wide ints, duplicate keys...
        raise NonCanonicalGenesis(
            "genesis is not in canonical form (key order, integer or length widths, "
            "or duplicate keys differ from the one canonical encoding)"
        )
    genesis = Genesis(
        name=name,
        board=tuple(board),
        treasury=tuple(treasury),
        params=Params(**params),
        time=time,
        sigs=tuple((key, sig) for key, sig in sigs),
        encoded=data,
    )
    _verify_sigs(genesis.board, genesis.sigs, _signing_input(board, name, params, time, treasury))
    return genesis
