"""Repair before replacing: a reply the store contradicts goes back to the model once, naming the
sentence and the fact; the rewrite is sent if it passes the guard, else code's own answer to what
the customer asked, in their language, with every item of the order they named. And a request
for a person that comes with other requests opens the ticket while the model answers the rest."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text as sql

from agent.errors import ModelUnavailable
from agent.events import Escalation, Event, Reply
from agent.loop import Agent
from agent.model import ModelRequest
from agent.scripted import ScriptedModel, reply, text, tool_use
from desk import Desk
from storage.metrics import REPLIES_REPLACED
from tests.conftest import session_for
from tools import wording
from tools.context import Actor, CallContext, Deps
from tools.toolbox import Toolbox


async def run(deps: Deps, ctx: CallContext, model: Any, message: str) -> list[Event]:
    return [e async for e in Desk(Agent(model=model, toolbox=Toolbox(deps))).say(ctx, message)]


def said(events: list[Event]) -> str:
    (only,) = [e.text for e in events if isinstance(e, Reply)]
    return only


async def audited(deps: Deps) -> list[tuple[Any, ...]]:
    async with deps.store.read() as s:
        rows = await s.execute(sql("SELECT outcome, input FROM audit_log WHERE action = 'reply_replaced'"))
        return [tuple(r) for r in rows.all()]


LOOKED_UP = [
    reply(tool_use("get_customer", email="sarah@example.com")),
    reply(tool_use("lookup_order", order_id="ORD-8842")),
]


async def test_an_honest_rewrite_is_sent_and_the_original_kept_for_staff(deps: Deps, sarah: CallContext) -> None:
    before = REPLIES_REPLACED.labels("repaired")._value.get()
    model = ScriptedModel(
        [
            *LOOKED_UP,
            reply(text("Good news: your refund of $89.99 for ORD-8842 has been issued.")),
            reply(text("Your ProBlend 500 blender (ORD-8842) can be refunded: shall I prepare a refund of $89.99?")),
        ]
    )
    events = await run(deps, sarah, model, "my blender ORD-8842 broke, refund it")
    assert said(events) == "Your ProBlend 500 blender (ORD-8842) can be refunded: shall I prepare a refund of $89.99?"
    asked = model.requests[-1]
    assert asked.messages[-2]["content"][0]["text"].startswith("Good news")  # its own reply, then the note
    note = asked.messages[-1]["content"][0]["text"]
    assert "has been issued" in note and "There is no refund on order ORD-8842 so far." in note
    assert asked.system == model.requests[-2].system and asked.tools == model.requests[-2].tools
    ((outcome, original),) = await audited(deps)
    assert outcome == "false_refund" and "has been issued" in str(original)
    assert REPLIES_REPLACED.labels("repaired")._value.get() == before + 1


async def test_a_second_lie_gets_codes_answer_in_the_customers_language_with_every_item(deps: Deps) -> None:
    priya = await session_for(deps, Actor.customer("CUST-1003"))
    model = ScriptedModel(
        [
            reply(tool_use("lookup_order", order_id="ORD-6610")),
            reply(text("Su pedido ORD-6610 todavía no ha sido entregado.")),
            reply(text("Perdón: su pedido ORD-6610 se entregó ayer y costó 12,00 $.")),
        ]
    )
    events = await run(deps, priya, model, "Hola, ¿dónde está mi pedido ORD-6610? Todavía no lo tengo.")
    answer = said(events)
    assert answer.startswith(wording.CORRECTION["es"]["lead"])
    assert "El pedido ORD-6610 (Desk lamp y 2 × LED bulb, $68.00) se entregó el " in answer
    assert "todavía no" not in answer and "12,00" not in answer


async def test_no_second_answer_when_the_model_fails_or_asks_for_a_tool(deps: Deps, sarah: CallContext) -> None:
    def outage(request: ModelRequest) -> Any:
        raise ModelUnavailable("down")

    for second in (outage, reply(tool_use("lookup_order", order_id="ORD-8842"))):
        model = ScriptedModel([reply(text("A colleague will call you tomorrow.")), second])
        events = await run(deps, sarah, model, "is anyone looking at my blender?")
        assert said(events).startswith(wording.CORRECTION_LEAD) and "call you" not in said(events)
        assert len(model.requests) == 2  # asked once more, not again


async def test_a_person_asked_for_with_more_opens_the_ticket_and_the_model_answers_the_rest(
    deps: Deps, sarah: CallContext
) -> None:
    model = ScriptedModel([*LOOKED_UP, reply(text("Your blender (ORD-8842) has been delivered."))])
    events = await run(deps, sarah, model, "When was ORD-8842 delivered? And please transfer me to a human agent.")
    (escalation,) = [e for e in events if isinstance(e, Escalation)]
    assert escalation.priority == "P1" and escalation.reason == "human_request"
    assert said(events) == f"{wording.ESCALATED_HUMAN_ALSO}\n\nYour blender (ORD-8842) has been delivered."
    assert len(model.requests) == 3  # the model went on
    alone = await session_for(deps, Actor.customer("CUST-1001"))
    just_person = ScriptedModel([])
    only = await run(deps, alone, just_person, "Please transfer me to a human agent.")
    assert said(only) == wording.ESCALATED_HUMAN and not just_person.requests  # nothing else asked: no model
