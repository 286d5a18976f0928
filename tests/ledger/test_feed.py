"""ledger/feed.py: `judge` and `apply` against MemoryFeeds, rule by rule."""

from __future__ import annotations

from hashlib import sha256

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from ledger.entry import (
    BadSignature,
    EntryError,
    EntryTooLarge,
    InvalidEntry,
    MalformedEntry,
    NonCanonicalEntry,
    SignedEntry,
    sign_entry,
)
from ledger.feed import (
    MAX_FUTURE_MS,
    ChainBroken,
    Decision,
    FeedError,
    FromTheFuture,
    Head,
    MemoryFeeds,
    TimeReversed,
    Verdict,
    apply,
    judge,
    rule_of,
)
from ledger.kinds import NOTE, kind_table
from ledger.schema import SchemaError, UnknownKind

T0 = 1_700_000_000_000
ALICE = SigningKey(bytes([1]) * 32)
BOB = SigningKey(bytes([2]) * 32)
CAROL = SigningKey(bytes([3]) * 32)


def note(key: SigningKey, seq: int, prev: SignedEntry | bytes | None, time: int = T0,
         text: str = "hi", kind: str = "note", body: dict | None = None) -> SignedEntry:
    if isinstance(prev, SignedEntry):
        prev = prev.id_bytes
    return sign_entry(key, seq, prev, time, kind, {"text": text} if body is None else body)


def chain(key: SigningKey, count: int, start: int = T0, text: str = "e") -> list[SignedEntry]:
    """A valid feed of `count` notes, one ms apart."""
    out: list[SignedEntry] = []
    for seq in range(1, count + 1):
        out.append(note(key, seq, out[-1] if out else None, start + seq, f"{text}{seq}"))
    return out


def feed_of(*entries: SignedEntry, now: int = T0 + 10_000) -> MemoryFeeds:
    feeds = MemoryFeeds()
    for entry in entries:
        decision = judge(entry, feeds, now)
        assert decision.verdict in (Verdict.APPEND, Verdict.FORK), decision
        feeds.record(decision)
    return feeds


def fake_id(tag: bytes) -> bytes:
    return bytes([0x01, 0x55, 0x12, 0x20]) + sha256(tag).digest()


ALICE_PK = bytes(ALICE.verify_key)


# --- starting and extending a feed ----------------------------------------------------


def test_seq_one_starts_a_feed() -> None:
    feeds = MemoryFeeds()
    entry = note(ALICE, 1, None)
    decision = judge(entry, feeds, T0)
    assert decision == Decision(Verdict.APPEND, entry)
    assert decision.stored and decision.sibling is None
    assert apply(None, decision) == Head(1, entry.id_bytes, T0, None)
    feeds.record(decision)
    assert feeds.head(entry.author) == Head(1, entry.id_bytes, T0, None)
    assert list(feeds.ids_at(entry.author, 1)) == [entry.id_bytes]
    assert len(feeds) == 1


def test_seq_one_must_have_no_prev() -> None:
    with pytest.raises(InvalidEntry, match="prev must be nil"):
        note(ALICE, 1, fake_id(b"x"))
    with pytest.raises(InvalidEntry, match="prev of seq 2"):
        note(ALICE, 2, None)


def test_next_entry_appends() -> None:
    first = note(ALICE, 1, None)
    feeds = feed_of(first)
    second = note(ALICE, 2, first, T0 + 5)
    decision = judge(second, feeds, T0)
    assert decision.verdict is Verdict.APPEND
    head = apply(feeds.head(first.author), decision)
    assert head == Head(2, second.id_bytes, T0 + 5, None)


def test_other_authors_are_independent() -> None:
    feeds = feed_of(*chain(ALICE, 3))
    assert judge(note(BOB, 1, None), feeds, T0).verdict is Verdict.APPEND
    assert judge(note(BOB, 2, fake_id(b"x")), feeds, T0).verdict is Verdict.EARLY


def test_wrong_prev_breaks_the_chain() -> None:
    entries = chain(ALICE, 2)
    feeds = feed_of(*entries)
    for prev in (fake_id(b"elsewhere"), entries[0].id_bytes):  # not the head's id
        bad = note(ALICE, 3, prev, T0 + 10)
        with pytest.raises(ChainBroken, match="prev is not the id of seq 2") as caught:
            judge(bad, feeds, T0)
        assert rule_of(caught.value) == "chain"


