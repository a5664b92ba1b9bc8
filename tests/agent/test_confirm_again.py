"""A refund still waiting for the customer's Confirm is offered again whenever it comes up: a turn
run again after a crash, or a second request, finds it prepared (REFUND_EXISTS) and the answer
carries the Confirm step, never a refund without a way to send it (seen 9 times in a 300-conversation
chaos soak before)."""

from __future__ import annotations

from agent.events import Confirmation, Event
from agent.loop import Agent
from agent.scripted import ScriptedModel, reply, text, tool_use
from desk import Desk
from desk.customer import turn_input
from tools.context import CallContext, Deps
from tools.toolbox import Toolbox


def refund_turn() -> list:
    return [
        reply(tool_use("lookup_order", order_id="ORD-8842")),
        reply(tool_use("process_refund", order_id="ORD-8842", amount=89.99, reason="arrived broken")),
    ]


async def events_of(desk: Desk, ctx: CallContext, said: str) -> list[Event]:
    return [e async for e in desk.say(ctx, said)]


async def test_a_refund_prepared_before_is_offered_for_confirmation_again(deps: Deps, sarah: CallContext) -> None:
    desk = Desk(Agent(model=ScriptedModel(refund_turn() + refund_turn()), toolbox=Toolbox(deps)))
    first = [
        e for e in await events_of(desk, sarah, "refund ORD-8842, it arrived broken") if isinstance(e, Confirmation)
    ]
    again = [e for e in await events_of(desk, sarah, "refund ORD-8842 please") if isinstance(e, Confirmation)]
    assert len(first) == len(again) == 1
    assert again[0].refund_id == first[0].refund_id and again[0].amount == "$89.99"


async def test_a_turn_run_again_after_a_crash_still_offers_the_confirm_step(deps: Deps, sarah: CallContext) -> None:
    agent = Agent(model=ScriptedModel(refund_turn() + [reply(text("Done, it's prepared."))] * 2), toolbox=Toolbox(deps))
    # the first attempt: the refund was prepared and the round stored, then the process died before
    # anything reached the outgoing log (the agent alone, without the desk that writes it)
    async with deps.store.read() as s:
        inp = await turn_input(s, deps, sarah, None, "refund ORD-8842, it arrived broken")
    _ = [e async for e in agent.run_turn(inp)]
    desk = Desk(agent)
    again = await events_of(desk, sarah, "refund ORD-8842, it arrived broken")  # the model only talks now
    (offered,) = [e for e in again if isinstance(e, Confirmation)]
    assert offered.amount == "$89.99" and offered.order_id == "ORD-8842"
    later = await events_of(desk, sarah, "thanks, anything else?")  # offered once: not on every turn
    assert not [e for e in later if isinstance(e, Confirmation)]
