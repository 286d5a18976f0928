"""dag-pb against the spec's fixtures and hostile bytes."""

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.cid import DAG_PB, RAW, cid_to_text, make_cid
from protocol.dagpb import DagPbError, PBLink, PBNode, decode_node, encode_node
from protocol.errors import DecodeError

CHILD = make_cid(b"child", version=1, codec=RAW)


def test_empty_node_is_empty_bytes_with_spec_cid():
    # Fixture from the dag-pb spec: the empty PBNode encodes to zero bytes.
    assert encode_node(PBNode()) == b""
    cid = make_cid(b"", version=1, codec=DAG_PB)
    assert cid_to_text(cid) == "bafybeihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    assert decode_node(b"") == PBNode()


def test_links_are_written_before_data_and_round_trip():
    node = PBNode((PBLink(CHILD, "a", 5), PBLink(CHILD, "", 0), PBLink(CHILD, None, None)), b"xy")
    encoded = encode_node(node)
    assert encoded[0] == 0x12  # field 2 (Links), wire type 2
    assert encoded.endswith(b"\x0a\x02xy")
    assert decode_node(encoded) == node


def test_empty_name_is_written_as_kubo_does():
    body = encode_node(PBNode((PBLink(CHILD, "", 5),)))
    cid_bytes = bytes(CHILD)
    link = b"\x0a" + bytes([len(cid_bytes)]) + cid_bytes + b"\x12\x00" + b"\x18\x05"
    assert body == b"\x12" + bytes([len(link)]) + link


@pytest.mark.parametrize(
    "data,why",
    [
        (b"\x0a\x01x\x12\x00", "links after data"),
        (b"\x0a\x01x\x0a\x01y", "data twice"),
        (b"\x1a\x00", "unknown field 3"),
        (b"\x08\x01", "data with wrong wire type"),
        (b"\x12\x05\x0a\x03abc", "link hash not a CID"),
        (b"\x12\x00", "link without hash"),
        (b"\x0a\x05ab", "truncated data"),
        (b"\x12\x02\x12\x00", "link name without hash"),
        (b"\x12\x04\x12\x00\x12\x00", "repeated link name"),
        (b"\x12", "truncated key"),
    ],
)
def test_hostile_nodes_raise_dagpb_error(data, why):
    with pytest.raises(DagPbError):
        decode_node(data)


def test_link_fields_out_of_order_are_refused():
    cid_bytes = bytes(CHILD)
    link = b"\x18\x05" + b"\x0a" + bytes([len(cid_bytes)]) + cid_bytes
    with pytest.raises(DagPbError):
        decode_node(b"\x12" + bytes([len(link)]) + link)


def test_invalid_utf8_name_refused():
    cid_bytes = bytes(CHILD)
    link = b"\x0a" + bytes([len(cid_bytes)]) + cid_bytes + b"\x12\x01\xff"
    with pytest.raises(DagPbError):
        decode_node(b"\x12" + bytes([len(link)]) + link)


names = st.one_of(st.none(), st.text(max_size=20))
links = st.builds(
    PBLink, st.just(CHILD), names, st.one_of(st.none(), st.integers(0, 2**63))
)


@given(st.lists(links, max_size=8), st.one_of(st.none(), st.binary(max_size=64)))
def test_round_trip_property(link_list, data):
    node = PBNode(tuple(link_list), data)
    assert decode_node(encode_node(node)) == node


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_typed_error(data):
    try:
        node = decode_node(data)
    except DecodeError:
        return
    # Whatever decodes must re-encode to the same bytes: one node, one byte form.
    assert encode_node(node) == data


@settings(max_examples=300)
@given(st.data())
def test_bit_flips_of_valid_node(data):
    node = PBNode((PBLink(CHILD, "track.flac", 1234),), b"\x08\x02\x18\x05")
    encoded = bytearray(encode_node(node))
    index = data.draw(st.integers(0, len(encoded) - 1))
    encoded[index] ^= 1 << data.draw(st.integers(0, 7))
    with contextlib.suppress(DecodeError):
        decode_node(bytes(encoded))
