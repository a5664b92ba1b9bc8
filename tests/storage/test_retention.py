"""Retention: finished queue rows older than RETENTION_DAYS go, in small batches; nothing else."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select

from storage.engine import Store
from storage.models import ChatSession, InboxItem, OutboxMessage, WebRateLimit, WebTurn, WebTurnEvent
from storage.ratelimit import hit
from storage.retention import prune, prune_all
from storage.types import FrozenClock


async def count(store: Store, model: type) -> int:
    async with store.read() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


def inbox(n: int, status: str, done_at: datetime | None, received: datetime) -> InboxItem:
    return InboxItem(
        conversation=f"slack:C1:{n}.0",
        channel="C1",
        ts=f"{n}.0",
        thread_ts=f"{n}.0",
        user_id="U1",
        text="hi",
        payload={},
        status=status,
        attempts=1,
        received_at=received,
        done_at=done_at,
    )


async def fill(store: Store, now: datetime) -> None:
    old, recent = now - timedelta(days=40), now - timedelta(days=2)
    async with store.write() as s:
        s.add(ChatSession(id="S-1", channel="web", actor_kind="unverified", created_at=old, updated_at=old))
        rows = [
            inbox(1, "done", old, old),  # goes, with its outbox row
            inbox(2, "done", recent, recent),
            inbox(3, "dead", old, old),  # a dead letter waits for staff: kept
            inbox(4, "pending", None, old),
            inbox(5, "skipped", old, old),
        ]
        s.add_all(rows)
        await s.flush()
        for item, status, posted in ((rows[0], "posted", old), (rows[1], "posted", old), (rows[3], "pending", None)):
            s.add(
                OutboxMessage(
                    inbox_id=item.id,
                    seq=1,
                    channel="C1",
                    thread_ts=item.ts,
                    text="x",
                    status=status,
                    created_at=old,
                    posted_at=posted,
                )
            )
        for n, (status, finished) in enumerate((("done", old), ("failed", old), ("done", recent), ("running", None))):
            turn = WebTurn(
                key=f"turn_{n}",
                session_id="S-1",
                kind="message",
                text="hi",
                status=status,
                created_at=old,
                finished_at=finished,
            )
            s.add(turn)
            await s.flush()
            s.add(WebTurnEvent(turn_id=turn.id, seq=1, kind="reply", data={"text": "x"}, created_at=old))


async def test_prune_all_deletes_only_finished_rows_past_retention(store: Store, clock: FrozenClock) -> None:
    now = clock.now()
    await fill(store, now)
    for subject in ("old", "current"):
        await hit(
            store, subject=subject, now=now - timedelta(hours=2) if subject == "old" else now, limit=9, window_s=60
        )
    gone = await prune_all(store, now=now, retention_days=30)
    assert gone == {"inbox": 2, "outbox": 1, "web_turns": 2, "web_rate_limits": 1}
    async with store.read() as s:
        assert sorted((await s.scalars(select(InboxItem.ts))).all()) == ["2.0", "3.0", "4.0"]
        left = (await s.execute(select(OutboxMessage.status, OutboxMessage.inbox_id))).all()
        assert sorted(st for st, _ in left) == ["pending"]  # inbox 1's went with it; inbox 2's was pruned itself
        assert sorted((await s.scalars(select(WebTurn.key))).all()) == ["turn_2", "turn_3"]
        assert await s.scalar(select(func.count()).select_from(WebTurnEvent)) == 2  # the pruned turns' events went
        assert (await s.scalars(select(WebRateLimit.subject))).all() == ["current"]
    assert await prune_all(store, now=now, retention_days=30) == dict.fromkeys(gone, 0)


async def test_prune_works_in_bounded_batches(store: Store, clock: FrozenClock) -> None:
    now = clock.now()
    old = now - timedelta(days=90)
    async with store.write() as s:
        s.add_all(inbox(n, "done", old, old) for n in range(7))
    args = {"table": InboxItem, "time_column": InboxItem.done_at, "finished": InboxItem.status == "done"}
    assert await prune(store, **args, before=now, batch=2, max_batches=2) == 4  # the rest waits for next round
    assert await count(store, InboxItem) == 3
    assert await prune(store, **args, before=now, batch=2, max_batches=5) == 3
    assert await count(store, InboxItem) == 0
