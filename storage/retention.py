"""Retention: queue rows whose work is finished are deleted once they are old enough.

`prune` is the one helper: a table, its time column, its "finished" condition and a cutoff; it
deletes in batches of BATCH rows, each batch its own short transaction, at most MAX_BATCHES per
call (housekeeping calls again next round), so a backlog never holds a lock for long. Any number
of replicas may prune at once: a batch only deletes rows still there (on PostgreSQL it skips
rows another replica's batch holds), and a row deleted twice is deleted once.

`rules` lists what is pruned, one line per table; a new queue table is one more line:

- answered inbox messages (done or skipped) after RETENTION_DAYS; their outbox rows go with them
  (ON DELETE CASCADE), and posted outbox rows are pruned on their own as well;
- finished website chat turns (done or failed) after RETENTION_DAYS, their events with them
  (ON DELETE CASCADE);
- rate-limit counters once their window can no longer be current (MAX_WINDOW_S).

Dead letters, sessions, messages, tickets, refunds and the audit log are never pruned here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, select, true
from sqlalchemy.orm import InstrumentedAttribute

from storage.engine import Store
from storage.models import InboxItem, OutboxMessage, WebRateLimit, WebTurn
from storage.ratelimit import MAX_WINDOW_S
from storage.states import InboxStatus, OutboxStatus, WebTurnStatus

BATCH = 500
MAX_BATCHES = 20


@dataclass(frozen=True, slots=True)
class Rule:
    table: type[Any]  # a mapped class
    time_column: InstrumentedAttribute[Any]
    finished: ColumnElement[bool]
    before: datetime


def rules(*, now: datetime, retention_days: int) -> list[Rule]:
    cutoff = now - timedelta(days=retention_days)
    return [
        Rule(InboxItem, InboxItem.done_at, InboxItem.status.in_((InboxStatus.DONE, InboxStatus.SKIPPED)), cutoff),
        Rule(
            OutboxMessage,
            OutboxMessage.posted_at,
            OutboxMessage.status.in_((OutboxStatus.POSTED, OutboxStatus.SKIPPED)),
            cutoff,
        ),
        Rule(WebTurn, WebTurn.finished_at, WebTurn.status.in_((WebTurnStatus.DONE, WebTurnStatus.FAILED)), cutoff),
        Rule(WebRateLimit, WebRateLimit.window_start, true(), now - timedelta(seconds=MAX_WINDOW_S)),
    ]


async def prune(
    store: Store,
    *,
    table: type[Any],
    time_column: InstrumentedAttribute[Any],
    finished: ColumnElement[bool],
    before: datetime,
    batch: int = BATCH,
    max_batches: int = MAX_BATCHES,
) -> int:
    """Delete the table's finished rows older than `before`, `batch` at a time; returns how many.
    The table needs a one-column primary key."""
    (key,) = table.__table__.primary_key.columns
    doomed = select(key).where(finished, time_column < before).limit(batch).with_for_update(skip_locked=True)
    stmt = delete(table).where(key.in_(doomed.scalar_subquery())).execution_options(synchronize_session=False)
    total = 0
    for _ in range(max_batches):
        async with store.write() as s:
            gone = int((await s.execute(stmt)).rowcount)  # type: ignore[attr-defined]
        total += gone
        if gone < batch:
            break
    return total


async def prune_all(store: Store, *, now: datetime, retention_days: int) -> dict[str, int]:
    """Every rule once; returns the rows deleted per table."""
    done = {}
    for rule in rules(now=now, retention_days=retention_days):
        done[rule.table.__tablename__] = await prune(
            store, table=rule.table, time_column=rule.time_column, finished=rule.finished, before=rule.before
        )
    return done
