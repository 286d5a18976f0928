"""ledger/verify.py: a clean log passes; every planted fault is named by rule and index.

Logs are built in memory: entry bytes in log order, with tree heads signed by the
node key whose body is {"size": their index, "root": the RFC 9162 root of the leaf
hashes of every entry before them}.
"""

from __future__ import annotations

from collections import Counter

import pytest
from nacl.signing import SigningKey

from ledger.entry import SignedEntry, decode_entry, entry_id_bytes, sign_entry
from ledger.merkle import MerkleLog, leaf_hash
from ledger.verify import MAX_FINDINGS, Finding, LogVerifier, Report, verify_log
from protocol.cid import cid_from_bytes, cid_to_text

T0 = 1_700_000_000_000
NOW = T0 + 60_000
NODE = SigningKey(bytes([9]) * 32)
NODE_PK = bytes(NODE.verify_key)
ALICE = SigningKey(bytes([1]) * 32)
BOB = SigningKey(bytes([2]) * 32)
CAROL = SigningKey(bytes([3]) * 32)
ENTRY_RULES = {"format", "canonical", "signature", "id"}


def text_id(data: bytes) -> str:
    return cid_to_text(cid_from_bytes(entry_id_bytes(data)))


class Log:
    """A log under construction, its feeds signed in order."""

    def __init__(self) -> None:
        self.entries: list[bytes] = []
        self._state: dict[bytes, tuple[int, bytes | None, int]] = {}
        self.clock = T0

    def sign(self, key: SigningKey, kind: str, body: dict) -> SignedEntry:
        """The author's next entry, not yet in the log."""
        author = bytes(key.verify_key)
        seq, prev, _ = self._state.get(author, (0, None, 0))
        self.clock += 1
        entry = sign_entry(key, seq + 1, prev, self.clock, kind, body)
        self._state[author] = (entry.seq, entry.id_bytes, entry.time)
        return entry

    def rewind(self, key: SigningKey, last: bytes) -> None:
        """Make `last` the author's latest entry again (to sign a fork)."""
        entry = decode_entry(last)
        self._state[bytes(key.verify_key)] = (entry.seq, entry.id_bytes, entry.time)

    def note(self, key: SigningKey, text: str = "") -> int:
        entry = self.sign(key, "note", {"text": text or f"note {len(self.entries)}"})
        self.entries.append(entry.encoded)
        return len(self.entries) - 1

    def tree_head(self, size: int | None = None, root: bytes | None = None) -> int:
        index = len(self.entries)
        tree = MerkleLog()
        for data in self.entries:
            tree.append(leaf_hash(data))
        body = {"size": index if size is None else size,
                "root": tree.root() if root is None else root}
        self.entries.append(self.sign(NODE, "tree_head", body).encoded)
        return index


def clean_log() -> tuple[Log, list[int]]:
    """Three authors and the node; heads at three points, two notes after the last."""
    log = Log()
    heads = []
    for round_ in range(3):
        log.note(ALICE)
        log.note(BOB)
        log.note(ALICE)
        log.note(CAROL)
        if round_ == 1:
            log.note(NODE, "the node's own note")
        heads.append(log.tree_head())
    log.note(BOB)
    log.note(CAROL)
    return log, heads


CLEAN, HEADS = clean_log()


def check(entries: list[bytes], owner: bytes | None = NODE_PK) -> Report:
    return verify_log(entries, log_owner=owner, now_ms=NOW)


def errors(report: Report) -> list[Finding]:
    return [finding for finding in report.findings if finding.severity == "error"]


def only(report: Report, rule: str) -> list[Finding]:
    return [finding for finding in report.findings if finding.rule == rule]


# --- the clean log -------------------------------------------------------------------


def test_clean_log() -> None:
    report = check(CLEAN.entries)
    assert report.ok and report.clean, report.findings
    assert report.findings == [] and report.errors == 0 and report.anomalies == 0
    assert report.entries == len(CLEAN.entries) == 18
    assert report.feeds == 4
    assert report.kinds == Counter({"note": 15, "tree_head": 3})
    tree = MerkleLog()
    for data in CLEAN.entries:
        tree.append(leaf_hash(data))
    assert report.root == tree.root()
    assert [head.index for head in report.tree_heads] == HEADS == [4, 10, 15]
    for record in report.tree_heads:
        entry = decode_entry(CLEAN.entries[record.index])
        assert record.size == record.index == entry.body["size"]
        assert record.root == entry.body["root"]
        assert record.time == entry.time
        assert record.entry == text_id(entry.encoded)
    assert report.uncovered == 2  # the tail after the last head: 16 and 17
    assert report.log_owner == NODE_PK
    assert report.forks == []
    as_json = report.to_json()
    assert as_json["ok"] is True and as_json["entries"] == 18
    assert as_json["tree_heads"][0]["root"] == report.tree_heads[0].root.hex()


