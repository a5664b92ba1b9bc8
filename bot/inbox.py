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
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased

from bot.routing import Incoming
from storage.engine import Store
from storage.models import InboxItem
from storage.settings import Settings
from storage.types import Clock

log = logging.getLogger(__name__)
UNFINISHED = ("pending", "working")


def replica_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


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

    def _claimable(self, table: Any, now: datetime) -> Any:
        return or_(table.status == "pending", and_(table.status == "working", table.lease_expires_at < now))

    async def claim(self) -> Claimed | None:
        now = self.clock.now()
        item, earlier = InboxItem, aliased(InboxItem)
        blocked = exists().where(
            earlier.channel == item.channel,
            earlier.thread_ts == item.thread_ts,
            earlier.id < item.id,
            earlier.status.in_(UNFINISHED),
        )
        async with self.store.read() as s:  # a cheap read first: idle polling never takes the write lock
            if await s.scalar(select(item.id).where(self._claimable(item, now), ~blocked).limit(1)) is None:
                return None
        candidate = (
            select(item.id).where(self._claimable(item, now), ~blocked).order_by(item.id).limit(1).scalar_subquery()
        )
        stmt = (
            update(InboxItem)
            .where(InboxItem.id == candidate, self._claimable(InboxItem, now))
            .values(
                status="working",
                lease_owner=self.owner,
                lease_expires_at=now + self.lease,
                attempts=InboxItem.attempts + 1,
                started_at=now,
            )
            .returning(InboxItem)
            .execution_options(synchronize_session=False)
        )
        async with self.store.write() as s:
            row = (await s.scalars(stmt)).one_or_none()
        if row is None:
            return None
        return Claimed(
            row.id,
            row.channel,
            row.ts,
            row.thread_ts,
            row.user_id,
            row.user_team,
            row.installing_team,
            row.text,
            row.payload,
            row.attempts,
            row.received_at,
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
        self._stopping = False
        self.completed = 0  # items handled (answered, failed or skipped) by this process
        self._progress = asyncio.Condition()

    def nudge(self) -> None:
        """New work was stored here: wake idle workers now instead of at their next poll."""
        self._wake.set()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(n), name=f"worker-{n}") for n in range(self.settings.worker_concurrency)
        ]

    async def stop(self, grace: float = 10.0) -> None:
        """Claim nothing new; let items in flight finish for up to `grace` seconds, then cancel
        (an item cut off keeps its lease until expiry, and any replica then takes it over)."""
        self._stopping = True
        self._wake.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for t in pending:
                t.cancel()
            for t in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

    async def _run(self, n: int) -> None:
        while not self._stopping:
            try:
                item = await self.inbox.claim()
            except Exception:
                log.exception("worker %d could not claim from the inbox", n)
                item = None
            if item is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.settings.inbox_poll_seconds)
                self._wake.clear()
                continue
            await self.run_one(item)

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
