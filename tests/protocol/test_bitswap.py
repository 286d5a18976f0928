"""Bitswap codec: golden bytes spelled out from the .proto and cross-checked against the
protobuf runtime compiling the same schema, what each protocol version is sent, the
decoder's limits, framing, and hostile input that must only ever end in a BitswapError."""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multiformats import CID, multihash

from protocol.bitswap import (
    END_OF_STREAM,
    MAX_BLOCK_PRESENCES,
    MAX_BLOCKS,
    MAX_CID_SIZE,
    MAX_MESSAGE_SIZE,
    MAX_WANTLIST_ENTRIES,
    NEED_DATA,
    PROTOCOL_1_0_0,
    PROTOCOL_1_1_0,
    PROTOCOL_1_2_0,
    PROTOCOL_UNVERSIONED,
    PROTOCOLS,
    BitswapError,
    BlockPresence,
    FrameDecoder,
    Message,
    PresenceType,
    SkippedBlock,
    UnsupportedPrefix,
    WantEntry,
    Wantlist,
    WantType,
    cid_from_prefix,
    decode_message,
    encode_frame,
    encode_message,
    prefix_of,
    supports_have,
)
from protocol.cid import DAG_PB, MAX_BLOCK_SIZE, cid_from_multihash, make_cid, parse_cid
from protocol.dagpb import PBNode, encode_node
from protocol.errors import DecodeError
from protocol.varint import encode_uvarint

DAG_CBOR = 0x71
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

