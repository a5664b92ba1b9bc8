"""Only an unambiguous yes moves money: "ok", "sure" or "ok thanks" while a refund waits for the
customer is asked again, and nothing moves until they say yes (or no)."""

from __future__ import annotations

import pytest
from sqlalchemy import text as sql

from agent.events import Confirmation, Reply
from agent.loop import Agent
from agent.offline import OfflineModel
from desk import Desk
from tools.context import CallContext, Deps
from tools.toolbox import Toolbox


async def said(desk: Desk, ctx: CallContext, message: str) -> list[object]:
    return [e async for e in desk.say(ctx, message)]


async def refund_status(deps: Deps) -> list[str]:
    async with deps.store.read() as s:
        return [r[0] for r in (await s.execute(sql("SELECT status FROM refunds WHERE order_id = 'ORD-8842'"))).all()]


@pytest.mark.parametrize("unclear", ["ok", "sure", "ok thanks", "Okay!"])
async def test_an_agreeable_word_is_asked_again_and_moves_nothing(deps: Deps, sarah: CallContext, unclear: str) -> None:
    desk = Desk(Agent(model=OfflineModel(), toolbox=Toolbox(deps)))
    first = await said(desk, sarah, "My blender ORD-8842 arrived broken, I'd like a refund")
    assert [e for e in first if isinstance(e, Confirmation)]
    again = await said(desk, sarah, unclear)
    (reply,) = [e for e in again if isinstance(e, Reply)]
    assert "reply yes to send it" in reply.text and "$89.99" in reply.text
    assert await refund_status(deps) == ["awaiting_confirmation"]
    await said(desk, sarah, "yes")
    assert await refund_status(deps) == ["processed"]


async def test_ok_with_nothing_waiting_is_an_ordinary_message(deps: Deps, sarah: CallContext) -> None:
    desk = Desk(Agent(model=OfflineModel(), toolbox=Toolbox(deps)))
    events = await said(desk, sarah, "ok")
    (reply,) = [e for e in events if isinstance(e, Reply)]
    assert "reply yes" not in reply.text
    assert await refund_status(deps) == []
