"""The process's housekeeping: retention runs on every replica, whatever faces it serves; /healthz
says whether the store answers and takes writes."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, text

from agent.offline import OfflineModel
from bot.host import Host
from bot.server import HEALTH_CHECK_EVERY_S, retention
from storage import metrics
from storage.engine import Store
from storage.models import InboxItem
from storage.settings import Settings
from storage.types import FrozenClock
from tests.bot.conftest import Bot, bot_settings, start_bot, stop_bot
from tests.fakes.slack_api import FakeSlack


async def test_retention_deletes_what_retention_days_allows(
    settings: Settings, store: Store, clock: FrozenClock
) -> None:
    host = Host.create(
        settings.model_copy(update={"retention_days": 7}), store=store, model=OfflineModel(), clock=clock
    )
    async with store.write() as s:
        for n, age in enumerate((8, 6)):
            at = clock.now() - timedelta(days=age)
            s.add(
                InboxItem(
                    conversation=f"slack:C1:{n}.0",
                    channel="C1",
                    ts=f"{n}.0",
                    thread_ts=f"{n}.0",
                    user_id="U1",
                    text="hi",
                    payload={},
                    status="done",
                    attempts=1,
                    received_at=at,
                    done_at=at,
                )
            )
    before = metrics.REGISTRY.get_sample_value("supportbot_pruned_rows_total", {"table": "inbox"}) or 0.0
    assert (await retention(host))["inbox"] == 1
    async with store.read() as s:
        assert await s.scalar(select(func.count()).select_from(InboxItem)) == 1
    assert metrics.REGISTRY.get_sample_value("supportbot_pruned_rows_total", {"table": "inbox"}) == before + 1


# --- /healthz: a store that cannot write is not healthy -------------------------------------------------
FULL = "database or disk is full"
SQLITE_FULL = [
    f"CREATE TRIGGER disk_full_{op} BEFORE {op} ON web_rate_limits BEGIN SELECT RAISE(ABORT, '{FULL}'); END"
    for op in ("INSERT", "UPDATE")
]
PG_FULL = [
    "CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS "
    f"$$ BEGIN RAISE EXCEPTION '{FULL}' USING ERRCODE = 'disk_full'; END $$",
    "CREATE TRIGGER disk_full BEFORE INSERT OR UPDATE ON web_rate_limits FOR EACH ROW EXECUTE FUNCTION disk_full()",
]


async def execute(store: Store, statements: list[str]) -> None:
    async with store.write() as s:
        for statement in statements:
            await s.execute(text(statement))


async def healthz(bot: Bot) -> tuple[int, dict[str, object]]:
    async with bot.http.get(f"{bot.url}/healthz") as resp:
        return resp.status, await resp.json()


async def test_healthz_fails_while_the_store_refuses_writes(
    settings: Settings, store: Store, slack: FakeSlack, clock: FrozenClock
) -> None:
    """A full disk (every write fails, reads still work) is simulated by the database itself: a
    trigger that fails the health check's write the way SQLite or PostgreSQL fail a full disk."""
    bot = await start_bot(bot_settings(settings, slack), store, slack, clock=clock, workers=False)
    try:
        assert (await healthz(bot))[0] == 200
        await execute(store, SQLITE_FULL if store.dialect == "sqlite" else PG_FULL)
        clock.advance(seconds=HEALTH_CHECK_EVERY_S)
        status, body = await healthz(bot)
        assert (status, body["ok"]) == (503, False)
        drop = ["DROP TRIGGER disk_full_INSERT", "DROP TRIGGER disk_full_UPDATE"]
        await execute(store, drop if store.dialect == "sqlite" else ["DROP TRIGGER disk_full ON web_rate_limits"])
        assert (await healthz(bot))[0] == 503  # asked again within the interval: the last answer, no new write
        clock.advance(seconds=HEALTH_CHECK_EVERY_S)
        assert (await healthz(bot))[0] == 200
    finally:
        await stop_bot(bot)