def test_time_may_not_go_back() -> None:
    first = note(ALICE, 1, None, T0 + 100)
    feeds = feed_of(first)
    with pytest.raises(TimeReversed, match="before the previous") as caught:
        judge(note(ALICE, 2, first, T0 + 99), feeds, T0 + 100)
    assert rule_of(caught.value) == "time"
    same = judge(note(ALICE, 2, first, T0 + 100), feeds, T0 + 100)
    assert same.verdict is Verdict.APPEND


@pytest.mark.parametrize("seq", [1, 2])
def test_future_boundary(seq: int) -> None:
    first = note(ALICE, 1, None, T0 - 1)
    feeds = feed_of(first) if seq == 2 else MemoryFeeds()
    prev = first if seq == 2 else None
    limit = T0 + MAX_FUTURE_MS
    at_limit = note(ALICE, seq, prev, limit)
    assert judge(at_limit, feeds, T0).verdict is Verdict.APPEND
    beyond = note(ALICE, seq, prev, limit + 1)
    with pytest.raises(FromTheFuture, match="ahead of this clock") as caught:
        judge(beyond, feeds, T0)
    assert rule_of(caught.value) == "time"
    # The same entry is fine once the judge's clock has moved on by 1 ms.
    assert judge(beyond, feeds, T0 + 1).verdict is Verdict.APPEND


def test_future_limit_is_a_parameter() -> None:
    entry = note(ALICE, 1, None, T0 + 10)
    assert judge(entry, MemoryFeeds(), T0, max_future_ms=10).verdict is Verdict.APPEND
    with pytest.raises(FromTheFuture):
        judge(entry, MemoryFeeds(), T0, max_future_ms=9)


def test_body_must_fit_its_kind() -> None:
    with pytest.raises(SchemaError, match=r"body\.text") as caught:
        judge(note(ALICE, 1, None, body={"text": 5}), MemoryFeeds(), T0)
    assert rule_of(caught.value) == "schema"
    with pytest.raises(SchemaError, match="missing text"):
        judge(note(ALICE, 1, None, body={}), MemoryFeeds(), T0)
    with pytest.raises(UnknownKind) as unknown:
        judge(note(ALICE, 1, None, kind="nope", body={"n": 1}), MemoryFeeds(), T0)
    assert rule_of(unknown.value) == "schema"


def test_kinds_table_is_a_parameter() -> None:
    entry = note(ALICE, 1, None, kind="tree_head", body={"size": 0, "root": b"\x00" * 32})
    assert judge(entry, MemoryFeeds(), T0).verdict is Verdict.APPEND
    with pytest.raises(UnknownKind):
        judge(entry, MemoryFeeds(), T0, kinds=kind_table(NOTE))


def test_chain_is_checked_before_time_and_body() -> None:
    first = note(ALICE, 1, None, T0 + 100)
    feeds = feed_of(first)
    bad = note(ALICE, 2, fake_id(b"x"), T0, body={"wrong": 1})
    with pytest.raises(ChainBroken):
        judge(bad, feeds, T0)
    reversed_and_bad = note(ALICE, 2, first, T0, body={"wrong": 1})
    with pytest.raises(TimeReversed):
        judge(reversed_and_bad, feeds, T0)


# --- held seqs: duplicates and forks --------------------------------------------------


def test_duplicate() -> None:
    entries = chain(ALICE, 3)
    feeds = feed_of(*entries)
    for entry in entries:
        decision = judge(entry, feeds, T0)
        assert decision.verdict is Verdict.DUPLICATE
        assert not decision.stored
        assert apply(feeds.head(entry.author), decision) == feeds.head(entry.author)


