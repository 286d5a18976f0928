"""ledger/sync.py: golden bytes, round trips, framing, hostile input, the range planner.

Golden frames are msgpack written out by hand in hex, so the one byte form of each
message is pinned independently of msgpack-python. Non-canonical variants are built by
hand too (`raw_map`), since msgpack-python's packer only writes the canonical form.
"""

from __future__ import annotations

import itertools

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.entry import MAX_ENTRY_SIZE
from ledger.sync import (
    END_OF_STREAM,
    ENTRIES_BUDGET,
    MAX_FRAME,
    MAX_HEADS_PAGE,
    MAX_RANGE,
    NEED_DATA,
    PROTOCOL_ID,
    REPLY_TYPES,
    Entries,
    FrameReader,
    Heads,
    HeadsRequest,
    InvalidSyncMessage,
    LocalHead,
    RangeRequest,
    RemoteHead,
    SyncError,
    SyncMessage,
    SyncProtocolError,
    decode_message,
    encode_message,
    pack_entries,
    plan_ranges,
)
from protocol.errors import ChorusError, DecodeError
from protocol.varint import decode_uvarint, encode_uvarint

A = bytes([0xAA]) * 32
B = bytes([0xBB]) * 32
C = bytes([0xCC]) * 32
ID_PREFIX = bytes.fromhex("01551220")
H1 = ID_PREFIX + bytes([0x11]) * 32
H2 = ID_PREFIX + bytes([0x22]) * 32
MAX_U63 = 2**63 - 1

# Hex of the fixed pieces, spelled out once: fixstr keys, bin8 32/36-byte values.
K_AFTER, K_COOP, K_LIMIT, K_T = "a5 6166746572", "a4 636f6f70", "a5 6c696d6974", "a1 74"
K_FEEDS, K_MORE = "a5 6665656473", "a4 6d6f7265"
K_AUTHOR, K_FIRST, K_LAST = "a6 617574686f72", "a5 6669727374", "a4 6c617374"
K_ENTRIES, K_REASON = "a7 656e7472696573", "a6 726561736f6e"
BIN_A, BIN_B = "c4 20" + "aa" * 32, "c4 20" + "bb" * 32
BIN_H1, BIN_H2 = "c4 24 01551220" + "11" * 32, "c4 24 01551220" + "22" * 32


