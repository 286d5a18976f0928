"""The tally cache: reused while the log keeps its size, computed ahead once it is
quiet, and never more than its share of the node's time."""

from __future__ import annotations

import time
from pathlib import Path

import trio
from nacl.signing import SigningKey

import node.tally_cache as tally_cache_module
from ledger.genesis import Params, create_genesis
from node.ledger_store import LedgerStore
from node.tally_cache import TallyCache, WarmSchedule


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_schedule_waits_for_a_quiet_log_and_keeps_to_its_duty() -> None:
    clock = Clock()
    schedule = WarmSchedule(clock, quiet=1.0, duty=0.1)
    assert not schedule.due(5, -1)  # first look at size 5
    clock.now = 0.5
    assert not schedule.due(5, -1)  # quiet for 0.5 s only
    clock.now = 1.0
    assert not schedule.due(6, -1)  # grew: the quiet starts again
    clock.now = 1.5
    assert not schedule.due(6, -1)
    clock.now = 2.0
    assert schedule.due(6, -1)  # 1 s without growth
    assert not schedule.due(6, 6)  # already tallied at that size
    schedule.done(0.5)  # a pass of 0.5 s at 10 %: nothing more until 7.0
    clock.now = 3.0
    assert not schedule.due(7, 6)
    clock.now = 6.0
    assert not schedule.due(7, 6)  # quiet for 3 s, but too soon after the pass
    clock.now = 7.0
    assert schedule.due(7, 6)
    assert schedule.passes == 1


def test_the_tally_is_ready_before_it_is_asked(tmp_path: Path, monkeypatch) -> None:
    board = SigningKey.generate()
    genesis = create_genesis("warm", [board], [bytes(board.verify_key)], Params(), 1000)
    store = LedgerStore(tmp_path / "ledger.sqlite", owner=bytes(board.verify_key))
    computed: list[int] = []
    real = tally_cache_module.coop.tally_store

    def counting(store_, genesis_, **kwargs):
        computed.append(store_.log_size())
        return real(store_, genesis_, **kwargs)

    monkeypatch.setattr(tally_cache_module.coop, "tally_store", counting)
    cache = TallyCache()
    now = int(time.time() * 1000)

    async def main() -> None:
        schedule = WarmSchedule(trio.current_time, quiet=0.2, duty=0.5)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: cache.keep_warm(store, genesis, schedule=schedule,
                                                       poll=0.05))
            listener = SigningKey.generate()
            store.write(listener, "note", {"text": "before anyone asked"}, now)
            await trio.sleep(0.6)  # quiet, but nobody watches this node's figures
            assert computed == []
            assert (await trio.to_thread.run_sync(cache.get, store, genesis)).entries == 1
            assert computed == [1]  # asked: computed on demand, and watched from now on
            for n in range(2):
                store.write(listener, "note", {"text": f"entry {n}"}, now)
                await trio.sleep(0.05)  # growing: not yet
            assert computed == [1]
            with trio.fail_after(10):
                while cache.size != store.log_size():
                    await trio.sleep(0.05)
            assert computed == [1, 3]
            first = await trio.to_thread.run_sync(cache.get, store, genesis)
            assert first.entries == 3 and computed == [1, 3]  # served from the cache
            store.write(listener, "note", {"text": "one more"}, now)
            with trio.fail_after(10):
                while cache.size != 4:
                    await trio.sleep(0.05)
            assert computed == [1, 3, 4]
            assert (await trio.to_thread.run_sync(cache.get, store, genesis)).entries == 4
            assert computed == [1, 3, 4]
            cache.asked_at -= tally_cache_module.INTEREST + 1  # nobody asked for a while
            store.write(listener, "note", {"text": "unwatched"}, now)
            await trio.sleep(0.6)
            assert computed == [1, 3, 4] and cache.size == 4
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        store.close()
