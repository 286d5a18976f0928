"""ledger/export.py: the manifest's one byte form, and parsing whole and broken exports."""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from ledger.entry import SignedEntry, sign_entry
from ledger.export import (
    FORMAT,
    ExportError,
    Manifest,
    decode_manifest,
    encode_entry_section,
    encode_export_header,
    encode_manifest,
    read_export,
)
from protocol.car import encode_block, encode_header
from protocol.cid import RAW, make_cid
from protocol.errors import DecodeError

T0 = 1_700_000_000_000
KEY = SigningKey(bytes([5]) * 32)
NODE = bytes(KEY.verify_key)


def pk(value: object) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def entries(count: int) -> list[SignedEntry]:
    out: list[SignedEntry] = []
    for seq in range(1, count + 1):
        prev = out[-1].id_bytes if out else None
        out.append(sign_entry(KEY, seq, prev, T0 + seq, "note", {"text": f"entry {seq}"}))
    return out


ENTRIES = entries(5)
MANIFEST = Manifest(NODE, len(ENTRIES), "demo co-op")


def export_bytes(manifest: Manifest = MANIFEST, items: list[SignedEntry] = ENTRIES) -> bytes:
    return encode_export_header(manifest) + b"".join(
        encode_entry_section(entry.encoded, entry.id_bytes) for entry in items
    )


def read_all(data: bytes, chunk: int = 1 << 20) -> tuple[Manifest, list[tuple[bytes, bytes]]]:
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    manifest, records = read_export(chunks)
    return manifest, list(records)


# --- the manifest ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "manifest",
    [MANIFEST, Manifest(NODE, 0), Manifest(b"\x00" * 32, (1 << 63) - 1, ""),
     Manifest(NODE, 3, "é" * 256)],
)
def test_manifest_round_trip(manifest: Manifest) -> None:
    data = encode_manifest(manifest)
    assert decode_manifest(data) == manifest
    assert msgpack.unpackb(data) == {
        "coop": manifest.coop, "format": FORMAT, "node": manifest.node, "size": manifest.size,
    }
    assert list(msgpack.unpackb(data)) == ["coop", "format", "node", "size"]


def raw_manifest(**changes: object) -> bytes:
    value = {"coop": None, "format": FORMAT, "node": NODE, "size": 3}
    value.update(changes)
    return pk(value)


def test_manifest_error_is_a_decode_error() -> None:
    assert issubclass(ExportError, DecodeError)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        # Non-canonical: other key order, wide integer, wide map header, trailing bytes.
        (pk({"size": 3, "node": NODE, "format": FORMAT, "coop": None}), "canonical"),
        (raw_manifest()[:-1] + b"\xcf" + struct.pack(">Q", 3), "canonical"),
        (b"\xde\x00\x04" + raw_manifest()[1:], "canonical"),
        # Wrong values.
        (raw_manifest(format="chorus/ledger-export/v2"), "format"),
        (raw_manifest(format=FORMAT.encode()), "format"),
        (raw_manifest(node=NODE[:31]), "32-byte"),
        (raw_manifest(node=NODE + b"\x00"), "32-byte"),
        (raw_manifest(node=NODE.hex()), "32-byte"),
        (raw_manifest(size=-1), "non-negative"),
        (raw_manifest(size=1 << 63), "non-negative"),
        (raw_manifest(size=True), "non-negative"),
        (raw_manifest(size="3"), "non-negative"),
        (raw_manifest(coop=b"bytes"), "coop"),
        (raw_manifest(coop="x" * 257), "coop"),
        # Wrong shape.
        (raw_manifest(extra=1), "exactly"),
        (pk({"format": FORMAT, "node": NODE, "size": 3}), "exactly"),
        (pk([None, FORMAT, NODE, 3]), "exactly"),
        (pk(None), "exactly"),
        # Not msgpack at all.
        (b"", "not msgpack"),
        (b"\xc1", "not msgpack"),
        (raw_manifest()[:-3], "not msgpack"),
        (raw_manifest() + b"\x00", "not msgpack"),
        (b"\xd6\xff\x00\x00\x00\x01", "exactly"),  # a msgpack timestamp
    ],
)
def test_manifest_refusals(data: bytes, match: str) -> None:
    with pytest.raises(ExportError, match=match):
        decode_manifest(data)


# --- reading an export ----------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 7, 100, 1 << 20])
def test_read_export(chunk: int) -> None:
    data = export_bytes()
    manifest, records = read_all(data, chunk)
    assert manifest == MANIFEST
    assert records == [(entry.id_bytes, entry.encoded) for entry in ENTRIES]


