"""The auditor's check of a node's log: every entry, every feed, every tree head.

Why it replays everything: an auditor trusts nothing the node says about itself. Given
the log's entries in log order (from an export file or the node's own database), it
re-derives every id, signature, feed chain, fork and the RFC 9162 tree, and checks
each of the node's signed tree heads against the tree it recomputed at that size. A
node that rewrote, reordered or dropped anything before a tree head it signed cannot
produce a log that passes: the head's root would differ. (That recomputation is
stronger than checking consistency proofs between successive heads, which only
compare hashes the node chose to show.)

`LogVerifier` is incremental so a million-entry log is checked in constant memory
for the tree (its frontier) and about 70 bytes per entry for the feeds. Decoding and
signature checks are the expensive part and are independent per entry, so the caller
may run `decode_entry` in worker processes and hand `add` the outcome (see
node/audit.py); the order-dependent checks stay here, in log order.

Findings have a `rule`: ``id`` (bytes do not hash to the id they were stored or
shipped under), ``format``, ``canonical``, ``signature``, ``size``, ``chain``,
``time``, ``schema``, ``gap`` (a seq beyond the feed's head: a reordered or dropped
entry), ``duplicate``, ``frozen`` (accepted past an equivocation), ``tree-head`` (a
signed head that disagrees with the recomputed log), ``log`` (structure of the log
itself), and ``fork`` (an equivocation: the author signed two entries for one seq).
A fork is the author's offence, contained by freezing the feed, not a fault in the
log; it is reported as an ``anomaly`` and the caller decides whether it fails.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .entry import EntryError, SignedEntry, decode_entry, entry_id_bytes
from .feed import MAX_FUTURE_MS, MemoryFeeds, Verdict, judge, rule_of
from .jsonview import id_text as _id_text
from .kinds import KINDS, TREE_HEAD
from .merkle import MerkleLog, leaf_hash
from .schema import Schema

__all__ = ["MAX_FINDINGS", "Finding", "LogVerifier", "Report", "TreeHeadRecord", "verify_log"]

#: Findings kept in full; beyond this only the count grows (a garbage file must not
#: turn the report into a second copy of itself).
MAX_FINDINGS = 1000


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    message: str
    index: int | None = None  # position in the log
    entry: str | None = None  # entry id (CID text) when known
    severity: str = "error"  # "error" or "anomaly"

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "index": self.index,
            "entry": self.entry,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class TreeHeadRecord:
    index: int
    size: int
    root: bytes
    time: int
    entry: str

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "size": self.size,
            "root": self.root.hex(),
            "time": self.time,
            "entry": self.entry,
        }


@dataclass
class Report:
    entries: int = 0
    feeds: int = 0
    root: bytes = b""
    kinds: Counter[str] = field(default_factory=Counter)
    tree_heads: list[TreeHeadRecord] = field(default_factory=list)
    forks: list[tuple[str, int, list[str]]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    errors: int = 0
    anomalies: int = 0
    uncovered: int = 0  # entries after the last tree head of the log's owner
    log_owner: bytes | None = None

    @property
    def ok(self) -> bool:
        """No errors. Forks (anomalies) do not make a log invalid; see `clean`."""
        return self.errors == 0

    @property
    def clean(self) -> bool:
        return self.errors == 0 and self.anomalies == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "clean": self.clean,
            "entries": self.entries,
            "feeds": self.feeds,
            "root": self.root.hex(),
            "log_owner": self.log_owner.hex() if self.log_owner else None,
            "kinds": dict(sorted(self.kinds.items())),
            "tree_heads": [head.to_json() for head in self.tree_heads],
            "uncovered": self.uncovered,
            "forks": [{"author": a, "seq": s, "entries": ids} for a, s, ids in self.forks],
            "errors": self.errors,
            "anomalies": self.anomalies,
            "findings": [finding.to_json() for finding in self.findings],
        }


class LogVerifier:
    """Feed it a log's entries in order with `add`, then read `finish()`'s Report.

    `log_owner` is the public key of the node whose log this is: its ``tree_head``
    entries are checked against the recomputed tree. `now_ms` is the auditor's clock
    (for the "not from the future" rule).
    """

    def __init__(
        self,
        *,
        log_owner: bytes | None,
        now_ms: int,
        kinds: Mapping[str, Schema] = KINDS,
        max_future_ms: int = MAX_FUTURE_MS,
    ) -> None:
        self._owner = log_owner
        self._now = now_ms
        self._kinds = kinds
        self._max_future = max_future_ms
        self._feeds = MemoryFeeds()
        self._tree = MerkleLog()
        self._seen: set[bytes] = set()
        self.report = Report(log_owner=log_owner)

    @property
    def feeds(self) -> MemoryFeeds:
        """The feeds as verified so far (tallies are computed from these)."""
        return self._feeds

    def _find(
        self, rule: str, message: str, index: int | None, entry: str | None, severity: str = "error"
    ) -> None:
        if severity == "error":
            self.report.errors += 1
        else:
            self.report.anomalies += 1
        if len(self.report.findings) < MAX_FINDINGS:
            text = None if entry is None else str(entry)
            self.report.findings.append(Finding(rule, message, index, text, severity))

    def add(
        self,
        data: bytes,
        *,
        claimed_id: bytes | None = None,
        decoded: SignedEntry | EntryError | None = None,
    ) -> SignedEntry | None:
        """Check the next entry of the log; returns it if it was accepted into a feed.

        `claimed_id` is the id the entry was stored or shipped under (checked against
        the bytes). `decoded` is `decode_entry(data)`'s result if the caller already
        computed it (in a worker), else it is computed here.
        """
        index = self._tree.size
        if decoded is None:
            try:
                decoded = decode_entry(data)
            except EntryError as exc:
                decoded = exc
        own_id = entry_id_bytes(data)
        text = _LazyId(own_id)
        if (
            isinstance(decoded, SignedEntry)
            and decoded.kind == TREE_HEAD.kind
            and decoded.author == self._owner
            and claimed_id in (None, own_id)
        ):
            self._check_tree_head(decoded, index, text)  # against the tree before it
        self._tree.append(leaf_hash(data))
        self.report.entries += 1
        if claimed_id is not None and claimed_id != own_id:
            self._find(
                "id",
                f"bytes at log index {index} do not hash to their id "
                f"{_id_text(claimed_id) if _looks_like_id(claimed_id) else claimed_id.hex()}",
                index,
                text,
            )
            return None
        if own_id in self._seen:
            self._find("duplicate", "the entry appears twice in the log", index, text)
            return None
        self._seen.add(own_id)
        if isinstance(decoded, EntryError):
            self._find(rule_of(decoded), str(decoded), index, text)
            return None
        entry = decoded
        try:
            decision = judge(
                entry, self._feeds, self._now, kinds=self._kinds, max_future_ms=self._max_future
            )
        except EntryError as exc:
            self._find(rule_of(exc), str(exc), index, text)
            return None
        if decision.verdict is Verdict.EARLY:
            head = self._feeds.head(entry.author)
            self._find(
                "gap",
                f"seq {entry.seq} of {entry.author.hex()[:16]}… comes before "
                f"seq {(head.seq if head else 0) + 1} in the log",
                index,
                text,
            )
            return None
        if decision.verdict is Verdict.FROZEN:
            self._find(
                "frozen",
                f"seq {entry.seq} was accepted after its feed was frozen by an equivocation",
                index,
                text,
            )
            return None
        if decision.verdict is Verdict.DUPLICATE:  # pragma: no cover - caught by _seen
            return None
        self._feeds.record(decision)
        self.report.kinds[entry.kind] += 1
        if decision.verdict is Verdict.FORK:
            sibling = _id_text(decision.sibling) if decision.sibling else "?"
            self._find(
                "fork",
                f"{entry.author.hex()[:16]}… signed two entries for seq "
                f"{entry.seq} ({sibling} and this one); the feed is frozen after "
                f"seq {entry.seq - 1}",
                index,
                text,
                severity="anomaly",
            )
        return entry

    def _check_tree_head(self, entry: SignedEntry, index: int, text: object) -> None:
        size, root = entry.body.get("size"), entry.body.get("root")
        if size != index:
            self._find(
                "tree-head",
                f"tree head for size {size} sits at log index {index}; "
                "a node appends its head right after the entries it covers",
                index,
                text,
            )
            return
        recomputed = self._tree.root()
        if root != recomputed:
            self._find(
                "tree-head",
                f"signed root for size {size} is "
                f"{root.hex() if isinstance(root, bytes) else root!r} but the log "
                f"recomputes to {recomputed.hex()}: the log was rewritten, "
                "reordered or truncated before this head",
                index,
                text,
            )
            return
        self.report.tree_heads.append(TreeHeadRecord(index, size, root, entry.time, str(text)))

    def finish(self, *, require_tree_head: bool = True) -> Report:
        """The report. `require_tree_head`: a log without a head signed by its owner is
        an error (an export must carry one); a node's own database may simply not
        have signed its first head yet (its entries then count as uncovered)."""
        report = self.report
        report.root = self._tree.root()
        report.feeds = len(self._feeds)
        report.forks = [
            (author.hex(), seq, [_id_text(i) for i in ids])
            for author, seq, ids in self._feeds.forks()
        ]
        if self._owner is not None:
            if not report.tree_heads:
                report.uncovered = report.entries
                if require_tree_head:
                    self._find(
                        "tree-head",
                        "the log holds no valid tree head signed by its "
                        f"node {self._owner.hex()[:16]}…",
                        None,
                        None,
                    )
            else:
                report.uncovered = report.entries - report.tree_heads[-1].index - 1
        return report


class _LazyId:
    """The id's text, made only if a finding or a tree head needs it (it costs as much
    as a third of checking an entry)."""

    __slots__ = ("_id",)

    def __init__(self, id_bytes: bytes) -> None:
        self._id = id_bytes

    def __str__(self) -> str:
        return _id_text(self._id)


def _looks_like_id(value: bytes) -> bool:
    return len(value) == 36 and value[:4] == bytes([0x01, 0x55, 0x12, 0x20])


def verify_log(
    entries: Iterable[bytes],
    *,
    log_owner: bytes | None,
    now_ms: int,
    kinds: Mapping[str, Schema] = KINDS,
) -> Report:
    """Verify a whole log given as entry bytes in log order (single-threaded)."""
    verifier = LogVerifier(log_owner=log_owner, now_ms=now_ms, kinds=kinds)
    for data in entries:
        verifier.add(data)
    return verifier.finish()
