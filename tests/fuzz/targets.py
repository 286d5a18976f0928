"""Fuzz targets: one `check(data)` per binary decoder of untrusted input, and its seeds.

Shared by the hypothesis tests (tests/protocol/test_fuzz_decoders.py,
tests/ledger/test_fuzz_ledger.py) and the atheris harnesses (tests/fuzz/fuzz_*.py), so
a property is written once and both fuzzers hold the decoder to it. Each `check`:

* calls the decoder on `data`; the decoder's typed error (`Target.errors`) is an
  accepted answer, and anything else (IndexError, KeyError, struct.error,
  UnicodeDecodeError, RecursionError, MemoryError...) propagates: a finding;
* when the decoder accepts, asserts the format's round trip: the value re-encodes
  to exactly `data` for the canonical formats (CIDs, dag-pb, entries, genesis, sync
  frames, gossip batches, export manifests), and to bytes that decode to the same
  value for the formats that admit several spellings (UnixFS, Bitswap, CAR headers
  written by other tools): an AssertionError is a finding too.

Seeds are valid encodings built here from fixed keys and the committed vectors'
content (tests/vectors/content.py), plus every file in tests/fuzz/corpus/<name>/ (the
regression corpus: inputs that once failed). docs/fuzzing.md says how to add one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from nacl.signing import SigningKey

from ledger.entry import EntryError, decode_entry, sign_entry
from ledger.export import (
    ExportError,
    Manifest,
    decode_manifest,
    encode_entry_section,
    encode_export_header,
    encode_manifest,
    read_export,
)
from ledger.genesis import GenesisError, Params, create_genesis, decode_genesis
from ledger.sync import (
    END_OF_STREAM,
    NEED_DATA,
    Entries,
    FrameReader,
    Heads,
    HeadsRequest,
    RangeRequest,
    RemoteHead,
    SyncError,
    SyncProtocolError,
    encode_message,
)
from ledger.sync import decode_message as decode_sync_message
from node.gossip import BatchDecodeError, decode_batch, encode_batch
from protocol import bitswap
from protocol.car import CAR_END, CarBlock, CarDecoder, CarError, CarHeader, encode_block
from protocol.car import NEED_DATA as CAR_NEED_DATA
from protocol.cid import (
    CID,
    DAG_PB,
    InvalidCID,
    cid_from_bytes,
    cid_to_text,
    make_cid,
    parse_cid,
    verify_block,
)
from protocol.dagpb import DagPbError, PBLink, PBNode, decode_node, encode_node
from protocol.errors import DecodeError
from protocol.importer import KUBO_DEFAULT, KUBO_V1_RAW, ImportOptions, import_bytes
from protocol.unixfs import DataType, UnixFSData, UnixFSError, decode_data, encode_data
from protocol.varint import decode_uvarint, encode_uvarint

__all__ = ["CORPUS", "TARGETS", "Target", "fuzz_examples", "seeds"]

#: The regression corpus: tests/fuzz/corpus/<target>/<any name>, raw bytes.
CORPUS = Path(__file__).resolve().parent / "corpus"
_VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def fuzz_examples(count: int) -> int:
    """`count` examples, or the deep profile's (20k+) when HYPOTHESIS_PROFILE=deep.

    Tests that name their own `max_examples` would otherwise ignore the profile."""
    if os.environ.get("HYPOTHESIS_PROFILE") == "deep":
        from hypothesis import settings

        return max(count, settings.get_profile("deep").max_examples)
    return count


@dataclass(frozen=True)
class Target:
    """A decoder under fuzzing: what it may raise, its property, its seed inputs."""

    name: str
    errors: tuple[type[BaseException], ...]
    check: Callable[[bytes], bool]
    make_seeds: Callable[[], list[bytes]]


# -- fixed material for seeds ----------------------------------------------------------------

_KEY = SigningKey(bytes(range(32)))
_OTHER = SigningKey(bytes(range(1, 33)))
_T0 = 1_700_000_000_000


@cache
def _entries() -> tuple[bytes, ...]:
    first = sign_entry(_KEY, 1, None, _T0, "note", {"text": "hello"})
    second = sign_entry(
        _KEY, 2, first.id_bytes, _T0 + 1, "tree_head", {"size": 1, "root": bytes(32)}
    )
    third = sign_entry(
        _OTHER, 1, None, _T0 + 2, "note.x",
        {"a": [1, -1, 2**64 - 1, -(2**63)], "b": b"\x00\xff", "c": {"d": None, "e": True}},
    )
    return first.encoded, second.encoded, third.encoded


@cache
def _content_blocks() -> tuple[tuple[bytes, bytes], ...]:
    """(CID bytes, block) from importing a committed vector's content (tests/vectors/),
    with small chunks so the DAG has internal nodes, in both import profiles; the
    vectors' root CIDs (unixfs.json) are checked by tests/protocol/test_importer_vectors."""
    from tests.vectors.content import deterministic_chunks

    vector = json.loads((_VECTORS / "unixfs.json").read_text("utf-8"))["files"][1]
    data = b"".join(deterministic_chunks(3000, vector["seed"])) + vector["name"].encode()
    out: list[tuple[bytes, bytes]] = []
    for options in (KUBO_DEFAULT, KUBO_V1_RAW):
        small = ImportOptions(options.cid_version, options.raw_leaves, 512, 3)
        blocks: list[tuple[bytes, bytes]] = []

        def keep(cid: CID, block: bytes, blocks: list[tuple[bytes, bytes]] = blocks) -> None:
            blocks.append((bytes(cid), block))

        import_bytes(data, small, keep)
        out += blocks[:3] + blocks[-3:]
    return tuple(out)


