"""Feeds: each key's chain of entries, and the judgement of one more entry against it.

Why a feed is a chain: every entry names the id of the one before (``prev``) and
carries the next ``seq``, so a feed is a hash chain that its author cannot rewrite
without signing a second entry for a seq it already used. Two validly signed entries
with the same author and seq are an *equivocation*: together they are a fork proof
that anyone can check, and the feed is frozen after the last entry both sides share
(``frozen_after = seq - 1``; tallies ignore the author's entries beyond it).

`judge` is the one place the feed rules live. It is pure: the caller hands it a
`FeedView` (the node's SQLite store, or an auditor's in-memory `MemoryFeeds`) and the
current time, and gets a `Decision` back or a `FeedError` naming the rule broken:

* seq 1 starts a feed; seq = head + 1 must have ``prev`` = the head's id (``chain``),
  a ``time`` no earlier than the head's (``time``) and at most `MAX_FUTURE_MS` ahead
  of the judge's clock (``time``), and a body that fits its kind (``schema``);
* a seq the feed already holds is a `DUPLICATE` (same id) or a `FORK` (other id,
  whatever its prev or body: the signature alone makes it evidence);
* a seq beyond head + 1 is `EARLY`: not invalid, just not judgeable yet (the missing
  entries are fetched by sync, then it is judged again);
* after a fork, any seq beyond the feed's head is `FROZEN` and refused.

Decisions are about one entry; `apply` gives the feed's next head after it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from .entry import EntryError, SignedEntry
from .kinds import KINDS, check_body
from .schema import Schema, SchemaError

__all__ = [
    "MAX_FUTURE_MS",
    "ChainBroken",
    "Decision",
    "FeedError",
    "FeedView",
    "FromTheFuture",
    "Head",
    "MemoryFeeds",
    "TimeReversed",
    "Verdict",
    "apply",
    "judge",
    "rule_of",
]

#: How far ahead of the judge's clock an entry's time may be: clocks of members'
#: machines drift, but an entry dated tomorrow could pre-empt a ballot's closing.
MAX_FUTURE_MS = 5 * 60 * 1000


class FeedError(EntryError):
    """An entry that is validly signed but breaks a feed rule; `rule` names it."""

    rule = "feed"


class ChainBroken(FeedError):
    rule = "chain"


class TimeReversed(FeedError):
    rule = "time"


class FromTheFuture(FeedError):
    rule = "time"


def rule_of(error: EntryError) -> str:
    """The short rule name reports use for an entry error ("signature", "chain"...)."""
    from .entry import BadSignature, EntryTooLarge, MalformedEntry, NonCanonicalEntry

    if isinstance(error, FeedError):
        return error.rule
    if isinstance(error, SchemaError):
        return "schema"
    if isinstance(error, BadSignature):
        return "signature"
    if isinstance(error, NonCanonicalEntry):
        return "canonical"
    if isinstance(error, EntryTooLarge):
        return "size"
    if isinstance(error, MalformedEntry):
        return "format"
    return "entry"


class Head(NamedTuple):
    """Where a feed stands: its last seq, that entry's id and time, and any freeze."""

    seq: int
    id: bytes
    time: int
    frozen_after: int | None = None


class FeedView(Protocol):
    """What `judge` needs to know about the feeds it judges against."""

    def head(self, author: bytes) -> Head | None: ...

    def ids_at(self, author: bytes, seq: int) -> Sequence[bytes]: ...


class Verdict(enum.Enum):
    APPEND = "append"  # the feed's next entry: store it, advance the head
    DUPLICATE = "duplicate"  # already held: nothing to do
    FORK = "fork"  # a second entry for a held seq: store as evidence, freeze the feed
    EARLY = "early"  # seq beyond head + 1: fetch what is missing first
    FROZEN = "frozen"  # the feed is frozen and this is beyond its head: refused


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    entry: SignedEntry
    #: For FORK: the id of the entry already held at that seq (the other half).
    sibling: bytes | None = None

    @property
    def stored(self) -> bool:
        """Whether the entry goes into the node's log (appended or kept as evidence)."""
        return self.verdict in (Verdict.APPEND, Verdict.FORK)