HELLO_CID = make_cid(b"hello")  # CIDv1 raw sha2-256, 36 bytes: 01 55 12 20 || digest
HELLO_DIGEST = bytes.fromhex("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
EMPTY_DIR = encode_node(PBNode((), b"\x08\x01"))  # the empty UnixFS directory: 0a 02 08 01
EMPTY_DIR_CID = parse_cid("QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn")  # known to every IPFS
EMPTY_DIR_DIGEST = bytes(EMPTY_DIR_CID)[2:]


def dag_cbor_cid(data: bytes) -> CID:
    return cid_from_multihash(b"\x12\x20" + hashlib.sha256(data).digest(), codec=DAG_CBOR)


def ld(number: int, body: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return encode_uvarint(number << 3 | 2) + encode_uvarint(len(body)) + body


def vi(number: int, value: int) -> bytes:
    """A varint protobuf field (`value` taken mod 2**64, as int32 negatives are)."""
    return encode_uvarint(number << 3) + encode_uvarint(value % 2**64)


def entry_bytes(*fields: bytes) -> bytes:
    """A Message with a wantlist holding one entry made of `fields`."""
    return ld(1, ld(1, b"".join(fields)))


def test_known_cids_are_what_ipfs_says() -> None:
    assert str(HELLO_CID) == "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
    assert bytes(HELLO_CID) == bytes.fromhex("01551220") + HELLO_DIGEST
    assert bytes.fromhex("0a020801") == EMPTY_DIR
    assert make_cid(EMPTY_DIR, version=0, codec=DAG_PB) == EMPTY_DIR_CID


# -- golden bytes, by hand ------------------------------------------------------------


WANT_HAVE = Message(
    Wantlist([WantEntry(HELLO_CID, 1, want_type=WantType.HAVE, send_dont_have=True)])
)
WANT_HAVE_BYTES = (
    bytes([0x0A, 0x2E])  # Message.wantlist: field 1, wire 2 (1<<3|2 = 0x0a), 46 bytes
    + bytes([0x0A, 0x2C])  # Wantlist.entries: field 1, wire 2, 44 bytes
    + bytes([0x0A, 0x24])  # Entry.block: field 1, wire 2, 36 bytes of binary CID
    + bytes.fromhex("01551220")  # CIDv1, raw (0x55), sha2-256 (0x12), 32-byte digest
    + HELLO_DIGEST
    + bytes([0x10, 0x01])  # Entry.priority: field 2, wire 0 (0x10), 1
    + bytes([0x20, 0x01])  # Entry.wantType: field 4, wire 0 (0x20), Have = 1
    + bytes([0x28, 0x01])  # Entry.sendDontHave: field 5, wire 0 (0x28), true
)  # cancel (field 3) is false and full (Wantlist field 2) is false: proto3 omits both

V0_PAYLOAD = Message(blocks=[(EMPTY_DIR_CID, EMPTY_DIR)])
V0_PAYLOAD_BYTES = (
    bytes([0x1A, 0x0C])  # Message.payload: field 3, wire 2 (3<<3|2 = 0x1a), 12 bytes
    + bytes([0x0A, 0x04])  # Block.prefix: field 1, wire 2, 4 bytes
    + bytes([0x00, 0x70, 0x12, 0x20])  # version 0, dag-pb (0x70), sha2-256, 32 bytes
    + bytes([0x12, 0x04])  # Block.data: field 2, wire 2 (0x12), 4 bytes
    + EMPTY_DIR
)

DONT_HAVE = Message(
    presences=[BlockPresence(EMPTY_DIR_CID, PresenceType.DONT_HAVE)], pending_bytes=300
)
DONT_HAVE_BYTES = (
    bytes([0x22, 0x26])  # Message.blockPresences: field 4, wire 2 (4<<3|2 = 0x22), 38 bytes
    + bytes([0x0A, 0x22])  # BlockPresence.cid: field 1, wire 2, 34 bytes (a CIDv0)
    + bytes([0x12, 0x20])  # CIDv0 = bare multihash: sha2-256, 32 bytes
    + EMPTY_DIR_DIGEST
    + bytes([0x10, 0x01])  # BlockPresence.type: field 2, wire 0, DontHave = 1
    + bytes([0x28, 0xAC, 0x02])  # Message.pendingBytes: field 5, wire 0; 300 = 0b10_0101100
)

CANCEL_NEGATIVE = Message(Wantlist([WantEntry(EMPTY_DIR_CID, -1, cancel=True)], full=True))
CANCEL_NEGATIVE_BYTES = (
    bytes([0x0A, 0x35])  # Message.wantlist, 53 bytes: the entry's 2 + 49, full's 2
    + bytes([0x0A, 0x31])  # Wantlist.entries, 49 bytes: 2 + 34, 1 + 10, 2
    + bytes([0x0A, 0x22])  # Entry.block, 34 bytes
    + bytes([0x12, 0x20])
    + EMPTY_DIR_DIGEST
    + bytes([0x10])  # Entry.priority; -1 as an int32 is sign-extended to 64 bits:
    + bytes([0xFF] * 9 + [0x01])  # nine 7-bit groups of ones, then the 64th bit
    + bytes([0x18, 0x01])  # Entry.cancel: field 3, wire 0 (0x18), true
    + bytes([0x10, 0x01])  # Wantlist.full: field 2, wire 0, true
)

GOLDEN = [
    (WANT_HAVE, WANT_HAVE_BYTES),
    (V0_PAYLOAD, V0_PAYLOAD_BYTES),
    (DONT_HAVE, DONT_HAVE_BYTES),
    (CANCEL_NEGATIVE, CANCEL_NEGATIVE_BYTES),
]


@pytest.mark.parametrize(("message", "golden"), GOLDEN)
def test_golden_bytes(message: Message, golden: bytes) -> None:
    assert encode_message(message, PROTOCOL_1_2_0) == golden
    assert decode_message(golden) == message


def test_golden_lengths_add_up() -> None:
    assert len(WANT_HAVE_BYTES) == 2 + 0x2E and len(V0_PAYLOAD_BYTES) == 2 + 0x0C
    assert len(DONT_HAVE_BYTES) == 2 + 0x26 + 3 and len(CANCEL_NEGATIVE_BYTES) == 2 + 0x35


def test_1_0_0_block_golden_bytes() -> None:
    """1.0.0 sends the bare block in Message.blocks (field 2, wire 2: 0x12)."""
    assert encode_message(V0_PAYLOAD, PROTOCOL_1_0_0) == bytes([0x12, 0x04]) + EMPTY_DIR
    assert decode_message(bytes([0x12, 0x04]) + EMPTY_DIR) == V0_PAYLOAD


def test_empty_message_is_empty_bytes_and_boxo_empty_wantlist_decodes() -> None:
    assert encode_message(Message()) == b""
    assert decode_message(b"") == Message()
    assert decode_message(b"\x0a\x00") == Message()  # boxo always writes the wantlist


# -- the protobuf runtime as an independent oracle ------------------------------------


@functools.cache
def _pb_class() -> Any:
    """The schema of boxo's message.proto, compiled by the protobuf runtime at test time."""
    descriptor_pb2 = pytest.importorskip("google.protobuf.descriptor_pb2")
    from google.protobuf import descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    pkg = "chorus.test.bitswap"
    file = descriptor_pb2.FileDescriptorProto(
        name="chorus_test_bitswap.proto", package=pkg, syntax="proto3"
    )
    message = file.message_type.add(name="Message")

    def add(msg: Any, name: str, number: int, kind: int, type_name: str = "", rep: bool = False):
        label = field.LABEL_REPEATED if rep else field.LABEL_OPTIONAL
        added = msg.field.add(name=name, number=number, type=kind, label=label)
        if type_name:
            added.type_name = type_name

    wantlist = message.nested_type.add(name="Wantlist")
    want_type = wantlist.enum_type.add(name="WantType")
    want_type.value.add(name="Block", number=0)
    want_type.value.add(name="Have", number=1)
    entry = wantlist.nested_type.add(name="Entry")
    add(entry, "block", 1, field.TYPE_BYTES)
    add(entry, "priority", 2, field.TYPE_INT32)
    add(entry, "cancel", 3, field.TYPE_BOOL)
    add(entry, "wantType", 4, field.TYPE_ENUM, f".{pkg}.Message.Wantlist.WantType")
    add(entry, "sendDontHave", 5, field.TYPE_BOOL)
    add(wantlist, "entries", 1, field.TYPE_MESSAGE, f".{pkg}.Message.Wantlist.Entry", rep=True)
    add(wantlist, "full", 2, field.TYPE_BOOL)
    block = message.nested_type.add(name="Block")
    add(block, "prefix", 1, field.TYPE_BYTES)
    add(block, "data", 2, field.TYPE_BYTES)
    presence_type = message.enum_type.add(name="BlockPresenceType")
    presence_type.value.add(name="Have", number=0)
    presence_type.value.add(name="DontHave", number=1)
    presence = message.nested_type.add(name="BlockPresence")
    add(presence, "cid", 1, field.TYPE_BYTES)
    add(presence, "type", 2, field.TYPE_ENUM, f".{pkg}.Message.BlockPresenceType")
    add(message, "wantlist", 1, field.TYPE_MESSAGE, f".{pkg}.Message.Wantlist")
    add(message, "blocks", 2, field.TYPE_BYTES, rep=True)
    add(message, "payload", 3, field.TYPE_MESSAGE, f".{pkg}.Message.Block", rep=True)
    add(message, "blockPresences", 4, field.TYPE_MESSAGE, f".{pkg}.Message.BlockPresence", rep=True)
    add(message, "pendingBytes", 5, field.TYPE_INT32)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{pkg}.Message"))


def _independent_prefix(cid: CID) -> bytes:
    """The CID prefix from multiformats' own accessors, not from `prefix_of`."""
    fields = (cid.version, cid.codec.code, cid.hashfun.code, len(cid.raw_digest))
    return b"".join(encode_uvarint(value) for value in fields)


def to_pb(msg: Message) -> Any:
    out = _pb_class()()
    for entry in msg.wantlist.entries:
        pb_entry = out.wantlist.entries.add()
        pb_entry.block = bytes(entry.cid)
        pb_entry.priority = entry.priority
        pb_entry.cancel = entry.cancel
        pb_entry.wantType = int(entry.want_type)
        pb_entry.sendDontHave = entry.send_dont_have
    if msg.wantlist.full:
        out.wantlist.full = True
    for cid, data in msg.blocks:
        out.payload.add(prefix=_independent_prefix(cid), data=data)
    for presence in msg.presences:
        out.blockPresences.add(cid=bytes(presence.cid), type=int(presence.type))
    out.pendingBytes = msg.pending_bytes
    return out


@pytest.mark.parametrize(("message", "golden"), GOLDEN)
def test_protobuf_runtime_writes_the_golden_bytes(message: Message, golden: bytes) -> None:
    assert to_pb(message).SerializeToString(deterministic=True) == golden


def _cid_for(data: bytes, kind: str) -> CID:
    if kind == "v0":
        return make_cid(data, version=0, codec=DAG_PB)
    if kind == "raw":
        return make_cid(data)
    if kind == "dag-pb":
        return make_cid(data, codec=DAG_PB)
    return dag_cbor_cid(data)


KINDS = st.sampled_from(["v0", "raw", "dag-pb", "dag-cbor"])
cids = st.builds(_cid_for, st.binary(max_size=8), KINDS)
want_entries = st.builds(
    WantEntry,
    cids,
    st.integers(INT32_MIN, INT32_MAX),
    st.booleans(),
    st.sampled_from(WantType),
    st.booleans(),
)
blocks = st.builds(lambda data, kind: (_cid_for(data, kind), data), st.binary(max_size=64), KINDS)
messages = st.builds(
    Message,
    st.builds(Wantlist, st.lists(want_entries, max_size=6), st.booleans()),
    st.lists(blocks, max_size=4),
    st.lists(st.builds(BlockPresence, cids, st.sampled_from(PresenceType)), max_size=4),
    st.integers(0, INT32_MAX),
)


@settings(max_examples=200, deadline=None)
@given(messages)
def test_protobuf_runtime_agrees_on_random_messages(message: Message) -> None:
    ours = encode_message(message)
    reference = to_pb(message)
    assert ours == reference.SerializeToString(deterministic=True)
    parsed = _pb_class()()
    parsed.ParseFromString(ours)
    assert parsed == reference
    assert decode_message(reference.SerializeToString()) == message


# -- round trips per protocol version -------------------------------------------------


def as_old_peer_sees_it(message: Message, fallback: str = "want-block") -> Message:
    """What a 1.1.0/1.0.0 peer is sent: the documented downgrade, spelled out."""
    wanted = {
        e.cid for e in message.wantlist.entries if not e.cancel and e.want_type == WantType.BLOCK
    }
    entries: list[WantEntry] = []
    downgraded: set[CID] = set()  # one want-block per CID: the first want-have's
    for e in message.wantlist.entries:
        if not e.cancel and e.want_type == WantType.HAVE:
            if fallback == "drop" or e.cid in wanted or e.cid in downgraded:
                continue
            downgraded.add(e.cid)
        entries.append(WantEntry(e.cid, e.priority, e.cancel))
    return Message(Wantlist(entries, message.wantlist.full), message.blocks)


@settings(max_examples=150, deadline=None)
@given(messages)
def test_round_trip_1_2_0(message: Message) -> None:
    assert decode_message(encode_message(message, PROTOCOL_1_2_0)) == message


@settings(max_examples=150, deadline=None)
@given(messages, st.sampled_from(["want-block", "drop"]))
def test_round_trip_1_1_0(message: Message, fallback: Any) -> None:
    sent = encode_message(message, PROTOCOL_1_1_0, want_have_fallback=fallback)
    assert decode_message(sent) == as_old_peer_sees_it(message, fallback)


@settings(max_examples=150, deadline=None)
@given(messages)
def test_round_trip_1_0_0(message: Message) -> None:
    message = Message(
        message.wantlist,
        [(cid, data) for cid, data in message.blocks if cid.version == 0],
        message.presences,
        message.pending_bytes,
    )
    sent = encode_message(message, PROTOCOL_1_0_0)
    assert sent == encode_message(message, PROTOCOL_UNVERSIONED)
    assert decode_message(sent) == as_old_peer_sees_it(message)


def test_want_have_to_an_old_peer_becomes_a_want_block_or_is_dropped() -> None:
    plain = Message(Wantlist([WantEntry(HELLO_CID, 1)]))
    for protocol in (PROTOCOL_1_1_0, PROTOCOL_1_0_0, PROTOCOL_UNVERSIONED):
        assert encode_message(WANT_HAVE, protocol) == encode_message(plain)
        assert encode_message(WANT_HAVE, protocol, want_have_fallback="drop") == b""
    full = Message(Wantlist(WANT_HAVE.wantlist.entries, full=True))
    assert encode_message(full, PROTOCOL_1_1_0, want_have_fallback="drop") == ld(1, vi(2, 1))


def test_downgrade_keeps_cancels_and_does_not_duplicate_wants() -> None:
    message = Message(
        Wantlist(
            [
                WantEntry(HELLO_CID, 5, want_type=WantType.HAVE),
                WantEntry(HELLO_CID, 7),
                WantEntry(EMPTY_DIR_CID, 3, cancel=True, want_type=WantType.HAVE),
                WantEntry(EMPTY_DIR_CID, 2, want_type=WantType.HAVE, send_dont_have=True),
                WantEntry(EMPTY_DIR_CID, 2, want_type=WantType.HAVE),
            ]
        )
    )
    assert decode_message(encode_message(message, PROTOCOL_1_1_0)).wantlist.entries == [
        WantEntry(HELLO_CID, 7),
        WantEntry(EMPTY_DIR_CID, 3, cancel=True),
        WantEntry(EMPTY_DIR_CID, 2),
    ]


def test_old_peers_get_no_presences_or_pending_bytes() -> None:
    for protocol in (PROTOCOL_1_1_0, PROTOCOL_1_0_0):
        assert encode_message(DONT_HAVE, protocol) == b""


def test_1_1_0_sends_payload_and_1_0_0_refuses_cidv1_blocks() -> None:
    message = Message(blocks=[(HELLO_CID, b"hello")])
    assert encode_message(message, PROTOCOL_1_1_0) == ld(
        3, ld(1, bytes.fromhex("01551220")) + ld(2, b"hello")
    )
    with pytest.raises(ValueError, match="CIDv0"):
        encode_message(message, PROTOCOL_1_0_0)


def test_supports_have_and_protocol_ids() -> None:
    assert PROTOCOLS == (
        "/ipfs/bitswap/1.2.0",
        "/ipfs/bitswap/1.1.0",
        "/ipfs/bitswap/1.0.0",
        "/ipfs/bitswap",
    )
    assert [supports_have(p) for p in PROTOCOLS] == [True, False, False, False]


def test_encoder_refuses_what_no_peer_accepts() -> None:
    with pytest.raises(ValueError, match="unknown Bitswap protocol"):
        encode_message(Message(), "/ipfs/bitswap/1.3.0")
    with pytest.raises(ValueError, match="want_have_fallback"):
        encode_message(Message(), PROTOCOL_1_1_0, want_have_fallback="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not an int32"):
        encode_message(Message(Wantlist([WantEntry(HELLO_CID, 2**31)])))
    with pytest.raises(ValueError, match="negative"):
        encode_message(Message(pending_bytes=-1))
    big = bytes(MAX_BLOCK_SIZE + 1)
    with pytest.raises(ValueError, match="refuse more than"):
        encode_message(Message(blocks=[(make_cid(big), big)]))
    half = bytes(MAX_BLOCK_SIZE)
    two = [(make_cid(half), half), (make_cid(half, codec=DAG_PB), half)]
    with pytest.raises(ValueError, match="split it"):
        encode_message(Message(blocks=two))


def test_messages_are_built_up_with_their_own_lists() -> None:
    """The node appends to a reply before sending it; construction copies, never aliases."""
    presences: list[BlockPresence] = []
    reply = Message(wantlist=None, blocks=((HELLO_CID, b"hello"),), presences=presences)  # type: ignore[arg-type]
    assert reply.wantlist == Wantlist() and reply.blocks == [(HELLO_CID, b"hello")]
    reply.presences.append(BlockPresence(HELLO_CID, PresenceType.HAVE))
    reply.wantlist.entries.append(WantEntry(EMPTY_DIR_CID))
    assert presences == []
    assert decode_message(encode_message(reply)) == reply
    assert Wantlist((WantEntry(HELLO_CID),)).entries == [WantEntry(HELLO_CID)]


# -- CID prefixes ---------------------------------------------------------------------


def test_prefix_of() -> None:
    assert prefix_of(EMPTY_DIR_CID) == bytes.fromhex("00701220")
    assert prefix_of(HELLO_CID) == bytes.fromhex("01551220")
    assert prefix_of(dag_cbor_cid(b"x")) == bytes.fromhex("01711220")
    blake = CID("base32", 1, "raw", multihash.digest(b"x", "blake2b-256"))
    assert prefix_of(blake) == bytes.fromhex("0155a0e40220")  # 0xb220 is a 3-byte varint
    for cid in (EMPTY_DIR_CID, HELLO_CID, dag_cbor_cid(b"x"), blake):
        assert prefix_of(cid) == _independent_prefix(cid)


@pytest.mark.parametrize(
    ("data", "cid"),
    [(EMPTY_DIR, EMPTY_DIR_CID), (b"hello", HELLO_CID), (b"{}", dag_cbor_cid(b"{}"))],
)
def test_cid_from_prefix_rebuilds_the_cid(data: bytes, cid: CID) -> None:
    assert cid_from_prefix(prefix_of(cid), data) == cid


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("", "empty CID prefix"),
        ("015512", "malformed CID prefix"),
        ("0155122000", "after its 4 varints"),
        ("02551220", "unknown CID version 2"),
        ("00551220", "CIDv0 prefix"),
        ("00701214", "CIDv0 prefix"),
        ("0170808000", "malformed CID prefix"),  # non-minimal varint
    ],
)
def test_malformed_prefixes(prefix: str, message: str) -> None:
    with pytest.raises(BitswapError, match=message) as caught:
        cid_from_prefix(bytes.fromhex(prefix), b"x")
    assert not isinstance(caught.value, UnsupportedPrefix)


