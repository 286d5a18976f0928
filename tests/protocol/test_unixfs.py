import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import DecodeError
from protocol.unixfs import DataType, UnixFSData, UnixFSError, decode_data, encode_data


def test_kubo_byte_layouts():
    # Empty file (QmbFMke1...): Type=File, filesize=0, no Data field.
    assert encode_data(UnixFSData(DataType.FILE, filesize=0)) == bytes.fromhex("08021800")
    # Directory: Type only.
    assert encode_data(UnixFSData(DataType.DIRECTORY)) == bytes.fromhex("0801")
    # Internal node: unpacked blocksizes after filesize.
    internal = UnixFSData(DataType.FILE, filesize=3, blocksizes=(1, 2))
    assert encode_data(internal) == bytes.fromhex("080218032001" "2002")


def test_packed_blocksizes_are_accepted():
    packed = bytes.fromhex("080218032202" "0102")
    assert decode_data(packed).blocksizes == (1, 2)


def test_mtime_and_mode_round_trip():
    msg = UnixFSData(DataType.FILE, data=b"x", filesize=1, mode=0o644, mtime=(-5, 7))
    assert decode_data(encode_data(msg)) == msg


@pytest.mark.parametrize(
    "data",
    [
        b"",  # Type is required
        b"\x08\x09",  # unknown type
        b"\x08\x02\x12\x05ab",  # Data runs past the end
        b"\x08\x02\x1a\x00",  # filesize with wire type 2
        b"\x08\x02\x22\x05\x01",  # packed blocksizes past the end
        b"\x08\x02\x42\x02\x15\x00",  # mtime nanos truncated
        b"\x08\x02\x42\x00",  # mtime without seconds
        b"\x08\x02\x42\x06\x08\x01\x15\xff\xff\xff\xff",  # nanos >= 1e9
        b"\x08\x02\x0b",  # wire type 3 on an unknown field
    ],
)
def test_hostile_unixfs_raises_typed_error(data):
    with pytest.raises(UnixFSError):
        decode_data(data)


def test_unknown_fields_are_skipped():
    assert decode_data(b"\x08\x02\x50\x07").type == DataType.FILE


messages = st.builds(
    UnixFSData,
    st.sampled_from(DataType),
    st.one_of(st.none(), st.binary(max_size=30)),
    st.one_of(st.none(), st.integers(0, 2**64 - 1)),
    st.lists(st.integers(0, 2**40), max_size=5).map(tuple),
    st.one_of(st.none(), st.integers(0, 2**20)),
    st.one_of(st.none(), st.integers(0, 2**20)),
    st.one_of(st.none(), st.integers(0, 0o7777)),
    st.one_of(st.none(), st.tuples(st.integers(-(2**62), 2**62),
                                   st.one_of(st.none(), st.integers(0, 999_999_999)))),
)


@given(messages)
def test_round_trip_property(msg):
    assert decode_data(encode_data(msg)) == msg


@settings(max_examples=500)
@given(st.binary(max_size=120))
def test_random_bytes_decode_or_raise_typed_error(data):
    with contextlib.suppress(DecodeError):
        decode_data(data)