def _small_node() -> bytes:
    leaf = make_cid(b"leaf")
    return encode_node(
        PBNode((PBLink(leaf, "a", 4), PBLink(leaf, None, None)), encode_data(
            UnixFSData(DataType.FILE, b"xy", 6, (4, 2), mtime=(-5, 7))
        ))
    )


# -- checks ----------------------------------------------------------------------------------


def _check_varint(data: bytes) -> bool:
    try:
        value, end = decode_uvarint(data)
    except DecodeError:
        return False
    assert encode_uvarint(value) == data[:end], "varint accepted a non-minimal spelling"
    return True


def _check_cid(data: bytes) -> bool:
    try:
        cid = cid_from_bytes(data)
    except InvalidCID:
        return False
    assert bytes(cid) == data, "binary CID accepted in a non-canonical spelling"
    text = cid_to_text(cid)
    assert parse_cid(text) == cid and cid_to_text(parse_cid(text)) == text
    return True


def _check_dagpb(data: bytes) -> bool:
    try:
        node = decode_node(data)
    except DagPbError:
        return False
    assert encode_node(node) == data, "dag-pb accepted a non-canonical node"
    return True


def _check_unixfs(data: bytes) -> bool:
    try:
        message = decode_data(data)
    except UnixFSError:
        return False
    # UnixFS (protobuf) admits any field order and packed blocksizes: not canonical.
    # What must hold: the message re-encodes, and that encoding means the same.
    again = encode_data(message)
    assert decode_data(again) == message
    assert encode_data(decode_data(again)) == again
    return True


def _car_events(data: bytes, piece: int | None) -> list[CarHeader | CarBlock]:
    decoder = CarDecoder()
    events: list[CarHeader | CarBlock] = []
    step = piece or max(1, len(data))
    for start in range(0, len(data), step):
        decoder.receive_data(data[start : start + step])
        while (event := decoder.next_event()) is not CAR_NEED_DATA:
            events.append(event)  # type: ignore[arg-type]
    decoder.receive_data(b"")
    while (event := decoder.next_event()) is not CAR_END:
        assert event is not CAR_NEED_DATA, "CAR decoder wants data after the end"
        events.append(event)  # type: ignore[arg-type]
    return events