@pytest.mark.parametrize(
    ("prefix", "reason"),
    [
        ("0155a0e40220", "hash 0xb220"),  # blake2b-256
        ("01551314", "hash 0x13"),  # sha2-512 truncated
        ("01551214", "20-byte sha2-256 digest"),  # sha2-256 truncated to 160 bits
        ("01ffff0f1220", "codec 0x3ffff"),  # no such multicodec
    ],
)
def test_unsupported_prefixes_skip_only_their_block(prefix: str, reason: str) -> None:
    with pytest.raises(UnsupportedPrefix, match=reason):
        cid_from_prefix(bytes.fromhex(prefix), b"x")
    odd = ld(3, ld(1, bytes.fromhex(prefix)) + ld(2, b"xyz"))
    decoded = decode_message(odd + V0_PAYLOAD_BYTES + DONT_HAVE_BYTES)
    assert decoded.blocks == V0_PAYLOAD.blocks and decoded.presences == DONT_HAVE.presences
    (skipped,) = decoded.skipped
    assert skipped == SkippedBlock(bytes.fromhex(prefix), 3, skipped.reason)
    assert reason in skipped.reason


def test_cid_from_prefix_refuses_oversize_blocks() -> None:
    with pytest.raises(BitswapError, match="limit is"):
        cid_from_prefix(prefix_of(HELLO_CID), bytes(MAX_BLOCK_SIZE + 1))


