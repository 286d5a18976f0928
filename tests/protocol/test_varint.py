import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import DecodeError
from protocol.varint import decode_uvarint, encode_uvarint


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_round_trip(value):
    encoded = encode_uvarint(value)
    assert decode_uvarint(encoded) == (value, len(encoded))


@pytest.mark.parametrize(
    "data",
    [b"", b"\x80", b"\xff" * 11, b"\x80\x00", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f"],
)
def test_hostile_varints(data):
    with pytest.raises(DecodeError):
        decode_uvarint(data)


def test_known_encodings():
    assert encode_uvarint(0) == b"\x00"
    assert encode_uvarint(127) == b"\x7f"
    assert encode_uvarint(128) == b"\x80\x01"
    assert encode_uvarint(300) == b"\xac\x02"
    with pytest.raises(ValueError):
        encode_uvarint(-1)
