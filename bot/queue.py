"""The one lease queue every face puts its work in (the `inbox` table), and the workers that drain it.

- `Queue.put` stores work before its sender is told it arrived: a Slack message or button click
  (before Slack's 200), a website chat turn (before its 202). Unique constraints on Slack's
  event_id and (channel, ts) make Slack's retries and mention twins no-ops.
- `Queue.claim` takes up to `n` items (one per free worker slot, at most CLAIM_BATCH) in one
  conditional `UPDATE … RETURNING` with a lease (owner, expiry, attempt number); on PostgreSQL the
  candidates are locked `FOR UPDATE SKIP LOCKED`, so replicas claiming at once take different
  items instead of queueing on the same rows. No transaction is held while the model or Slack is
  called. Work is
  claimable only when everything earlier in its conversation (a Slack thread, a web session) is
  finished, so a conversation is answered in order; an expired lease (a crashed worker, on any
  replica) is taken over by any worker, with the next attempt number.
- `Queue.holds` is the fence: whoever posts or streams on behalf of a work item first proves,
  in the same statement that records the attempt, that it still holds the lease.
- `Workers` runs up to WORKER_CONCURRENCY items at once per process, for every face (a turn
  awaiting the model or Slack holds no connection: the store's slots bound database work), renews all
  their leases in one statement every third of a lease (a failed renewal is retried sooner, with
  backoff), retries a failing item up to INBOX_MAX_ATTEMPTS
  times, then hands it to its face's dead-letter handler (which calls the desk's one failure
  policy: an apology on the customer's own channel, an alert, a P2 ticket).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, literal_column, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from storage.engine import ALONE, Store
from storage.models import InboxItem
from storage.settings import Settings
from storage.types import Clock, UTCDateTime

log = logging.getLogger(__name__)
UNFINISHED = ("pending", "working")
CLAIM_BATCH = 8  # items one claim may take
CALM_FLOOR = 2  # items that keep running however late the event loop is (see LoopCalm)
CALM_WAIT_S = 0.1  # and a batch is taken at least this often, however late it is


def live(status: Any) -> Any:
    """`status IN ('pending', 'working')` with the values written into the SQL, not bound: PostgreSQL
    uses the partial indexes on live rows only when it can see the literals (a generic plan of a
    prepared statement with bound values scanned all 200,000 done rows: 95 ms instead of 0.1)."""
    return status.in_([literal_column(f"'{s}'") for s in UNFINISHED])


def _claim_statements() -> tuple[Any, Any]:
    """The peek and the claim, built once (SQLAlchemy caches their compiled form): an item is
    claimable when pending, or working under an expired lease, and no earlier item of its
    conversation is unfinished. The claim re-checks claimability on the row it updates, so of two
    racing claimers (on any replica) exactly one gets it."""
    t = InboxItem.__table__
    now = bindparam("now", type_=UTCDateTime())

    def claimable(table: Any) -> Any:
        pending, working = (literal_column(f"'{s}'") for s in UNFINISHED)
        return or_(table.c.status == pending, and_(table.c.status == working, table.c.lease_expires_at < now))

    def first_claimable(table: Any, limit: Any = 1) -> Any:
        earlier = t.alias("earlier")
        blocked = exists().where(
            earlier.c.conversation == table.c.conversation,
            earlier.c.id < table.c.id,
            live(earlier.c.status),
        )
        return (
            select(table.c.id).where(live(table.c.status), claimable(table), ~blocked).order_by(table.c.id).limit(limit)
        )

    candidate = t.alias("candidate")
    peek = first_claimable(candidate)
    # a CTE, evaluated once (PostgreSQL does not inline one that locks rows): as an IN subquery
    # the planner may run it again per row, and each run skips other rows, past its LIMIT
    batch = first_claimable(candidate, bindparam("n")).with_for_update(skip_locked=True, of=candidate).cte("batch")
    claim = (
        update(t)
        .where(t.c.id.in_(select(batch.c.id)), claimable(t))
        .values(
            status="working",
            lease_owner=bindparam("owner"),
            lease_expires_at=bindparam("until", type_=UTCDateTime()),
            attempts=t.c.attempts + 1,
            started_at=now,
        )
        .returning(*t.c)
    )
    return peek, claim


_PEEK, _CLAIM = _claim_statements()


@dataclass(frozen=True, slots=True)
class Claimed:
    """A work item as its face's handler receives it, with the lease it holds (`attempts`)."""

    id: int
    face: str
    kind: str
    conversation: str
    session_id: str | None
    channel: str | None
    ts: str | None
    thread_ts: str | None
    user_id: str | None
    user_team: str | None
    installing_team: str | None
    text: str
    payload: dict[str, Any]
    attempts: int
    received_at: datetime

    @classmethod
    def of(cls, m: Any) -> Claimed:
        return cls(**{f.name: m[f.name] for f in dataclasses.fields(cls)})