# -- decoding: liberal in structure ---------------------------------------------------


def test_explicit_defaults_as_helia_writes_them() -> None:
    """protons writes `optional` fields even when false: cancel, wantType, sendDontHave, full."""
    cid = ld(1, bytes(HELLO_CID))
    data = ld(1, ld(1, cid + vi(2, 1) + vi(3, 0) + vi(4, 0) + vi(5, 0)) + vi(2, 0))
    data += ld(4, ld(1, bytes(HELLO_CID)) + vi(2, 0)) + vi(5, 0)
    assert decode_message(data) == Message(
        Wantlist([WantEntry(HELLO_CID, 1)]), presences=[BlockPresence(HELLO_CID, PresenceType.HAVE)]
    )


UNKNOWN = (
    vi(6, 12345)  # a varint (field 6 is `auth` in one fork's Entry)
    + encode_uvarint(7 << 3 | 1)
    + bytes(8)  # fixed64
    + encode_uvarint(8 << 3 | 5)
    + bytes(4)  # fixed32
    + ld(9, b"ignored")  # length-delimited
    + ld(1000, b"")
)


def test_unknown_fields_are_skipped_at_every_level() -> None:
    entry = ld(1, bytes(HELLO_CID)) + UNKNOWN + vi(2, 1) + vi(4, 1) + UNKNOWN + vi(5, 1)
    data = ld(1, UNKNOWN + ld(1, entry) + UNKNOWN) + UNKNOWN
    assert decode_message(data) == WANT_HAVE
    block = ld(3, UNKNOWN + ld(1, bytes.fromhex("00701220")) + UNKNOWN + ld(2, EMPTY_DIR))
    assert decode_message(block) == V0_PAYLOAD


