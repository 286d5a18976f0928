"""ledger/genesis.py: the signed genesis, its one byte form, every refusal, Params.

Refusals are built two ways: `forge` re-signs a changed *logical* document with the
board keys, so a value rule is the only thing that can refuse it; `raw_map` builds
byte forms msgpack-python's packer never writes (wide ints, key order, duplicates),
keeping the valid signatures, so the byte form is the only thing wrong.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from ledger.entry import DOMAIN as ENTRY_DOMAIN
from ledger.genesis import (
    DOMAIN,
    GENESIS_FORMAT,
    MAX_GENESIS_SIZE,
    PARAM_NAMES,
    BadGenesisSignature,
    Genesis,
    GenesisError,
    GenesisTooLarge,
    InvalidGenesis,
    MalformedGenesis,
    NonCanonicalGenesis,
    Params,
    create_genesis,
    decode_genesis,
)
from protocol.cid import RAW, cid_to_text, make_cid, verify_block
from protocol.errors import ChorusError, DecodeError

BOARD = [SigningKey(bytes([i]) * 32) for i in range(3)]
OUTSIDER = SigningKey(b"\x09" * 32)
TREASURY = [b"\x05" * 32, b"\x02" * 32]
T0 = 1_700_000_000_000


def make(**overrides: Any) -> Genesis:
    args: dict[str, Any] = {"name": "Test co-op", "board_keys": BOARD, "treasury": TREASURY,
                            "params": Params(), "time_ms": T0}
    args.update(overrides)
    return create_genesis(**args)


GENESIS = make()


def pk(value: object) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def canonical(value: Any) -> Any:
    if type(value) is dict:
        return {key: canonical(value[key]) for key in sorted(value)}
    if type(value) is list:
        return [canonical(item) for item in value]
    return value


def logical(genesis: Genesis = GENESIS) -> dict[str, Any]:
    """The genesis as a plain dict (without sigs), to change and `forge` again."""
    return {
        "board": list(genesis.board), "format": GENESIS_FORMAT, "name": genesis.name,
        "params": genesis.params.as_dict(), "time": genesis.time,
        "treasury": list(genesis.treasury),
    }


_DROP = object()


def forge(keys: list[SigningKey] = BOARD, sigs: Any = None, **changes: Any) -> bytes:
    """A canonical encoding of the default genesis with `changes` (``_DROP`` deletes a
    key), signed by `keys` over the changed document unless `sigs` is given."""
    doc = logical()
    for name, value in changes.items():
        if value is _DROP:
            del doc[name]
        else:
            doc[name] = value
    unsigned = canonical(doc)
    if sigs is None:
        message = DOMAIN + pk(unsigned)
        sigs = sorted([bytes(k.verify_key), k.sign(message).signature] for k in keys)
    if sigs is not _DROP:
        doc["sigs"] = sigs
    return pk(canonical(doc))


def raw_map(pairs: list[tuple[str, bytes]], header: bytes | None = None) -> bytes:
    """A msgpack map from (key, already-encoded value) pairs, in the order given."""
    head = header if header is not None else bytes([0x80 | len(pairs)])
    return head + b"".join(pk(key) + value for key, value in pairs)


def fields(genesis: Genesis = GENESIS) -> list[tuple[str, bytes]]:
    """The genesis' canonical (key, encoded value) pairs, in canonical order."""
    doc = canonical(logical(genesis))
    doc["sigs"] = [list(item) for item in genesis.sigs]
    return [(key, pk(doc[key])) for key in sorted(doc)]


def replaced(name: str, encoded: bytes) -> list[tuple[str, bytes]]:
    return [(k, encoded if k == name else v) for k, v in fields()]


# --- round trip, id, golden -----------------------------------------------------------


def test_round_trip() -> None:
    genesis = GENESIS
    assert genesis.name == "Test co-op"
    assert genesis.board == tuple(sorted(bytes(k.verify_key) for k in BOARD))
    assert genesis.treasury == tuple(sorted(TREASURY))
    assert genesis.params == Params() and genesis.time == T0
    assert [key for key, _ in genesis.sigs] == list(genesis.board)
    assert decode_genesis(genesis.encoded) == genesis
    assert decode_genesis(bytearray(genesis.encoded)) == genesis
    assert decode_genesis(memoryview(genesis.encoded)) == genesis


