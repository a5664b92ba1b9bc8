"""A customer trying order numbers that are not theirs is slowed down, and the limit itself says
nothing about any order: unknown and other customers' numbers count alike and, past the limit,
every number (their own too) gets the same refusal."""

from __future__ import annotations

import json

from sqlalchemy import text

from agent.events import Reply
from agent.loop import Agent
from agent.scripted import ScriptedModel, reply, tool_use
from desk import Desk
from storage.types import FrozenClock
from tools import wording
from tools.codes import Code
from tools.context import CallContext, Deps
from tools.toolbox import Toolbox


async def test_past_the_limit_every_order_number_is_refused_alike_for_an_hour(
    deps: Deps, sarah: CallContext, james: CallContext, clock: FrozenClock
) -> None:
    box = Toolbox(deps)
    limit = deps.settings.unknown_orders_per_hour
    tried = ["ORD-5501" if n % 2 else f"ORD-{9000 + n}" for n in range(limit)]  # another's, and unknown
    for order in tried:
        assert (await box.call("lookup_order", {"order_id": order}, sarah)).code in (
            Code.ORDER_NOT_FOUND,
            Code.OWNERSHIP_MISMATCH,
        )
    refused = [await box.call(tool, {"order_id": o}, sarah) for tool in ("lookup_order", "get_refund_status")
               for o in ("ORD-8842", "ORD-5501", "ORD-4242")]  # fmt: skip
    assert {r.code for r in refused} == {Code.TOO_MANY_UNKNOWN_ORDERS}
    assert len({json.dumps(r.for_model(), sort_keys=True) for r in refused}) == 1  # byte-identical
    assert (await box.call("lookup_order", {"order_id": "ORD-5501"}, james)).ok  # others are not slowed
    clock.advance(seconds=3601)
    assert (await box.call("lookup_order", {"order_id": "ORD-8842"}, sarah)).ok


async def test_the_customer_is_told_to_check_the_number_and_one_security_ticket_holds_the_probes(
    deps: Deps, sarah: CallContext
) -> None:
    limit = deps.settings.unknown_orders_per_hour
    model = ScriptedModel([reply(tool_use("lookup_order", order_id="ORD-5501")) for _ in range(limit + 1)])
    desk = Desk(Agent(model=model, toolbox=Toolbox(deps)))
    replies = []
    for _ in range(limit + 1):  # each lookup ends its turn with the not-found wording
        replies += [e.text for e in [e async for e in desk.say(sarah, "what about ORD-5501?")] if isinstance(e, Reply)]
    assert replies[-1] == wording.TOO_MANY_UNKNOWN_ORDERS
    assert set(replies[:-1]) == {wording.NOT_FOUND_ORDER}
    async with deps.store.read() as s:
        tickets = (await s.execute(text("SELECT priority, reason FROM tickets"))).all()
    assert [tuple(t) for t in tickets] == [("P1", "security")]  # grouped, not one page per probe