def test_fields_in_any_order_and_last_scalar_wins() -> None:
    entry = (
        vi(5, 1)
        + vi(4, 1)
        + vi(2, 9)
        + ld(1, bytes(EMPTY_DIR_CID))
        + vi(2, 1)
        + ld(1, bytes(HELLO_CID))
    )
    presence = vi(2, 1) + ld(1, bytes(EMPTY_DIR_CID))
    data = vi(5, 7) + ld(4, presence) + ld(1, ld(1, entry)) + vi(5, 300)
    block = ld(2, EMPTY_DIR) + ld(1, bytes.fromhex("00701220"))
    assert decode_message(data + ld(3, block)) == Message(
        WANT_HAVE.wantlist, V0_PAYLOAD.blocks, DONT_HAVE.presences, 300
    )


def test_repeated_wantlists_merge() -> None:
    first = ld(1, ld(1, ld(1, bytes(HELLO_CID))) + vi(2, 1))
    second = ld(1, ld(1, ld(1, bytes(EMPTY_DIR_CID))))
    assert decode_message(first + second) == Message(
        Wantlist([WantEntry(HELLO_CID, 0), WantEntry(EMPTY_DIR_CID, 0)], full=True)
    )


def test_nonzero_bools_are_true_and_empty_payload_data_is_the_empty_block() -> None:
    assert decode_message(ld(1, vi(2, 7))).wantlist.full is True
    empty = decode_message(ld(3, ld(1, bytes.fromhex("01551220"))))
    assert empty.blocks == [(make_cid(b""), b"")]


