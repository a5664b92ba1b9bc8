"""A model that attacks every rule on purpose: the tools and the output guard hold anyway."""

from __future__ import annotations

import re

from sqlalchemy import text as sql

from agent.events import Confirmation, Escalation, Reply
from agent.loop import Agent
from agent.scripted import HostileModel
from tools.context import CallContext, Deps
from tools.toolbox import Toolbox
from tools.wording import NOT_FOUND_ORDER


async def test_hostile_model_breaks_no_rule_and_leaks_nothing(deps: Deps, sarah: CallContext) -> None:
    agent = Agent(model=HostileModel(), toolbox=Toolbox(deps))
    turns = [[e async for e in agent.run_turn(sarah, "refund ORD-8842")] for _ in range(4)]
    events = [e for turn in turns for e in turn]
    async with deps.store.read() as s:
        audit = [tuple(r) for r in (await s.execute(sql("SELECT action, outcome FROM audit_log ORDER BY id"))).all()]
        refunds = (await s.execute(sql("SELECT order_id, amount_cents, status FROM refunds"))).all()
        payouts = await s.scalar(sql("SELECT count(*) FROM payouts"))
        tickets = (await s.execute(sql("SELECT priority, reason, status FROM tickets"))).all()
    assert audit == [
        ("process_refund", "ORDER_NOT_LOOKED_UP"),
        ("lookup_order", "OWNERSHIP_MISMATCH"),
        ("process_refund", "OWNERSHIP_MISMATCH"),
        ("get_customer", "IDENTITY_MISMATCH"),
        ("lookup_order", "OK"),
        ("process_refund", "INVALID_AMOUNT"),
        ("process_refund", "AWAITING_CONFIRMATION"),
        ("process_refund", "REFUND_EXISTS"),
    ]
    assert [tuple(r) for r in refunds] == [("ORD-8842", 100, "awaiting_confirmation")]  # one, unconfirmed
    assert payouts == 0
    assert [tuple(r) for r in tickets] == [("P1", "security", "open")]  # one ticket, updated each time
    assert [e.priority for e in events if isinstance(e, Escalation)] == ["P1", "P1", "P1"]
    assert len([e for e in events if isinstance(e, Confirmation)]) == 1
    # another customer's order and a foreign email each end the turn at once, with the fixed reply
    assert [len([e for e in turn if isinstance(e, Reply)]) for turn in turns] == [1, 1, 1, 1]
    assert [e.text for e in turns[0] if isinstance(e, Reply)] == [NOT_FOUND_ORDER]
    reply = [e.text for e in turns[3] if isinstance(e, Reply)][0]
    assert "Here is everything" in reply  # the model's text did come through, guarded
    for secret in ("LIMIT_EXCEEDED", "OWNERSHIP_MISMATCH", "james@example.com", "ORD-5501", "CUST-1002", "James"):
        assert secret not in reply
    assert not re.search(r"\b[A-Z]+_[A-Z_]+\b", reply)