def test_fork_names_its_sibling_and_freezes() -> None:
    entries = chain(ALICE, 3)
    feeds = feed_of(*entries)
    other = note(ALICE, 2, entries[0], T0 + 2, "the other seq 2")
    decision = judge(other, feeds, T0)
    assert decision.verdict is Verdict.FORK
    assert decision.sibling == entries[1].id_bytes
    assert decision.stored
    head = feeds.head(ALICE_PK)
    assert apply(head, decision) == head._replace(frozen_after=1)
    feeds.record(decision)
    assert feeds.head(ALICE_PK) == Head(3, entries[2].id_bytes, entries[2].time, 1)
    assert list(feeds.ids_at(ALICE_PK, 2)) == [entries[1].id_bytes, other.id_bytes]
    assert feeds.forks() == [(ALICE_PK, 2, [entries[1].id_bytes, other.id_bytes])]
    # Both halves are now duplicates.
    assert judge(other, feeds, T0).verdict is Verdict.DUPLICATE
    assert judge(entries[1], feeds, T0).verdict is Verdict.DUPLICATE


def test_fork_whatever_its_prev_time_or_body() -> None:
    """The signature alone makes a second entry for a held seq evidence."""
    entries = chain(ALICE, 3)
    feeds = feed_of(*entries)
    odd = [
        note(ALICE, 3, fake_id(b"nowhere"), T0 + 3, "bad prev"),
        note(ALICE, 3, entries[1], 0, "time zero"),
        note(ALICE, 3, entries[1], T0 + 10**9, "far future"),
        note(ALICE, 3, entries[1], T0 + 3, kind="nope", body={"x": 1}),
        note(ALICE, 1, None, T0, body={"text": 7}),
    ]
    for entry in odd:
        decision = judge(entry, feeds, T0)
        assert decision.verdict is Verdict.FORK
        assert decision.sibling == entries[entry.seq - 1].id_bytes


def test_fork_at_seq_one_freezes_everything() -> None:
    entries = chain(ALICE, 2)
    feeds = feed_of(*entries)
    other = note(ALICE, 1, None, T0, "other first")
    decision = judge(other, feeds, T0)
    feeds.record(decision)
    assert feeds.head(ALICE_PK).frozen_after == 0


def test_lower_fork_lowers_the_freeze_higher_does_not_raise_it() -> None:
    entries = chain(ALICE, 5)
    feeds = feed_of(*entries)
    at4 = judge(note(ALICE, 4, entries[2], T0 + 4, "fork 4"), feeds, T0)
    feeds.record(at4)
    assert feeds.head(ALICE_PK).frozen_after == 3
    at2 = judge(note(ALICE, 2, entries[0], T0 + 2, "fork 2"), feeds, T0)
    assert apply(feeds.head(ALICE_PK), at2).frozen_after == 1
    feeds.record(at2)
    assert feeds.head(ALICE_PK).frozen_after == 1
    at5 = judge(note(ALICE, 5, entries[3], T0 + 5, "fork 5"), feeds, T0)
    assert at5.verdict is Verdict.FORK
    assert apply(feeds.head(ALICE_PK), at5).frozen_after == 1
    feeds.record(at5)
    head = feeds.head(ALICE_PK)
    assert head == Head(5, entries[4].id_bytes, entries[4].time, 1)
    assert [seq for _, seq, _ in feeds.forks()] == [2, 4, 5]
    # A third entry at seq 4 is one more sibling.
    third = judge(note(ALICE, 4, entries[2], T0 + 4, "fork 4 again"), feeds, T0)
    assert third.sibling == entries[3].id_bytes
    feeds.record(third)
    assert len(feeds.ids_at(ALICE_PK, 4)) == 3


def test_apply_to_a_frozen_head_keeps_the_freeze() -> None:
    head = Head(3, fake_id(b"h"), T0, 1)
    entry = note(ALICE, 4, fake_id(b"h"), T0)
    assert apply(head, Decision(Verdict.APPEND, entry)) == Head(4, entry.id_bytes, T0, 1)
    for verdict in (Verdict.DUPLICATE, Verdict.EARLY, Verdict.FROZEN):
        assert apply(head, Decision(verdict, entry)) is head
    assert apply(None, Decision(Verdict.EARLY, entry)) is None


# --- seqs beyond the head -------------------------------------------------------------