def test_negative_pending_bytes_read_as_zero() -> None:
    assert decode_message(vi(5, -5)).pending_bytes == 0
    assert decode_message(vi(5, INT32_MAX)).pending_bytes == INT32_MAX


def test_1_0_0_blocks_are_taken_as_cidv0() -> None:
    decoded = decode_message(ld(2, b"hello"))
    assert decoded.blocks == [(make_cid(b"hello", version=0, codec=DAG_PB), b"hello")]


# -- decoding: strict in types and sizes ----------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x0a", "truncated varint"),
        (b"\x0a\x05\x00", "claims 5 bytes; only 1 remain"),
        (b"\x08\x01", "Message.wantlist at offset 0 has wire type varint"),
        (b"\x0b", "start-group"),
        (b"\x0c", "end-group"),
        (b"\x0e", "invalid"),
        (b"\x0f", "invalid"),
        (b"\x00\x00", "invalid field number 0"),
        (encode_uvarint(2**29 << 3), "invalid field number"),
        (b"\x28\x80\x00", "non-minimal varint"),
        (b"\x28" + b"\xff" * 10 + b"\x01", "longer than 10 bytes"),
        (b"\x39\x00\x00", "truncated"),
        (b"\x45\x00", "truncated"),
        (b"\x2a\x00", "pendingBytes.*length-delimited"),
        (b"\x12\x01", "claims 1 bytes"),
        (vi(5, 2**31), "pendingBytes.*not an int32"),
        (vi(5, 2**40), "not an int32"),
        (ld(1, vi(1, 1)), "Wantlist.entries.*wire type varint"),
        (ld(1, ld(2, b"")), "Wantlist.full.*length-delimited"),
        (entry_bytes(vi(2, 1)), "Wantlist.Entry at offset 4 has no CID"),
        (entry_bytes(ld(1, b"")), "has no CID"),
        (entry_bytes(ld(1, b"\x01\x02")), "not a valid CID"),
        (entry_bytes(vi(1, 5)), "Entry.block.*wire type varint"),
        (entry_bytes(ld(1, bytes(HELLO_CID)), vi(4, 2)), "wantType at offset .* is 2"),
        (entry_bytes(ld(1, bytes(HELLO_CID)), vi(4, -1)), "wantType"),
        (entry_bytes(ld(1, bytes(HELLO_CID)), vi(2, 2**31)), "priority.*not an int32"),
        (entry_bytes(ld(1, bytes(HELLO_CID)), ld(3, b"")), "field 3.*length-delimited"),
        (entry_bytes(ld(1, b"\x01\x55\x00" + bytes(MAX_CID_SIZE))), "limit is 168"),
        (ld(4, vi(2, 1)), "BlockPresence at offset 2 has no CID"),
        (ld(4, ld(1, bytes(HELLO_CID)) + vi(2, 2)), "BlockPresence.type .* is 2"),
        (ld(4, ld(1, b"\x12\x20" + bytes(31))), "not a valid CID"),
        (ld(3, ld(2, b"data")), "payload block at offset 2 has no CID prefix"),
        (ld(3, ld(1, b"") + ld(2, b"data")), "has no CID prefix"),
        (ld(3, ld(1, bytes.fromhex("02551220"))), "unknown CID version 2"),
        (ld(3, ld(1, bytes.fromhex("00551220"))), "CIDv0 prefix"),
        (ld(3, ld(1, bytes.fromhex("0155122000"))), "after its 4 varints"),
        (ld(3, vi(1, 1)), "Block.prefix.*wire type varint"),
        (ld(3, ld(1, ld(1, b""))), "payload block at offset 2"),
    ],
)
def test_malformed_messages_are_bitswap_errors(data: bytes, message: str) -> None:
    with pytest.raises(BitswapError, match=message):
        decode_message(data)


