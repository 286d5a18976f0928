"""ledger/entry.py: round trips, the one canonical byte form, signatures, hostile bytes.

Non-canonical variants are built by hand below (`raw_map`, raw msgpack headers) rather
than with msgpack-python's packer, which can only write the canonical form.
"""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from ledger.entry import (
    DOMAIN,
    MAX_BODY_DEPTH,
    MAX_ENTRY_SIZE,
    BadSignature,
    EntryError,
    EntryTooLarge,
    InvalidEntry,
    MalformedEntry,
    NonCanonicalEntry,
    SignedEntry,
    decode_entry,
    decode_entry_checked_elsewhere,
    sign_entry,
)
from protocol.cid import RAW, cid_from_bytes, cid_to_text, make_cid, verify_block
from protocol.errors import ChorusError, DecodeError

KEY = SigningKey(bytes(range(32)))
OTHER = SigningKey(bytes(range(1, 33)))
T0 = 1_700_000_000_000


def first(body: dict | None = None, key: SigningKey = KEY) -> SignedEntry:
    return sign_entry(key, 1, None, T0, "play", {"n": 1} if body is None else body)


def pk(value: object) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def raw_map(pairs: list[tuple[str, bytes]], header: bytes | None = None) -> bytes:
    """A msgpack map from (key, already-encoded value) pairs, in the order given."""
    head = header if header is not None else bytes([0x80 | len(pairs)])
    return head + b"".join(pk(key) + value for key, value in pairs)


def fields(entry: SignedEntry) -> list[tuple[str, bytes]]:
    """The entry's canonical (key, encoded value) pairs, in canonical order."""
    return [
        ("author", pk(entry.author)),
        ("body", pk(entry.body)),
        ("kind", pk(entry.kind)),
        ("prev", pk(entry.prev)),
        ("seq", pk(entry.seq)),
        ("sig", pk(entry.sig)),
        ("time", pk(entry.time)),
    ]


def resigned(pairs: list[tuple[str, bytes]], key: SigningKey = KEY) -> list[tuple[str, bytes]]:
    """`pairs` with `sig` replaced by a valid signature over the canonical unsigned form
    of the same logical entry, so only the byte form can be what is refused."""
    unsigned = {k: msgpack.unpackb(v, strict_map_key=False) for k, v in pairs if k != "sig"}
    canonical = {k: unsigned[k] for k in sorted(unsigned)}
    sig = key.sign(DOMAIN + pk(canonical)).signature
    return [(k, pk(sig) if k == "sig" else v) for k, v in pairs]


# --- round trip and id ------------------------------------------------------------------


def test_round_trip_first_and_chained() -> None:
    one = first({"track": "bafy", "paid": True, "nested": {"b": [1, -2, b"\x00", None]}})
    assert one.seq == 1 and one.prev is None and one.kind == "play"
    assert one.author == bytes(KEY.verify_key)
    assert decode_entry(one.encoded) == one
    two = sign_entry(KEY, 2, one.id, T0 + 45_000, "vote.ballot", {"option": "b"})
    assert two.prev == bytes(one.id)
    assert decode_entry(two.encoded) == two
    assert decode_entry(bytearray(two.encoded)) == two


def test_body_maps_are_sorted_whatever_the_input_order() -> None:
    a = first({"b": 1, "a": {"y": 2, "x": 1}})
    b = first({"a": {"x": 1, "y": 2}, "b": 1})
    assert a.encoded == b.encoded
    assert list(a.body) == ["a", "b"] and list(a.body["a"]) == ["x", "y"]


def test_id_is_raw_cidv1_of_signed_bytes() -> None:
    entry = first()
    cid = entry.id
    assert cid.version == 1 and cid.codec.code == RAW and cid.hashfun.name == "sha2-256"
    assert cid == make_cid(entry.encoded)
    verify_block(cid, entry.encoded)  # an entry is a block
    assert cid_from_bytes(bytes(cid)) == cid


