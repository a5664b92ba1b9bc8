"""Races through separate engines (as separate processes would have): the database decides."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from desk import staff as staff_acts
from storage.engine import Store, is_sqlite, make_engine
from storage.settings import Settings
from tests.conftest import ticket_by_ref
from tools import refunds
from tools.codes import Code
from tools.context import Actor, CallContext, Deps
from tools.gateway import StoreGateway
from tools.toolbox import Toolbox


def replicas(deps: Deps, settings: Settings, n: int) -> list[Deps]:
    """Separate engines on one database. On SQLite their writers queue in SQLite's busy handler:
    its timeout is long here, so a loaded machine makes them slower, never "database is locked"
    (what is tested is who wins, not how long losing takes)."""
    out = []
    for _ in range(n):
        if is_sqlite(settings.database_url):
            store = Store(make_engine(settings.database_url, busy_timeout_ms=60_000))
        else:
            store = Store.from_settings(settings)
        out.append(Deps(store=store, settings=settings, clock=deps.clock, gateway=StoreGateway(store, deps.clock)))
    return out


async def test_100_concurrent_refund_requests_and_confirms_pay_once(
    deps: Deps, settings: Settings, sarah: CallContext
) -> None:
    engines = replicas(deps, settings, 4)
    assert (await Toolbox(engines[0]).call("lookup_order", {"order_id": "ORD-8842"}, sarah)).ok

    async def request_and_confirm(i: int) -> tuple[Code, Code | None]:
        d = engines[i % len(engines)]
        res = await Toolbox(d).call(
            "process_refund", {"order_id": "ORD-8842", "amount": 89.99, "reason": f"attempt {i}"}, sarah
        )
        if "refund_id" not in res.data:
            return res.code, None
        confirmed = await refunds.confirm(d, refund_id=str(res.data["refund_id"]), actor=sarah.actor)
        return res.code, confirmed.code

    outcomes = await asyncio.gather(*(request_and_confirm(i) for i in range(100)))
    for d in engines:
        await d.store.dispose()
    confirms = [c for _, c in outcomes]
    assert confirms.count(Code.REFUND_PROCESSED) == 1
    assert set(confirms) <= {Code.REFUND_PROCESSED, Code.INVALID_STATE}
    async with deps.store.read() as s:
        assert (await s.execute(text("SELECT status, count(*) FROM refunds GROUP BY status"))).all() == [
            ("processed", 1)
        ]
        assert (await s.scalar(text("SELECT count(*) FROM payouts"))) == 1


async def test_two_concurrent_claims_make_one_owner(deps: Deps, settings: Settings, sarah: CallContext) -> None:
    res = await Toolbox(deps).call("escalate_to_human", {"reason": "other", "priority": "P1", "summary": "x"}, sarah)
    ticket_id = await ticket_by_ref(deps, str(res.data["ticket"]))
    for round_ in range(10):  # many rounds: a lucky interleaving must not hide a race
        engines = replicas(deps, settings, 2)
        results = await asyncio.gather(
            *(staff_acts.claim(d, ticket_id=ticket_id, staff=Actor.staff(f"U-{i}")) for i, d in enumerate(engines))
        )
        codes = sorted(r.code.value for r in results)
        assert codes == ["ALREADY_CLAIMED", "OK"], (round_, codes)
        winner = next(r for r in results if r.code is Code.OK).data["claimed_by"]
        async with deps.store.read() as s:
            assert (await s.scalar(text("SELECT claimed_by FROM tickets WHERE id = :i"), {"i": ticket_id})) == winner
        await staff_acts.release(engines[0], ticket_id=ticket_id, staff=Actor.staff(str(winner)))
        for d in engines:
            await d.store.dispose()
