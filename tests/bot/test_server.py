"""The process's housekeeping: retention runs on every replica, whatever faces it serves."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from agent.offline import OfflineModel
from bot.host import Host
from bot.server import retention
from storage import metrics
from storage.engine import Store
from storage.models import InboxItem
from storage.settings import Settings
from storage.types import FrozenClock


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
