"""Ledger pull-sync `/chorus/sync/1.0.0`: the wire codec and the range planner.

Why it exists: gossip (node/gossip.py) is the fast path and may lose entries; this
protocol is how a node eventually holds every entry a peer holds. A node pulls: it asks
a peer for its feed heads, works out what it lacks, and asks for those entries.

Rules of this file, as in ledger/entry.py: pure and synchronous. No I/O, no event
loop, no clock. Messages in, bytes out (`encode_message`); bytes in, messages out
(`FrameReader`, h11 style). The node code that owns the libp2p stream drives it.
Nothing a peer sends can make decoding raise anything but `SyncProtocolError`.

Protocol flow
-------------
One stream per sync session, opened by the requester::

    requester                                   responder
    ---------                                   ---------
    HeadsRequest(coop, after=None, limit)  -->
                                           <--  Heads(feeds, more)       (or SyncError)
    HeadsRequest(coop, after=<last author>) -->  ... until more is False
    plan_ranges(my heads, all their feeds)
    RangeRequest(author, first, last)      -->
                                           <--  Entries(entries, more)   (or SyncError)
    RangeRequest(author, last seq got + 1, last)  -->  ... while more is True
    ... the next RangeRequest, one at a time ...
    close

* The responder answers every request with exactly one reply: `Heads` to a
  `HeadsRequest`, `Entries` to a `RangeRequest` (`REPLY_TYPES`), or a `SyncError`
  saying why it will not. It lists its feeds with authors in bytewise order, strictly
  after ``after``, at most ``limit`` of them, and ``more=True`` if it has more. It sends
  the entries of a range in seq order, from ``first`` on, stopping early (``more=True``)
  when its byte budget is spent (`pack_entries`).
* The requester penalises (scores down, disconnects) a peer whose reply does not
  decode, is of the wrong type, or breaks the session rules this codec cannot see
  alone: a heads page whose first author is not after the ``after`` it asked for, more
  feeds than its ``limit``, more entries than the range holds, entries the ledger
  refuses, an ``Entries(more=True)`` reply it cannot continue from. It also caps the
  feeds it collects from one peer and the requests it makes (a hostile peer can
  advertise any number of feeds with any seq).
* `plan_ranges` caps how much of one feed it plans at a time
  (``max_chunks_per_feed``): apply what arrived, then plan again.
* Heads pages move forward: after the first `HeadsRequest` of a session, the next
  one must come after a page that said ``more=True``, with ``after`` no earlier than
  that page's last author. A responder refuses (and penalises) a requester that asks
  again for what it was already given: listing feeds is the costly request, and an
  honest requester never repeats it within a session. Ranges may be asked between
  pages (a requester may apply one page before it asks for the next).
* A request is small (a few hundred bytes): a responder reads request frames with a
  limit of `MAX_REQUEST_FRAME`, so a peer cannot make it buffer `MAX_FRAME` bytes
  per stream before being refused.

Wire format
-----------
Each message is ``uvarint(length) || body``: an unsigned LEB128 length
(protocol/varint.py, minimal form) of at most `MAX_FRAME`, then a msgpack map. A
larger length is refused as soon as the prefix has arrived, before the body is waited
for. The maps (keys in sorted order; ``t`` names the message):

    t          keys and values
    ---------  ----------------------------------------------------------------------
    heads      after: bin32 | nil, coop: str (<= 128 chars), limit: 1..MAX_HEADS_PAGE
    heads_ok   feeds: [[author bin32, seq >= 1, head bin36, frozen_after >= 0 | nil]],
               more: bool
    get        author: bin32, first >= 1, last >= first, last - first + 1 <= MAX_RANGE
    entries    entries: [bin <= MAX_ENTRY_SIZE, ...], more: bool
    error      reason: str (<= 1024 chars)

* ``feeds``: at most MAX_HEADS_PAGE, authors strictly increasing bytewise. ``head`` is
  the binary CIDv1 (raw, sha2-256) id of the author's entry at ``seq`` (it starts
  ``01 55 12 20``). ``frozen_after``, when not nil, is <= ``seq``: the responder froze
  the feed after that seq because it holds two entries at ``frozen_after + 1`` (an
  equivocation); that seq is where the fork evidence is.
* ``more=True`` must come with at least one feed or entry (otherwise the requester
  could not make progress, and would ask again forever).
* Every integer is in 0..2**63-1; entries are opaque bytes here (the ledger decodes
  them).

Canonical form and strict decoding, as for entries (docs/ledger.md): keys sorted by
UTF-8 bytes, text as msgpack str, bytes as bin, integers and lengths in their smallest
encoding, no floats, no ext types, no duplicate or extra keys, nothing after the map
inside the frame. Decoding unpacks strictly (``raw=False``, ``strict_map_key=True``,
ext refused), checks every key, type and range, then re-encodes and demands byte
equality, so each message has exactly one byte form.

Planner
-------
`plan_ranges(mine, theirs)` compares my heads with a peer's, feed by feed:

* an author I do not know: entries 1..their seq (plus the fork evidence, below);
* my feed is frozen: only fork evidence that is earlier than my own, i.e. seq
  ``their.frozen_after + 1`` when their frozen_after < mine; nothing else;
* otherwise: their seq > mine: my seq + 1 .. their seq; equal seqs and other heads (an
  equivocation): that seq, to fetch the sibling; their feed frozen: seq
  ``their.frozen_after + 1``, unless another range of the feed already covers it.

Ranges are split into chunks of at most MAX_RANGE seqs and returned sorted by
(author, first): the same heads always give the same plan.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, NamedTuple

import msgpack

from protocol.bitswap import END_OF_STREAM, NEED_DATA, BitswapError, FrameDecoder
from protocol.cid import RAW
from protocol.errors import ChorusError, DecodeError
from protocol.incremental import Sentinel
from protocol.varint import encode_uvarint

from .entry import MAX_ENTRY_SIZE

__all__ = [
    "END_OF_STREAM",
    "ENTRIES_BUDGET",
    "MAX_COOP_LENGTH",
    "MAX_FRAME",
    "MAX_HEADS_PAGE",
    "MAX_RANGE",
    "MAX_REASON_LENGTH",
    "MAX_REQUEST_FRAME",
    "NEED_DATA",
    "PROTOCOL_ID",
    "REPLY_TYPES",
    "Entries",
    "FrameReader",
    "Heads",
    "HeadsRequest",
    "InvalidSyncMessage",
    "LocalHead",
    "RangeRequest",
    "RemoteHead",
    "SyncError",
    "SyncMessage",
    "SyncProtocolError",
    "decode_message",
    "encode_message",
    "pack_entries",
    "plan_ranges",
]

PROTOCOL_ID: Final = "/chorus/sync/1.0.0"
#: Largest message body sent or accepted (the length prefix not included), inclusive.
MAX_FRAME: Final = 4 * 1024 * 1024
#: Most feeds one `Heads` page holds (and the largest `HeadsRequest.limit`).
MAX_HEADS_PAGE: Final = 4096
#: Most seqs one `RangeRequest` asks for.
MAX_RANGE: Final = 1024
#: Largest request body (`HeadsRequest`, `RangeRequest`) a responder reads; the
#: largest valid request (a 128-char co-op of 4-byte code points) is about 580 bytes.
MAX_REQUEST_FRAME: Final = 1024
#: Entry bytes a responder puts in one `Entries` reply (`pack_entries`).
ENTRIES_BUDGET: Final = 1024 * 1024
#: Longest co-op name in a `HeadsRequest`, in characters (code points).
MAX_COOP_LENGTH: Final = 128
#: Longest `SyncError.reason`, in characters (code points).
MAX_REASON_LENGTH: Final = 1024
#: Chunks of one feed's catch-up range `plan_ranges` returns by default.
DEFAULT_MAX_CHUNKS_PER_FEED: Final = 16

_MAX_U63 = (1 << 63) - 1
_AUTHOR_SIZE = 32
# Entry ids are CIDv1 + raw + sha2-256 + 32-byte digest (ledger/entry.py).
_ID_PREFIX = bytes([0x01, RAW, 0x12, 0x20])
_ID_SIZE = len(_ID_PREFIX) + 32


# --- errors ---------------------------------------------------------------------------


class SyncProtocolError(DecodeError):
    """Bytes from a peer that are not a sync message in its one byte form, or a frame
    that breaks the framing rules. The message names the field and the rule."""


class InvalidSyncMessage(ChorusError, ValueError):
    """A message built with fields no valid message may hold (the caller's bug)."""


# --- field rules ----------------------------------------------------------------------


def _describe(value: object) -> str:
    """A short description of a (possibly hostile, possibly huge) value for errors."""
    kind = type(value)
    if kind is bytes:
        return f"a {len(value)}-byte bin"  # type: ignore[arg-type]
    if kind is str:
        return f"a {len(value)}-char str"  # type: ignore[arg-type]
    if kind is int or kind is bool or value is None:
        return repr(value)
    if kind is list or kind is tuple:
        return f"a {kind.__name__} of {len(value)} items"  # type: ignore[arg-type]
    return f"a {kind.__name__}"


def _int(where: str, value: object, low: int = 0, high: int = _MAX_U63) -> int:
    if type(value) is not int or not low <= value <= high:
        raise InvalidSyncMessage(f"{where} must be an integer in {low}..{high}, "
                                 f"got {_describe(value)}")
    return value


def _bool(where: str, value: object) -> bool:
    if type(value) is not bool:
        raise InvalidSyncMessage(f"{where} must be a bool, got {_describe(value)}")
    return value


def _author(where: str, value: object) -> bytes:
    if type(value) is not bytes or len(value) != _AUTHOR_SIZE:
        raise InvalidSyncMessage(f"{where} must be a {_AUTHOR_SIZE}-byte bin (an Ed25519 "
                                 f"public key), got {_describe(value)}")
    return value


def _entry_id(where: str, value: object) -> bytes:
    if type(value) is not bytes or len(value) != _ID_SIZE or not value.startswith(_ID_PREFIX):
        raise InvalidSyncMessage(f"{where} must be a {_ID_SIZE}-byte binary CIDv1 (raw, "
                                 f"sha2-256) entry id starting 01551220, got {_describe(value)}")
    return value


def _text(where: str, value: object, max_length: int) -> str:
    if type(value) is not str or len(value) > max_length:
        raise InvalidSyncMessage(f"{where} must be a str of at most {max_length} chars, "
                                 f"got {_describe(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidSyncMessage(f"{where} is not valid UTF-8 (lone surrogate)") from None
    return value


def _items(where: str, value: object) -> tuple[Any, ...]:
    if type(value) is not tuple and type(value) is not list:
        raise InvalidSyncMessage(f"{where} must be a tuple, got {_describe(value)}")
    return tuple(value)  # type: ignore[arg-type]


# --- messages -------------------------------------------------------------------------


class RemoteHead(NamedTuple):
    """A peer's head of one feed, as listed in `Heads`."""

    author: bytes
    seq: int
    head: bytes  # binary entry id of the author's entry at `seq`
    frozen_after: int | None  # not None: frozen after this seq (an equivocation)


class LocalHead(NamedTuple):
    """My head of one feed, for `plan_ranges` (the author is the mapping's key)."""

    seq: int
    head: bytes
    frozen_after: int | None


class _Message:
    """What every message class has: its ``t`` and the two halves of its wire form."""

    __slots__ = ()
    TYPE: ClassVar[str]
    KEYS: ClassVar[frozenset[str]]

    def _wire(self) -> dict[str, Any]:
        """The canonical msgpack map: keys in sorted order, lists, bytes, str, int."""
        raise NotImplementedError

    @classmethod
    def _from_wire(cls, value: dict[str, Any]) -> _Message:
        """The message from a map with exactly KEYS (values not yet checked)."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class HeadsRequest(_Message):
    """Ask for up to `limit` of the responder's feed heads, authors after `after`."""

    coop: str
    after: bytes | None
    limit: int

    TYPE: ClassVar[str] = "heads"
    KEYS: ClassVar[frozenset[str]] = frozenset({"after", "coop", "limit", "t"})

    def __post_init__(self) -> None:
        _text("HeadsRequest.coop", self.coop, MAX_COOP_LENGTH)
        if self.after is not None:
            _author("HeadsRequest.after", self.after)
        _int("HeadsRequest.limit", self.limit, 1, MAX_HEADS_PAGE)

    def _wire(self) -> dict[str, Any]:
        return {"after": self.after, "coop": self.coop, "limit": self.limit, "t": self.TYPE}

    @classmethod
    def _from_wire(cls, value: dict[str, Any]) -> HeadsRequest:
        return cls(value["coop"], value["after"], value["limit"])


@dataclass(frozen=True, slots=True)
class Heads(_Message):
    """One page of the responder's feed heads; `more`: ask again after the last author."""

    feeds: tuple[RemoteHead, ...]
    more: bool

    TYPE: ClassVar[str] = "heads_ok"
    KEYS: ClassVar[frozenset[str]] = frozenset({"feeds", "more", "t"})

    def __post_init__(self) -> None:
        feeds = _items("Heads.feeds", self.feeds)
        if len(feeds) > MAX_HEADS_PAGE:
            raise InvalidSyncMessage(
                f"Heads.feeds lists {len(feeds)} feeds; at most {MAX_HEADS_PAGE} per page"
            )
        _bool("Heads.more", self.more)
        if self.more and not feeds:
            raise InvalidSyncMessage("Heads.more is true on an empty page (no progress)")
        checked = []
        previous: bytes | None = None
        for index, feed in enumerate(feeds):
            where = f"Heads.feeds[{index}]"
            if not isinstance(feed, tuple) or len(feed) != 4:
                raise InvalidSyncMessage(f"{where} must be a RemoteHead, got {_describe(feed)}")
            author, seq, head, frozen_after = feed
            _author(f"{where}.author", author)
            _int(f"{where}.seq", seq, 1)
            _entry_id(f"{where}.head", head)
            if frozen_after is not None:
                _int(f"{where}.frozen_after", frozen_after, 0, seq)
            if previous is not None and author <= previous:
                raise InvalidSyncMessage(
                    f"{where}.author is not after the previous author (authors must be "
                    f"strictly increasing bytewise)"
                )
            previous = author
            checked.append(RemoteHead(author, seq, head, frozen_after))
        object.__setattr__(self, "feeds", tuple(checked))

    def _wire(self) -> dict[str, Any]:
        return {"feeds": [list(feed) for feed in self.feeds], "more": self.more, "t": self.TYPE}

    @classmethod
    def _from_wire(cls, value: dict[str, Any]) -> Heads:
        feeds = value["feeds"]
        if type(feeds) is not list:
            raise InvalidSyncMessage(f"Heads.feeds must be an array, got {_describe(feeds)}")
        for index, feed in enumerate(feeds):
            if type(feed) is not list or len(feed) != 4:
                raise InvalidSyncMessage(
                    f"Heads.feeds[{index}] must be an array [author, seq, head, "
                    f"frozen_after], got {_describe(feed)}"
                )
        return cls(tuple(map(tuple, feeds)), value["more"])  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class RangeRequest(_Message):
    """Ask for the entries `first`..`last` (inclusive) of `author`'s feed."""

    author: bytes
    first: int
    last: int

    TYPE: ClassVar[str] = "get"
    KEYS: ClassVar[frozenset[str]] = frozenset({"author", "first", "last", "t"})

    def __post_init__(self) -> None:
        _author("RangeRequest.author", self.author)
        _int("RangeRequest.first", self.first, 1)
        _int("RangeRequest.last", self.last, 1)
        if self.first > self.last:
            raise InvalidSyncMessage(
                f"RangeRequest.first ({self.first}) is after RangeRequest.last ({self.last})"
            )
        if self.last - self.first + 1 > MAX_RANGE:
            raise InvalidSyncMessage(
                f"RangeRequest {self.first}..{self.last} asks for "
                f"{self.last - self.first + 1} seqs; at most MAX_RANGE ({MAX_RANGE})"
            )

    def _wire(self) -> dict[str, Any]:
        return {"author": self.author, "first": self.first, "last": self.last, "t": self.TYPE}

    @classmethod
    def _from_wire(cls, value: dict[str, Any]) -> RangeRequest:
        return cls(value["author"], value["first"], value["last"])


@dataclass(frozen=True, slots=True)
class Entries(_Message):
    """Signed entries in seq order (opaque here); `more`: ask again after the last one."""

    entries: tuple[bytes, ...]
    more: bool

    TYPE: ClassVar[str] = "entries"
    KEYS: ClassVar[frozenset[str]] = frozenset({"entries", "more", "t"})

    def __post_init__(self) -> None:
        entries = _items("Entries.entries", self.entries)
        _bool("Entries.more", self.more)
        if self.more and not entries:
            raise InvalidSyncMessage("Entries.more is true with no entries (no progress)")
        for index, entry in enumerate(entries):
            if type(entry) is not bytes or len(entry) > MAX_ENTRY_SIZE:
                raise InvalidSyncMessage(
                    f"Entries.entries[{index}] must be a bin of at most {MAX_ENTRY_SIZE} "
                    f"bytes, got {_describe(entry)}"
                )
        object.__setattr__(self, "entries", entries)

    def _wire(self) -> dict[str, Any]:
        return {"entries": list(self.entries), "more": self.more, "t": self.TYPE}

    @classmethod
    def _from_wire(cls, value: dict[str, Any]) -> Entries:
        entries = value["entries"]
        if type(entries) is not list:
            raise InvalidSyncMessage(f"Entries.entries must be an array, got {_describe(entries)}")
        return cls(entries, value["more"])  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class SyncError(_Message):
    """The responder's refusal of a request, and why (for logs, not for machines)."""

    reason: str

    TYPE: ClassVar[str] = "error"
    KEYS: ClassVar[frozenset[str]] = frozenset({"reason", "t"})

    def __post_init__(self) -> None:
        _text("SyncError.reason", self.reason, MAX_REASON_LENGTH)

    def _wire(self) -> dict[str, Any]:
        return {"reason": self.reason, "t": self.TYPE}

    @classmethod
    def _from_wire(cls, value: dict[str, Any]) -> SyncError:
        return cls(value["reason"])


SyncMessage = HeadsRequest | Heads | RangeRequest | Entries | SyncError

#: Message class by its ``t``.
_TYPES: Final[dict[str, type[_Message]]] = {
    cls.TYPE: cls for cls in (HeadsRequest, Heads, RangeRequest, Entries, SyncError)
}
#: What a responder may answer to each request.
REPLY_TYPES: Final = {
    HeadsRequest: (Heads, SyncError),
    RangeRequest: (Entries, SyncError),
}


# --- encoding and decoding ------------------------------------------------------------


def _pack(value: dict[str, Any]) -> bytes:
    # use_bin_type: bytes -> bin, str -> str; strict_types: no subclass coercion.
    # Integers and lengths always come out in their smallest encoding.
    return msgpack.packb(value, use_bin_type=True, strict_types=True)


def encode_message(msg: SyncMessage) -> bytes:
    """The frame of `msg`: ``uvarint(len(body)) || body``, body its canonical map."""
    if type(msg) not in _TYPES.values():
        raise InvalidSyncMessage(f"not a sync message: {type(msg).__name__}")
    body = _pack(msg._wire())
    if len(body) > MAX_FRAME:
        raise InvalidSyncMessage(
            f"{type(msg).__name__} encodes to {len(body)} bytes; peers refuse more than "
            f"MAX_FRAME ({MAX_FRAME})"
        )
    return encode_uvarint(len(body)) + body


def _decode_body(body: bytes) -> SyncMessage:
    """One frame body -> its message; SyncProtocolError for anything but canonical form."""
    try:
        value = msgpack.unpackb(
            body,
            raw=False,  # str must be valid UTF-8 and stays distinct from bin
            strict_map_key=True,  # map keys only str/bin (bin is refused below)
            use_list=True,
            max_ext_len=0,  # ext types refused (an empty one decodes and fails the types)
            timestamp=0,
        )
    except msgpack.ExtraData:
        raise SyncProtocolError("trailing bytes after the message map inside the frame") from None
    except (ValueError, TypeError, OverflowError, RecursionError, msgpack.UnpackException) as exc:
        raise SyncProtocolError(
            f"frame body of {len(body)} bytes is not msgpack: {type(exc).__name__}: {exc}"
        ) from None
    if type(value) is not dict:
        raise SyncProtocolError(f"a message is a msgpack map, got {_describe(value)}")
    kind = value.get("t")
    cls = _TYPES.get(kind) if type(kind) is str else None
    if cls is None:
        raise SyncProtocolError(
            f"message type t is {_describe(kind) if type(kind) is not str else repr(kind[:40])}"
            f", not one of {sorted(_TYPES)}"
        )
    if value.keys() != cls.KEYS:
        missing = sorted(cls.KEYS - value.keys())
        unknown = ", ".join(sorted(repr(key)[:40] for key in value.keys() - cls.KEYS))
        raise SyncProtocolError(
            f"{cls.__name__} (t={kind!r}) keys wrong: missing {missing}, unknown [{unknown}]"
        )
    try:
        msg = cls._from_wire(value)
    except InvalidSyncMessage as exc:
        raise SyncProtocolError(str(exc)) from None
    if _pack(msg._wire()) != body:
        # Same logical message, other bytes: key order, wide ints or headers, duplicates.
        raise SyncProtocolError(
            f"{cls.__name__} is not in canonical form (key order, integer or length widths, "
            f"or duplicate keys differ from its one encoding)"
        )
    return msg  # type: ignore[return-value]


class FrameReader:
    """Turn a sync stream into messages, without I/O (h11 style).

    Feed bytes with `receive_data(chunk)` (``b""`` when the stream has ended) and call
    `next_message()` until it returns NEED_DATA:

        buffered input                 | next_message() returns / raises
        -------------------------------+-------------------------------------------
        a whole frame                  | its message (HeadsRequest, Heads, ...)
        part of a frame, more coming   | NEED_DATA
        nothing, input ended           | END_OF_STREAM (and again after that)
        part of a frame, input ended   | SyncProtocolError (truncated)    -> ERROR
        a bad or too large length      | SyncProtocolError                -> ERROR
        a frame that is no message     | SyncProtocolError                -> ERROR
        (ERROR)                        | the same SyncProtocolError again

    Framing is protocol/bitswap.py's `FrameDecoder` (the same uvarint-length frames),
    limited to MAX_FRAME: a longer declared length is refused as soon as its prefix has
    arrived, so a peer cannot make us hold more than one frame plus the last chunk.
    A responder passes ``max_frame=MAX_REQUEST_FRAME``: requests are small.
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        if type(max_frame) is not int or not 1 <= max_frame <= MAX_FRAME:
            raise ValueError(f"max_frame must be an int in 1..{MAX_FRAME}, got {max_frame!r}")
        self._frames = FrameDecoder(max_message_size=max_frame)
        self._error: SyncProtocolError | None = None

    @property
    def offset(self) -> int:
        """Bytes of the stream consumed as whole frames so far."""
        return self._frames.offset

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a message."""
        return self._frames.buffered

    def receive_data(self, data: bytes) -> None:
        """Feed the next bytes of the stream; ``b""`` means the stream has ended."""
        self._frames.receive_data(data)

    def next_message(self) -> SyncMessage | Sentinel:
        """The next message, NEED_DATA or END_OF_STREAM; SyncProtocolError when malformed."""
        if self._error is not None:
            raise self._error
        offset = self._frames.offset
        try:
            body = self._frames.next_message()
            if isinstance(body, Sentinel):
                return body
            return _decode_body(body)
        except BitswapError as exc:
            # FrameDecoder's messages speak of a "Bitswap stream": same framing rules.
            text = str(exc).replace("Bitswap stream", "stream")
            self._error = SyncProtocolError(f"sync stream framing: {text}")
        except SyncProtocolError as exc:
            self._error = SyncProtocolError(f"frame at stream offset {offset}: {exc}")
        raise self._error


def decode_message(frame: bytes) -> SyncMessage:
    """The message in `frame`, exactly one whole frame as `encode_message` makes it."""
    if not isinstance(frame, bytes | bytearray | memoryview):
        raise SyncProtocolError(f"a frame is bytes, not {type(frame).__name__}")
    reader = FrameReader()
    if frame:
        reader.receive_data(bytes(frame))
    reader.receive_data(b"")
    msg = reader.next_message()
    if msg is END_OF_STREAM:
        raise SyncProtocolError("empty input: no frame")
    if reader.next_message() is not END_OF_STREAM:
        raise SyncProtocolError(f"bytes after the frame of {reader.offset} bytes")
    return msg  # type: ignore[return-value]


# --- responder helper -----------------------------------------------------------------


def pack_entries(items: Iterable[bytes]) -> Entries:
    """A reply holding `items` in order up to ENTRIES_BUDGET bytes of entries.

    Always at least one item (when there is one); ``more=True`` if any were left out.
    Reads one item past the last it takes, to know whether any are left.
    """
    taken: list[bytes] = []
    total = 0
    for item in items:
        if taken and total + len(item) > ENTRIES_BUDGET:
            return Entries(tuple(taken), True)
        taken.append(item)
        total += len(item)
    return Entries(tuple(taken), False)


# --- planner --------------------------------------------------------------------------


def _feed_ranges(
    local: LocalHead | None, remote: RemoteHead, max_chunks: int
) -> list[tuple[int, int]]:
    """The (first, last) ranges to ask for one feed, catch-up chunked and capped."""
    my_seq = 0 if local is None else local.seq
    my_frozen = None if local is None else local.frozen_after
    their_frozen = remote.frozen_after
    evidence: int | None = None  # the seq of their fork evidence, if I want it
    if (
        their_frozen is not None
        and their_frozen < _MAX_U63
        and (my_frozen is None or their_frozen < my_frozen)
    ):
        evidence = their_frozen + 1
    if my_frozen is not None:
        return [] if evidence is None else [(evidence, evidence)]
    ranges: list[tuple[int, int]] = []
    covered = range(0)
    if remote.seq > my_seq:
        covered = range(my_seq + 1, remote.seq + 1)
        starts = itertools.islice(range(my_seq + 1, remote.seq + 1, MAX_RANGE), max_chunks)
        ranges.extend((start, min(start + MAX_RANGE - 1, remote.seq)) for start in starts)
    elif local is not None and remote.seq == my_seq and remote.head != local.head:
        covered = range(my_seq, my_seq + 1)
        ranges.append((my_seq, my_seq))
    if evidence is not None and evidence not in covered:
        ranges.append((evidence, evidence))
    return ranges


def plan_ranges(
    mine: Mapping[bytes, LocalHead],
    theirs: Iterable[RemoteHead],
    *,
    max_chunks_per_feed: int = DEFAULT_MAX_CHUNKS_PER_FEED,
) -> list[RangeRequest]:
    """The RangeRequests to send a peer whose feeds are `theirs`, given my heads `mine`.

    Rules in the module docstring. Sorted by (author, first), no duplicates. At most
    `max_chunks_per_feed` chunks of one feed's catch-up range (plus at most one for
    fork evidence): a peer may advertise seq 2**63-1, so plan again after applying.
    """
    if type(max_chunks_per_feed) is not int or max_chunks_per_feed < 1:
        raise ValueError(f"max_chunks_per_feed must be a positive int, got {max_chunks_per_feed!r}")
    wanted: set[tuple[bytes, int, int]] = set()
    for remote in theirs:
        for first, last in _feed_ranges(mine.get(remote.author), remote, max_chunks_per_feed):
            wanted.add((remote.author, first, last))
    return [RangeRequest(author, first, last) for author, first, last in sorted(wanted)]