def test_decode_then_encode_is_the_identity() -> None:
    assert forge() == GENESIS.encoded
    assert raw_map(fields()) == GENESIS.encoded


def test_creation_is_independent_of_key_order() -> None:
    again = make(board_keys=list(reversed(BOARD)), treasury=list(reversed(TREASURY)))
    assert again.encoded == GENESIS.encoded


def test_id_is_raw_cidv1_of_the_signed_bytes() -> None:
    cid = GENESIS.id
    assert cid.version == 1 and cid.codec.code == RAW and cid.hashfun.name == "sha2-256"
    assert cid == make_cid(GENESIS.encoded)
    assert GENESIS.id_bytes == bytes(cid) and len(GENESIS.id_bytes) == 36
    assert GENESIS.id_text == cid_to_text(cid) == str(cid)
    verify_block(cid, GENESIS.encoded)


def test_golden_id() -> None:
    # Fixed keys and fields, deterministic Ed25519: this id must never change. If it
    # does, the genesis byte form changed and every co-op's name with it.
    assert GENESIS.id_text == "bafkreievrnme3xhinfumc7xws6fphx372pbyz4cfa4a7ndhlbnjk2d67oe"
    assert list(msgpack.unpackb(GENESIS.encoded)) == [
        "board", "format", "name", "params", "sigs", "time", "treasury"]
    assert list(msgpack.unpackb(GENESIS.encoded)["params"]) == sorted(PARAM_NAMES)


def test_signatures_cover_the_domain_and_the_map_without_sigs() -> None:
    unsigned = canonical(logical())
    assert GENESIS.signing_input == DOMAIN + pk(unsigned)
    assert DOMAIN == b"chorus/genesis/v1\x00" and GENESIS_FORMAT == "chorus/genesis/v1"
    for key, sig in GENESIS.sigs:
        signer = next(k for k in BOARD if bytes(k.verify_key) == key)
        assert signer.sign(GENESIS.signing_input).signature == sig


def test_largest_genesis_fits() -> None:
    board = [SigningKey(i.to_bytes(32, "big")) for i in range(1, 65)]
    treasury = [i.to_bytes(32, "big") for i in range(64)]
    genesis = make(name="é" * 128, board_keys=board, treasury=treasury)
    assert len(genesis.encoded) < MAX_GENESIS_SIZE // 4
    assert decode_genesis(genesis.encoded) == genesis


def test_params_change_the_id() -> None:
    other = make(params=Params(plays_to_own=8))
    assert other.id != GENESIS.id
    assert decode_genesis(other.encoded).params.plays_to_own == 8


# --- refusals: keys and values --------------------------------------------------------


@pytest.mark.parametrize("name", ["board", "format", "name", "params", "sigs", "time",
                                  "treasury"])
def test_missing_field(name: str) -> None:
    data = forge(sigs=_DROP) if name == "sigs" else forge(**{name: _DROP})
    with pytest.raises(MalformedGenesis, match=f"missing {name};"):
        decode_genesis(data)


def test_unknown_field() -> None:
    with pytest.raises(MalformedGenesis, match="missing none; unknown 'extra'"):
        decode_genesis(forge(extra=1))


@pytest.mark.parametrize("value", ["chorus/genesis/v2", "", b"chorus/genesis/v1", 1, None])
def test_wrong_format(value: object) -> None:
    with pytest.raises(MalformedGenesis, match="format"):
        decode_genesis(forge(format=value))


@pytest.mark.parametrize("value", ["", "x" * 129, b"name", 5, None, ["x"]])
def test_bad_name(value: object) -> None:
    with pytest.raises(MalformedGenesis, match="name"):
        decode_genesis(forge(name=value))


def test_name_lengths_are_characters() -> None:
    assert decode_genesis(forge(name="é" * 128)).name == "é" * 128
    assert decode_genesis(forge(name="x")).name == "x"


@pytest.mark.parametrize("field", ["board", "treasury"])
def test_key_lists(field: str) -> None:
    keys = list(logical()[field])
    bad: list[tuple[object, str]] = [
        ([], "0 keys"),
        ([i.to_bytes(32, "big") for i in range(65)], "65 keys"),
        ([keys[0], keys[0], *keys[1:]], "duplicate"),
        (list(reversed(keys)), "not sorted"),
        ([keys[0][:31]], r"\[0\] must be a 32-byte"),
        ([keys[0].hex()], r"\[0\] must be a 32-byte"),
        (keys[0], "must be an array"),
        (None, "must be an array"),
    ]
    for value, message in bad:
        with pytest.raises(MalformedGenesis, match=f"{field}.*{message}|{message}.*{field}"):
            decode_genesis(forge(**{field: value}))


