"""Acks never queue behind a CPU-bound burst of turns: while two or more items run, the dispatcher
takes new work only after a measurement found the event loop in time (`LoopCalm`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from bot import workers as queue_module
from bot.workers import LoopCalm, Workers
from desk.inbox import Claimed, Queue
from storage.settings import Settings
from tools.context import Deps


def test_a_late_loop_is_not_calm_and_one_in_time_is() -> None:
    pace = LoopCalm(0.005)
    pace.observe(0.050)
    assert not pace.calm.is_set() and pace.lag == 0.050
    pace.observe(0.001)
    assert pace.calm.is_set()


async def _until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(30):
        while not check():
            await asyncio.sleep(0)  # yields to the dispatcher; the timeout bounds the wait


async def test_no_new_work_is_taken_while_the_loop_is_late(
    deps: Deps, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue_module, "CALM_WAIT_S", 600.0)  # only a measurement lets work in here
    queue = Queue(deps.store, deps.clock, settings, owner="w1")
    workers = Workers(queue, settings=settings)
    never = asyncio.Event()

    async def no_measurements(busy: Callable[[], bool]) -> None:
        await never.wait()  # the test is the only one to measure the loop

    monkeypatch.setattr(workers.pace, "watch", no_measurements)
    started: dict[str, asyncio.Event] = {c: asyncio.Event() for c in ("a", "b", "c")}
    release = asyncio.Event()

    async def handle(item: Claimed) -> None:
        started[item.conversation].set()
        await release.wait()

    workers.serve("web", handle=handle, on_dead=handle)
    for conversation in ("a", "b"):
        await queue.put(face="web", conversation=conversation, text="hi", payload={})
    workers.start()
    try:
        async with asyncio.timeout(30):
            await asyncio.gather(started["a"].wait(), started["b"].wait())
        workers.pace.observe(1.0)  # a CPU-bound burst: the loop is a second late
        await queue.put(face="web", conversation="c", text="hi", payload={})
        workers.wake()
        await _until(lambda: workers.holding_back)
        assert not started["c"].is_set()  # two run, the loop is late: the third waits, stored
        workers.pace.observe(0.001)
        async with asyncio.timeout(30):
            await started["c"].wait()
    finally:
        release.set()
        await workers.stop()
    assert workers.completed == 3


async def test_an_idle_process_does_not_measure_its_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LoopCalm, "TICK", 0.0)  # a ticking watcher would measure at every yield
    pace = LoopCalm(0.005)
    busy = False
    watcher = asyncio.create_task(pace.watch(lambda: busy))
    try:
        await _until(lambda: not pace.wanted.is_set() and pace.calm.is_set())
        idle_at = pace.measured
        for _ in range(200):
            await asyncio.sleep(0)  # the watcher would run between these if it were ticking
        assert pace.measured == idle_at
        busy = True
        pace.wanted.set()
        await _until(lambda: pace.measured > idle_at + 10)  # measuring again as soon as it is wanted
    finally:
        watcher.cancel()
