"""The running node's ledger: one writer task in front of the SQLite store.

    NodeLedger.run
    ├── writer      takes jobs (entries to judge, entries to sign, tree heads) off one
    │               channel and runs each group of them as one SQLite transaction
    │               in a worker thread, then wakes the callers
    └── tree heads  every `tree_head_interval` s, if the log grew, signs a tree head

Why one writer: every judgement reads the feed heads the previous one may have
moved, and the Merkle tree is a single chain of appends; serialising all writes in
one task makes that order explicit and lets queued submissions share a transaction
(group commit: one fsync for many entries). Readers go straight to the store through
`trio.to_thread` and see the last committed state (WAL). aiosqlite is not used: it
runs on asyncio's loop, and this node is trio throughout.

Callers are told an entry is stored only after its transaction committed with
``synchronous = FULL``: an acknowledged entry survives a crash or a power cut.

Entries that arrive before their predecessors (EARLY: gossip has no order) wait in
a bounded in-memory buffer and are judged again when the gap closes; the `on_gap`
callback tells the daemon to sync with the peer they came from. The buffer is capped
in entries, in bytes and per author, because anyone can sign entries far ahead of
any feed from any number of fresh keys: per author the entry farthest ahead goes
first (it is the last that could be judged), over the totals the oldest goes; every
drop is counted (`pending_dropped`) and costs nothing but a later sync.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio
from nacl.signing import SigningKey

from ledger.entry import (
    EntryError,
    SignedEntry,
    decode_entry,
    decode_entry_checked_elsewhere,
    entry_id_bytes,
)
from ledger.feed import Decision, Verdict

from .ledger_store import LedgerStore, Outcome

__all__ = ["LedgerCounters", "NodeLedger", "decode_all"]

log = logging.getLogger("chorus.ledger")

#: Entries judged in one transaction at most (bounds a transaction's duration).
MAX_GROUP = 4096
#: Out-of-order entries kept while their predecessors are fetched.
MAX_PENDING = 20_000
#: ... of one author (a hostile key may sign any number of seqs far ahead).
MAX_PENDING_PER_AUTHOR = 1024
#: ... in bytes of signed entries (each may be up to 64 KiB).
MAX_PENDING_BYTES = 32 * 1024 * 1024


@dataclass
class LedgerCounters:
    appended: int = 0
    forks: int = 0
    duplicates: int = 0
    early: int = 0
    frozen: int = 0
    invalid: int = 0
    tree_heads: int = 0
    transactions: int = 0
    #: Early entries dropped from the full pending buffer (sync fetches them later).
    pending_dropped: int = 0


@dataclass
class _Job:
    kind: str  # "submit" | "write" | "tree_head"
    entries: Sequence[SignedEntry] = ()
    publish: bool = False
    origin: Any = None
    key: SigningKey | None = None
    entry_kind: str = ""
    body: dict[str, Any] = field(default_factory=dict)
    done: trio.Event = field(default_factory=trio.Event)
    result: Any = None
    error: BaseException | None = None


class NodeLedger:
    """The node's ledger service. Start `run` in a nursery before using it."""

    def __init__(
        self,
        store: LedgerStore,
        node_key: SigningKey,
        *,
        tree_head_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
        max_pending: int = MAX_PENDING,
        max_pending_per_author: int = MAX_PENDING_PER_AUTHOR,
        max_pending_bytes: int = MAX_PENDING_BYTES,
    ) -> None:
        self.store = store
        self.node_key = node_key
        self.tree_head_interval = tree_head_interval
        self.counters = LedgerCounters()
        self._clock = clock
        self._send, self._receive = trio.open_memory_channel[_Job](256)
        self._pending: OrderedDict[tuple[bytes, int], tuple[SignedEntry, Any]] = OrderedDict()
        self._pending_seqs: dict[bytes, set[int]] = {}  # author -> seqs in _pending
        self._pending_bytes = 0
        self.max_pending = max_pending
        self.max_pending_per_author = max_pending_per_author
        self.max_pending_bytes = max_pending_bytes
        self._running = False
        #: Called with entries to announce (new local entries, fork evidence).
        self.on_publish: list[Callable[[list[bytes]], None]] = []
        #: Called with the origin of an entry that arrived before its predecessors.
        self.on_gap: list[Callable[[Any], None]] = []
        #: Called with every entry newly stored (appended or fork evidence).
        self.on_stored: list[Callable[[list[SignedEntry]], None]] = []

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- the API callers use --------------------------------------------------------------

    async def submit(
        self, entries: Sequence[SignedEntry], *, origin: Any = None, publish: bool = False
    ) -> list[Outcome]:
        """Judge and store verified entries; returns after the commit, one Outcome each."""
        if not entries:
            return []
        return await self._do(_Job("submit", entries, publish=publish, origin=origin))

    async def submit_bytes(
        self, items: Sequence[bytes], *, origin: Any = None, publish: bool = False
    ) -> list[Outcome]:
        """Decode (in a worker thread: signatures are CPU work) then `submit`."""
        decoded = await trio.to_thread.run_sync(decode_all, list(items))
        good = [item for item in decoded if isinstance(item, SignedEntry)]
        outcomes = iter(await self.submit(good, origin=origin, publish=publish))
        return [item if isinstance(item, EntryError) else next(outcomes) for item in decoded]

    async def write(self, key: SigningKey, kind: str, body: dict[str, Any]) -> Decision:
        """Sign `body` as the next entry of `key`'s feed, store it and announce it."""
        return await self._do(_Job("write", key=key, entry_kind=kind, body=body, publish=True))

    async def sign_tree_head(self, *, force: bool = False) -> Decision | None:
        """Sign a tree head of the whole log now (None if nothing new and not `force`)."""
        return await self._do(_Job("tree_head", publish=True, body={"force": force}))

    async def read(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run a read-only store method in a worker thread."""
        return await trio.to_thread.run_sync(function, *args)

    async def _do(self, job: _Job) -> Any:
        if not self._running:
            raise RuntimeError("the ledger writer is not running")
        await self._send.send(job)
        await job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    # -- the writer ------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._running = True
            try:
                nursery.start_soon(self._tree_head_loop)
                task_status.started()
                await self._writer()
            finally:
                self._running = False

    async def _writer(self) -> None:
        async for job in self._receive:
            jobs = [job]
            if job.kind == "submit":
                jobs += self._more_submits(sum(len(j.entries) for j in jobs))
            try:
                await self._execute(jobs)
            finally:
                for each in jobs:
                    each.done.set()

    def _more_submits(self, count: int) -> list[_Job]:
        """Queued submit jobs to commit together with the first (group commit)."""
        more: list[_Job] = []
        while count < MAX_GROUP:
            try:
                job = self._receive.receive_nowait()
            except trio.WouldBlock:
                break
            if job.kind != "submit":
                # Not groupable: it runs right after this group, in order.
                more.append(job)
                break
            more.append(job)
            count += len(job.entries)
        return more

    async def _execute(self, jobs: list[_Job]) -> None:
        submits = [job for job in jobs if job.kind == "submit"]
        if submits:
            await self._execute_submits(submits)
        for job in jobs:
            if job.kind == "write":
                await self._execute_write(job)
            elif job.kind == "tree_head":
                await self._execute_tree_head(job)

    async def _execute_submits(self, jobs: list[_Job]) -> None:
        entries = [entry for job in jobs for entry in job.entries]
        try:
            outcomes = await trio.to_thread.run_sync(self.store.submit, entries, self.now_ms())
        except BaseException as exc:
            for job in jobs:
                job.error = exc
            if not isinstance(exc, Exception):
                raise
            log.exception("ledger transaction failed")
            return
        self.counters.transactions += 1
        position = 0
        retry: list[SignedEntry] = []
        for job in jobs:
            mine = outcomes[position : position + len(job.entries)]
            position += len(job.entries)
            job.result = mine
            retry += self._after(job, mine)
        if retry:
            # Entries that were waiting for one just stored: judge them now.
            await self._execute_submits([_Job("submit", retry)])

    def _after(self, job: _Job, outcomes: list[Outcome]) -> list[SignedEntry]:
        """Count, announce and notify; return buffered entries now judgeable."""
        stored: list[SignedEntry] = []
        publish: list[bytes] = []
        ready: list[SignedEntry] = []
        gap = False
        for outcome in outcomes:
            if isinstance(outcome, EntryError):
                self.counters.invalid += 1
                continue
            entry = outcome.entry
            verdict = outcome.verdict
            if verdict is Verdict.APPEND:
                self.counters.appended += 1
                stored.append(entry)
                if job.publish:
                    publish.append(entry.encoded)
                waiting = self._unhold((entry.author, entry.seq + 1))
                if waiting is not None:
                    ready.append(waiting[0])
            elif verdict is Verdict.FORK:
                self.counters.forks += 1
                stored.append(entry)
                publish.append(entry.encoded)  # fork evidence spreads from everyone
                if outcome.sibling is not None:
                    with contextlib.suppress(KeyError):  # the sibling is in the log
                        publish.append(self.store.get(outcome.sibling).data)
                log.warning("equivocation by %s at seq %d", entry.author.hex()[:16], entry.seq)
            elif verdict is Verdict.DUPLICATE:
                self.counters.duplicates += 1
            elif verdict is Verdict.FROZEN:
                self.counters.frozen += 1
            elif verdict is Verdict.EARLY:
                self.counters.early += 1
                self._hold(entry, job.origin)
                gap = True
        if stored:
            for listener in self.on_stored:
                listener(stored)
        if publish:
            for listener in self.on_publish:
                listener(publish)
        if gap and job.origin is not None:
            for listener in self.on_gap:
                listener(job.origin)
        return ready

    def _hold(self, entry: SignedEntry, origin: Any) -> None:
        """Keep an early entry, within the caps (module docstring); drops are counted."""
        key = (entry.author, entry.seq)
        if key in self._pending:
            return  # already waiting (a second entry for that seq is judged by sync)
        seqs = self._pending_seqs.setdefault(entry.author, set())
        if len(seqs) >= self.max_pending_per_author:
            farthest = max(seqs)
            if entry.seq > farthest:
                self.counters.pending_dropped += 1
                return
            self._unhold((entry.author, farthest))
            self.counters.pending_dropped += 1
            seqs = self._pending_seqs.setdefault(entry.author, set())
        self._pending[key] = (entry, origin)
        seqs.add(entry.seq)
        self._pending_bytes += len(entry.encoded)
        while self._pending and (
            len(self._pending) > self.max_pending or self._pending_bytes > self.max_pending_bytes
        ):
            self._unhold(next(iter(self._pending)))
            self.counters.pending_dropped += 1

    def _unhold(self, key: tuple[bytes, int]) -> tuple[SignedEntry, Any] | None:
        """Take one entry out of the pending buffer (None if it is not there)."""
        held = self._pending.pop(key, None)
        if held is not None:
            self._pending_bytes -= len(held[0].encoded)
            seqs = self._pending_seqs[key[0]]
            seqs.discard(key[1])
            if not seqs:
                del self._pending_seqs[key[0]]
        return held

    @property
    def pending(self) -> int:
        return len(self._pending)

    def waiting_on(self, origin: Any) -> bool:
        """Whether an early entry that came from `origin` is still waiting for its
        predecessors (gossip may have closed the gap since it was reported)."""
        return any(held_from == origin for _, held_from in self._pending.values())

    @property
    def pending_bytes(self) -> int:
        """Bytes of the signed entries in the pending buffer."""
        return self._pending_bytes

    async def _execute_write(self, job: _Job) -> None:
        assert job.key is not None
        try:
            decision = await trio.to_thread.run_sync(
                self.store.write, job.key, job.entry_kind, job.body, self.now_ms()
            )
        except Exception as exc:  # noqa: BLE001 - the caller gets it
            job.error = exc
            return
        self.counters.transactions += 1
        job.result = decision
        self._after(job, [decision])

    async def _execute_tree_head(self, job: _Job) -> None:
        try:
            due = job.body.get("force") or await trio.to_thread.run_sync(self.store.tree_head_due)
            if not due:
                job.result = None
                return
            decision = await trio.to_thread.run_sync(
                self.store.sign_tree_head, self.node_key, self.now_ms()
            )
        except Exception as exc:  # noqa: BLE001 - the caller gets it
            job.error = exc
            return
        self.counters.tree_heads += 1
        job.result = decision
        self._after(job, [decision])

    async def _tree_head_loop(self) -> None:
        if self.tree_head_interval <= 0:
            return
        while True:
            await trio.sleep(self.tree_head_interval)
            try:
                await self.sign_tree_head()
            except Exception:
                log.exception("signing a tree head failed")


def decode_all(
    items: list[bytes], held: Collection[bytes] = ()
) -> list[SignedEntry | EntryError]:
    """Decode and verify entries, an error in place of each bad one (run it in a
    worker thread: signatures are CPU work).

    `held` are ids of entries already in the log: their bytes are those of an entry
    verified when it was stored (the id is their hash), so only the parse is redone.
    A sync reply under load is mostly such entries, which gossip delivered meanwhile.
    """
    out: list[SignedEntry | EntryError] = []
    for item in items:
        try:
            if held and entry_id_bytes(item) in held:
                out.append(decode_entry_checked_elsewhere(item))
            else:
                out.append(decode_entry(item))
        except EntryError as exc:
            out.append(exc)
    return out