@pytest.mark.parametrize("value", [-1, 1 << 63, "1700000000000", None, 1.7e12, True])
def test_bad_time(value: object) -> None:
    with pytest.raises(MalformedGenesis, match="time"):
        decode_genesis(forge(time=value))


_OUT_OF_RANGE = [
    ("play_price", 0), ("play_price", -2000), ("plays_to_own", 0), ("plays_to_own", 33),
    ("count_after_ms", 0), ("artist_share_bps", -1), ("artist_share_bps", 10001),
    ("hosting_share_bps", -1), ("hosting_share_bps", 10001), ("epoch_ms", 0),
    ("ack_bytes_per_uc", 0), ("quorum_bps", -1), ("quorum_bps", 10001),
    ("play_price", 1 << 63),
]


@pytest.mark.parametrize(("name", "value"), _OUT_OF_RANGE)
def test_params_out_of_range(name: str, value: int) -> None:
    params = {**Params().as_dict(), name: value}
    with pytest.raises(MalformedGenesis, match=f"params.{name} = {value} is outside"):
        decode_genesis(forge(params=params))
    with pytest.raises(InvalidGenesis, match=f"params.{name}"):
        Params(**{name: value})


@pytest.mark.parametrize(("name", "value"), [
    ("plays_to_own", 1), ("plays_to_own", 32), ("artist_share_bps", 0),
    ("artist_share_bps", 10000), ("hosting_share_bps", 0), ("quorum_bps", 10000),
    ("play_price", 1), ("epoch_ms", (1 << 63) - 1),
])
def test_params_bounds_are_inclusive(name: str, value: int) -> None:
    params = {**Params().as_dict(), name: value}
    assert getattr(decode_genesis(forge(params=params)).params, name) == value


@pytest.mark.parametrize("value", ["2000", 2000.0, None, True, b"\x07\xd0", [2000]])
def test_params_must_be_integers(value: object) -> None:
    params = {**Params().as_dict(), "play_price": value}
    with pytest.raises(MalformedGenesis, match=r"params\.play_price must be an integer"):
        decode_genesis(forge(params=params))


def test_params_keys() -> None:
    params = Params().as_dict()
    del params["quorum_bps"]
    with pytest.raises(MalformedGenesis, match="keys wrong: missing quorum_bps; unknown none"):
        decode_genesis(forge(params=params))
    with pytest.raises(MalformedGenesis, match="unknown 'fee'"):
        decode_genesis(forge(params={**Params().as_dict(), "fee": 1}))
    with pytest.raises(MalformedGenesis, match="params must be a map"):
        decode_genesis(forge(params=[1, 2]))


# --- refusals: signatures -------------------------------------------------------------


def test_wrong_signature() -> None:
    sigs = [list(item) for item in GENESIS.sigs]
    sigs[1][1] = bytes([sigs[1][1][0] ^ 1]) + sigs[1][1][1:]
    with pytest.raises(BadGenesisSignature, match=f"{sigs[1][0].hex()} does not verify"):
        decode_genesis(forge(sigs=sigs))


def test_signature_over_another_document() -> None:
    # Valid signatures of the default genesis do not carry over to a changed one.
    sigs = [list(item) for item in GENESIS.sigs]
    with pytest.raises(BadGenesisSignature, match="does not verify"):
        decode_genesis(forge(sigs=sigs, name="Other co-op"))


def test_missing_signature() -> None:
    with pytest.raises(BadGenesisSignature, match="did not sign"):
        decode_genesis(forge(keys=BOARD[:2]))
    sigs = [list(item) for item in GENESIS.sigs][1:]
    with pytest.raises(BadGenesisSignature, match=f"{GENESIS.board[0].hex()} did not sign"):
        decode_genesis(forge(sigs=sigs))
    with pytest.raises(BadGenesisSignature, match="did not sign"):
        decode_genesis(forge(sigs=[]))


