"""The durable inbox and the workers that drain it.

- `Inbox.put` stores a message before Slack is acknowledged; unique constraints on event_id and
  (channel, ts) make retries and mention twins no-ops.
- `Inbox.claim` is one conditional `UPDATE … RETURNING` with a lease (owner, expiry): no
  `FOR UPDATE`, no transaction held while the model or Slack is called. A message is claimable
  only when every earlier message of its thread is finished, so a thread is answered in order;
  an expired lease (a crashed worker, on any replica) is taken over by any worker.
- `Workers` runs up to WORKER_CONCURRENCY items at once per process, renews leases while an item
  is being answered, retries a failing item a bounded number of times, then dead-letters it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from bot.host import replica_id
from bot.slack.routing import Incoming
from storage.engine import Store
from storage.models import InboxItem
from storage.settings import Settings
from storage.types import Clock, UTCDateTime

log = logging.getLogger(__name__)
UNFINISHED = ("pending", "working")


def _claim_statements() -> tuple[Any, Any]:
    """The peek and the claim, built once (SQLAlchemy caches their compiled form): a message is
    claimable when pending, or working under an expired lease, and no earlier message of its thread
    is unfinished. The claim re-checks claimability on the row it updates, so of two racing
    claimers (on any replica) exactly one gets it."""
    t = InboxItem.__table__
    now = bindparam("now", type_=UTCDateTime())

    def claimable(table: Any) -> Any:
        return or_(table.c.status == "pending", and_(table.c.status == "working", table.c.lease_expires_at < now))

    def first_claimable(table: Any) -> Any:
        earlier = t.alias("earlier")
        blocked = exists().where(
            earlier.c.channel == table.c.channel,
            earlier.c.thread_ts == table.c.thread_ts,
            earlier.c.id < table.c.id,
            earlier.c.status.in_(UNFINISHED),
        )
        return select(table.c.id).where(claimable(table), ~blocked).order_by(table.c.id).limit(1)

    candidate = t.alias("candidate")
    peek = first_claimable(candidate)
    claim = (
        update(t)
        .where(t.c.id == first_claimable(candidate).scalar_subquery(), claimable(t))
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
    id: int
    channel: str
    ts: str
    thread_ts: str
    user_id: str
    user_team: str | None
    installing_team: str | None
    text: str
    payload: dict[str, Any]
    attempts: int
    received_at: datetime


class Inbox:
    def __init__(self, store: Store, clock: Clock, settings: Settings, *, owner: str | None = None) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self.owner = owner or replica_id()
        self.lease = timedelta(seconds=settings.inbox_lease_seconds)

    async def put(self, msg: Incoming, payload: dict[str, Any]) -> int | None:
        """Store a message; returns its id, or None when it was already stored (a duplicate)."""
        insert = postgresql.insert if self.store.dialect == "postgresql" else sqlite.insert
        stmt = (
            insert(InboxItem)
            .values(
                event_id=msg.event_id,
                channel=msg.channel,
                ts=msg.ts,
                thread_ts=msg.thread_ts,
                user_id=msg.user,
                user_team=msg.user_team,
                installing_team=msg.installing_team,
                text=msg.text,
                payload=payload,
                status="pending",
                attempts=0,
                received_at=self.clock.now(),
            )
            .on_conflict_do_nothing()
            .returning(InboxItem.id)
        )
        async with self.store.write() as s:
            return (await s.execute(stmt)).scalar_one_or_none()

    async def claim(self) -> Claimed | None:
        now = self.clock.now()
        async with self.store.read() as s:  # a cheap read first: idle polling never takes the write lock
            if (await s.execute(_PEEK, {"now": now})).first() is None:
                return None
        async with self.store.write() as s:
            row = (await s.execute(_CLAIM, {"now": now, "owner": self.owner, "until": now + self.lease})).first()
        if row is None:
            return None
        m = row._mapping
        return Claimed(
            m["id"],
            m["channel"],
            m["ts"],
            m["thread_ts"],
            m["user_id"],
            m["user_team"],
            m["installing_team"],
            m["text"],
            m["payload"],
            m["attempts"],
            m["received_at"],
        )

    async def _set(self, item_id: int, *, owned: bool, **values: Any) -> bool:
        conds = [InboxItem.id == item_id]
        if owned:
            conds += [InboxItem.lease_owner == self.owner, InboxItem.status == "working"]
        async with self.store.write() as s:
            res = await s.execute(update(InboxItem).where(*conds).values(**values))
            return bool(res.rowcount)  # type: ignore[attr-defined]

    async def renew(self, item_id: int) -> bool:
        return await self._set(item_id, owned=True, lease_expires_at=self.clock.now() + self.lease)

    async def finish(self, item_id: int, status: str = "done") -> bool:
        return await self._set(item_id, owned=True, status=status, done_at=self.clock.now(), lease_expires_at=None)

    async def failed(self, item: Claimed, error: str) -> bool:
        """Record a failure; returns True when the item is now dead-lettered."""
        dead = item.attempts >= self.settings.inbox_max_attempts
        await self._set(
            item.id,
            owned=True,
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
        """Put a dead letter back in line (it keeps its place in its thread)."""
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
                await s.execute(
                    select(func.count(), func.min(InboxItem.received_at)).where(InboxItem.status.in_(UNFINISHED))
                )
            ).one()
        age = (self.clock.now() - oldest).total_seconds() if oldest is not None else 0.0
        return int(n), max(age, 0.0)


Handler = Callable[[Claimed], Awaitable[None]]


class Workers:
    """Claims and answers inbox items, WORKER_CONCURRENCY at a time."""

    def __init__(self, inbox: Inbox, handle: Handler, *, on_dead: Handler, settings: Settings) -> None:
        self.inbox = inbox
        self.handle = handle
        self.on_dead = on_dead
        self.settings = settings
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._running: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.worker_concurrency)
        self._stopping = False
        self.completed = 0  # items handled (answered, failed or skipped) by this process
        self._progress = asyncio.Condition()

    def nudge(self) -> None:
        """New work was stored here: wake idle workers now instead of at their next poll."""
        self._wake.set()

    def start(self) -> None:
        self._slots = asyncio.Semaphore(self.settings.worker_concurrency)
        self._tasks = [asyncio.create_task(self._dispatch(), name="inbox-dispatcher")]

    async def stop(self, grace: float = 10.0) -> None:
        """Claim nothing new; let items in flight finish for up to `grace` seconds, then cancel
        (an item cut off keeps its lease until expiry, and any replica then takes it over)."""
        self._stopping = True
        self._wake.set()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._running:
            _, pending = await asyncio.wait(self._running, timeout=grace)
            for t in pending:
                t.cancel()
            for t in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

    async def _dispatch(self) -> None:
        """One loop per process claims work only when a worker slot is free, so an idle replica
        costs one cheap read per poll, not one per worker."""
        while not self._stopping:
            await self._slots.acquire()
            try:
                item = await self.inbox.claim()
            except Exception:
                log.exception("could not claim from the inbox")
                item = None
            if item is None:
                self._slots.release()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.settings.inbox_poll_seconds)
                self._wake.clear()
                continue
            task = asyncio.create_task(self._work(item), name=f"inbox-{item.id}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _work(self, item: Claimed) -> None:
        try:
            await self.run_one(item)
        finally:
            self._slots.release()
            self._wake.set()  # the thread's next message may be claimable now

    async def run_one(self, item: Claimed) -> None:
        keeper = asyncio.create_task(self._keep_lease(item.id))
        try:
            await self.handle(item)
        except Exception as exc:
            log.exception("inbox item %d failed (attempt %d)", item.id, item.attempts)
            if await self.inbox.failed(item, f"{type(exc).__name__}: {exc}"):
                try:
                    await self.on_dead(item)
                except Exception:
                    log.exception("could not report dead letter %d", item.id)
        else:
            await self.inbox.finish(item.id)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            async with self._progress:
                self.completed += 1
                self._progress.notify_all()

    async def wait_completed(self, n: int) -> None:
        """Until this process has handled at least `n` items (for tests and the benchmark; callers bound
        the wait with asyncio.timeout)."""
        async with self._progress:
            await self._progress.wait_for(lambda: self.completed >= n)

    async def _keep_lease(self, item_id: int) -> None:
        every = self.settings.inbox_lease_seconds / 3
        while True:
            await asyncio.sleep(every)  # a heartbeat interval, not synchronization
            if not await self.inbox.renew(item_id):
                log.warning("lost the lease on inbox item %d", item_id)
                return