def test_bitswap_error_is_a_decode_error() -> None:
    assert issubclass(BitswapError, DecodeError) and issubclass(BitswapError, ValueError)
    assert issubclass(UnsupportedPrefix, BitswapError)


def test_block_size_limit() -> None:
    fits = bytes(MAX_BLOCK_SIZE)
    assert decode_message(ld(2, fits)).blocks[0][1] == fits
    assert decode_message(ld(3, ld(1, prefix_of(HELLO_CID)) + ld(2, fits))).blocks[0][1] == fits
    over = bytes(MAX_BLOCK_SIZE + 1)
    with pytest.raises(BitswapError, match=f"{MAX_BLOCK_SIZE + 1} bytes; the limit"):
        decode_message(ld(2, over))
    with pytest.raises(BitswapError, match=f"{MAX_BLOCK_SIZE + 1} bytes; the limit"):
        decode_message(ld(3, ld(1, prefix_of(HELLO_CID)) + ld(2, over)))


def test_message_size_limit() -> None:
    with pytest.raises(BitswapError, match="limit is 4194304"):
        decode_message(bytes(MAX_MESSAGE_SIZE + 1))
    with pytest.raises(BitswapError, match="limit is 10"):
        decode_message(DONT_HAVE_BYTES, max_size=10)


def test_wantlist_entry_limit() -> None:
    entry = ld(1, ld(1, bytes(HELLO_CID)))
    assert len(decode_message(ld(1, entry * MAX_WANTLIST_ENTRIES)).wantlist.entries) == 8192
    with pytest.raises(BitswapError, match="more than 8192 entries"):
        decode_message(ld(1, entry * (MAX_WANTLIST_ENTRIES + 1)))
    half = ld(1, entry * (MAX_WANTLIST_ENTRIES // 2 + 1))  # the limit spans merged wantlists
    with pytest.raises(BitswapError, match="more than 8192 entries"):
        decode_message(half + half)


def test_presence_and_block_limits() -> None:
    presence = ld(4, ld(1, bytes(HELLO_CID)))
    assert len(decode_message(presence * MAX_BLOCK_PRESENCES).presences) == 8192
    with pytest.raises(BitswapError, match="more than 8192 block presences"):
        decode_message(presence * (MAX_BLOCK_PRESENCES + 1))
    raw_block, payload = ld(2, b""), ld(3, ld(1, bytes.fromhex("01551220")))
    skipped = ld(3, ld(1, bytes.fromhex("0155a0e40220")))
    assert len(decode_message((raw_block + payload) * (MAX_BLOCKS // 2)).blocks) == 8192
    with pytest.raises(BitswapError, match="more than 8192 blocks"):
        decode_message(raw_block * (MAX_BLOCKS - 1) + payload + skipped)


# -- framing --------------------------------------------------------------------------


def test_encode_frame() -> None:
    assert encode_frame(b"") == b"\x00"
    assert encode_frame(WANT_HAVE_BYTES) == b"\x30" + WANT_HAVE_BYTES
    assert encode_frame(bytes(300))[:2] == b"\xac\x02"
    assert len(encode_frame(bytes(MAX_MESSAGE_SIZE))) == MAX_MESSAGE_SIZE + 4
    with pytest.raises(ValueError, match="refuse more than"):
        encode_frame(bytes(MAX_MESSAGE_SIZE + 1))


def read_frames(data: bytes, piece: int | None = None, **kwargs: int) -> list[bytes]:
    decoder = FrameDecoder(**kwargs)
    frames: list[bytes] = []
    pieces = [data] if piece is None else [data[i : i + piece] for i in range(0, len(data), piece)]
    for chunk in pieces:
        if chunk:
            decoder.receive_data(chunk)
        while (frame := decoder.next_message()) is not NEED_DATA:
            assert isinstance(frame, bytes)
            frames.append(frame)
    decoder.receive_data(b"")
    assert decoder.next_message() is END_OF_STREAM
    assert decoder.buffered == 0 and decoder.offset == len(data)
    return frames


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=6), st.integers(min_value=1, max_value=40))
def test_frames_fed_byte_by_byte_equal_frames_fed_at_once(bodies: list[bytes], piece: int) -> None:
    stream = b"".join(encode_frame(body) for body in bodies)
    assert read_frames(stream) == bodies
    assert read_frames(stream, 1) == bodies
    assert read_frames(stream, piece) == bodies


def test_real_messages_through_frames() -> None:
    stream = b"".join(encode_frame(golden) for _, golden in GOLDEN)
    assert [decode_message(frame) for frame in read_frames(stream, 3)] == [m for m, _ in GOLDEN]


def test_oversize_frame_is_refused_before_its_body_arrives() -> None:
    decoder = FrameDecoder()
    declared = encode_uvarint(MAX_MESSAGE_SIZE + 1)
    decoder.receive_data(declared)
    with pytest.raises(BitswapError, match="declares 4194305 bytes; the limit is 4194304"):
        decoder.next_message()
    assert decoder.buffered == len(declared)  # nothing waited for, nothing held
    with pytest.raises(BitswapError):  # and it stays refused
        decoder.next_message()


def test_frame_limit_is_inclusive_and_configurable() -> None:
    assert read_frames(encode_frame(b"12345678"), max_message_size=8) == [b"12345678"]
    decoder = FrameDecoder(max_message_size=8)
    decoder.receive_data(b"\x09")
    with pytest.raises(BitswapError, match="declares 9 bytes; the limit is 8"):
        decoder.next_message()


def test_largest_frame_is_accepted() -> None:
    body = bytes(MAX_MESSAGE_SIZE)
    assert read_frames(encode_frame(body), 1 << 20) == [body]


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (b"\x05abc", "inside a 5-byte frame starting at offset 0"),
        (b"\x01a\x80", "inside a frame length starting at offset 2"),
        (b"\x80\x00", "non-minimal"),
        (b"\x80" * 10 + b"\x01", "longer than 10 bytes"),
    ],
)
def test_bad_streams(stream: bytes, message: str) -> None:
    with pytest.raises(BitswapError, match=message):
        read_frames(stream)


def test_frame_decoder_states() -> None:
    decoder = FrameDecoder()
    assert decoder.next_message() is NEED_DATA
    decoder.receive_data(b"\x00\x02h")
    assert decoder.next_message() == b""
    assert decoder.next_message() is NEED_DATA
    decoder.receive_data(b"i")
    assert decoder.next_message() == b"hi"
    decoder.receive_data(b"")
    assert decoder.next_message() is END_OF_STREAM
    assert decoder.next_message() is END_OF_STREAM
    with pytest.raises(RuntimeError, match="after the end"):
        decoder.receive_data(b"\x00")


def test_frame_errors_are_sticky() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(b"\x80\x00\x00")
    with pytest.raises(BitswapError) as first:
        decoder.next_message()
    with pytest.raises(BitswapError) as again:
        decoder.next_message()
    assert again.value is first.value


# -- hostile input --------------------------------------------------------------------


VALID = encode_message(
    Message(
        Wantlist(
            [
                WantEntry(HELLO_CID, 3, want_type=WantType.HAVE, send_dont_have=True),
                WantEntry(dag_cbor_cid(b"c"), -7, cancel=True),
            ],
            full=True,
        ),
        [(EMPTY_DIR_CID, EMPTY_DIR), (HELLO_CID, b"hello"), (dag_cbor_cid(b"{}"), b"{}")],
        [BlockPresence(EMPTY_DIR_CID, PresenceType.DONT_HAVE)],
        99,
    )
) + ld(2, b"old style block")


def decode_or_error(data: bytes) -> Message | None:
    try:
        return decode_message(data)
    except BitswapError:
        return None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_only_ever_raise_bitswap_error(data: bytes) -> None:
    decode_or_error(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(VALID)))