def hexb(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def frame(body: bytes) -> bytes:
    return encode_uvarint(len(body)) + body


def pk(value: object) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def raw_map(pairs: list[tuple[str, bytes]], header: bytes | None = None) -> bytes:
    """A msgpack map from (key, already-encoded value) pairs, in the order given."""
    head = header if header is not None else bytes([0x80 | len(pairs)])
    return head + b"".join(pk(key) + value for key, value in pairs)


def read_all(data: bytes, chunk: int | None = None) -> list[SyncMessage]:
    """Every message of a whole stream fed in `chunk`-byte pieces; checks the clean end."""
    reader = FrameReader()
    out: list[SyncMessage] = []
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        if piece:
            reader.receive_data(piece)
        while (msg := reader.next_message()) is not NEED_DATA:
            assert msg is not END_OF_STREAM
            out.append(msg)  # type: ignore[arg-type]
    reader.receive_data(b"")
    assert reader.next_message() is END_OF_STREAM
    assert reader.buffered == 0 and reader.offset == len(data)
    return out


# --- golden bytes -----------------------------------------------------------------------

GOLDEN: list[tuple[SyncMessage, str]] = [
    (
        HeadsRequest("c", None, 1),
        f"84 {K_AFTER} c0 {K_COOP} a1 63 {K_LIMIT} 01 {K_T} a5 6865616473",
    ),
    (
        HeadsRequest("coop1", A, MAX_HEADS_PAGE),
        f"84 {K_AFTER} {BIN_A} {K_COOP} a5 636f6f7031 {K_LIMIT} cd 1000 {K_T} a5 6865616473",
    ),
    (
        Heads((RemoteHead(A, 1, H1, None), RemoteHead(B, 300, H2, 7)), True),
        f"83 {K_FEEDS} 92 94 {BIN_A} 01 {BIN_H1} c0 94 {BIN_B} cd 012c {BIN_H2} 07"
        f" {K_MORE} c3 {K_T} a8 68656164735f6f6b",
    ),
    (Heads((), False), f"83 {K_FEEDS} 90 {K_MORE} c2 {K_T} a8 68656164735f6f6b"),
    (
        RangeRequest(A, 1, MAX_RANGE),
        f"84 {K_AUTHOR} {BIN_A} {K_FIRST} 01 {K_LAST} cd 0400 {K_T} a3 676574",
    ),
    (
        RangeRequest(B, MAX_U63, MAX_U63),
        f"84 {K_AUTHOR} {BIN_B} {K_FIRST} cf 7fffffffffffffff {K_LAST} cf 7fffffffffffffff"
        f" {K_T} a3 676574",
    ),
    (
        Entries((b"\x01\x02", b""), False),
        f"83 {K_ENTRIES} 92 c4 02 0102 c4 00 {K_MORE} c2 {K_T} a7 656e7472696573",
    ),
    (Entries((b"x",), True), f"83 {K_ENTRIES} 91 c4 01 78 {K_MORE} c3 {K_T} a7 656e7472696573"),
    (SyncError("no"), f"82 {K_REASON} a2 6e6f {K_T} a5 6572726f72"),
    (SyncError("é"), f"82 {K_REASON} a2 c3a9 {K_T} a5 6572726f72"),
]


@pytest.mark.parametrize(("msg", "body_hex"), GOLDEN)
def test_golden_bytes(msg: SyncMessage, body_hex: str) -> None:
    body = hexb(body_hex)
    assert encode_message(msg) == encode_uvarint(len(body)) + body
    assert decode_message(frame(body)) == msg
    assert read_all(frame(body)) == [msg]


def test_golden_frame_prefix_is_the_body_length() -> None:
    assert encode_message(SyncError("no")).hex() == "13" + hexb(GOLDEN[-2][1]).hex()
    long = encode_message(SyncError("x" * 1000))
    assert long[:2] == hexb("fb07") and len(long) == 2 + 0x3FB  # 1019-byte body


def test_names_and_tables() -> None:
    assert PROTOCOL_ID == "/chorus/sync/1.0.0"
    assert MAX_FRAME == 4 * 1024 * 1024 and ENTRIES_BUDGET == 1024 * 1024
    assert REPLY_TYPES[HeadsRequest] == (Heads, SyncError)
    assert REPLY_TYPES[RangeRequest] == (Entries, SyncError)
    assert issubclass(SyncProtocolError, DecodeError)
    assert issubclass(InvalidSyncMessage, ValueError)
    assert issubclass(InvalidSyncMessage, ChorusError)


# --- round trips ------------------------------------------------------------------------

authors = st.binary(min_size=32, max_size=32)
entry_ids = st.binary(min_size=32, max_size=32).map(lambda digest: ID_PREFIX + digest)
seqs = st.one_of(st.integers(1, 5000), st.integers(1, MAX_U63))


@st.composite
def remote_heads(draw: st.DrawFn) -> RemoteHead:
    seq = draw(seqs)
    frozen = draw(st.none() | st.integers(0, seq))
    return RemoteHead(draw(authors), seq, draw(entry_ids), frozen)


@st.composite
def heads_pages(draw: st.DrawFn) -> Heads:
    feeds = draw(st.lists(remote_heads(), max_size=12, unique_by=lambda head: head.author))
    more = bool(feeds) and draw(st.booleans())
    return Heads(tuple(sorted(feeds)), more)


@st.composite
def range_requests(draw: st.DrawFn) -> RangeRequest:
    first = draw(seqs)
    last = draw(st.integers(first, min(MAX_U63, first + MAX_RANGE - 1)))
    return RangeRequest(draw(authors), first, last)


@st.composite
def entries_replies(draw: st.DrawFn) -> Entries:
    items = draw(st.lists(st.binary(max_size=300), max_size=8))
    if draw(st.integers(0, 20)) == 0:
        items.append(bytes(MAX_ENTRY_SIZE))
    return Entries(tuple(items), bool(items) and draw(st.booleans()))


messages = st.one_of(
    st.builds(
        HeadsRequest, st.text(max_size=128), st.none() | authors, st.integers(1, MAX_HEADS_PAGE)
    ),
    heads_pages(),
    range_requests(),
    entries_replies(),
    st.builds(SyncError, st.text(max_size=1024)),
)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_round_trip(msg: SyncMessage) -> None:
    data = encode_message(msg)
    assert decode_message(data) == msg
    assert encode_message(decode_message(data)) == data


@settings(max_examples=100, deadline=None)
@given(st.lists(messages, min_size=1, max_size=6), st.integers(1, 64))
def test_streams_of_messages_in_any_chunking(batch: list[SyncMessage], chunk: int) -> None:
    data = b"".join(map(encode_message, batch))
    assert read_all(data, max(chunk, len(data) // 100)) == batch


def test_heads_accepts_plain_tuples_and_lists() -> None:
    heads = Heads([(A, 2, H1, 1)], False)  # type: ignore[arg-type]
    assert heads.feeds == (RemoteHead(A, 2, H1, 1),) and type(heads.feeds[0]) is RemoteHead
    assert Entries([b"a"], False).entries == (b"a",)  # type: ignore[arg-type]


# --- framing ----------------------------------------------------------------------------

ALL_GOLDEN = b"".join(encode_message(msg) for msg, _ in GOLDEN)


def test_every_truncation_needs_data_then_completes() -> None:
    for msg, _ in GOLDEN:
        data = encode_message(msg)
        for cut in range(len(data)):
            reader = FrameReader()
            if cut:
                reader.receive_data(data[:cut])
            assert reader.next_message() is NEED_DATA
            assert reader.next_message() is NEED_DATA
            reader.receive_data(data[cut:])
            assert reader.next_message() == msg
            assert reader.next_message() is NEED_DATA


def test_byte_by_byte_stream() -> None:
    assert read_all(ALL_GOLDEN, 1) == [msg for msg, _ in GOLDEN]


def test_truncated_stream_at_end_is_refused() -> None:
    data = encode_message(HeadsRequest("c", None, 1))
    for cut in range(1, len(data)):
        reader = FrameReader()
        reader.receive_data(data[:cut])
        reader.receive_data(b"")
        with pytest.raises(SyncProtocolError, match="truncated"):
            reader.next_message()


def test_oversize_length_refused_before_the_body() -> None:
    reader = FrameReader()
    prefix = encode_uvarint(MAX_FRAME + 1)
    reader.receive_data(prefix)
    with pytest.raises(SyncProtocolError, match="declares 4194305 bytes; the limit is 4194304"):
        reader.next_message()
    assert reader.buffered == len(prefix)
    with pytest.raises(SyncProtocolError):  # sticky
        reader.next_message()


def test_largest_length_waits_for_its_body() -> None:
    reader = FrameReader()
    reader.receive_data(encode_uvarint(MAX_FRAME) + b"\x82")
    assert reader.next_message() is NEED_DATA


@pytest.mark.parametrize(
    "prefix",
    [b"\x80\x00", b"\x81\x80\x00", b"\xff" * 10 + b"\x01", bytes([0xFF] * 9 + [0x7F])],
    ids=["non-minimal", "non-minimal-2", "eleven-bytes", "over-64-bits"],
)
def test_bad_length_prefixes(prefix: bytes) -> None:
    reader = FrameReader()
    reader.receive_data(prefix)
    with pytest.raises(SyncProtocolError):
        reader.next_message()


def test_errors_are_sticky_and_name_the_offset() -> None:
    good = encode_message(SyncError("ok"))
    reader = FrameReader()
    reader.receive_data(good + frame(b"\xc0") + good)
    assert reader.next_message() == SyncError("ok")
    with pytest.raises(SyncProtocolError, match=f"frame at stream offset {len(good)}") as first:
        reader.next_message()
    with pytest.raises(SyncProtocolError) as again:
        reader.next_message()
    assert again.value is first.value


def test_decode_message_wants_exactly_one_frame() -> None:
    good = encode_message(SyncError("ok"))
    with pytest.raises(SyncProtocolError, match="empty input"):
        decode_message(b"")
    with pytest.raises(SyncProtocolError, match="bytes after the frame"):
        decode_message(good + good)
    with pytest.raises(SyncProtocolError, match="truncated"):
        decode_message(good + b"\x05")
    with pytest.raises(SyncProtocolError, match="truncated"):
        decode_message(good[:-1])
    with pytest.raises(SyncProtocolError):
        decode_message("text")  # type: ignore[arg-type]


# --- hostile and non-canonical input ----------------------------------------------------


def heads_request_pairs(**override: bytes) -> list[tuple[str, bytes]]:
    pairs = {"after": pk(None), "coop": pk("c"), "limit": pk(1), "t": pk("heads")}
    pairs.update(override)
    return list(pairs.items())


def range_pairs(**override: bytes) -> list[tuple[str, bytes]]:
    pairs = {"author": pk(A), "first": pk(1), "last": pk(2), "t": pk("get")}
    pairs.update(override)
    return list(pairs.items())


def feed(author: bytes = A, seq: int = 1, head: bytes = H1, frozen: int | None = None) -> list:
    return [author, seq, head, frozen]


def heads_body(feeds: list, more: bool = False) -> bytes:
    return raw_map([("feeds", pk(feeds)), ("more", pk(more)), ("t", pk("heads_ok"))])


def entries_body(items: bytes, more: bytes = b"\xc2") -> bytes:
    return raw_map([("entries", items), ("more", more), ("t", pk("entries"))])


def test_hand_built_maps_match_the_encoder() -> None:
    """The builders below start from the canonical bytes: only the change is refused."""
    assert frame(raw_map(heads_request_pairs())) == encode_message(HeadsRequest("c", None, 1))
    assert frame(raw_map(range_pairs())) == encode_message(RangeRequest(A, 1, 2))
    one_feed = Heads((RemoteHead(A, 1, H1, None),), False)
    assert frame(heads_body([feed()])) == encode_message(one_feed)
    assert frame(entries_body(pk([b"x"]))) == encode_message(Entries((b"x",), False))


HOSTILE: dict[str, tuple[bytes, str]] = {
    # byte form
    "unsorted keys": (raw_map(heads_request_pairs()[::-1]), "canonical"),
    "wide int": (raw_map(heads_request_pairs(limit=hexb("cd 0001"))), "canonical"),
    "wide int64": (raw_map(range_pairs(first=hexb("cf 0000000000000001"))), "canonical"),
    "wide str header": (raw_map(heads_request_pairs(t=hexb("d9 05") + b"heads")), "canonical"),
    "wide bin header": (raw_map(range_pairs(author=hexb("c5 0020") + A)), "canonical"),
    "wide map header": (raw_map(heads_request_pairs(), hexb("de 0004")), "canonical"),
    "wide array header": (entries_body(hexb("dc 0001 c4 01 78")), "canonical"),
    "duplicate key": (
        raw_map([*heads_request_pairs()[:3], ("limit", pk(1)), ("t", pk("heads"))]),
        "canonical",
    ),
    "duplicate key other value": (
        raw_map([*heads_request_pairs()[:2], ("limit", pk(9)), *heads_request_pairs()[2:]]),
        "canonical",
    ),
    "trailing bytes": (raw_map(heads_request_pairs()) + b"\xc0", "trailing bytes"),
    "empty body": (b"", "not msgpack"),
    "truncated body": (raw_map(heads_request_pairs())[:-1], "not msgpack"),
    # types
    "str instead of bin": (raw_map(range_pairs(author=pk("a" * 32))), "author"),
    "bin instead of str": (raw_map(heads_request_pairs(coop=pk(b"c"))), "coop"),
    "bin t": (raw_map(heads_request_pairs(t=pk(b"heads"))), "message type"),
    "bin key": (hexb("84 c4 05") + b"after" + raw_map(heads_request_pairs())[7:], "keys wrong"),
    "int key": (hexb("81 01 01"), "not msgpack"),
    "float32": (raw_map(heads_request_pairs(limit=hexb("ca 3f800000"))), "limit"),
    "float64": (raw_map(heads_request_pairs(limit=pk(1.0))), "limit"),
    "single float": (
        raw_map(heads_request_pairs(limit=msgpack.packb(1.0, use_single_float=True))),
        "limit",
    ),
    "fixext": (raw_map(heads_request_pairs(limit=hexb("d4 01 00"))), "not msgpack"),
    "empty ext": (raw_map(heads_request_pairs(limit=hexb("c7 00 05"))), "limit"),
    "timestamp": (raw_map(heads_request_pairs(limit=hexb("d6 ff 00000001"))), "not msgpack"),
    "bool as int": (raw_map(heads_request_pairs(limit=pk(True))), "limit"),
    "int as bool": (heads_body([], more=1), "more"),  # type: ignore[arg-type]
    "bad utf-8": (raw_map(heads_request_pairs(coop=hexb("a2 c328"))), "not msgpack"),
    "surrogate utf-8": (raw_map(heads_request_pairs(coop=hexb("a3 eda080"))), "not msgpack"),
    "array message": (pk(["heads"]), "map"),
    "int message": (pk(7), "map"),
    "deep nesting": (b"\x91" * 100_000 + b"\xc0", "not msgpack"),
    # keys and t
    "extra key": (raw_map([*heads_request_pairs(), ("u", pk(1))]), "unknown \\['u'\\]"),
    "missing key": (raw_map(heads_request_pairs()[1:]), "missing \\['after'\\]"),
    "missing t": (raw_map(heads_request_pairs()[:3]), "message type"),
    "nil t": (raw_map(heads_request_pairs(t=pk(None))), "message type"),
    "wrong t": (raw_map(heads_request_pairs(t=pk("get"))), "keys wrong"),
    "unknown t": (raw_map(heads_request_pairs(t=pk("nope"))), "'nope', not one of"),
    # HeadsRequest values
    "after 31 bytes": (raw_map(heads_request_pairs(after=pk(A[:31]))), "after"),
    "limit 0": (raw_map(heads_request_pairs(limit=pk(0))), "limit"),
    "limit too big": (raw_map(heads_request_pairs(limit=pk(MAX_HEADS_PAGE + 1))), "limit"),
    "coop too long": (raw_map(heads_request_pairs(coop=pk("c" * 129))), "coop"),
    # Heads values
    "feeds not array": (heads_body({"a": 1}), "feeds"),  # type: ignore[arg-type]
    "feed not array": (heads_body([A]), "feeds\\[0\\]"),
    "feed of 5": (heads_body([[*feed(), 1]]), "feeds\\[0\\]"),
    "feed of 3": (heads_body([feed()[:3]]), "feeds\\[0\\]"),
    "seq 0": (heads_body([feed(seq=0)]), "seq"),
    "seq negative": (heads_body([feed(seq=-1)]), "seq"),
    "seq 2**63": (heads_body([feed(seq=2**63)]), "seq"),
    "seq 2**64-1": (heads_body([feed(seq=2**64 - 1)]), "seq"),
    "bad head prefix": (heads_body([feed(head=bytes.fromhex("01711220") + H1[4:])]), "head"),
    "cidv0 head": (heads_body([feed(head=bytes.fromhex("1220") + H1[4:])]), "head"),
    "head 37 bytes": (heads_body([feed(head=H1 + b"\x00")]), "head"),
    "head as str": (heads_body([feed(head="x" * 36)]), "head"),  # type: ignore[arg-type]
    "author 33 bytes": (heads_body([feed(author=A + b"\x00")]), "author"),
    "frozen after seq": (heads_body([feed(seq=3, frozen=4)]), "frozen_after"),
    "frozen negative": (heads_body([feed(frozen=-1)]), "frozen_after"),
    "frozen float": (heads_body([feed(frozen=0.0)]), "frozen_after"),  # type: ignore[arg-type]
    "authors equal": (heads_body([feed(A), feed(A, head=H2)]), "strictly increasing"),
    "authors decreasing": (heads_body([feed(B), feed(A)]), "strictly increasing"),
    "too many feeds": (
        heads_body([feed(i.to_bytes(32, "big")) for i in range(MAX_HEADS_PAGE + 1)]),
        "at most 4096",
    ),
    "more on empty page": (heads_body([], more=True), "no progress"),
    # RangeRequest values
    "range too big": (raw_map(range_pairs(last=pk(MAX_RANGE + 1))), "at most MAX_RANGE"),
    "range huge": (raw_map(range_pairs(last=pk(MAX_U63))), "at most MAX_RANGE"),
    "first after last": (raw_map(range_pairs(first=pk(3))), "after RangeRequest.last"),
    "first 0": (raw_map(range_pairs(first=pk(0))), "first"),
    "first negative": (raw_map(range_pairs(first=pk(-5))), "first"),
    "last 2**64-1": (raw_map(range_pairs(last=pk(2**64 - 1))), "last"),
    "last int64 min": (raw_map(range_pairs(last=pk(-(2**63)))), "last"),
    "author nil": (raw_map(range_pairs(author=pk(None))), "author"),
    # Entries values
    "entry as str": (entries_body(pk(["x"])), "entries\\[0\\]"),
    "entry nil": (entries_body(pk([b"x", None])), "entries\\[1\\]"),
    "entry too large": (entries_body(pk([bytes(MAX_ENTRY_SIZE + 1)])), "entries\\[0\\]"),
    "entries not array": (entries_body(pk(b"x")), "entries"),
    "more with no entries": (entries_body(pk([]), more=b"\xc3"), "no progress"),
    "more nil": (entries_body(pk([]), more=b"\xc0"), "more"),
    # SyncError values
    "reason too long": (raw_map([("reason", pk("r" * 1025)), ("t", pk("error"))]), "reason"),
    "reason bin": (raw_map([("reason", pk(b"r")), ("t", pk("error"))]), "reason"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_bodies_are_refused(name: str) -> None:
    body, match = HOSTILE[name]
    with pytest.raises(SyncProtocolError, match=match):
        decode_message(frame(body))
    reader = FrameReader()
    reader.receive_data(frame(body))
    with pytest.raises(SyncProtocolError):
        reader.next_message()


def test_error_messages_stay_short_on_huge_values() -> None:
    body = raw_map(heads_request_pairs(coop=pk("c" * 1_000_000)))
    with pytest.raises(SyncProtocolError) as refused:
        decode_message(frame(body))
    assert len(str(refused.value)) < 300 and "1000000-char str" in str(refused.value)


def test_constructors_refuse_what_the_wire_refuses() -> None:
    with pytest.raises(InvalidSyncMessage, match="MAX_RANGE"):
        RangeRequest(A, 1, MAX_RANGE + 1)
    with pytest.raises(InvalidSyncMessage, match="after"):
        RangeRequest(A, 2, 1)
    with pytest.raises(InvalidSyncMessage, match="strictly increasing"):
        Heads((RemoteHead(B, 1, H1, None), RemoteHead(A, 1, H1, None)), False)
    with pytest.raises(InvalidSyncMessage, match="surrogate"):
        SyncError("\udc80")
    with pytest.raises(InvalidSyncMessage, match="limit"):
        HeadsRequest("c", None, 0)
    with pytest.raises(InvalidSyncMessage, match="more"):
        Entries((), 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidSyncMessage, match="not a sync message"):
        encode_message("heads")  # type: ignore[arg-type]


def test_encode_refuses_a_frame_over_max_frame() -> None:
    big = Entries((bytes(MAX_ENTRY_SIZE),) * 64, False)  # 4 MiB of entries + headers
    with pytest.raises(InvalidSyncMessage, match="MAX_FRAME"):
        encode_message(big)


# Random msgpack shaped like messages: a valid message's map with one key's value
# replaced by a random value (the right type or not), removed, or added; or a random
# map over the real keys.
KEYS = ["after", "author", "coop", "entries", "feeds", "first", "last", "limit", "more",
        "reason", "t", "x"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False),
    st.text(max_size=10), st.binary(max_size=10), st.sampled_from([A, H1, ID_PREFIX + A]),
    st.sampled_from(["heads", "heads_ok", "get", "entries", "error"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def shaped(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 3)) == 0:
        value = draw(st.dictionaries(st.sampled_from(KEYS), values, max_size=5))
    else:
        value = msgpack.unpackb(decode_uvarint_body(encode_message(draw(messages))))
        key = draw(st.sampled_from([*value, "x"]))
        if draw(st.booleans()) and key in value:
            del value[key]
        else:
            value[key] = draw(values)
    return msgpack.packb(value, use_bin_type=True)


def decode_uvarint_body(data: bytes) -> bytes:
    length, start = decode_uvarint(data)
    assert start + length == len(data)
    return data[start:]


def mutate(data: bytes, position: int, byte: int, how: int) -> bytes:
    position %= len(data) + 1
    if how == 0:
        return data[:position] + bytes([byte]) + data[position + 1 :]
    if how == 1:
        return data[:position] + bytes([byte]) + data[position:]
    return data[:position] + data[position + 1 :]


def feed_hostile(data: bytes, chunk: int) -> None:
    """Feed `data` to a FrameReader; only SyncProtocolError may come out."""
    reader = FrameReader()
    try:
        for start in range(0, len(data), chunk):
            reader.receive_data(data[start : start + chunk])
            while reader.next_message() is not NEED_DATA:
                pass
        reader.receive_data(b"")
        while reader.next_message() is not END_OF_STREAM:
            pass
    except SyncProtocolError:
        pass


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200), st.integers(1, 50))
def test_random_bytes_only_raise_sync_protocol_error(data: bytes, chunk: int) -> None:
    feed_hostile(data, chunk)


@settings(max_examples=300, deadline=None)
@given(st.lists(shaped(), min_size=1, max_size=3), st.integers(1, 50))
def test_random_message_shaped_maps_only_raise_sync_protocol_error(
    bodies: list[bytes], chunk: int
) -> None:
    feed_hostile(b"".join(map(frame, bodies)), chunk)


@settings(max_examples=500, deadline=None)
@given(messages, st.integers(0, 10**6), st.integers(0, 255), st.integers(0, 2), st.booleans())
def test_mutated_valid_messages_only_raise_sync_protocol_error(
    msg: SyncMessage, position: int, byte: int, how: int, in_body: bool
) -> None:
    data = encode_message(msg)
    if in_body:  # keep the framing right, damage the map
        data = frame(mutate(decode_uvarint_body(data), position, byte, how))
    else:
        data = mutate(data, position, byte, how)
    try:
        decoded = decode_message(data)
    except SyncProtocolError:
        return
    assert encode_message(decoded) == data  # whatever is accepted is canonical


# --- responder helper -------------------------------------------------------------------


def test_pack_entries_fills_the_budget() -> None:
    item = bytes(MAX_ENTRY_SIZE)
    per_reply = ENTRIES_BUDGET // MAX_ENTRY_SIZE  # 16 full-size entries
    assert pack_entries([item] * per_reply) == Entries((item,) * per_reply, False)
    full = pack_entries([item] * (per_reply + 1))
    assert full == Entries((item,) * per_reply, True)
    assert len(encode_message(full)) < MAX_FRAME
    assert pack_entries(itertools.repeat(b"abc")).more  # stops reading an endless source
    assert pack_entries([]) == Entries((), False)
    assert pack_entries([b""] * 5) == Entries((b"",) * 5, False)


def test_pack_entries_budget_is_exact() -> None:
    items = [bytes(60_000)] * 18
    packed = pack_entries(items)
    assert len(packed.entries) == 17 and packed.more  # 17 * 60000 = 1,020,000 <= 1 MiB
    assert sum(map(len, packed.entries)) + 60_000 > ENTRIES_BUDGET
    exact = [bytes(MAX_ENTRY_SIZE)] * 15 + [bytes(MAX_ENTRY_SIZE - 1), b"x", b"y"]
    assert pack_entries(exact) == Entries(tuple(exact[:17]), True)  # 1 MiB exactly, then stop


# --- planner ----------------------------------------------------------------------------


def rr(author: bytes, first: int, last: int) -> RangeRequest:
    return RangeRequest(author, first, last)


def test_plan_unknown_author_fetches_the_whole_feed() -> None:
    assert plan_ranges({}, [RemoteHead(A, 5, H1, None)]) == [rr(A, 1, 5)]


def test_plan_nothing_to_do() -> None:
    mine = {A: LocalHead(5, H1, None), B: LocalHead(9, H2, None)}
    theirs = [RemoteHead(A, 5, H1, None), RemoteHead(B, 3, H1, None)]  # equal, or behind me
    assert plan_ranges(mine, theirs) == []
    assert plan_ranges(mine, []) == []
    assert plan_ranges({}, []) == []


def test_plan_catch_up_and_chunking() -> None:
    mine = {A: LocalHead(10, H1, None)}
    assert plan_ranges(mine, [RemoteHead(A, 11, H2, None)]) == [rr(A, 11, 11)]
    assert plan_ranges(mine, [RemoteHead(A, 10 + MAX_RANGE, H2, None)]) == [rr(A, 11, 1034)]
    assert plan_ranges(mine, [RemoteHead(A, 11 + MAX_RANGE, H2, None)]) == [
        rr(A, 11, 1034), rr(A, 1035, 1035),
    ]
    assert plan_ranges({}, [RemoteHead(B, 3 * MAX_RANGE, H2, None)]) == [
        rr(B, 1, 1024), rr(B, 1025, 2048), rr(B, 2049, 3072),
    ]


def test_plan_caps_chunks_per_feed() -> None:
    huge = [RemoteHead(A, MAX_U63, H1, None), RemoteHead(B, 5000, H1, None)]
    plan = plan_ranges({}, huge)
    assert [(r.first, r.last) for r in plan if r.author == A] == [
        (1 + i * MAX_RANGE, (i + 1) * MAX_RANGE) for i in range(16)
    ]
    assert [(r.first, r.last) for r in plan if r.author == B] == [
        (1, 1024), (1025, 2048), (2049, 3072), (3073, 4096), (4097, 5000),
    ]
    assert plan_ranges({}, huge, max_chunks_per_feed=1) == [rr(A, 1, 1024), rr(B, 1, 1024)]
    with pytest.raises(ValueError, match="max_chunks_per_feed"):
        plan_ranges({}, huge, max_chunks_per_feed=0)


def test_plan_equivocation_at_equal_seq_fetches_the_sibling() -> None:
    mine = {A: LocalHead(7, H1, None)}
    assert plan_ranges(mine, [RemoteHead(A, 7, H2, None)]) == [rr(A, 7, 7)]


def test_plan_their_frozen_feed_fetches_the_fork_evidence() -> None:
    mine = {A: LocalHead(7, H1, None)}
    # Same head, they froze after 4: fetch their entry 5 (the sibling of mine).
    assert plan_ranges(mine, [RemoteHead(A, 7, H1, 4)]) == [rr(A, 5, 5)]
    # Frozen at their head: the evidence is just past it.
    assert plan_ranges(mine, [RemoteHead(A, 7, H1, 7)]) == [rr(A, 8, 8)]
    # Ahead of me and frozen inside the catch-up range: already covered.
    assert plan_ranges(mine, [RemoteHead(A, 20, H2, 12)]) == [rr(A, 8, 20)]
    # Ahead of me and frozen at their head: catch up, and the evidence after it.
    assert plan_ranges(mine, [RemoteHead(A, 20, H2, 20)]) == [rr(A, 8, 20), rr(A, 21, 21)]
    # Equal seqs, other heads, frozen before: the sibling and the evidence.
    assert plan_ranges(mine, [RemoteHead(A, 7, H2, 3)]) == [rr(A, 4, 4), rr(A, 7, 7)]
    # Equal seqs, other heads, frozen just before that seq: one request covers both.
    assert plan_ranges(mine, [RemoteHead(A, 7, H2, 6)]) == [rr(A, 7, 7)]
    # Behind me but frozen: only the evidence.
    assert plan_ranges(mine, [RemoteHead(A, 3, H2, 2)]) == [rr(A, 3, 3)]


def test_plan_unknown_frozen_author_also_gets_the_evidence() -> None:
    assert plan_ranges({}, [RemoteHead(A, 5, H1, 5)]) == [rr(A, 1, 5), rr(A, 6, 6)]
    assert plan_ranges({}, [RemoteHead(A, 5, H1, 2)]) == [rr(A, 1, 5)]


def test_plan_my_frozen_feed_only_takes_earlier_evidence() -> None:
    mine = {A: LocalHead(10, H1, 6)}
    assert plan_ranges(mine, [RemoteHead(A, 50, H2, None)]) == []  # no catch-up
    assert plan_ranges(mine, [RemoteHead(A, 10, H2, None)]) == []  # no sibling fetch
    assert plan_ranges(mine, [RemoteHead(A, 50, H2, 6)]) == []  # same fork
    assert plan_ranges(mine, [RemoteHead(A, 50, H2, 9)]) == []  # later fork
    assert plan_ranges(mine, [RemoteHead(A, 50, H2, 2)]) == [rr(A, 3, 3)]  # earlier fork
    assert plan_ranges(mine, [RemoteHead(A, 2, H2, 0)]) == [rr(A, 1, 1)]


def test_plan_evidence_never_overflows_the_seq_range() -> None:
    mine = {A: LocalHead(MAX_U63, H1, None)}
    assert plan_ranges(mine, [RemoteHead(A, MAX_U63, H1, MAX_U63)]) == []


def test_plan_is_sorted_deduplicated_and_deterministic() -> None:
    mine = {B: LocalHead(2, H1, None)}
    theirs = [RemoteHead(C, 2, H1, None), RemoteHead(B, 3, H1, None), RemoteHead(A, 1, H1, None)]
    expected = [rr(A, 1, 1), rr(B, 3, 3), rr(C, 1, 2)]
    assert plan_ranges(mine, theirs) == expected
    assert plan_ranges(mine, theirs[::-1]) == expected
    assert plan_ranges(mine, theirs + theirs) == expected  # a feed listed twice
    assert plan_ranges(mine, iter(theirs)) == expected  # any iterable


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([A, B, C]),
        st.builds(
            LocalHead, st.integers(1, 5000), st.sampled_from([H1, H2]),
            st.none() | st.integers(0, 5000),
        ),
    ),
    st.lists(
        st.builds(
            lambda author, head: head._replace(author=author), st.sampled_from([A, B, C]),
            st.one_of(
                remote_heads(),
                st.builds(RemoteHead, st.just(A), st.integers(1, 5000), st.sampled_from([H1, H2]),
                          st.none() | st.integers(0, 1)),
            ),
        ),
        max_size=3,
        unique_by=lambda head: head.author,
    ),
)
def test_plan_requests_are_valid_and_within_their_feeds(
    mine: dict[bytes, LocalHead], theirs: list[RemoteHead]
) -> None:
    plan = plan_ranges(mine, theirs)
    assert plan == sorted(plan, key=lambda r: (r.author, r.first, r.last))
    assert len(set(plan)) == len(plan)
    by_author = {head.author: head for head in theirs}
    for request in plan:
        decode_message(encode_message(request))  # valid on the wire
        remote = by_author[request.author]
        evidence = 0 if remote.frozen_after is None else remote.frozen_after + 1
        assert request.last <= max(remote.seq, evidence)