def test_extra_signature_by_a_non_board_key() -> None:
    with pytest.raises(BadGenesisSignature, match="not a board key"):
        decode_genesis(forge(keys=[*BOARD, OUTSIDER]))


def test_board_key_that_cannot_sign() -> None:
    # An all-zero "key" is not a usable Ed25519 point: nothing verifies under it.
    board = sorted([*GENESIS.board, bytes(32)])
    sigs = sorted([[key, sig] for key, sig in GENESIS.sigs] + [[bytes(32), bytes(64)]])
    with pytest.raises(BadGenesisSignature, match=f"{bytes(32).hex()} does not verify"):
        decode_genesis(forge(board=board, sigs=sigs))


def test_signature_without_domain_or_with_the_entry_domain() -> None:
    bare = GENESIS.signing_input[len(DOMAIN):]
    for message in (bare, ENTRY_DOMAIN + bare):
        sigs = sorted([bytes(k.verify_key), k.sign(message).signature] for k in BOARD)
        with pytest.raises(BadGenesisSignature):
            decode_genesis(forge(sigs=sigs))


@pytest.mark.parametrize(("sigs", "message"), [
    ("x", "sigs must be an array"),
    ([[b"\x00" * 32]], r"sigs\[0\] must be"),
    ([[b"\x00" * 32, b"\x00" * 63]], r"sigs\[0\] must be"),
    ([[b"\x00" * 31, b"\x00" * 64]], r"sigs\[0\] must be"),
    ([[b"\x00" * 32, b"\x00" * 64, b""]], r"sigs\[0\] must be"),
    ([b"\x00" * 96], r"sigs\[0\] must be"),
    ([[b"\x00" * 32, b"\x00" * 64]] * 2, "two signatures by one key"),
    ([[b"\x01" * 32, b"\x00" * 64], [b"\x00" * 32, b"\x00" * 64]], "not sorted"),
    ([[i.to_bytes(32, "big"), b"\x00" * 64] for i in range(65)], "65 items"),
])
def test_malformed_sigs(sigs: object, message: str) -> None:
    with pytest.raises(MalformedGenesis, match=message):
        decode_genesis(forge(sigs=sigs))


# --- refusals: byte form --------------------------------------------------------------


def test_swapped_key_order() -> None:
    pairs = fields()
    pairs[0], pairs[1] = pairs[1], pairs[0]
    with pytest.raises(NonCanonicalGenesis):
        decode_genesis(raw_map(pairs))


def test_unsorted_params_map() -> None:
    params = Params().as_dict()
    unsorted = b"\x88" + b"".join(pk(k) + pk(params[k]) for k in reversed(sorted(params)))
    with pytest.raises(NonCanonicalGenesis):
        decode_genesis(raw_map(replaced("params", unsorted)))


def test_wide_encodings() -> None:
    params = canonical(Params().as_dict())
    wide_params = b"\x88" + b"".join(
        pk(k) + (b"\xce" + struct.pack(">I", v) if k == "plays_to_own" else pk(v))
        for k, v in params.items()
    )
    for name, encoded in [
        ("name", b"\xd9\x0aTest co-op"),  # str8 where a fixstr fits
        ("params", wide_params),  # uint32 where a fixint fits
        ("format", b"\xda\x00\x11" + GENESIS_FORMAT.encode()),  # str16
    ]:
        with pytest.raises(NonCanonicalGenesis):
            decode_genesis(raw_map(replaced(name, encoded)))
    with pytest.raises(NonCanonicalGenesis):
        decode_genesis(raw_map(fields(), header=b"\xde\x00\x07"))  # map16 for 7 keys


def test_duplicate_key() -> None:
    pairs = fields()
    with pytest.raises(NonCanonicalGenesis):
        decode_genesis(raw_map([*pairs, ("time", dict(pairs)["time"])]))


def test_trailing_bytes() -> None:
    with pytest.raises(NonCanonicalGenesis, match="trailing"):
        decode_genesis(GENESIS.encoded + b"\x00")
    with pytest.raises(NonCanonicalGenesis, match="trailing"):
        decode_genesis(GENESIS.encoded + GENESIS.encoded)