def judge(
    entry: SignedEntry,
    view: FeedView,
    now_ms: int,
    *,
    kinds: Mapping[str, Schema] = KINDS,
    max_future_ms: int = MAX_FUTURE_MS,
) -> Decision:
    """Decide what `entry` is to the feeds in `view`; FeedError/SchemaError if invalid."""
    head = view.head(entry.author)
    held = 0 if head is None else head.seq
    if entry.seq <= held:
        ids = view.ids_at(entry.author, entry.seq)
        own = entry.id_bytes
        if own in ids:
            return Decision(Verdict.DUPLICATE, entry)
        return Decision(Verdict.FORK, entry, ids[0] if ids else None)
    if head is not None and head.frozen_after is not None:
        return Decision(Verdict.FROZEN, entry)
    if entry.seq > held + 1:
        return Decision(Verdict.EARLY, entry)
    who = f"{entry.author.hex()[:16]}… seq {entry.seq}"
    if head is not None:
        if entry.prev != head.id:
            raise ChainBroken(f"{who}: prev is not the id of seq {head.seq}")
        if entry.time < head.time:
            raise TimeReversed(
                f"{who}: time {entry.time} is before the previous entry's {head.time}"
            )
    if entry.time > now_ms + max_future_ms:
        raise FromTheFuture(
            f"{who}: time {entry.time} is {entry.time - now_ms} ms ahead of this clock "
            f"(at most {max_future_ms} allowed)"
        )
    check_body(entry.kind, entry.body, kinds)
    return Decision(Verdict.APPEND, entry)


def apply(head: Head | None, decision: Decision) -> Head | None:
    """The feed's head after `decision` (unchanged for everything but APPEND and FORK)."""
    entry = decision.entry
    if decision.verdict is Verdict.APPEND:
        frozen = None if head is None else head.frozen_after
        return Head(entry.seq, entry.id_bytes, entry.time, frozen)
    if decision.verdict is Verdict.FORK:
        assert head is not None
        frozen = entry.seq - 1
        if head.frozen_after is not None:
            frozen = min(frozen, head.frozen_after)
        return head._replace(frozen_after=frozen)
    return head


class MemoryFeeds:
    """Every feed held in memory: the auditor's view, and the reference in tests.

    Keeps each feed's ids by seq (about 70 bytes an entry) and the fork siblings.
    """

    def __init__(self) -> None:
        self._heads: dict[bytes, Head] = {}
        self._ids: dict[bytes, list[bytes]] = {}
        self._siblings: dict[tuple[bytes, int], list[bytes]] = {}

    def head(self, author: bytes) -> Head | None:
        return self._heads.get(author)

    def ids_at(self, author: bytes, seq: int) -> Sequence[bytes]:
        ids = self._ids.get(author)
        if ids is None or not 1 <= seq <= len(ids):
            return ()
        extra = self._siblings.get((author, seq))
        return [ids[seq - 1], *extra] if extra else (ids[seq - 1],)

    def record(self, decision: Decision) -> None:
        """Remember a decision's effect (call for every decision `judge` returned)."""
        entry = decision.entry
        if decision.verdict is Verdict.APPEND:
            self._ids.setdefault(entry.author, []).append(entry.id_bytes)
        elif decision.verdict is Verdict.FORK:
            self._siblings.setdefault((entry.author, entry.seq), []).append(entry.id_bytes)
        else:
            return
        new = apply(self._heads.get(entry.author), decision)
        assert new is not None
        self._heads[entry.author] = new

    def heads(self) -> Mapping[bytes, Head]:
        return self._heads

    def forks(self) -> list[tuple[bytes, int, list[bytes]]]:
        """(author, seq, [ids at that seq]) for every equivocation seen, sorted."""
        out = []
        for (author, seq), extra in sorted(self._siblings.items()):
            out.append((author, seq, [self._ids[author][seq - 1], *extra]))
        return out

    def __len__(self) -> int:
        return len(self._heads)