def test_uncovered_is_zero_when_the_log_ends_with_a_head() -> None:
    log = Log()
    log.note(ALICE)
    log.tree_head()
    report = check(log.entries)
    assert report.clean and report.uncovered == 0


def test_empty_log() -> None:
    report = check([], owner=None)
    assert report.clean and report.entries == 0 and report.feeds == 0
    report = check([])
    assert not report.ok
    assert [(f.rule, f.index, f.entry) for f in report.findings] == [("tree-head", None, None)]


def test_verifier_accepts_precomputed_decodes_and_claimed_ids() -> None:
    verifier = LogVerifier(log_owner=NODE_PK, now_ms=NOW)
    for data in CLEAN.entries:
        accepted = verifier.add(data, claimed_id=entry_id_bytes(data), decoded=decode_entry(data))
        assert accepted is not None and accepted.encoded == data
    report = verifier.finish()
    assert report.clean and len(report.tree_heads) == 3
    assert verifier.feeds.head(bytes(ALICE.verify_key)).seq == 6


def test_no_owner_checks_no_heads() -> None:
    report = check(CLEAN.entries, owner=None)
    assert report.clean and report.tree_heads == [] and report.uncovered == 0


# --- entry bytes --------------------------------------------------------------------


def flipped(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


def _positions(data: bytes) -> dict[str, int]:
    entry = decode_entry(data)
    return {
        "map header": 0,
        "first key": 2,
        "author": data.index(entry.author) + 5,
        "body": data.index(b"text") + 6,
        "kind": data.index(b"note") + 1,
        "prev": data.index(entry.prev) + 20 if entry.prev else 30,
        "sig": data.index(entry.sig) + 10,
        "sig last byte": data.index(entry.sig) + 63,
        "time": len(data) - 1,
    }


@pytest.mark.parametrize("index", [0, 6, 12, 17])
@pytest.mark.parametrize(
    "where",
    ["map header", "first key", "author", "body", "kind", "prev", "sig", "sig last byte", "time"],
)
def test_flipped_byte_in_an_entry(index: int, where: str) -> None:
    entries = list(CLEAN.entries)
    position = _positions(entries[index])[where]
    entries[index] = flipped(entries[index], position)
    report = check(entries)
    assert not report.ok
    at = [f for f in report.findings if f.index == index]
    assert at, report.findings
    assert at[0].rule in ENTRY_RULES
    assert at[0].entry == text_id(entries[index])
    # Every head after the damage no longer matches the log.
    later_heads = [h for h in HEADS if h > index]
    none_left = [None] if later_heads == HEADS else []  # "no valid tree head" at the end
    assert [f.index for f in only(report, "tree-head")] == later_heads + none_left


def test_every_byte_of_an_entry_is_covered() -> None:
    index = 7
    data = CLEAN.entries[index]
    for position in range(len(data)):
        verifier = LogVerifier(log_owner=None, now_ms=NOW)
        for earlier in CLEAN.entries[:index]:
            verifier.add(earlier)
        bad = flipped(data, position)
        assert verifier.add(bad) is None, position
        (finding,) = verifier.report.findings
        assert finding.rule in ENTRY_RULES and finding.index == index, (position, finding)


def test_flipped_byte_under_a_claimed_id_is_an_id_finding() -> None:
    entries = list(CLEAN.entries)
    verifier = LogVerifier(log_owner=NODE_PK, now_ms=NOW)
    for index, data in enumerate(entries):
        shipped = flipped(data, 40) if index in (HEADS[1], 12) else data
        verifier.add(shipped, claimed_id=entry_id_bytes(data))
    report = verifier.finish()
    ids = only(report, "id")
    assert [f.index for f in ids] == [HEADS[1], 12]
    assert text_id(entries[12]) in ids[1].message
    assert ids[1].entry == text_id(flipped(entries[12], 40))
    # The damaged head is not counted as a head; later ones fail on the changed tree.
    assert [h.index for h in report.tree_heads] == [HEADS[0]]
    assert [f.index for f in only(report, "tree-head")] == [HEADS[2]]


def test_flipped_tree_head() -> None:
    entries = list(CLEAN.entries)
    entries[HEADS[0]] = flipped(entries[HEADS[0]], len(entries[HEADS[0]]) - 70)  # in sig
    report = check(entries)
    first = report.findings[0]
    assert (first.rule, first.index) == ("signature", HEADS[0])
    assert HEADS[0] not in [h.index for h in report.tree_heads]
    # The node's next entry (seq 2) is now beyond a missing seq 1.
    assert only(report, "gap")[0].entry == text_id(entries[HEADS[0] + 5])


# --- structure ------------------------------------------------------------------------


def test_dropped_entry() -> None:
    dropped = 5  # Alice's seq 3; her seq 4 follows at index 7
    assert decode_entry(CLEAN.entries[dropped]).seq == 3
    entries = CLEAN.entries[:dropped] + CLEAN.entries[dropped + 1 :]
    report = check(entries)
    assert not report.ok
    gaps = only(report, "gap")
    assert gaps[0].index == 6  # Alice's seq 4, shifted down by one
    assert gaps[0].entry == text_id(CLEAN.entries[7])
    assert "seq 4" in gaps[0].message and "before seq 3" in gaps[0].message
    heads = only(report, "tree-head")
    assert heads[0].index == HEADS[1] - 1
    assert "sits at log index" in heads[0].message
    assert [h.index for h in report.tree_heads] == [HEADS[0]]


def test_dropped_last_entry_of_a_feed_before_a_head() -> None:
    dropped = 3  # Carol's seq 1: the only thing wrong is the head after it
    entries = CLEAN.entries[:dropped] + CLEAN.entries[dropped + 1 :]
    report = check(entries)
    rules = {f.rule for f in errors(report)}
    assert "tree-head" in rules
    assert only(report, "tree-head")[0].index == HEADS[0] - 1
    assert only(report, "gap")[0].entry == text_id(CLEAN.entries[8])  # Carol's seq 2


def test_reordered_feed_is_a_gap() -> None:
    entries = list(CLEAN.entries)
    entries[5], entries[7] = entries[7], entries[5]  # Alice's seq 3 and 4 (index 6 is Bob)
    report = check(entries)
    gaps = only(report, "gap")
    assert gaps[0].index == 5
    assert gaps[0].entry == text_id(CLEAN.entries[7])
    assert only(report, "tree-head")[0].index == HEADS[1]


def test_swap_of_two_authors_between_heads_breaks_only_the_head() -> None:
    entries = list(CLEAN.entries)
    entries[5], entries[6] = entries[6], entries[5]  # Alice seq 3 <-> Bob seq 2
    report = check(entries)
    assert not report.ok
    # Every head from the swap on recomputes to another root; nothing else is wrong.
    assert [(f.rule, f.index) for f in report.findings] == [
        ("tree-head", HEADS[1]), ("tree-head", HEADS[2]),
    ]
    finding = report.findings[0]
    assert finding.entry == text_id(entries[HEADS[1]])
    assert "rewritten, reordered or truncated" in finding.message
    assert [h.index for h in report.tree_heads] == [HEADS[0]]


def test_swap_after_the_last_head_is_not_a_head_finding() -> None:
    entries = list(CLEAN.entries)
    entries[-1], entries[-2] = entries[-2], entries[-1]
    report = check(entries)
    assert report.clean  # nothing signed covers the tail: it is "uncovered"
    assert report.uncovered == 2


def test_forged_signature() -> None:
    log = Log()
    log.note(ALICE)
    entry = log.sign(ALICE, "note", {"text": "forged"})
    forged_sig = BOB.sign(entry.signing_input).signature
    data = entry.encoded.replace(entry.sig, forged_sig)
    assert decode_entry(log.entries[0]) and data != entry.encoded
    log.entries.append(data)
    log.tree_head()
    report = check(log.entries)
    sigs = only(report, "signature")
    assert [(f.index, f.entry) for f in sigs] == [(1, text_id(data))]
    assert report.tree_heads and report.tree_heads[0].index == 2  # the head covers it


def test_fork_is_an_anomaly() -> None:
    log = Log()
    log.note(ALICE)
    first_two = log.sign(ALICE, "note", {"text": "one"})
    log.entries.append(first_two.encoded)
    log.rewind(ALICE, log.entries[0])
    second_two = log.sign(ALICE, "note", {"text": "two"})
    log.entries.append(second_two.encoded)
    log.tree_head()
    report = check(log.entries)
    assert report.ok and not report.clean
    assert report.errors == 0 and report.anomalies == 1
    (finding,) = report.findings
    assert (finding.rule, finding.severity, finding.index) == ("fork", "anomaly", 2)
    assert finding.entry == text_id(second_two.encoded)
    assert text_id(first_two.encoded) in finding.message
    halves = [text_id(first_two.encoded), text_id(second_two.encoded)]
    assert report.forks == [(bytes(ALICE.verify_key).hex(), 2, halves)]
    assert report.to_json()["ok"] is True and report.to_json()["clean"] is False
    # Alice's seq 3 after the equivocation: frozen.
    third = log.sign(ALICE, "note", {"text": "three"})
    report = check([*log.entries, third.encoded])
    frozen = only(report, "frozen")
    assert [(f.index, f.entry) for f in frozen] == [(4, text_id(third.encoded))]
    assert not report.ok


def test_duplicate_entry() -> None:
    entries = list(CLEAN.entries)
    entries.insert(10, entries[2])
    report = check(entries)
    dups = only(report, "duplicate")
    assert [(f.index, f.entry) for f in dups] == [(10, text_id(CLEAN.entries[2]))]
    # The head after it no longer sits where it says.
    assert only(report, "tree-head")[0].index == HEADS[1] + 1


def test_duplicated_tree_head() -> None:
    entries = [*CLEAN.entries, CLEAN.entries[HEADS[2]]]
    report = check(entries)
    assert {(f.rule, f.index) for f in report.findings} == {
        ("tree-head", 18),
        ("duplicate", 18),
    }


@pytest.mark.parametrize("size", [-1, 0, 2, 4, 1 << 40])
def test_tree_head_with_wrong_size(size: int) -> None:
    log = Log()
    log.note(ALICE)
    log.note(BOB)
    log.note(ALICE)
    log.tree_head(size=size)
    log.note(BOB)
    log.tree_head()
    report = check(log.entries)
    heads = only(report, "tree-head")
    assert [f.index for f in heads] == [3]
    assert heads[0].entry == text_id(log.entries[3])
    assert [h.index for h in report.tree_heads] == [5]


def test_tree_head_with_wrong_root() -> None:
    log = Log()
    log.note(ALICE)
    log.tree_head(root=b"\x07" * 32)
    report = check(log.entries)
    assert [(f.rule, f.index) for f in report.findings] == [
        ("tree-head", 1),
        ("tree-head", None),  # and so no valid head at all
    ]
    assert "07070707" in report.findings[0].message


def test_tree_head_of_another_key_is_not_the_owners() -> None:
    log = Log()
    log.note(ALICE)
    entry = log.sign(BOB, "tree_head", {"size": 1, "root": b"\x00" * 32})  # wrong, unchecked
    log.entries.append(entry.encoded)
    report = check(log.entries)
    assert report.kinds["tree_head"] == 1
    assert [(f.rule, f.index, f.entry) for f in report.findings] == [("tree-head", None, None)]
    assert "no valid tree head" in report.findings[0].message
    # Bob's head is checked when the log is Bob's.
    report = check(log.entries, owner=bytes(BOB.verify_key))
    assert [(f.rule, f.index) for f in report.findings] == [("tree-head", 1), ("tree-head", None)]


def test_no_tree_head_from_the_owner() -> None:
    log = Log()
    for key in (ALICE, BOB, NODE):
        log.note(key)
    report = check(log.entries)
    assert not report.ok and report.errors == 1
    assert [(f.rule, f.index, f.entry) for f in report.findings] == [("tree-head", None, None)]
    assert NODE_PK.hex()[:16] in report.findings[0].message


def test_feed_rules_in_the_log() -> None:
    log = Log()
    log.note(ALICE)
    bad_body = log.sign(ALICE, "note", {"text": 5})
    log.entries.append(bad_body.encoded)
    future = sign_entry(BOB, 1, None, NOW + 5 * 60 * 1000 + 1, "note", {"text": "later"})
    log.entries.append(future.encoded)
    unknown = sign_entry(CAROL, 1, None, T0, "play", {"n": 1})
    log.entries.append(unknown.encoded)
    log.tree_head()
    report = check(log.entries)
    assert [(f.rule, f.index) for f in report.findings] == [
        ("schema", 1), ("time", 2), ("schema", 3),
    ]
    assert report.tree_heads[0].index == 4  # the head covers refused entries too


def test_max_findings_cap() -> None:
    garbage = [b"\xc1" + i.to_bytes(4, "big") for i in range(MAX_FINDINGS + 250)]
    report = check(garbage)
    assert len(report.findings) == MAX_FINDINGS
    assert report.errors == MAX_FINDINGS + 251  # each entry, and no tree head at all
    assert all(f.rule == "format" for f in report.findings)
    assert [f.index for f in report.findings[:3]] == [0, 1, 2]
    assert report.entries == MAX_FINDINGS + 250
    assert not report.ok and len(report.to_json()["findings"]) == MAX_FINDINGS