def _check_car(data: bytes) -> bool:
    try:
        events = _car_events(data, None)
    except CarError:
        return False
    header, *blocks = events
    assert isinstance(header, CarHeader)
    assert all(isinstance(block, CarBlock) for block in blocks)
    # Sections are written one way (varint length, CID bytes, data); the header is
    # DAG-CBOR that other tools may spell differently, so only sections are byte-exact.
    sections = b"".join(encode_block(b.cid, b.data) for b in blocks)  # type: ignore[union-attr]
    assert data.endswith(sections)
    assert _car_events(data, 7) == events, "CAR decoding depends on how input is chunked"
    return True


def _check_bitswap(data: bytes) -> bool:
    try:
        message = bitswap.decode_message(data)
    except bitswap.BitswapError:
        return False
    kept = bitswap.Message(
        message.wantlist, message.blocks, message.presences, message.pending_bytes
    )
    again = bitswap.encode_message(kept)
    assert bitswap.decode_message(again) == kept
    for cid, block in message.blocks:  # decoded blocks hash to their CIDs
        verify_block(cid, block)
    return True


def _check_entry(data: bytes) -> bool:
    try:
        entry = decode_entry(data)
    except EntryError:
        return False
    assert entry.encoded == data
    return True


def _check_genesis(data: bytes) -> bool:
    try:
        genesis = decode_genesis(data)
    except GenesisError:
        return False
    assert genesis.encoded == data
    return True


def _check_sync(data: bytes) -> bool:
    try:
        message = decode_sync_message(data)
    except SyncProtocolError:
        return False
    assert encode_message(message) == data, "sync frame accepted in a non-canonical form"
    reader = FrameReader()  # the same frame, a byte at a time, gives the same message
    got = []
    for byte in data:
        reader.receive_data(bytes((byte,)))
        while (item := reader.next_message()) is not NEED_DATA:
            got.append(item)
    reader.receive_data(b"")
    assert reader.next_message() is END_OF_STREAM
    assert got == [message]
    return True


def _check_batch(data: bytes) -> bool:
    try:
        items = decode_batch(data)
    except BatchDecodeError:
        return False
    assert encode_batch(items) == data
    return True


def _check_manifest(data: bytes) -> bool:
    try:
        manifest = decode_manifest(data)
    except ExportError:
        return False
    assert encode_manifest(manifest) == data
    return True


def _check_export(data: bytes) -> bool:
    try:
        manifest, entries = read_export([data[:50], data[50:]])
        items = list(entries)
    except ExportError:
        return False
    rebuilt = encode_export_header(manifest) + b"".join(
        encode_entry_section(block, cid) for cid, block in items
    )
    assert data.endswith(rebuilt[len(encode_export_header(manifest)) :])


# -- seeds -----------------------------------------------------------------------------------
    return True


def _varint_seeds() -> list[bytes]:
    return [encode_uvarint(v) for v in (0, 1, 127, 128, 300, 2**32, 2**63, 2**64 - 1)]


def _cid_seeds() -> list[bytes]:
    return [cid for cid, _ in _content_blocks()] + [
        bytes(make_cid(b"x")), bytes(parse_cid("bafkqaaa")),  # identity hash
    ]


def _dagpb_seeds() -> list[bytes]:
    nodes = [block for cid, block in _content_blocks() if cid_from_bytes(cid).codec.code == DAG_PB]
    return [*nodes[:6], _small_node(), encode_node(PBNode())]


def _unixfs_seeds() -> list[bytes]:
    out = [encode_data(UnixFSData(DataType.FILE, b"xy", 6, (4, 2), mtime=(-5, 7), mode=0o644))]
    out.append(encode_data(UnixFSData(DataType.HAMT_SHARD, None, None, (), 0x22, 256)))
    for cid, block in _content_blocks():
        if cid_from_bytes(cid).codec.code == DAG_PB:
            data = decode_node(block).data
            if data is not None:
                out.append(data[:2000])
    return out[:8]


def _car_bytes(blocks: Iterable[tuple[bytes, bytes]], root: bytes) -> bytes:
    from protocol.car import encode_header

    return encode_header([cid_from_bytes(root)]) + b"".join(
        encode_block(cid_from_bytes(cid), block[:3000]) for cid, block in blocks
    )