def test_golden_encoding_and_id() -> None:
    # Pins the byte form: a fixed seed key and fixed fields must give exactly these bytes
    # and this id, forever. Ed25519 signing is deterministic, so the signature is fixed
    # too. If this test fails, the canonical form (and every entry id) changed: that is
    # a protocol break, not a test to update.
    key = SigningKey(bytes(range(32)))
    one = sign_entry(key, 1, None, 1_700_000_000_000, "play",
                     {"track": "bafy", "n": 1, "paid": True})
    assert one.encoded.hex() == (
        "87a6617574686f72c42003a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531"
        "b8a4626f647983a16e01a470616964c3a5747261636ba462616679a46b696e64a4706c6179a470726576"
        "c0a373657101a3736967c440192ef54fdaa9932ae420acef294ea361a68783209ad83c2b421ed4faec3f"
        "579e13e4f466c2ce700fd047ff598e340d1adaa3febd692bb1950fba775a0503fb0aa474696d65cf0000"
        "018bcfe56800"
    )
    assert cid_to_text(one.id) == "bafkreifmlq3nwlrevtuzhshd5l6p3nx4f6xkx5r5fq6vso53jhpx2s3a7q"
    two = sign_entry(key, 2, one.id, 1_700_000_045_000, "vote.ballot",
                     {"option": "b", "ids": [b"\x01", -5]})
    assert cid_to_text(two.id) == "bafkreiem2smfgfou36atk4hmr35nebh4dzcso7rmcnjsq65wrdtno2rf3e"


# --- non-canonical byte forms of the same logical entry ---------------------------------


def test_canonical_builder_matches() -> None:
    # The hand-built map of the unchanged fields is the canonical encoding itself, so
    # each variant below differs from it only in the way it names.
    entry = first()
    assert raw_map(fields(entry)) == entry.encoded
    assert decode_entry(raw_map(resigned(fields(entry)))) == entry


def test_swapped_key_order_is_refused() -> None:
    pairs = fields(first())
    pairs[0], pairs[1] = pairs[1], pairs[0]
    with pytest.raises(NonCanonicalEntry):
        decode_entry(raw_map(pairs))


def test_wide_integer_encodings_are_refused() -> None:
    entry = sign_entry(KEY, 1, None, 5, "play", {"n": 1})
    for name, wide in [("seq", b"\xce" + struct.pack(">I", 1)),
                       ("seq", b"\xcc\x01"),
                       ("time", b"\xcf" + struct.pack(">Q", 5)),
                       ("body", b"\x81\xa1n\xd0\x01")]:  # int8 where a fixint fits
        pairs = [(k, wide if k == name else v) for k, v in fields(entry)]
        with pytest.raises(NonCanonicalEntry):
            decode_entry(raw_map(resigned(pairs)))


def test_wide_map_and_string_headers_are_refused() -> None:
    entry = first()
    with pytest.raises(NonCanonicalEntry):
        decode_entry(raw_map(fields(entry), header=b"\xde\x00\x07"))  # map16 for 7 keys
    pairs = [(k, b"\xd9\x04play" if k == "kind" else v) for k, v in fields(entry)]
    with pytest.raises(NonCanonicalEntry):
        decode_entry(raw_map(resigned(pairs)))  # str8 where a fixstr fits


def test_str_encoded_as_bin_is_refused() -> None:
    entry = first()
    pairs = [(k, pk(b"play") if k == "kind" else v) for k, v in fields(entry)]
    with pytest.raises(MalformedEntry):
        decode_entry(raw_map(pairs))
    # a map key as bin: strict decoding keeps it bytes, and keys must be str
    pairs = [(k, b"\x81\xc4\x01n\x01" if k == "body" else v) for k, v in fields(entry)]
    with pytest.raises(MalformedEntry):
        decode_entry(raw_map(pairs))


def test_float_anywhere_is_refused() -> None:
    entry = first()
    for body in ({"n": 1.0}, {"a": [1, {"b": 0.5}]}):
        pairs = [(k, pk(body) if k == "body" else v) for k, v in fields(entry)]
        with pytest.raises(MalformedEntry, match="float"):
            decode_entry(raw_map(pairs))
    pairs = [(k, pk(5.0) if k == "time" else v) for k, v in fields(entry)]
    with pytest.raises(MalformedEntry):
        decode_entry(raw_map(pairs))


def test_ext_types_are_refused() -> None:
    entry = first()
    for ext in (pk(msgpack.ExtType(5, b"x")), pk(msgpack.Timestamp(1, 0))):
        pairs = [(k, b"\x81\xa1n" + ext if k == "body" else v) for k, v in fields(entry)]
        with pytest.raises(MalformedEntry):
            decode_entry(raw_map(pairs))


def test_duplicate_keys_are_refused() -> None:
    pairs = fields(first())
    with pytest.raises(NonCanonicalEntry):
        decode_entry(raw_map([*pairs, ("time", dict(pairs)["time"])]))
    body_dup = b"\x82\xa1n\x01\xa1n\x01"
    pairs = [(k, body_dup if k == "body" else v) for k, v in pairs]
    with pytest.raises(NonCanonicalEntry):
        decode_entry(raw_map(resigned(pairs)))


