"""The process's workers: they claim work from the inbox (`desk.inbox`) for every face served here
and run it, WORKER_CONCURRENCY at a time.

- A turn awaiting the model or Slack holds no connection: the store's slots bound database work.
- Every lease in hand is renewed in one statement every third of a lease (a failed renewal is
  retried sooner, with backoff).
- A failing item is retried up to INBOX_MAX_ATTEMPTS times, then handed to its face's dead-letter
  handler (which calls the desk's one failure policy: an apology on the customer's own channel, an
  alert, a P2 ticket).
- New work is taken only while the event loop keeps up (`LoopCalm`), so acks do not queue behind
  CPU-bound turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from desk.inbox import CLAIM_BATCH, Claimed, Queue
from storage.settings import Settings

log = logging.getLogger(__name__)
CALM_FLOOR = 2  # items that keep running however late the event loop is (see LoopCalm)
CALM_WAIT_S = 0.1  # and a batch is taken at least this often, however late it is
IDLE_POLL_MAX_S = 5.0  # an idle process polls at least this often (work another process stored)


Handler = Callable[[Claimed], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Face:
    """What a face does with its work: answer it, and tell its customer when it is given up on."""

    handle: Handler
    on_dead: Handler


class LoopCalm:
    """Whether this process's event loop is keeping up: a 10 ms timer's lateness, measured all the
    time. While CALM_FLOOR items or more run, the dispatcher claims at most one batch per
    measurement that found the loop less than `limit` seconds late (`calm`, used up by the claim),
    and none while it is later (for up to CALM_WAIT_S), so acks (a Slack event's 200, a website
    turn's 202) do not queue behind hundreds of CPU-bound turns each taking its slice of the loop.
    Turns waiting on the model or Slack cost the loop nothing, so a slow model still gets
    WORKER_CONCURRENCY turns at once (taken up to a batch per 10 ms)."""

    TICK = 0.01

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.calm = asyncio.Event()  # set by each measurement in time; a claim under load uses it up
        self.calm.set()
        self.wanted = asyncio.Event()  # the dispatcher needs measurements (enough items are running)
        self.lag = 0.0
        self.measured = 0  # measurements taken (an idle process takes none)

    async def watch(self, busy: Callable[[], bool]) -> None:
        """Measure while `busy()` (only then is a measurement needed); an idle process sleeps until
        `wanted` is set, so it spends nothing on the timer."""
        loop = asyncio.get_running_loop()
        while True:
            if not busy():
                self.wanted.clear()
                self.calm.set()
                await self.wanted.wait()
            started = loop.time()
            await asyncio.sleep(self.TICK)  # a timer whose lateness is the measurement, not synchronization
            self.observe(max(loop.time() - started - self.TICK, 0.0))

    def observe(self, lag: float) -> None:
        self.measured += 1
        self.lag = lag
        if lag <= self.limit:
            self.calm.set()
        else:
            self.calm.clear()


class Workers:
    """Claims and answers work for every face registered here, WORKER_CONCURRENCY at a time."""

    def __init__(self, queue: Queue, *, settings: Settings) -> None:
        self.queue = queue
        self.settings = settings
        self.faces: dict[str, Face] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._running: set[asyncio.Task[None]] = set()
        self._held: dict[int, Claimed] = {}  # items in hand, whose leases the renewer keeps
        self._slots = asyncio.Semaphore(settings.worker_concurrency)
        self._stopping = False
        self.completed = 0  # items handled (answered, failed or skipped) by this process
        self._progress = asyncio.Condition()
        self.pace = LoopCalm(settings.worker_loop_lag_ms / 1000)
        self.holding_back = False  # the dispatcher waits for the event loop to catch up

    def serve(self, face: str, *, handle: Handler, on_dead: Handler) -> None:
        self.faces[face] = Face(handle, on_dead)

    async def run_now(self, item_id: int) -> bool:
        """Run an item just stored in this process at once, outside the dispatcher's pace (a click:
        cheap, and someone is waiting on it). False when it is not claimable now; the dispatcher
        then takes it in its conversation's order."""
        if self._stopping:
            return False
        item = await self.queue.claim_item(item_id)
        if item is None:
            return False
        task = asyncio.create_task(self._run_claimed(item), name=f"queue-now-{item.id}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return True

    async def _run_claimed(self, item: Claimed) -> None:
        try:
            await self.run_one(item)
        finally:
            self._wake.set()  # the conversation's next item may be claimable now

    def wake(self) -> None:
        """New work was stored here: wake idle workers now instead of at their next poll."""
        self._wake.set()

    def start(self) -> None:
        if self._tasks:
            return
        self._stopping = False
        self._slots = asyncio.Semaphore(self.settings.worker_concurrency)
        self._tasks = [
            asyncio.create_task(self._dispatch(), name="queue-dispatcher"),
            asyncio.create_task(self._keep_leases(), name="queue-leases"),
            asyncio.create_task(self.pace.watch(self._busy), name="queue-loop-lag"),
        ]

    async def stop(self, grace: float = 10.0) -> None:
        """Claim nothing new; let items in flight finish for up to `grace` seconds, then cancel
        (an item cut off keeps its lease until expiry, and any replica then takes it over)."""
        self._stopping = True
        self._wake.set()
        self.pace.calm.set()  # a dispatcher waiting for the loop to catch up sees it is stopping
        dispatchers, keepers = self._tasks[:1], self._tasks[1:]
        for t in dispatchers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        if self._running:
            _, pending = await asyncio.wait(self._running, timeout=grace)
            for t in pending:
                t.cancel()
            for t in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        for keeper in keepers:  # leases are kept until the last item in flight ends
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await keeper

    def _busy(self) -> bool:
        return len(self._running) >= CALM_FLOOR

    async def _dispatch(self) -> None:
        """One loop per process claims work only when a worker slot is free, so an idle replica
        costs one cheap read per poll, not one per worker."""
        idle = 0  # claims in a row that found nothing
        while not self._stopping:
            if self._busy() and self.settings.worker_loop_lag_ms:
                self.pace.wanted.set()
                await self._hold_back()
                if self._stopping:
                    break
            await self._slots.acquire()
            free = 1
            while free < CLAIM_BATCH and not self._slots.locked():  # every free slot, without waiting
                await self._slots.acquire()
                free += 1
            try:
                items = await self.queue.claim(free)
            except Exception:
                log.exception("could not claim from the queue")
                items = []
            for _ in range(free - len(items)):
                self._slots.release()
            for item in items:
                task = asyncio.create_task(self._work(item), name=f"queue-{item.id}")
                self._running.add(task)
                task.add_done_callback(self._running.discard)
            idle = 0 if items else idle + 1
            if not items:  # polls back off while idle: new work here (or NOTIFY from a replica) wakes at once
                poll = min(self.settings.inbox_poll_seconds * 2 ** min(idle - 1, 6), IDLE_POLL_MAX_S)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=max(poll, self.settings.inbox_poll_seconds))
                if self._wake.is_set():
                    idle = 0
                self._wake.clear()

    async def _hold_back(self) -> None:
        """Until a measurement finds the event loop in time (see LoopCalm), at most CALM_WAIT_S: a
        loop late for long (a busy host) still gets work. The next batch waits for the next one."""
        self.holding_back = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.pace.calm.wait(), timeout=CALM_WAIT_S)
        self.holding_back = False
        self.pace.calm.clear()

    async def _work(self, item: Claimed) -> None:
        try:
            await self.run_one(item)
        finally:
            self._slots.release()
            self._wake.set()  # the conversation's next item may be claimable now

    async def run_one(self, item: Claimed) -> None:
        face = self.faces.get(item.face)
        self._held[item.id] = item
        try:
            if face is None:
                raise LookupError(f"no {item.face} face is served by this process")
            await face.handle(item)
        except Exception as exc:
            log.exception("queue item %d failed (attempt %d)", item.id, item.attempts)
            await self._fail(item, face, f"{type(exc).__name__}: {exc}")
        else:
            await self.queue.finish(item)
        finally:
            self._held.pop(item.id, None)
            async with self._progress:
                self.completed += 1
                self._progress.notify_all()

    async def _fail(self, item: Claimed, face: Face | None, error: str) -> None:
        try:
            dead = await self.queue.failed(item, error)
        except Exception:  # the store is down: the lease expires and the item is tried again
            log.exception("could not record the failure of queue item %d", item.id)
            return
        if dead and face is not None:
            try:
                await face.on_dead(item)
            except Exception:
                log.exception("could not report dead letter %d", item.id)

    async def wait_completed(self, n: int) -> None:
        """Until this process has handled at least `n` items (for tests and the benchmark; callers bound
        the wait with asyncio.timeout)."""
        async with self._progress:
            await self._progress.wait_for(lambda: self.completed >= n)

    async def _keep_leases(self) -> None:
        """Renew every item in hand every third of the lease, in one statement; a failed renewal (the
        store blinked) is retried sooner, with backoff, while the leases may still be ours. An item
        whose lease was taken over is let go of: every post is fenced by `Queue.holds`, so a worker
        that lost its lease never posts."""
        every = self.settings.inbox_lease_seconds / 3
        delay = every
        while True:
            await asyncio.sleep(delay)  # a heartbeat interval, not synchronization
            items = list(self._held.values())
            try:
                kept = await self.queue.renew(items)
                delay = every
            except Exception:
                log.warning("could not renew %d leases; retrying", len(items), exc_info=True)
                delay = max(0.05, min(delay / 2, every))
                continue
            for item in items:
                if item.id not in kept and self._held.get(item.id) is item:
                    log.warning("lost the lease on queue item %d", item.id)
                    del self._held[item.id]