def test_floats_anywhere() -> None:
    for name, value in [("time", float(T0)), ("name", 1.5)]:
        with pytest.raises(MalformedGenesis):
            decode_genesis(raw_map(replaced(name, pk(value))))
    params = {**Params().as_dict(), "epoch_ms": 604800000.0}
    with pytest.raises(MalformedGenesis, match="epoch_ms"):
        decode_genesis(raw_map(replaced("params", pk(canonical(params)))))


def test_ext_types() -> None:
    for ext in (msgpack.ExtType(5, b"x"), msgpack.Timestamp(1_700_000_000, 0)):
        with pytest.raises(MalformedGenesis, match="time"):
            decode_genesis(raw_map(replaced("time", pk(ext))))


def test_bin_where_str_belongs() -> None:
    with pytest.raises(MalformedGenesis, match="name"):
        decode_genesis(raw_map(replaced("name", pk(b"Test co-op"))))
    # a map key as bin
    pairs = [(k, v) for k, v in fields() if k != "time"]
    data = bytes([0x87]) + b"".join(pk(k) + v for k, v in pairs) + pk(b"time") + pk(T0)
    with pytest.raises(MalformedGenesis, match="missing time; unknown b'time'"):
        decode_genesis(data)


@pytest.mark.parametrize("data", [b"", b"\xc1", b"\x90", pk([1, 2]), pk("genesis"), pk({}),
                                  b"\x81\x01\x02"])
def test_not_a_genesis(data: bytes) -> None:
    with pytest.raises(MalformedGenesis):
        decode_genesis(data)


def test_not_bytes() -> None:
    with pytest.raises(MalformedGenesis, match="must be bytes"):
        decode_genesis("genesis")  # type: ignore[arg-type]


def test_size_limit_comes_first() -> None:
    with pytest.raises(GenesisTooLarge):
        decode_genesis(b"\xc1" * (MAX_GENESIS_SIZE + 1))


def test_error_hierarchy() -> None:
    for error in (MalformedGenesis, NonCanonicalGenesis, GenesisTooLarge):
        assert issubclass(error, DecodeError) and issubclass(error, GenesisError)
    assert issubclass(NonCanonicalGenesis, MalformedGenesis)
    for error in (BadGenesisSignature, InvalidGenesis):
        assert issubclass(error, GenesisError) and issubclass(error, ChorusError)
        assert not issubclass(error, DecodeError)


# --- create_genesis refusals ----------------------------------------------------------


@pytest.mark.parametrize(("overrides", "message"), [
    ({"board_keys": []}, "board has 0 keys"),
    ({"board_keys": [BOARD[0], BOARD[0]]}, "board has duplicate keys"),
    ({"board_keys": [bytes(BOARD[0])]}, r"board_keys\[0\] must be a nacl SigningKey"),
    ({"board_keys": BOARD[0]}, "sequence of SigningKeys"),
    ({"treasury": []}, "treasury has 0 keys"),
    ({"treasury": [b"\x01" * 32, b"\x01" * 32]}, "treasury has duplicate keys"),
    ({"treasury": [b"\x01" * 31]}, r"treasury\[0\] must be a 32-byte"),
    ({"treasury": ["01" * 32]}, r"treasury\[0\] must be public key bytes"),
    ({"treasury": b"\x01" * 32}, "sequence of public keys"),
    ({"name": ""}, "name must be"),
    ({"name": "x" * 129}, "name must be"),
    ({"name": "\ud800"}, "UTF-8"),
    ({"time_ms": -1}, "time"),
    ({"time_ms": float(T0)}, "time"),
    ({"params": {"play_price": 1}}, "params must be a Params"),
])
def test_create_refuses(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidGenesis, match=message):
        make(**overrides)


def test_create_accepts_verify_keys_and_bytearrays_for_the_treasury() -> None:
    genesis = make(treasury=[OUTSIDER.verify_key, bytearray(b"\x02" * 32)])
    assert genesis.treasury == tuple(sorted([bytes(OUTSIDER.verify_key), b"\x02" * 32]))


def test_board_and_treasury_may_share_keys() -> None:
    genesis = make(treasury=[bytes(BOARD[0].verify_key)])
    assert genesis.treasury[0] in genesis.board


# --- Params ---------------------------------------------------------------------------


