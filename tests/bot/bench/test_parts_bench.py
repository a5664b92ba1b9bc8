"""`supportbot bench --suite parts` end to end with few calls: every part is measured through the
real client against its peer process, and every Slack event it acknowledged was stored."""

from __future__ import annotations

from bot.bench.parts import LABELS, WARM_UP, run_parts_bench, table
from storage.settings import Settings


async def test_parts_bench_measures_every_part_and_stores_every_ack(settings: Settings) -> None:
    result = await run_parts_bench(n=20, database_url=settings.database_url)
    costs = result["cpu_ms_per_call"]
    assert set(costs) == set(LABELS)
    assert all(ms > 0 for key, ms in costs.items() if key != "each_further_select")
    assert costs["read_tx_one_select"] < costs["claude_call"]  # a SELECT is cheaper than an HTTP call
    assert result["events_stored"] == 20 + WARM_UP
    assert result["database"] in ("sqlite", "postgresql")
    assert all(label in table(result) for label in LABELS.values())
