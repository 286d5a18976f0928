"""The node's last tally, and a task that computes the next one once the log is quiet.

Every co-op figure the API serves (`/tally`, wallets, proposals) is a function of the
whole log, and a tally reads all of it: 0.45 s of CPU for 30,000 receipts. The log is
append-only, so its size names its state: `TallyCache` keeps the last tally with the
size it was computed at and reuses it until the log grows.

Computed on demand only, the first request after a burst of entries waits for that
pass, and so do the ten nodes of a co-op asked at once (bench/swarm.py: identical
tallies came ~5 s after identical logs on a loaded machine). `keep_warm` computes it
ahead, for a node whose figures are being watched (asked for within `INTEREST`
seconds: a dashboard, an auditor polling; a node nobody asks spends nothing on it):
when the log has grown and then stayed the same size for `quiet` seconds. It
never takes more than `duty` of a core: after a pass that took t seconds of CPU, the
next waits t / duty (a big log is tallied less often, and a request in between
computes its own, as before).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import trio

from ledger.genesis import Genesis
from ledger.tally import Tally

from . import coop
from .ledger_store import LedgerStore

__all__ = ["INTEREST", "QUIET", "TallyCache", "WarmSchedule"]

#: Seconds the log must keep its size before the tally is computed ahead.
QUIET = 1.0
#: The largest share of a core the ahead-of-time tallies may take.
DUTY = 0.2
#: Seconds after the last request during which the tally is kept warm.
INTEREST = 300.0


class TallyCache:
    """The last tally of the node's log and the log size it was computed at."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._size = -1
        self._tally: Tally | None = None
        #: time.monotonic() of the last request (`get`), -inf before the first.
        self.asked_at = float("-inf")

    @property
    def size(self) -> int:
        """The log size the cached tally is of (-1: none yet)."""
        return self._size

    def get(self, store: LedgerStore, genesis: Genesis) -> Tally:
        """The tally at the log's current size (run it in a worker thread)."""
        self.asked_at = time.monotonic()
        return self._current(store, genesis)

    def _current(self, store: LedgerStore, genesis: Genesis) -> Tally:
        size = store.log_size()
        with self._lock:
            if self._tally is not None and self._size == size:
                return self._tally
        # Entries appended after `size` was read may be included; the result is then
        # filed under the smaller size and recomputed next time, never served stale.
        result = coop.tally_store(store, genesis)
        with self._lock:
            if size >= self._size:
                self._size, self._tally = size, result
        return result

    async def keep_warm(
        self,
        store: LedgerStore,
        genesis: Genesis,
        *,
        schedule: WarmSchedule | None = None,
        poll: float = 0.25,
    ) -> None:
        """Compute the tally ahead whenever `schedule` says so; runs until cancelled."""
        schedule = schedule or WarmSchedule(trio.current_time)
        while True:
            await trio.sleep(poll)
            if time.monotonic() - self.asked_at > INTEREST:
                continue
            if not schedule.due(store.log_size(), self._size):
                continue
            took = await trio.to_thread.run_sync(self._timed_get, store, genesis)
            schedule.done(took)

    def _timed_get(self, store: LedgerStore, genesis: Genesis) -> float:
        """`get`, returning the CPU seconds it took: on a loaded machine the wall time
        of a pass is mostly waiting for a core, which is not the node's cost."""
        started = time.thread_time()
        self._current(store, genesis)
        return time.thread_time() - started


class WarmSchedule:
    """When to tally ahead: the log grew, then kept its size for `quiet` seconds, and
    the last pass is old enough for the `duty` limit (module docstring)."""

    def __init__(
        self, clock: Callable[[], float], *, quiet: float = QUIET, duty: float = DUTY
    ) -> None:
        self.clock = clock
        self.quiet = quiet
        self.duty = duty
        self._seen_size = -1
        self._seen_at = 0.0
        self._next_allowed = float("-inf")
        self.passes = 0

    def due(self, size: int, cached_size: int) -> bool:
        now = self.clock()
        if size != self._seen_size:
            self._seen_size, self._seen_at = size, now
            return False
        if size == cached_size:
            return False
        return now - self._seen_at >= self.quiet and now >= self._next_allowed

    def done(self, took: float) -> None:
        self.passes += 1
        self._next_allowed = self.clock() + took / self.duty