def test_default_params_are_the_design_figures() -> None:
    params = Params()
    assert params.as_dict() == {
        "play_price": 2000, "plays_to_own": 9, "count_after_ms": 45000,
        "artist_share_bps": 7000, "hosting_share_bps": 5000, "epoch_ms": 604_800_000,
        "ack_bytes_per_uc": 2500, "quorum_bps": 5000,
    }
    prices = [params.play_price * 2 ** (n - 1) for n in range(1, params.plays_to_own + 1)]
    assert prices[-1] == 512_000 and sum(prices) == 1_022_000  # Resonate's table


def test_params_validate_names_the_param() -> None:
    Params().validate()
    with pytest.raises(InvalidGenesis, match=r"params\.plays_to_own must be an integer"):
        Params(plays_to_own=True)
    with pytest.raises(InvalidGenesis, match=r"params\.quorum_bps"):
        Params(quorum_bps=2.5)  # type: ignore[arg-type]


def test_from_overrides() -> None:
    assert Params.from_overrides({}) == Params()
    params = Params.from_overrides(
        {"epoch_ms": "86_400_000", "plays_to_own": 3, "quorum_bps": " 6000 ",
         "artist_share_bps": "0"}
    )
    assert params == Params(epoch_ms=86_400_000, plays_to_own=3, quorum_bps=6000,
                            artist_share_bps=0)
    based = Params.from_overrides({"play_price": "1"}, base=params)
    assert based == Params(epoch_ms=86_400_000, plays_to_own=3, quorum_bps=6000,
                           artist_share_bps=0, play_price=1)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"fee": "1"}, "unknown parameter 'fee'"),
    ({"Play_Price": "1"}, "unknown parameter"),
    ({"play_price": "1.5"}, "play_price must be an integer"),
    ({"play_price": "2e3"}, "play_price must be an integer"),
    ({"play_price": "0x10"}, "play_price must be an integer"),
    ({"play_price": ""}, "play_price must be an integer"),
    ({"play_price": "1__0"}, "play_price must be an integer"),
    ({"play_price": "١٢"}, "play_price must be an integer"),
    ({"play_price": 2000.0}, "play_price must be an integer"),
    ({"play_price": True}, "play_price must be an integer"),
    ({"play_price": None}, "play_price must be an integer"),
    ({"play_price": "0"}, r"params.play_price = 0 is outside 1\.\."),
    ({"plays_to_own": "-1"}, r"params.plays_to_own = -1 is outside 1\.\.32"),
    ({"hosting_share_bps": 10001}, r"params.hosting_share_bps = 10001 is outside 0\.\.10000"),
])
def test_from_overrides_refuses(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidGenesis, match=message):
        Params.from_overrides(overrides)


# --- hypothesis -----------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=400))
def test_random_bytes_only_raise_genesis_errors(data: bytes) -> None:
    with pytest.raises(GenesisError):
        decode_genesis(data)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_flipped_byte_is_a_genesis_error(data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(GENESIS.encoded) - 1))
    mask = data.draw(st.integers(1, 255))
    mutated = bytearray(GENESIS.encoded)
    mutated[position] ^= mask
    with pytest.raises(GenesisError):
        decode_genesis(bytes(mutated))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_random_splices_only_raise_genesis_errors(data: st.DataObject) -> None:
    encoded = GENESIS.encoded
    start = data.draw(st.integers(0, len(encoded)))
    end = data.draw(st.integers(start, len(encoded)))
    mutated = encoded[:start] + data.draw(st.binary(max_size=12)) + encoded[end:]
    if mutated == encoded:
        return
    with pytest.raises(GenesisError):
        decode_genesis(mutated)


@settings(max_examples=40, deadline=None)
@given(
    name=st.text(min_size=1, max_size=128),
    board=st.integers(1, 5),
    treasury=st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=5,
                      unique=True),
    time=st.integers(0, (1 << 63) - 1),
    plays=st.integers(1, 32),
    bps=st.integers(0, 10000),
)
def test_any_valid_genesis_round_trips(
    name: str, board: int, treasury: list[bytes], time: int, plays: int, bps: int
) -> None:
    keys = [SigningKey(bytes([i + 1]) * 32) for i in range(board)]
    params = Params(plays_to_own=plays, artist_share_bps=bps, quorum_bps=bps)
    genesis = create_genesis(name, keys, treasury, params, time)
    assert decode_genesis(genesis.encoded) == genesis
    assert genesis.name == name and genesis.params == params and genesis.time == time