class Queue:
    def __init__(self, store: Store, clock: Clock, settings: Settings, *, owner: str) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self.owner = owner
        self.lease = timedelta(seconds=settings.inbox_lease_seconds)

    async def put(
        self, *, face: str, conversation: str, text: str, payload: dict[str, Any], **fields: Any
    ) -> int | None:
        """Store work; returns its id, or None when it was already stored (a duplicate)."""
        insert = postgresql.insert if self.store.dialect == "postgresql" else sqlite.insert
        stmt = (
            insert(InboxItem)
            .values(
                face=face,
                conversation=conversation,
                text=text,
                payload=payload,
                status="pending",
                attempts=0,
                received_at=self.clock.now(),
                **fields,
            )
            .on_conflict_do_nothing()
            .returning(InboxItem.id)
        )
        async with self.store.write(ack=True) as s:  # its sender waits: ahead of every worker's write
            return (await s.execute(stmt)).scalar_one_or_none()

    async def claim(self, n: int = 1) -> list[Claimed]:
        """Up to `n` claimable items (at most one per conversation, its earliest), oldest first."""
        now = self.clock.now()
        if self.store.dialect == "sqlite":  # a cheap read first: idle polling never takes the write lock
            async with self.store.read() as s:
                if (await s.execute(_PEEK, {"now": now})).first() is None:
                    return []
        args = {"now": now, "owner": self.owner, "until": now + self.lease, "n": max(1, min(n, CLAIM_BATCH))}
        async with self.store.write() as s:
            rows = (await s.execute(_CLAIM, args)).all()
        return sorted((Claimed.of(r._mapping) for r in rows), key=lambda c: c.id)

    def _held(self, item_id: int, attempt: int) -> list[Any]:
        return [
            InboxItem.id == item_id,
            InboxItem.lease_owner == self.owner,
            InboxItem.attempts == attempt,
            InboxItem.status == "working",
        ]

    async def _set(self, item: Claimed, **values: Any) -> bool:
        async with self.store.write() as s:
            held = update(InboxItem).where(*self._held(item.id, item.attempts)).values(**values)
            res = await s.execute(held, execution_options=ALONE)
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def holds(self, item_id: int, attempt: int, *, margin: timedelta = timedelta(0)) -> Any:
        """A condition for another statement's WHERE: this worker still holds the item's lease, under
        this attempt, with at least `margin` left (so an HTTP call started now ends before it expires)."""
        return exists().where(*self._held(item_id, attempt), InboxItem.lease_expires_at > self.clock.now() + margin)

    async def renew(self, items: list[Claimed]) -> set[int]:
        """Every lease of `items` still ours extended, in one statement; returns their ids."""
        if not items:
            return set()
        held = tuple_(InboxItem.id, InboxItem.attempts).in_([(i.id, i.attempts) for i in items])
        async with self.store.write() as s:
            res = await s.execute(
                update(InboxItem)
                .where(held, InboxItem.lease_owner == self.owner, InboxItem.status == "working")
                .values(lease_expires_at=self.clock.now() + self.lease)
                .returning(InboxItem.id),
                execution_options=ALONE,
            )
            return set(res.scalars().all())

    async def finish(self, item: Claimed, status: str = "done") -> bool:
        return await self._set(item, status=status, done_at=self.clock.now(), lease_expires_at=None)

    async def failed(self, item: Claimed, error: str) -> bool:
        """Record a failure; returns True when the item is now dead-lettered."""
        dead = item.attempts >= self.settings.inbox_max_attempts
        await self._set(
            item,
            status="dead" if dead else "pending",
            lease_owner=None,
            lease_expires_at=None,
            last_error=error[:2000],
            done_at=self.clock.now() if dead else None,
        )
        return dead

    async def dead_letters(self) -> list[InboxItem]:
        async with self.store.read() as s:
            return list(
                (await s.scalars(select(InboxItem).where(InboxItem.status == "dead").order_by(InboxItem.id))).all()
            )

    async def retry(self, item_id: int) -> bool:
        """Put a dead letter back in line (it keeps its place in its conversation)."""
        async with self.store.write() as s:
            res = await s.execute(
                update(InboxItem)
                .where(InboxItem.id == item_id, InboxItem.status == "dead")
                .values(status="pending", attempts=0, lease_owner=None, lease_expires_at=None, done_at=None)
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    async def depth(self) -> tuple[int, float]:
        """Unfinished items and the age in seconds of the oldest."""
        async with self.store.read() as s:
            n, oldest = (
                await s.execute(select(func.count(), func.min(InboxItem.received_at)).where(live(InboxItem.status)))
            ).one()
        age = (self.clock.now() - oldest).total_seconds() if oldest is not None else 0.0
        return int(n), max(age, 0.0)


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
        self.lag = 0.0

    async def watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self.TICK)  # a timer whose lateness is the measurement, not synchronization
            self.observe(max(loop.time() - started - self.TICK, 0.0))

    def observe(self, lag: float) -> None:
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

    def nudge(self) -> None:
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
            asyncio.create_task(self.pace.watch(), name="queue-loop-lag"),
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

    async def _dispatch(self) -> None:
        """One loop per process claims work only when a worker slot is free, so an idle replica
        costs one cheap read per poll, not one per worker."""
        while not self._stopping:
            if len(self._running) >= CALM_FLOOR and self.settings.worker_loop_lag_ms:
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
            if not items:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.settings.inbox_poll_seconds)
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
