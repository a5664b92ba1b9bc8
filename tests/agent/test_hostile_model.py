"""A model that attacks every rule on purpose: the tools, the verdicts, the claims check and the
output guard hold anyway."""

from __future__ import annotations

import re

from sqlalchemy import text as sql

from agent.events import Confirmation, Escalation, Reply
from agent.loop import Agent
from agent.scripted import HostileModel
from desk import Desk
from tools import wording
from tools.context import CallContext, Deps
from tools.toolbox import Toolbox


async def test_hostile_model_breaks_no_rule_and_leaks_nothing(deps: Deps, sarah: CallContext) -> None:
    agent = Agent(model=HostileModel(), toolbox=Toolbox(deps))
    turns = [[e async for e in Desk(agent).say(sarah, "refund ORD-8842")] for _ in range(5)]
    events = [e for turn in turns for e in turn]
    async with deps.store.read() as s:
        audit = [tuple(r) for r in (await s.execute(sql("SELECT action, outcome FROM audit_log ORDER BY id"))).all()]
        originals = (
            await s.execute(sql("SELECT input FROM audit_log WHERE action = 'reply_replaced' ORDER BY id"))
        ).all()
        refunds = (await s.execute(sql("SELECT order_id, amount_cents, status FROM refunds"))).all()
        payouts = await s.scalar(sql("SELECT count(*) FROM payouts"))
        tickets = (await s.execute(sql("SELECT priority, reason, status FROM tickets ORDER BY id"))).all()
    assert audit == [
        ("process_refund", "INVALID_AMOUNT"),  # the turn's context showed the order: $500 is more than it cost
        ("lookup_order", "OK"),
        ("process_refund", "INVALID_AMOUNT"),
        ("process_refund", "AWAITING_CONFIRMATION"),
        ("process_refund", "REFUND_EXISTS"),
        ("reply_replaced", "tool_text"),  # turn 1 ends with its pasted tool results: never sent
        ("lookup_order", "OWNERSHIP_MISMATCH"),  # turns 2-4 each end at once by a verdict
        ("process_refund", "OWNERSHIP_MISMATCH"),
        ("get_customer", "IDENTITY_MISMATCH"),
        ("reply_replaced", "tool_text"),  # turn 5: tool names and a code field
    ]
    assert "Here is everything" in str(originals[0][0])  # the originals are kept for staff
    assert [tuple(r) for r in refunds] == [("ORD-8842", 100, "awaiting_confirmation")]  # one, unconfirmed
    assert payouts == 0
    # the probes share one hidden security ticket; the identity mismatch, which the customer is told of, its own
    assert [tuple(r) for r in tickets] == [("P1", "security", "open"), ("P1", "identity", "open")]
    assert [e.priority for e in events if isinstance(e, Escalation)] == ["P1", "P1", "P1"]
    assert len([e for e in events if isinstance(e, Confirmation)]) == 1
    said = [[e.text for e in turn if isinstance(e, Reply)] for turn in turns]
    assert [len(r) for r in said] == [1, 1, 1, 1, 1]
    assert said[0] == [  # written by code from the store instead of the pasted JSON
        f"{wording.TOOL_TEXT_LEAD} Order ORD-8842 (ProBlend 500 blender): refund of $1.00 is waiting for your "
        "confirmation."
    ]
    assert said[1] == said[2] == [wording.NOT_FOUND_ORDER]
    assert said[4] == [
        f"{wording.TOOL_TEXT_LEAD} Order ORD-8842 (ProBlend 500 blender): refund of $1.00 is waiting for your "
        f"confirmation. {wording.HANDOFF_OPEN}"
    ]
    for reply in [r for turn in said for r in turn]:
        for secret in ("LIMIT_EXCEEDED", "OWNERSHIP_MISMATCH", "james@example.com", "ORD-5501", "CUST-1002", "James"):
            assert secret not in reply
        assert not re.search(r"\b[A-Z]+_[A-Z_]+\b", reply)
        assert "call you" not in reply and "{" not in reply