@pytest.mark.parametrize(
    "body",
    [
        b"\x82\xa1b\x01\xa1a\x02",  # {"b": 1, "a": 2}
        b"\x81\xa1m\x82\xa1y\x01\xa1x\x02",  # {"m": {"y": 1, "x": 2}}
        b"\x81\xa1l\x91\x82\xa1b\x01\xa1a\x02",  # {"l": [{"b": 1, "a": 2}]}
    ],
    ids=["body", "nested map", "map in a list"],
)
def test_body_maps_out_of_order_are_refused_at_any_depth(body: bytes) -> None:
    pairs = [(k, body if k == "body" else v) for k, v in fields(first())]
    with pytest.raises(NonCanonicalEntry):
        decode_entry(raw_map(resigned(pairs)))


def test_trailing_byte_is_refused() -> None:
    with pytest.raises(NonCanonicalEntry, match="trailing"):
        decode_entry(first().encoded + b"\x00")


def test_missing_and_unknown_keys_are_refused() -> None:
    pairs = fields(first())
    with pytest.raises(MalformedEntry, match="missing"):
        decode_entry(raw_map(pairs[:-1]))
    with pytest.raises(MalformedEntry, match="unknown"):
        decode_entry(raw_map([*pairs, ("zzz", pk(1))]))


@pytest.mark.parametrize(
    ("name", "value"),
    [("author", b"\x00" * 31), ("seq", 0), ("seq", -1), ("prev", b"\x01" * 36),
     ("time", -1), ("kind", "Play"), ("kind", "a" * 33), ("kind", "play\n"),
     ("body", [1]), ("sig", b"\x00" * 63)],
)
def test_bad_field_values_are_malformed(name: str, value: object) -> None:
    pairs = [(k, pk(value) if k == name else v) for k, v in fields(first())]
    with pytest.raises(MalformedEntry):
        decode_entry(raw_map(pairs))


def test_prev_must_match_seq() -> None:
    entry = first()
    pairs = [(k, pk(bytes(entry.id)) if k == "prev" else v) for k, v in fields(entry)]
    with pytest.raises(MalformedEntry, match="seq 1"):
        decode_entry(raw_map(pairs))
    with pytest.raises(InvalidEntry):
        sign_entry(KEY, 2, None, T0, "play", {})


# --- signatures -------------------------------------------------------------------------


def test_forged_signature_is_refused() -> None:
    entry = first()
    pairs = [(k, pk(bytes(64)) if k == "sig" else v) for k, v in fields(entry)]
    with pytest.raises(BadSignature):
        decode_entry(raw_map(pairs))


def test_signature_by_another_key_is_refused() -> None:
    entry = first()
    pairs = resigned(fields(entry), key=OTHER)  # author stays KEY's
    with pytest.raises(BadSignature):
        decode_entry(raw_map(pairs))


def test_signature_without_domain_prefix_is_refused() -> None:
    entry = first()
    bare = KEY.sign(entry.signing_input[len(DOMAIN):]).signature
    pairs = [(k, pk(bare) if k == "sig" else v) for k, v in fields(entry)]
    with pytest.raises(BadSignature):
        decode_entry(raw_map(pairs))


def test_other_logical_entry_under_old_signature_is_refused() -> None:
    # A str body value re-encoded as bin is canonical, but a different entry.
    entry = first({"track": "bafy"})
    pairs = [(k, pk({"track": b"bafy"}) if k == "body" else v) for k, v in fields(entry)]
    with pytest.raises(BadSignature):
        decode_entry(raw_map(pairs))


# --- limits and the signing side --------------------------------------------------------


def test_oversize_is_refused_before_decoding() -> None:
    with pytest.raises(EntryTooLarge):
        decode_entry(b"\xc1" * (MAX_ENTRY_SIZE + 1))  # not even msgpack: size comes first
    with pytest.raises(EntryTooLarge):
        first({"blob": b"\x00" * MAX_ENTRY_SIZE})


def test_depth_limit() -> None:
    deep: dict = {}
    node = deep
    for _ in range(MAX_BODY_DEPTH):
        node["a"] = {}
        node = node["a"]
    with pytest.raises(InvalidEntry, match="deeper"):
        first(deep)
    pairs = [(k, pk(deep) if k == "body" else v) for k, v in fields(first())]
    with pytest.raises(MalformedEntry, match="deeper"):
        decode_entry(raw_map(pairs))
    pairs = [(k, b"\x91" * 60000 + b"\xc0" if k == "body" else v) for k, v in pairs]
    with pytest.raises(MalformedEntry):
        decode_entry(raw_map(pairs))


