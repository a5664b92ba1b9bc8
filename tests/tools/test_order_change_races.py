"""Order changes raced through separate engines (as separate processes would): two confirms of one
change apply it once; a cancellation and an item change of one order, confirmed at once, leave
exactly one of them made and the other refused, saying why."""

from __future__ import annotations

import asyncio

import pytest

from desk.sessions import open_session
from storage.engine import Store
from storage.settings import Settings
from storage.types import FrozenClock
from tests.tools.shop import ADA, money, open_shop
from tests.tools.test_races import replicas
from tools import order_changes
from tools.codes import Code
from tools.context import Actor, CallContext, Deps
from tools.gateway import StoreGateway
from tools.toolbox import ORDER_CHANGE_TOOLS, TOOLS, Toolbox

ROUNDS = 8  # many rounds: a lucky interleaving must not hide a race


@pytest.fixture
async def shop(store: Store, settings: Settings, clock: FrozenClock) -> Deps:
    await open_shop(store, clock, pending=ROUNDS)
    return Deps(store=store, settings=settings, clock=clock, gateway=StoreGateway(store, clock))


async def prepared(tools: Toolbox, ctx: CallContext, name: str, **args: object) -> str:
    await tools.call("lookup_order", {"order_id": args["order_id"]}, ctx)
    res = await tools.call(name, args, ctx)
    assert res.code is Code.AWAITING_CONFIRMATION, res
    return str(res.data["change_id"])


async def test_two_confirms_of_one_change_apply_it_once(shop: Deps, settings: Settings) -> None:
    ctx = await open_session(shop, channel="test", actor=Actor.customer(ADA))
    tools = Toolbox(shop, TOOLS + ORDER_CHANGE_TOOLS)
    for n in range(ROUNDS):
        oid = f"O-PEND{n}" if n else "O-PEND"
        cid = await prepared(tools, ctx, "cancel_pending_order", order_id=oid, reason="no longer needed")
        engines = replicas(shop, settings, 2)
        results = await asyncio.gather(*(order_changes.confirm(d, change_id=cid, actor=ctx.actor) for d in engines))
        for d in engines:
            await d.store.dispose()
        assert sorted(r.code.value for r in results) == ["CHANGE_APPLIED", "INVALID_STATE"], (n, results)
        after = await money(shop.store, oid)
        assert after["status"] == "cancelled" and after["history"] == [
            ("payment", 3000, "card-1"),
            ("refund", 3000, "card-1"),
        ]


async def test_a_cancellation_racing_an_item_change_leaves_one_made_and_one_refused(
    shop: Deps, settings: Settings
) -> None:
    ctx = await open_session(shop, channel="test", actor=Actor.customer(ADA))
    tools = Toolbox(shop, TOOLS + ORDER_CHANGE_TOOLS)
    winners = set()
    for n in range(ROUNDS):
        oid = f"O-PEND{n}" if n else "O-PEND"
        cancel = await prepared(tools, ctx, "cancel_pending_order", order_id=oid, reason="ordered by mistake")
        modify = await prepared(
            tools,
            ctx,
            "modify_pending_order_items",
            order_id=oid,
            item_ids=["MUG-W"],
            new_item_ids=["MUG-B"],
            payment_method_id="card-1",
        )
        engines = replicas(shop, settings, 2)
        order = [cancel, modify] if n % 2 else [modify, cancel]  # either may be first in line
        results = await asyncio.gather(
            *(order_changes.confirm(d, change_id=c, actor=ctx.actor) for d, c in zip(engines, order, strict=True))
        )
        for d in engines:
            await d.store.dispose()
        codes = sorted(r.code.value for r in results)
        assert codes == ["CHANGE_APPLIED", "NOT_ELIGIBLE"], (n, results)
        won = next(r for r in results if r.code is Code.CHANGE_APPLIED).data["kind"]
        lost = next(r for r in results if r.code is not Code.CHANGE_APPLIED)
        assert lost.data["status"] == "refused" and lost.note  # a clear refusal, saying why
        winners.add(won)
        after = await money(shop.store, oid)
        if won == "cancel":
            assert after["status"] == "cancelled" and after["history"][-1] == ("refund", 3000, "card-1")
        else:
            assert after["status"] == "items_modified" and after["history"][-1] == ("payment", 200, "card-1")
        assert len(after["history"]) == 2  # the loser wrote nothing