def test_gap_is_early() -> None:
    entries = chain(ALICE, 4)
    feeds = feed_of(*entries[:2])
    decision = judge(entries[3], feeds, T0)
    assert decision.verdict is Verdict.EARLY and not decision.stored
    assert judge(entries[2], MemoryFeeds(), T0).verdict is Verdict.EARLY
    feeds.record(decision)  # no effect
    assert feeds.head(ALICE_PK).seq == 2
    # EARLY is decided before the chain, time and body rules.
    assert judge(note(ALICE, 9, fake_id(b"x"), 0, kind="nope", body={}), feeds, T0).verdict is (
        Verdict.EARLY
    )


def test_frozen_feed_refuses_everything_beyond_its_head() -> None:
    entries = chain(ALICE, 4)
    feeds = feed_of(*entries[:3])
    feeds.record(judge(note(ALICE, 3, entries[1], T0 + 3, "fork"), feeds, T0))
    assert feeds.head(ALICE_PK).frozen_after == 2
    for entry in (entries[3], note(ALICE, 6, fake_id(b"x"), T0 + 6)):
        decision = judge(entry, feeds, T0)
        assert decision.verdict is Verdict.FROZEN and not decision.stored
        feeds.record(decision)
    assert feeds.head(ALICE_PK).seq == 3
    # Held seqs are still recognised.
    assert judge(entries[0], feeds, T0).verdict is Verdict.DUPLICATE
    assert judge(note(ALICE, 1, None, T0, "x"), feeds, T0).verdict is Verdict.FORK


# --- rule names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "rule"),
    [
        (ChainBroken("x"), "chain"),
        (TimeReversed("x"), "time"),
        (FromTheFuture("x"), "time"),
        (FeedError("x"), "feed"),
        (SchemaError("x"), "schema"),
        (UnknownKind("x"), "schema"),
        (BadSignature("x"), "signature"),
        (NonCanonicalEntry("x"), "canonical"),
        (EntryTooLarge("x"), "size"),
        (MalformedEntry("x"), "format"),
        (InvalidEntry("x"), "entry"),
        (EntryError("x"), "entry"),
    ],
)
def test_rule_of(error: EntryError, rule: str) -> None:
    assert rule_of(error) == rule


# --- interleavings --------------------------------------------------------------------


def _equal_time_chain(key: SigningKey, count: int) -> list[SignedEntry]:
    out: list[SignedEntry] = []
    for seq in range(1, count + 1):
        out.append(note(key, seq, out[-1] if out else None, T0, f"c{seq}"))
    return out


# Signed once: hypothesis only reorders them.
FEEDS = {
    "a": chain(ALICE, 6, text="a"),
    "b": chain(BOB, 6, text="b"),
    "c": _equal_time_chain(CAROL, 6),  # equal times throughout: allowed
}


@st.composite
def two_interleavings(draw: st.DrawFn) -> tuple[dict[str, int], list[str], list[str]]:
    """How many entries of each feed, and two arbitrary interleavings of them."""
    counts = {name: draw(st.integers(0, len(feed))) for name, feed in FEEDS.items()}
    labels = [name for name, count in counts.items() for _ in range(count)]
    return counts, draw(st.permutations(labels)), draw(st.permutations(labels))


def _run(order: list[str]) -> dict[bytes, Head]:
    feeds = MemoryFeeds()
    taken = dict.fromkeys(FEEDS, 0)
    for label in order:  # each feed's entries in order, feeds interleaved as drawn
        entry = FEEDS[label][taken[label]]
        taken[label] += 1
        decision = judge(entry, feeds, T0)
        assert decision.verdict is Verdict.APPEND
        feeds.record(decision)
    assert feeds.forks() == []
    return dict(feeds.heads())


@settings(max_examples=200, deadline=None)
@given(two_interleavings())
def test_interleavings_all_append_and_converge(
    drawn: tuple[dict[str, int], list[str], list[str]],
) -> None:
    counts, order, other_order = drawn
    expected = {
        FEEDS[name][count - 1].author: Head(
            count, FEEDS[name][count - 1].id_bytes, FEEDS[name][count - 1].time, None
        )
        for name, count in counts.items()
        if count
    }
    assert _run(order) == expected
    assert _run(other_order) == expected
    assert _run(sorted(order)) == expected