def _car_seeds() -> list[bytes]:
    blocks = list(_content_blocks())
    return [_car_bytes(blocks[:3], blocks[0][0]), _car_bytes([], blocks[-1][0])]


def _bitswap_seeds() -> list[bytes]:
    leaf = make_cid(b"hello")
    (_, node), *_ = _content_blocks()
    node_cid = make_cid(node, version=0, codec=DAG_PB)
    message = bitswap.Message(
        bitswap.Wantlist(
            [
                bitswap.WantEntry(leaf, 3, want_type=bitswap.WantType.HAVE, send_dont_have=True),
                bitswap.WantEntry(node_cid, 1, cancel=True),
            ],
            full=True,
        ),
        [(leaf, b"hello"), (node_cid, node)],
        [bitswap.BlockPresence(leaf, bitswap.PresenceType.DONT_HAVE)],
        7,
    )
    return [
        bitswap.encode_message(message),
        bitswap.encode_message(
            bitswap.Message(message.wantlist, [(node_cid, node)]), bitswap.PROTOCOL_1_0_0
        ),
        bitswap.encode_message(bitswap.Message()),
    ]


def _genesis_seeds() -> list[bytes]:
    treasury = [bytes(_OTHER.verify_key)]
    genesis = create_genesis("fuzz co-op", [_KEY, _OTHER], treasury, Params(), _T0)
    return [genesis.encoded]


def _sync_seeds() -> list[bytes]:
    first, second, third = _entries()
    head = decode_entry(second)
    messages = [
        HeadsRequest("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku", None, 100),
        HeadsRequest("co-op", head.author, 1),
        Heads(tuple(sorted([RemoteHead(head.author, 2, head.id_bytes, None),
                            RemoteHead(bytes(32), 9, head.id_bytes, 4)])), True),
        RangeRequest(head.author, 1, 2),
        Entries((first, second, third), False),
        SyncError("no such co-op"),
    ]
    return [encode_message(m) for m in messages]


def _batch_seeds() -> list[bytes]:
    return [encode_batch(list(_entries())), encode_batch([b"x"] * 20)]


def _manifest_seeds() -> list[bytes]:
    return [
        encode_manifest(Manifest(bytes(_KEY.verify_key), 3, "bafkreihdwdcefgh4dqkjv67uzcmw7ojee")),
        encode_manifest(Manifest(bytes(32), 0, None)),
    ]


def _export_seeds() -> list[bytes]:
    entries = [decode_entry(item) for item in _entries()]
    header = encode_export_header(Manifest(bytes(_KEY.verify_key), len(entries), None))
    return [header + b"".join(encode_entry_section(e.encoded, e.id_bytes) for e in entries)]


TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        Target("varint", (DecodeError,), _check_varint, _varint_seeds),
        Target("cid", (InvalidCID,), _check_cid, _cid_seeds),
        Target("dagpb", (DagPbError,), _check_dagpb, _dagpb_seeds),
        Target("unixfs", (UnixFSError,), _check_unixfs, _unixfs_seeds),
        Target("car", (CarError,), _check_car, _car_seeds),
        Target("bitswap", (bitswap.BitswapError,), _check_bitswap, _bitswap_seeds),
        Target("entry", (EntryError,), _check_entry, lambda: list(_entries())),
        Target("genesis", (GenesisError,), _check_genesis, _genesis_seeds),
        Target("sync", (SyncProtocolError,), _check_sync, _sync_seeds),
        Target("gossip_batch", (BatchDecodeError,), _check_batch, _batch_seeds),
        Target("export_manifest", (ExportError,), _check_manifest, _manifest_seeds),
        Target("export", (ExportError,), _check_export, _export_seeds),
    )
}


def seeds(name: str) -> list[bytes]:
    """The target's built seeds, then its regression corpus files (sorted by name)."""
    out = list(TARGETS[name].make_seeds())
    folder = CORPUS / name
    if folder.is_dir():
        out += [path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()]
    return out
