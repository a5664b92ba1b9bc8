"""Two replicas draw on one Slack budget (PostgreSQL): together they get chat.postMessage's burst
of 3 for a channel and then a slot a second, as one process would, instead of 3 each."""

from __future__ import annotations

from bot.slack.delivery import SlackPacer
from bot.slack.limits import LIMITS
from storage.engine import Store
from storage.settings import Settings


async def test_two_replicas_share_one_budget_per_channel(pg_database_url: str) -> None:
    settings = Settings(_env_file=None, database_url=pg_database_url)  # type: ignore[call-arg]
    stores = [Store.from_settings(settings) for _ in range(2)]
    try:
        replicas = [SlackPacer(store=s) for s in stores]
        rate, burst, _ = LIMITS["chat.postMessage"]
        waits = [await replicas[i % 2].reserve_shared("chat.postMessage", "C1") for i in range(6)]
        assert waits[:3] == [0.0, 0.0, 0.0]  # the burst, shared
        assert [round(w * rate) for w in waits[3:]] == [1, 2, 3]  # then one slot a second, in line
        assert await replicas[1].reserve_shared("chat.postMessage", "C2") == 0.0  # another channel's own
        tiered = [await replicas[i % 2].reserve_shared("users.info", None) for i in range(int(LIMITS["users.info"][1]))]
        assert tiered == [0.0] * len(tiered)  # a workspace-wide method: its burst, then waits
        assert await replicas[0].reserve_shared("users.info", None) > 0
    finally:
        for s in stores:
            await s.dispose()


async def test_without_postgresql_each_process_paces_alone(store: Store) -> None:
    pacer = SlackPacer(store=store)
    if store.dialect == "sqlite":
        assert pacer.store is None  # one process on SQLite: its own buckets
    waits = [await pacer.reserve_shared("chat.postMessage", "C1") for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0] and waits[3] > 0
    assert await SlackPacer(enabled=False).reserve_shared("chat.postMessage", "C1") == 0.0
