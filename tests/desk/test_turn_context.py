"""A turn knows its customer: the verified customer's account and newest orders come with the
turn's first model request, counted as looked up, so a refund takes one model call; and the
pre-loaded orders never let the bot act on an order the customer did not mean."""

from __future__ import annotations

import json

from sqlalchemy import text as sql

from agent.events import Confirmation, Done, Reply
from agent.loop import Agent
from agent.offline import OfflineModel
from agent.scripted import ScriptedModel, reply, text, tool_use
from desk import Desk
from storage.import_schema import parse
from storage.importer import import_records
from tools.context import CallContext, Deps
from tools.toolbox import Toolbox


async def said(desk: Desk, ctx: CallContext, message: str) -> list[object]:
    return [e async for e in desk.say(ctx, message)]


async def refunds(deps: Deps) -> list[tuple[object, ...]]:
    async with deps.store.read() as s:
        return [
            tuple(r) for r in (await s.execute(sql("SELECT order_id, status FROM refunds ORDER BY order_id"))).all()
        ]


async def test_a_refund_takes_one_model_call_with_the_order_in_the_turns_context(
    deps: Deps, sarah: CallContext
) -> None:
    model = ScriptedModel(
        [
            reply(
                text("I'm sorry it arrived broken."),
                tool_use("process_refund", order_id="ORD-8842", amount=89.99, reason="arrived broken"),
            )
        ]
    )
    events = await said(Desk(Agent(model=model, toolbox=Toolbox(deps))), sarah, "my blender ORD-8842 is broken")
    (request,) = model.requests
    note = request.messages[0]["content"][0]["text"]
    account = json.loads(note[note.index("{") :])
    assert account["customer_id"] == "CUST-1001" and "ORD-8842" in [o["order_id"] for o in account["recent_orders"]]
    (prompt,) = [e for e in events if isinstance(e, Confirmation)]
    assert prompt.order_id == "ORD-8842" and [e.model_calls for e in events if isinstance(e, Done)] == [1]
    assert await refunds(deps) == [("ORD-8842", "awaiting_confirmation")]  # no lookup needed first


async def test_with_two_blenders_the_bot_asks_which_and_moves_nothing_until_told(
    deps: Deps, sarah: CallContext
) -> None:
    second = {
        "orders": [
            {
                "id": "ORD-8850",
                "customer_id": "CUST-1001",
                "status": "delivered",
                "total": "59.00",
                "currency": "USD",
                "placed_at": "2026-11-20T10:00:00+00:00",
                "delivered_at": "2026-11-24T10:00:00+00:00",
                "items": [{"sku": "BLND-300", "name": "Compact blender", "quantity": 1, "unit_price": "59.00"}],
            }
        ]
    }
    await import_records(deps.store, parse(second))
    desk = Desk(Agent(model=OfflineModel(), toolbox=Toolbox(deps)))
    asked = await said(desk, sarah, "my blender arrived broken, I'd like a refund")
    (question,) = [e.text for e in asked if isinstance(e, Reply)]
    assert "ORD-8842" in question and "ORD-8850" in question and "Which one" in question
    assert not [e for e in asked if isinstance(e, Confirmation)] and await refunds(deps) == []
    told = await said(desk, sarah, "the compact one, ORD-8850")
    (prompt,) = [e for e in told if isinstance(e, Confirmation)]
    assert prompt.order_id == "ORD-8850" and prompt.item == "Compact blender" and prompt.amount == "$59.00"
    assert await refunds(deps) == [("ORD-8850", "awaiting_confirmation")]  # waits for the customer's yes
