"""`supportbot bench --suite kb` end to end on a small corpus: the numbers it reports are there and sane."""

from __future__ import annotations

from bot.bench.kb import run_kb_bench, table
from storage.settings import Settings


async def test_kb_bench_imports_searches_and_reports(settings: Settings) -> None:
    result = await run_kb_bench(settings, articles=60, database_url=settings.database_url, rounds=1)
    assert result["articles"] == 86 and result["passages"] >= 86 * 3
    assert result["reimport_unchanged"] == 86  # the second import touches nothing
    assert result["searches"] == 92 and 0 < result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"]
    assert result["recall_at_3_at_scale"] >= 0.8
    assert result["database"] in ("sqlite", "postgresql") and "| database |" in table(result)