def test_truncations_are_errors_or_shorter_messages(cut: int) -> None:
    decode_or_error(VALID[:cut])


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_bit_flips_only_ever_raise_bitswap_error(data: st.DataObject) -> None:
    tampered = bytearray(VALID)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        position = data.draw(st.integers(min_value=0, max_value=len(tampered) - 1))
        tampered[position] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
    decode_or_error(bytes(tampered))


def _encode_fields(fields: list[tuple[int, int | bytes]]) -> bytes:
    return b"".join(vi(n, v) if isinstance(v, int) else ld(n, v) for n, v in fields)


# Well-formed protobuf with random shapes: reaches the field checks that random bytes
# rarely get past. Leaves include real CIDs and prefixes so deep paths are taken too.
LEAVES = st.one_of(
    st.integers(0, 2**64 - 1),
    st.integers(0, 3),
    st.binary(max_size=40),
    st.sampled_from(
        [
            bytes(HELLO_CID),
            bytes(EMPTY_DIR_CID),
            bytes(dag_cbor_cid(b"x")),
            bytes.fromhex("00701220"),
            bytes.fromhex("01551220"),
            bytes.fromhex("0155a0e40220"),
            EMPTY_DIR,
        ]
    ),
)
TREES = st.recursive(
    LEAVES,
    lambda children: st.lists(st.tuples(st.integers(1, 6), children), max_size=5).map(
        _encode_fields
    ),
    max_leaves=40,
)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), TREES), max_size=6))
def test_random_protobuf_only_ever_raises_bitswap_error(fields: list[tuple[int, Any]]) -> None:
    decode_or_error(_encode_fields(fields))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([None, 1, 7]))
def test_random_streams_only_ever_raise_bitswap_error(data: bytes, piece: int | None) -> None:
    try:
        for frame in read_frames(data, piece, max_message_size=64):
            decode_or_error(frame)
    except BitswapError:
        pass


def test_count_limits_are_configurable() -> None:
    entries = ld(1, ld(1, ld(1, bytes(HELLO_CID))) * 3)
    with pytest.raises(BitswapError, match="more than 2 entries"):
        decode_message(entries, max_entries=2)
    with pytest.raises(BitswapError, match="more than 1 block presences"):
        decode_message(DONT_HAVE_BYTES * 2, max_presences=1)
    with pytest.raises(BitswapError, match="more than 1 blocks"):
        decode_message(V0_PAYLOAD_BYTES * 2, max_blocks=1)
