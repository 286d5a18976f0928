import contextlib
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multiformats import CID

from protocol.cid import (
    DAG_PB,
    MAX_BLOCK_SIZE,
    RAW,
    cid_from_digest,
    cid_to_text,
    make_cid,
    parse_cid,
    verify_block,
)
from protocol.errors import BlockMismatch, BlockTooLarge, InvalidCID


def test_hello_world_raw_cid_matches_kubo():
    # `printf 'hello world' | ipfs add --cid-version=1 --raw-leaves`
    cid = make_cid(b"hello world")
    assert cid_to_text(cid) == "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"


@pytest.mark.parametrize("version,codec,base,name", [(0, DAG_PB, "base58btc", "dag-pb"),
                                                     (1, DAG_PB, "base32", "dag-pb"),
                                                     (1, RAW, "base32", "raw")])
def test_fast_constructor_equals_public_constructor(version, codec, base, name):
    digest = hashlib.sha256(b"chorus").digest()
    fast = cid_from_digest(digest, version=version, codec=codec)
    public = CID(base, version, name, bytes([0x12, 32]) + digest)
    assert fast == public
    assert str(fast) == str(public)
    assert bytes(fast) == bytes(public)


def test_v0_and_base32_text_round_trip():
    v0 = parse_cid("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o")
    assert v0.version == 0 and v0.codec.code == DAG_PB
    v1 = v0.set(version=1)
    assert cid_to_text(v1).startswith("bafybei")
    assert parse_cid(cid_to_text(v1)) == v1
    assert parse_cid(bytes(v1)) == v1
    assert parse_cid(bytes(v0)) == v0


@pytest.mark.parametrize(
    "bad",
    ["", "   ", "Qm", "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5", "zzzz", "bafy", "x" * 600,
     b"", b"\x01", b"\x12\x20" + b"\x00" * 5],
)
def test_bad_cids_are_typed_errors(bad):
    with pytest.raises(InvalidCID):
        parse_cid(bad)


def test_non_text_input_is_refused():
    with pytest.raises(InvalidCID):
        parse_cid(12345)  # type: ignore[arg-type]


@given(st.text(max_size=80))
def test_any_text_parses_or_raises_invalid_cid(text):
    with contextlib.suppress(InvalidCID):
        parse_cid(text)


@given(st.binary(max_size=80))
def test_any_bytes_parse_or_raise_invalid_cid(data):
    with contextlib.suppress(InvalidCID):
        parse_cid(data)


def test_verify_block_refuses_mismatch_and_oversize():
    cid = make_cid(b"abc")
    verify_block(cid, b"abc")
    with pytest.raises(BlockMismatch):
        verify_block(cid, b"abd")
    big = b"\x00" * (MAX_BLOCK_SIZE + 1)
    with pytest.raises(BlockTooLarge):
        verify_block(make_cid(big), big)
    exact = b"\x00" * MAX_BLOCK_SIZE
    verify_block(make_cid(exact), exact)


@given(st.binary(min_size=32, max_size=32), st.sampled_from([(0, DAG_PB), (1, DAG_PB), (1, RAW)]))
def test_fast_text_equals_multiformats(digest, form):
    version, codec = form
    cid = cid_from_digest(digest, version=version, codec=codec)
    expected = str(cid) if version == 0 else cid.encode("base32")
    assert cid_to_text(cid) == expected
    assert parse_cid(cid_to_text(cid)) == cid
