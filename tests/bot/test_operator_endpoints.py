"""Operator endpoints stay apart from public ones, and what they count tells no one anything a
reply would not: asking about another customer's order moves exactly the counters, with the same
labels, that asking about an order nobody has moves (the hidden P1 for staff is counted nowhere
a reader of /metrics could tell it from an unknown order)."""

from __future__ import annotations

from collections.abc import Iterator

from storage import metrics
from storage.engine import Store
from storage.settings import Settings
from tests.bot.conftest import stop_bot
from tests.bot.web.test_api import SARAH, open_api, rows, web_bot
from tests.fakes.slack_api import FakeSlack

# the store's and the process's own cost (statements, CPU) and time histograms measure work, not outcomes
COST = ("supportbot_db_", "process_")
Sample = tuple[str, tuple[tuple[str, str], ...]]


def counted() -> dict[Sample, float]:
    """Every counter, and every histogram's count, by name and labels."""
    out: dict[Sample, float] = {}
    for family in metrics.REGISTRY.collect():
        for s in family.samples:
            if s.name.startswith(COST) or not s.name.endswith(("_total", "_count")):
                continue
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def moved(before: dict[Sample, float], after: dict[Sample, float]) -> dict[Sample, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


def shown(delta: dict[Sample, float]) -> Iterator[str]:
    for (name, labels), n in sorted(delta.items()):
        yield f"{name}{dict(labels)} +{n:g}"


async def test_another_customers_order_moves_the_same_counters_as_an_unknown_one(
    settings: Settings, store: Store, slack: FakeSlack
) -> None:
    bot = await web_bot(settings, store, slack)
    try:
        api = await open_api(bot)
        await api.chat("hello", headers=SARAH)  # first-use counters (the store's first rows) out of the way
        asked: dict[str, dict[Sample, float]] = {}
        replies: dict[str, list[str]] = {}
        for label, order in (("unknown", "ORD-9999"), ("another customer's", "ORD-5501")):
            before = counted()
            answer = await api.chat(f"Where is my order {order}?", headers=SARAH)  # a new session each time
            later = await api.chat("what are your support hours?", headers=SARAH, session_id=answer["session_id"])
            asked[label] = moved(before, counted())
            replies[label] = [answer["reply"], later["reply"]]
        assert replies["unknown"] == replies["another customer's"]
        assert list(shown(asked["another customer's"])) == list(shown(asked["unknown"]))
        assert await rows(api, "SELECT priority, reason FROM tickets") == [("P1", "security")]  # staff still know
    finally:
        await stop_bot(bot)