def test_read_empty_export() -> None:
    manifest, records = read_all(export_bytes(Manifest(NODE, 0), []))
    assert manifest == Manifest(NODE, 0) and records == []


def test_header_is_a_car_with_the_manifest_as_root() -> None:
    data = encode_manifest(MANIFEST)
    cid = make_cid(data, version=1, codec=RAW)
    assert encode_export_header(MANIFEST) == encode_header([cid]) + encode_block(cid, data)


def test_claimed_ids_are_passed_through_unchecked() -> None:
    """A section's CID is not checked against its bytes here: the verifier does that."""
    other = ENTRIES[1].id_bytes
    data = encode_export_header(MANIFEST) + encode_entry_section(ENTRIES[0].encoded, other)
    _, records = read_all(data)
    assert records == [(other, ENTRIES[0].encoded)]


def test_truncated_export_fails_while_iterating() -> None:
    data = export_bytes()
    header = len(encode_export_header(MANIFEST))
    for cut in (header + 1, header + 40, len(data) - 1, len(data) - 200):
        manifest, records = read_export([data[:cut]])
        assert manifest == MANIFEST
        with pytest.raises(ExportError, match="not a valid CAR"):
            list(records)


def test_truncated_header_fails_at_once() -> None:
    header = encode_export_header(MANIFEST)
    for cut in (0, 1, 10, len(header) - 1):
        with pytest.raises(ExportError):
            read_export([header[:cut]])


def test_wrong_root() -> None:
    manifest = encode_manifest(MANIFEST)
    cid = make_cid(manifest, version=1, codec=RAW)
    other = make_cid(b"something else", version=1, codec=RAW)
    data = encode_header([other]) + encode_block(cid, manifest)
    with pytest.raises(ExportError, match="manifest root"):
        read_export([data])
    with pytest.raises(ExportError, match="exactly one root"):
        read_export([encode_header([cid, other]) + encode_block(cid, manifest)])
    with pytest.raises(ExportError, match="exactly one root"):
        read_export([encode_header([]) + encode_block(cid, manifest)])


def test_first_block_not_the_manifest() -> None:
    manifest = encode_manifest(MANIFEST)
    cid = make_cid(manifest, version=1, codec=RAW)
    first = ENTRIES[0]
    data = encode_header([cid]) + encode_entry_section(first.encoded, first.id_bytes)
    with pytest.raises(ExportError, match="manifest root"):
        read_export([data + encode_block(cid, manifest)])
    with pytest.raises(ExportError, match="manifest root"):
        read_export([encode_header([cid])])  # no block at all


def test_manifest_block_must_match_its_cid() -> None:
    manifest = encode_manifest(MANIFEST)
    cid = make_cid(manifest, version=1, codec=RAW)
    lie = encode_manifest(Manifest(NODE, 999, "demo co-op"))
    with pytest.raises(ExportError, match="does not match its CID"):
        read_export([encode_header([cid]) + encode_block(cid, lie)])


def test_manifest_block_that_is_not_a_manifest() -> None:
    bad = pk({"format": FORMAT})
    cid = make_cid(bad, version=1, codec=RAW)
    with pytest.raises(ExportError, match="exactly coop"):
        read_export([encode_header([cid]) + encode_block(cid, bad)])


def test_not_a_car_at_all() -> None:
    for data in (b"", b"\x00", b"hello world", export_bytes()[1:]):
        with pytest.raises(ExportError):
            _, records = read_export([data])
            list(records)


# --- hostile bytes --------------------------------------------------------------------


def _consume(data: bytes, chunk: int) -> None:
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    try:
        _, records = read_export(chunks)
        for claimed, block in records:
            assert type(claimed) is bytes and type(block) is bytes
    except ExportError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 64))
def test_random_bytes_only_raise_export_error(data: bytes, chunk: int) -> None:
    _consume(data, chunk)


HEADER = encode_export_header(MANIFEST)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 64))
def test_random_bytes_after_a_valid_header_only_raise_export_error(
    tail: bytes, chunk: int
) -> None:
    _consume(HEADER + tail, chunk)


VALID = export_bytes()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), max_size=4),
       st.integers(0, len(VALID)), st.integers(1, 512))
def test_mutated_exports_only_raise_export_error(
    edits: list[tuple[int, int]], cut: int, chunk: int
) -> None:
    data = bytearray(VALID)
    for position, value in edits:
        data[position] = value
    _consume(bytes(data[:cut]), chunk)
