import base64
import contextlib
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multiformats import CID

from protocol.cid import (
    DAG_PB,
    MAX_BLOCK_SIZE,
    RAW,
    cid_from_digest,
    cid_to_text,
    is_canonical_cid_text,
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


# --- is_canonical_cid_text: the fast check of ledger CID text ---------------------------


def slow_is_canonical(text: str) -> bool:
    """The check ledger/econ_kinds.py made before the fast path: parse, print, compare."""
    try:
        return cid_to_text(parse_cid(text)) == text
    except InvalidCID:
        return False


def v1_text(codec: int, digest: bytes, hash_code: int = 0x12) -> str:
    raw = bytes([1, codec, hash_code, len(digest)]) + digest
    return "b" + base64.b32encode(raw).decode("ascii").lower().rstrip("=")


def test_canonical_cid_text_known_answers():
    v1 = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    v0 = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
    for good in (v1, v0, cid_to_text(parse_cid(v0).set(version=1))):
        assert is_canonical_cid_text(good) and slow_is_canonical(good)
    for bad in ("", " " + v1, v1 + "\n", v1.upper(), "B" + v1[1:], v1[:-1], v1 + "a",
                v1[:-1] + "f",  # the 2 bits after the 36 bytes are not zero
                v1 + "=" * 6, v0[:-1], v0[:-1] + "0", "Qm" + "z" * 44, "b" + "a" * 58,
                parse_cid(v1).encode("base58btc"), parse_cid(v0).set(version=1).encode("base36")):
        assert not is_canonical_cid_text(bad) and not slow_is_canonical(bad), bad
    assert not is_canonical_cid_text(b"QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o")  # type: ignore[arg-type]


@pytest.mark.parametrize("codec", range(0x80))
def test_canonical_cid_text_every_one_byte_codec(codec):
    """The fast path's codec set is exactly what parse_cid accepts, code by code."""
    text = v1_text(codec, hashlib.sha256(bytes([codec])).digest())
    assert is_canonical_cid_text(text) == slow_is_canonical(text)


_DIGESTS = st.binary(min_size=32, max_size=32)
_V0_TEXT = _DIGESTS.map(lambda d: cid_to_text(cid_from_digest(d, version=0, codec=DAG_PB)))
_V1_TEXT = st.builds(
    v1_text,
    st.one_of(st.sampled_from([DAG_PB, RAW, 0x71, 0x72]), st.integers(0, 0x7F)),
    _DIGESTS,
)
# Other hashes (sha2-512, identity, a short "sha2-256"): the slow path, which must agree.
_OTHER_TEXT = st.one_of(
    st.builds(v1_text, st.sampled_from([DAG_PB, RAW]), st.binary(min_size=64, max_size=64),
              st.just(0x13)),
    st.builds(v1_text, st.just(RAW), st.binary(max_size=20), st.just(0x00)),
    st.builds(v1_text, st.just(RAW), st.binary(min_size=31, max_size=31)),
)
_CID_TEXT = st.one_of(_V0_TEXT, _V1_TEXT, _OTHER_TEXT)
# The base58btc alphabet (the first 58; with "234567" it also covers base32's lower
# case), then characters that are neither, look-alikes and non-ASCII case traps.
_ALPHABETS = (
    "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    "0OIl=+/ _-\n\u0131\u017f\u00df"
)


@st.composite
def mutated(draw, texts=_CID_TEXT):
    """A valid CID text, then 0..3 edits: change, insert, delete, case, cut, prefix."""
    text = draw(texts)
    char = st.one_of(st.sampled_from(_ALPHABETS), st.characters())
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, max(0, len(text) - 1)))
        edit = draw(st.sampled_from(
            ["set", "insert", "delete", "swapcase", "upper", "cut", "prefix", "last"]
        ))
        if edit == "set" and text:
            text = text[:at] + draw(char) + text[at + 1:]
        elif edit == "insert":
            text = text[:at] + draw(char) + text[at:]
        elif edit == "delete":
            text = text[:at] + text[at + 1:]
        elif edit == "swapcase" and text:
            text = text[:at] + text[at].swapcase() + text[at + 1:]
        elif edit == "upper":
            text = text.upper()
        elif edit == "cut":
            text = text[:at]
        elif edit == "prefix":
            text = draw(st.sampled_from(["b", "B", "Q", "Qm", "z", "f", "k", " "])) + text[1:]
        elif edit == "last" and text:  # another last digit: stray trailing bits, mostly
            text = text[:-1] + draw(st.sampled_from(_ALPHABETS[:58] + "234567"))
    return text


@given(_CID_TEXT)
def test_canonical_cid_text_fast_equals_slow_on_valid_cids(text):
    assert is_canonical_cid_text(text) == slow_is_canonical(text)


@settings(max_examples=600)
@given(mutated())
def test_canonical_cid_text_fast_equals_slow_on_mutations(text):
    assert is_canonical_cid_text(text) == slow_is_canonical(text)


@given(st.text(max_size=70))
def test_canonical_cid_text_fast_equals_slow_on_any_text(text):
    assert is_canonical_cid_text(text) == slow_is_canonical(text)