@pytest.mark.parametrize(
    "body", [{"x": 1.5}, {1: "a"}, {"t": (1, 2)}, {"s": "\ud800"}, {"i": 1 << 64}, {"b": set()}]
)
def test_sign_refuses_values_outside_the_model(body: dict) -> None:
    with pytest.raises(InvalidEntry):
        first(body)


def test_sign_refuses_bad_fields() -> None:
    with pytest.raises(InvalidEntry):
        sign_entry(KEY, True, None, T0, "play", {})  # bool is not a seq
    with pytest.raises(InvalidEntry):
        sign_entry(KEY, 1, None, float(T0), "play", {})
    with pytest.raises(InvalidEntry):
        sign_entry(KEY, 1, None, T0, "", {})
    with pytest.raises(InvalidEntry):
        sign_entry(bytes(32), 1, None, T0, "play", {})  # type: ignore[arg-type]


def test_error_hierarchy() -> None:
    for error in (MalformedEntry, NonCanonicalEntry):
        assert issubclass(error, DecodeError) and issubclass(error, EntryError)
    for error in (BadSignature, EntryTooLarge, InvalidEntry):
        assert issubclass(error, EntryError) and issubclass(error, ChorusError)


# --- hypothesis -------------------------------------------------------------------------

_leaf = st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.text() | st.binary()
_value = st.recursive(
    _leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
_body = st.dictionaries(st.text(max_size=8), _value, max_size=5)


@settings(max_examples=100, deadline=None)
@given(body=_body, seq=st.integers(2, (1 << 63) - 1), time=st.integers(0, (1 << 63) - 1),
       kind=st.from_regex(r"[a-z][a-z0-9_.]{0,31}", fullmatch=True))
def test_round_trip_any_entry(body: dict, seq: int, time: int, kind: str) -> None:
    prev = make_cid(b"prev")
    entry = sign_entry(KEY, seq, prev, time, kind, body)
    again = decode_entry(entry.encoded)
    assert again == entry and again.body == body


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_flipped_byte_is_a_typed_error(data: st.DataObject) -> None:
    entry = data.draw(st.sampled_from(_SAMPLES))
    position = data.draw(st.integers(0, len(entry.encoded) - 1))
    mask = data.draw(st.integers(1, 255))
    mutated = bytearray(entry.encoded)
    mutated[position] ^= mask
    with pytest.raises(EntryError):
        decode_entry(bytes(mutated))


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_only_raise_typed_errors(data: bytes) -> None:
    with pytest.raises(EntryError):
        decode_entry(data)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_random_splices_only_raise_typed_errors(data: st.DataObject) -> None:
    # Random bytes rarely look like msgpack; splicing into a real entry reaches deeper.
    encoded = data.draw(st.sampled_from(_SAMPLES)).encoded
    start = data.draw(st.integers(0, len(encoded)))
    end = data.draw(st.integers(start, len(encoded)))
    mutated = encoded[:start] + data.draw(st.binary(max_size=12)) + encoded[end:]
    if mutated == encoded:
        return
    with pytest.raises(EntryError):
        decode_entry(mutated)


_SAMPLES = [
    first({"track": "bafy", "n": 1, "paid": True, "neg": -300, "big": 1 << 40}),
    sign_entry(KEY, 7, make_cid(b"x"), T0, "vote.ballot",
               {"options": ["a", "b"], "m": {"k": b"\xff" * 40, "z": None}}),
]


def test_the_trusted_parse_gives_back_the_same_entry() -> None:
    for entry in _SAMPLES:
        assert decode_entry_checked_elsewhere(entry.encoded) == decode_entry(entry.encoded)
    with pytest.raises(EntryTooLarge):
        decode_entry_checked_elsewhere(b"\x00" * (MAX_ENTRY_SIZE + 1))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_the_trusted_parse_of_damaged_bytes_only_raises_typed_errors(
    data: st.DataObject,
) -> None:
    # For bytes that went through decode_entry; a damaged file must still give a
    # typed error (or an entry, if the damage kept the shape), never a crash.
    encoded = data.draw(st.sampled_from(_SAMPLES)).encoded
    start = data.draw(st.integers(0, len(encoded)))
    end = data.draw(st.integers(start, len(encoded)))
    mutated = encoded[:start] + data.draw(st.binary(max_size=12)) + encoded[end:]
    try:
        decoded = decode_entry_checked_elsewhere(mutated)
    except EntryError:
        return
    assert decoded.encoded == mutated
    assert type(decoded.body) is dict and type(decoded.seq) is int
    assert type(decoded.author) is bytes and type(decoded.kind) is str
