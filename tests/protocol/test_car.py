"""CARv1 codec: byte-exact headers (as go-car writes them), incremental decoding, and
hostile input that must always end in a CarError and nothing else."""

from __future__ import annotations

import dag_cbor
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multiformats import CID

from protocol.car import (
    CAR_END,
    MAX_HEADER_SIZE,
    MAX_SECTION_SIZE,
    NEED_DATA,
    CarBlock,
    CarDecoder,
    CarError,
    CarHeader,
    encode_block,
    encode_header,
)
from protocol.cid import DAG_PB, make_cid
from protocol.dagpb import PBLink, PBNode, encode_node
from protocol.errors import DecodeError
from protocol.varint import encode_uvarint

LEAF_A = b"first leaf"
LEAF_B = b"second leaf" * 20
CID_A = make_cid(LEAF_A)
CID_B = make_cid(LEAF_B)
ROOT = encode_node(PBNode((PBLink(CID_A, "a", 10), PBLink(CID_B, "b", 220)), b"\x08\x01"))
ROOT_CID = make_cid(ROOT, version=0, codec=DAG_PB)
BLOCKS = [(ROOT_CID, ROOT), (CID_A, LEAF_A), (CID_B, LEAF_B)]
VALID_CAR = encode_header([ROOT_CID]) + b"".join(encode_block(c, d) for c, d in BLOCKS)


def decode_all(data: bytes, piece: int | None = None) -> list[object]:
    """Feed `data` (whole, or `piece` bytes at a time), end it, collect every event."""
    decoder = CarDecoder()
    events: list[object] = []
    pieces = [data] if piece is None else [data[i : i + piece] for i in range(0, len(data), piece)]
    for chunk in pieces:
        if chunk:
            decoder.receive_data(chunk)
        while (event := decoder.next_event()) is not NEED_DATA:
            events.append(event)
    decoder.receive_data(b"")
    while (event := decoder.next_event()) is not CAR_END:
        assert event is not NEED_DATA
        events.append(event)
    return events


def header_bytes(value: object) -> bytes:
    body = dag_cbor.encode(value)
    return encode_uvarint(len(body)) + body


# -- encoding ---------------------------------------------------------------------------


def test_header_bytes_match_go_car_for_a_cidv1_root() -> None:
    """Spelled out from the CARv1 and DAG-CBOR specs, byte by byte."""
    root = make_cid(b"hello")  # CIDv1 raw sha2-256: 36 bytes
    cid_bytes = bytes(root)
    assert len(cid_bytes) == 36 and cid_bytes[:4] == bytes.fromhex("01551220")
    body = (
        bytes([0xA2])  # map(2)
        + bytes([0x65])
        + b"roots"  # text(5), sorted first: shorter key
        + bytes([0x81])  # array(1)
        + bytes([0xD8, 0x2A])  # tag(42): CID
        + bytes([0x58, 0x25])  # bytes(37): 0x00 multibase prefix + 36 CID bytes
        + b"\x00"
        + cid_bytes
        + bytes([0x67])
        + b"version"  # text(7)
        + bytes([0x01])  # unsigned(1)
    )
    assert len(body) == 0x3A
    assert encode_header([root]) == bytes([0x3A]) + body


def test_header_bytes_for_a_cidv0_root() -> None:
    """A v0 root stays v0 in the header (34 CID bytes, so bytes(35) = 0x58 0x23)."""
    cid_bytes = bytes(ROOT_CID)
    assert len(cid_bytes) == 34
    expected = (
        bytes([0x38, 0xA2, 0x65])
        + b"roots"
        + bytes([0x81, 0xD8, 0x2A, 0x58, 0x23, 0x00])
        + cid_bytes
        + bytes([0x67])
        + b"version"
        + bytes([0x01])
    )
    assert encode_header([ROOT_CID]) == expected


def test_section_layout() -> None:
    section = encode_block(CID_A, LEAF_A)
    assert section == bytes([36 + len(LEAF_A)]) + bytes(CID_A) + LEAF_A
    big = b"z" * 300
    assert encode_block(make_cid(big), big)[:2] == encode_uvarint(36 + 300)


# -- decoding ---------------------------------------------------------------------------


def test_round_trip_whole_and_byte_by_byte() -> None:
    for piece in (None, 1, 7, 64):
        events = decode_all(VALID_CAR, piece)
        assert events[0] == CarHeader((ROOT_CID,), 1)
        assert [(e.cid, e.data) for e in events[1:]] == [(c, d) for c, d in BLOCKS]
    offsets = [e.offset for e in decode_all(VALID_CAR)[1:]]
    assert offsets[0] == len(encode_header([ROOT_CID]))
    assert offsets[1] == offsets[0] + len(encode_block(*BLOCKS[0]))


def test_decoder_reports_progress_and_state() -> None:
    decoder = CarDecoder()
    assert decoder.next_event() is NEED_DATA
    decoder.receive_data(VALID_CAR)
    assert isinstance(decoder.next_event(), CarHeader)
    assert decoder.header == CarHeader((ROOT_CID,), 1)
    assert decoder.state == "SECTIONS"
    for _ in BLOCKS:
        assert isinstance(decoder.next_event(), CarBlock)
    assert decoder.next_event() is NEED_DATA  # more sections could still come
    assert decoder.offset == len(VALID_CAR) and decoder.buffered == 0
    decoder.receive_data(b"")
    assert decoder.next_event() is CAR_END
    assert decoder.next_event() is CAR_END
    with pytest.raises(RuntimeError):
        decoder.receive_data(b"more")


def test_header_only_and_empty_roots_are_valid() -> None:
    assert decode_all(encode_header([ROOT_CID])) == [CarHeader((ROOT_CID,), 1)]
    assert decode_all(encode_header([])) == [CarHeader((), 1)]


