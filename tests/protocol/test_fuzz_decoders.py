"""Property fuzzing of protocol/'s binary decoders (see docs/fuzzing.md).

Each decoder gets the three properties of tests/fuzz/targets.py, on random bytes and
on mutants of valid encodings: only its typed error escapes, whatever it accepts
round-trips (byte-exact where the format is canonical), and it never hangs (hypothesis
would report the example as too slow; CI runs with deadline=None, the deep profile's
long runs show any that drift). The per-format test files (test_varint.py,
test_cid.py, test_dagpb.py, test_unixfs.py, test_car.py, test_bitswap.py) keep
their own hostile-input tests; this file adds what they lacked and holds every
decoder to the same contract. The atheris harnesses in tests/fuzz/ run the same checks.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from protocol.cid import InvalidCID, cid_from_bytes, make_cid
from protocol.errors import DecodeError
from protocol.unixfs import DataType, UnixFSData, decode_data, encode_data
from protocol.varint import decode_uvarint, encode_uvarint
from tests.fuzz.strategies import mutants
from tests.fuzz.targets import TARGETS, fuzz_examples, seeds

PROTOCOL_TARGETS = ["varint", "cid", "dagpb", "unixfs", "car", "bitswap"]


@pytest.mark.parametrize("name", PROTOCOL_TARGETS)
def test_every_seed_is_accepted(name: str) -> None:
    """The seeds are valid encodings (else the mutation tests would fuzz nothing)."""
    target = TARGETS[name]
    assert all(target.check(seed) for seed in target.make_seeds())
    for seed in seeds(name):  # regression corpus files: typed error or round trip
        target.check(seed)


# -- arbitrary bytes -------------------------------------------------------------------------


@settings(max_examples=fuzz_examples(1000), deadline=None)
@given(st.binary(max_size=24))
@example(b"\x80" * 11)
@example(b"\xff" * 9 + b"\x02")  # 2**64: one bit too many
@example(b"\x80\x00")  # 0 spelled in two bytes
def test_varint_of_random_bytes(data: bytes) -> None:
    TARGETS["varint"].check(data)


@settings(max_examples=fuzz_examples(800), deadline=None)
@given(st.binary(max_size=80))
@example(b"\x01\x55\x12\x20" + bytes(31))  # digest one byte short
@example(b"\x81\x00\x55\x12\x20" + bytes(32))  # version 1 as a 2-byte varint
@example(b"\x01\xd5\x00\x12\x20" + bytes(32))  # codec raw as a 2-byte varint
@example(b"\x01\x55\x92\x00\x20" + bytes(32))  # hash code as a 2-byte varint
@example(b"\x12\x20" + bytes(32) + b"\x00")  # v0 with a trailing byte
def test_cid_of_random_bytes(data: bytes) -> None:
    TARGETS["cid"].check(data)


@settings(max_examples=fuzz_examples(800), deadline=None)
@given(st.binary(max_size=200))
def test_dagpb_of_random_bytes(data: bytes) -> None:
    TARGETS["dagpb"].check(data)


@settings(max_examples=fuzz_examples(800), deadline=None)
@given(st.binary(max_size=120))
@example(b"\x08\x02\x42\x03\x08\x80\x01")  # mtime whose Seconds varint is not minimal
@example(b"\x08\x02\x22\x02\x80\x00")  # packed blocksizes with a non-minimal varint
def test_unixfs_of_random_bytes(data: bytes) -> None:
    TARGETS["unixfs"].check(data)


@settings(max_examples=fuzz_examples(500), deadline=None)
@given(st.binary(max_size=300))
def test_car_of_random_bytes(data: bytes) -> None:
    TARGETS["car"].check(data)


@settings(max_examples=fuzz_examples(500), deadline=None)
@given(st.binary(max_size=300))
def test_bitswap_of_random_bytes(data: bytes) -> None:
    TARGETS["bitswap"].check(data)


# -- mutants of valid encodings --------------------------------------------------------------


@settings(max_examples=fuzz_examples(400), deadline=None)
@given(mutants(seeds("varint")))
def test_varint_mutants(data: bytes) -> None:
    TARGETS["varint"].check(data)


@settings(max_examples=fuzz_examples(600), deadline=None)
@given(mutants(seeds("cid")))
def test_cid_mutants(data: bytes) -> None:
    TARGETS["cid"].check(data)


@settings(max_examples=fuzz_examples(600), deadline=None)
@given(mutants(seeds("dagpb")))
def test_dagpb_mutants(data: bytes) -> None:
    TARGETS["dagpb"].check(data)


@settings(max_examples=fuzz_examples(600), deadline=None)
@given(mutants(seeds("unixfs")))
def test_unixfs_mutants(data: bytes) -> None:
    TARGETS["unixfs"].check(data)


@settings(max_examples=fuzz_examples(400), deadline=None)
@given(mutants(seeds("car")))
def test_car_mutants(data: bytes) -> None:
    TARGETS["car"].check(data)


@settings(max_examples=fuzz_examples(500), deadline=None)
@given(mutants(seeds("bitswap")))
def test_bitswap_mutants(data: bytes) -> None:
    TARGETS["bitswap"].check(data)


# -- round trips of valid values -------------------------------------------------------------


@settings(max_examples=fuzz_examples(500), deadline=None)
@given(st.integers(0, 2**64 - 1), st.binary(max_size=4))
def test_varint_round_trip_is_canonical_and_stops_at_its_end(value: int, tail: bytes) -> None:
    encoded = encode_uvarint(value)
    assert decode_uvarint(encoded + tail) == (value, len(encoded))
    if value:  # the one spelling: any longer form (a 0x80 continuation) is refused
        padded = bytes([encoded[0] | 0x80]) + encoded[1:] if len(encoded) == 1 else None
        if padded is not None:
            with pytest.raises(DecodeError):
                decode_uvarint(padded + b"\x00")


@settings(max_examples=fuzz_examples(400), deadline=None)
@given(st.binary(max_size=64), st.sampled_from([(0, 0x70), (1, 0x70), (1, 0x55)]))
def test_cid_bytes_round_trip(data: bytes, form: tuple[int, int]) -> None:
    cid = make_cid(data, version=form[0], codec=form[1])
    assert cid_from_bytes(bytes(cid)) == cid
    assert TARGETS["cid"].check(bytes(cid))
    with pytest.raises(InvalidCID):
        cid_from_bytes(bytes(cid)[:-1])


_unixfs = st.builds(
    UnixFSData,
    type=st.sampled_from(DataType),
    data=st.none() | st.binary(max_size=40),
    filesize=st.none() | st.integers(0, 2**64 - 1),
    blocksizes=st.lists(st.integers(0, 2**64 - 1), max_size=5).map(tuple),
    hash_type=st.none() | st.integers(0, 2**64 - 1),
    fanout=st.none() | st.integers(0, 2**64 - 1),
    mode=st.none() | st.integers(0, 2**32 - 1),
    mtime=st.none() | st.tuples(st.integers(-(2**63), 2**63 - 1),
                                st.none() | st.integers(0, 999_999_999)),
)


@settings(max_examples=fuzz_examples(500), deadline=None)
@given(_unixfs)
def test_unixfs_encoding_is_canonical_for_what_it_writes(message: UnixFSData) -> None:
    """What chorus writes decodes to the same value and re-encodes to the same bytes."""
    encoded = encode_data(message)
    assert decode_data(encoded) == message
    assert encode_data(decode_data(encoded)) == encoded
