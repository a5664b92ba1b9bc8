"""The one lease queue every face puts its work in: the `inbox` table.

- `Queue.put` stores work before its sender is told it arrived: a Slack message or button click
  (before Slack's 200), a website chat turn (before its 202). Unique constraints on Slack's
  event_id and (channel, ts) make Slack's retries and mention twins no-ops.
- `Queue.claim` takes up to `n` items (one per free worker slot, at most CLAIM_BATCH) in one
  conditional `UPDATE … RETURNING` with a lease (owner, expiry, attempt number); on PostgreSQL the
  candidates are locked `FOR UPDATE SKIP LOCKED`, so replicas claiming at once take different
  items instead of queueing on the same rows. No transaction is held while the model or Slack is
  called. Work is claimable only when everything earlier in its conversation (a Slack thread, a web session) is
  finished, so a conversation is answered in order; an expired lease (a crashed worker, on any
  replica) is taken over by any worker, with the next attempt number.
- `Queue.holds` is the fence: whoever posts or streams on behalf of a work item first proves,
  in the same statement that records the attempt, that it still holds the lease.
- The workers that drain it are the process's (`bot.workers`).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, literal_column, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from storage.engine import UNSYNCED, Store
from storage.models import InboxItem
from storage.settings import Settings
from storage.states import UNFINISHED_INBOX, InboxStatus
from storage.types import Clock, UTCDateTime

log = logging.getLogger(__name__)
CLAIM_BATCH = 8  # items one claim may take


def live(status: Any) -> Any:
    """`status IN ('pending', 'working')` with the values written into the SQL, not bound: PostgreSQL
    uses the partial indexes on live rows only when it can see the literals (a generic plan of a
    prepared statement with bound values scanned all 200,000 done rows: 95 ms instead of 0.1)."""
    return status.in_([literal_column(f"'{s}'") for s in UNFINISHED_INBOX])


def _claim_statements() -> tuple[Any, Any]:
    """The peek and the claim, built once (SQLAlchemy caches their compiled form): an item is
    claimable when pending, or working under an expired lease, and no earlier item of its
    conversation is unfinished. The claim re-checks claimability on the row it updates, so of two
    racing claimers (on any replica) exactly one gets it."""
    t = InboxItem.__table__
    now = bindparam("now", type_=UTCDateTime())

    def claimable(table: Any) -> Any:
        pending, working = (literal_column(f"'{s}'") for s in UNFINISHED_INBOX)
        return or_(table.c.status == pending, and_(table.c.status == working, table.c.lease_expires_at < now))

    def first_claimable(table: Any, limit: Any = 1) -> Any:
        earlier = t.alias("earlier")
        blocked = exists().where(
            earlier.c.conversation == table.c.conversation,
            earlier.c.id < table.c.id,
            live(earlier.c.status),
        )
        return (
            select(table.c.id)
            .where(live(table.c.status), claimable(table), ~blocked)
            .order_by(table.c.kind == literal_column("'message'"), table.c.id)  # clicks go ahead of turns
            .limit(limit)
        )

    candidate = t.alias("candidate")
    peek = first_claimable(candidate)
    # a CTE, evaluated once (PostgreSQL does not inline one that locks rows): as an IN subquery
    # the planner may run it again per row, and each run skips other rows, past its LIMIT
    batch = first_claimable(candidate, bindparam("n")).with_for_update(skip_locked=True, of=candidate).cte("batch")
    taken = {
        "status": InboxStatus.WORKING,
        "lease_owner": bindparam("owner"),
        "lease_expires_at": bindparam("until", type_=UTCDateTime()),
        "attempts": t.c.attempts + 1,
        "started_at": now,
    }
    claim = update(t).where(t.c.id.in_(select(batch.c.id)), claimable(t)).values(**taken).returning(*t.c)
    earlier = t.alias("earlier")
    unblocked = ~exists().where(
        earlier.c.conversation == t.c.conversation, earlier.c.id < t.c.id, live(earlier.c.status)
    )
    # one item by its id, claimable by the same rule (a click just stored, run at once)
    one = update(t).where(t.c.id == bindparam("item"), claimable(t), unblocked).values(**taken).returning(*t.c)
    return peek, claim, one


_PEEK, _CLAIM, _CLAIM_ONE = _claim_statements()


def held(item_id: int, attempt: int, *, owner: str, until: Any) -> Any:
    """For another statement's WHERE: `owner` still holds the work item's lease under this attempt,
    and will until `until` at least."""
    return exists().where(
        InboxItem.id == item_id,
        InboxItem.lease_owner == owner,
        InboxItem.attempts == attempt,
        InboxItem.status == InboxStatus.WORKING,
        InboxItem.lease_expires_at > until,
    )


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
                status=InboxStatus.PENDING,
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

    async def claim_item(self, item_id: int) -> Claimed | None:
        """That one item, if it is claimable now (it was just stored here: a click runs at once, with
        no wait for the dispatcher); None when it is not (another worker has it, or its conversation
        has earlier work unfinished, which the dispatcher will get to in order)."""
        now = self.clock.now()
        args = {"now": now, "owner": self.owner, "until": now + self.lease, "n": 1, "item": item_id}
        async with self.store.write(ack=True) as s:
            row = (await s.execute(_CLAIM_ONE, args)).first()
        return Claimed.of(row._mapping) if row is not None else None

    def _held(self, item_id: int, attempt: int) -> list[Any]:
        return [
            InboxItem.id == item_id,
            InboxItem.lease_owner == self.owner,
            InboxItem.attempts == attempt,
            InboxItem.status == InboxStatus.WORKING,
        ]

    async def _set(self, item: Claimed, **values: Any) -> bool:
        async with self.store.write() as s:
            held = update(InboxItem).where(*self._held(item.id, item.attempts)).values(**values)
            res = await s.execute(held, execution_options=UNSYNCED)
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def holds(self, item_id: int, attempt: int, *, margin: timedelta = timedelta(0)) -> Any:
        """A condition for another statement's WHERE: this worker still holds the item's lease, under
        this attempt, with at least `margin` left (so an HTTP call started now ends before it expires)."""
        return held(item_id, attempt, owner=self.owner, until=self.clock.now() + margin)

    async def absorb(self, item: Claimed, *, within_s: float, most: int = 10) -> Claimed:
        """A burst read as one: the messages the same author sent in the same conversation right after
        `item` (each within `within_s` of the one before) that are still waiting become part of it.
        In one transaction, fenced by `item`'s lease: its text grows by theirs and they are marked
        done (each stays recorded in the inbox), so a crash later re-runs one turn with all of them."""
        if item.kind != "message" or within_s <= 0:
            return item
        async with self.store.write() as s:
            rows = (
                await s.execute(
                    select(InboxItem.id, InboxItem.text, InboxItem.received_at, InboxItem.user_id, InboxItem.kind)
                    .where(
                        InboxItem.conversation == item.conversation,
                        InboxItem.id > item.id,
                        InboxItem.status == InboxStatus.PENDING,
                    )
                    .order_by(InboxItem.id)
                    .limit(most)
                )
            ).all()
            taken, last = [], item.received_at
            for row_id, text, received, user, kind in rows:
                if kind != "message" or user != item.user_id or (received - last).total_seconds() > within_s:
                    break
                taken.append((row_id, text))
                last = received
            if not taken:
                return item
            text = "\n".join([item.text, *(t for _, t in taken)])
            held_now = self._held(item.id, item.attempts)
            moved = await s.execute(update(InboxItem).where(*held_now).values(text=text), execution_options=UNSYNCED)
            if not moved.rowcount:  # type: ignore[attr-defined]
                return item  # our lease is gone: the taker reads the burst again
            await s.execute(
                update(InboxItem)
                .where(InboxItem.id.in_([i for i, _ in taken]), InboxItem.status == InboxStatus.PENDING)
                .values(status=InboxStatus.DONE, done_at=self.clock.now(), last_error=f"read with item {item.id}"),
                execution_options=UNSYNCED,
            )
        return dataclasses.replace(item, text=text)

    async def renew(self, items: list[Claimed]) -> set[int]:
        """Every lease of `items` still ours extended, in one statement; returns their ids."""
        if not items:
            return set()
        held = tuple_(InboxItem.id, InboxItem.attempts).in_([(i.id, i.attempts) for i in items])
        async with self.store.write() as s:
            res = await s.execute(
                update(InboxItem)
                .where(held, InboxItem.lease_owner == self.owner, InboxItem.status == InboxStatus.WORKING)
                .values(lease_expires_at=self.clock.now() + self.lease)
                .returning(InboxItem.id),
                execution_options=UNSYNCED,
            )
            return set(res.scalars().all())

    async def finish(self, item: Claimed, status: InboxStatus = InboxStatus.DONE) -> bool:
        return await self._set(item, status=status, done_at=self.clock.now(), lease_expires_at=None)

    async def failed(self, item: Claimed, error: str) -> bool:
        """Record a failure; returns True when the item is now dead-lettered."""
        dead = item.attempts >= self.settings.inbox_max_attempts
        await self._set(
            item,
            status=InboxStatus.DEAD if dead else InboxStatus.PENDING,
            lease_owner=None,
            lease_expires_at=None,
            last_error=error[:2000],
            done_at=self.clock.now() if dead else None,
        )
        return dead

    async def dead_letters(self) -> list[InboxItem]:
        async with self.store.read() as s:
            return list(
                (
                    await s.scalars(
                        select(InboxItem).where(InboxItem.status == InboxStatus.DEAD).order_by(InboxItem.id)
                    )
                ).all()
            )

    async def retry(self, item_id: int) -> bool:
        """Put a dead letter back in line (it keeps its place in its conversation)."""
        async with self.store.write() as s:
            res = await s.execute(
                update(InboxItem)
                .where(InboxItem.id == item_id, InboxItem.status == InboxStatus.DEAD)
                .values(status=InboxStatus.PENDING, attempts=0, lease_owner=None, lease_expires_at=None, done_at=None)
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