def test_extra_header_keys_are_ignored() -> None:
    data = header_bytes({"roots": [ROOT_CID], "version": 1, "zzz": "extension"})
    assert decode_all(data) == [CarHeader((ROOT_CID,), 1)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "truncated"),
        (b"\x3a", "truncated"),
        (encode_header([ROOT_CID])[:-1], "truncated"),
        (VALID_CAR[:-1], "truncated"),
        (VALID_CAR + b"\x05\x01", "truncated"),  # a section cut short
        (VALID_CAR + b"\x85", "truncated"),  # a varint cut short
        (b"\x00", "length 0"),
        (b"\x80\x00", "non-minimal"),
        (b"\xff" * 11, "longer than 10"),
        (encode_uvarint(MAX_HEADER_SIZE + 1), "limit"),
        (header_bytes({"version": 2}), "CARv2"),
        (bytes.fromhex("0aa16776657273696f6e02"), "CARv2"),  # the CARv2 pragma itself
        (header_bytes({"roots": [ROOT_CID], "version": 3}), "version 3"),
        (header_bytes({"roots": [ROOT_CID]}), "no integer version"),
        (header_bytes({"roots": [ROOT_CID], "version": "1"}), "no integer version"),
        (header_bytes({"roots": ROOT_CID, "version": 1}), "roots"),
        (header_bytes({"roots": [b"not a cid"], "version": 1}), "roots"),
        (header_bytes({"version": 1}), "roots"),
        (header_bytes([ROOT_CID]), "not a map"),
        (b"\x03abc", "not DAG-CBOR"),
        (encode_header([ROOT_CID]) + b"\x00", "length 0"),
        (encode_header([ROOT_CID]) + encode_uvarint(MAX_SECTION_SIZE + 1), "limit"),
        (encode_header([ROOT_CID]) + b"\x04\x02\x55\x12\x00", "CID version 2"),
        (encode_header([ROOT_CID]) + b"\x05\x01\x55\x12\x20\x00", "longer than"),
        (encode_header([ROOT_CID]) + b"\x06\x01\x55\x80\x00\x00\x00", "malformed CID"),
        (encode_header([ROOT_CID]) + b"\x05\x01\xff\xff\x03\x00", "malformed CID"),
    ],
)
def test_malformed_input_is_a_car_error(data: bytes, message: str) -> None:
    with pytest.raises(CarError, match=message):
        decode_all(data)


def test_unknown_multicodec_in_a_section_is_a_car_error() -> None:
    cid_bytes = b"\x01" + encode_uvarint(0x7FFF00) + b"\x12\x20" + bytes(32)
    data = encode_header([ROOT_CID]) + encode_uvarint(len(cid_bytes) + 1) + cid_bytes + b"x"
    with pytest.raises(CarError, match="offset"):
        decode_all(data)


def test_errors_are_sticky_and_typed() -> None:
    decoder = CarDecoder()
    decoder.receive_data(b"\x00")
    with pytest.raises(CarError) as first:
        decoder.next_event()
    with pytest.raises(CarError) as again:
        decoder.next_event()
    assert again.value is first.value
    assert decoder.state == "ERROR"
    assert isinstance(first.value, DecodeError) and isinstance(first.value, ValueError)


def test_decoder_does_not_verify_hashes() -> None:
    """Hashes are the store's job: a tampered block decodes, with its claimed CID."""
    data = encode_header([CID_A]) + encode_block(CID_A, b"not the leaf")
    block = decode_all(data)[1]
    assert isinstance(block, CarBlock)
    assert (block.cid, block.data) == (CID_A, b"not the leaf")


def test_limits_are_configurable() -> None:
    decoder = CarDecoder(max_section_size=100)
    decoder.receive_data(encode_header([CID_B]) + encode_block(CID_B, LEAF_B))
    decoder.next_event()
    with pytest.raises(CarError, match="limit is 100"):
        decoder.next_event()


# -- hostile input ----------------------------------------------------------------------


def _decode_or_car_error(data: bytes, piece: int | None = None) -> list[object] | None:
    try:
        return decode_all(data, piece)
    except CarError:
        return None


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400), st.sampled_from([None, 1, 3, 50]))
def test_random_bytes_only_ever_raise_car_error(data: bytes, piece: int | None) -> None:
    _decode_or_car_error(data, piece)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(VALID_CAR)))
def test_truncation_is_a_car_error_or_a_shorter_valid_car(cut: int) -> None:
    events = _decode_or_car_error(VALID_CAR[:cut])
    if events is not None:  # cut exactly after the header or a whole section
        full = decode_all(VALID_CAR)
        assert events == full[: len(events)]


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_bit_flips_only_ever_raise_car_error(data: st.DataObject) -> None:
    tampered = bytearray(VALID_CAR)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        position = data.draw(st.integers(min_value=0, max_value=len(tampered) - 1))
        tampered[position] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
    _decode_or_car_error(bytes(tampered), data.draw(st.sampled_from([None, 1, 17])))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.binary(max_size=64))
def test_garbage_around_a_valid_header(prefix: bytes, suffix: bytes) -> None:
    _decode_or_car_error(prefix + encode_header([ROOT_CID]) + suffix)
    _decode_or_car_error(encode_header([ROOT_CID]) + suffix)


def test_deeply_nested_header_is_a_car_error() -> None:
    body = b"\x81" * 5000 + b"\x00"  # 5000 nested arrays: recursion, not a header
    with pytest.raises(CarError):
        decode_all(encode_uvarint(len(body)) + body)


def test_roots_accept_only_cids() -> None:
    cid = CID.decode(bytes(ROOT_CID))
    assert decode_all(header_bytes({"roots": [cid, cid], "version": 1})) == [
        CarHeader((cid, cid), 1)
    ]
