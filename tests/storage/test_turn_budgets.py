"""What one turn costs the store, counted by the store's own counters (storage.metrics): the
statements and transactions of a scripted question turn and of a scripted refund turn through the
desk every face uses (the face's own queue and delivery rows come on top).

The budgets are what is measured now. A turn reads what it needs up front with the session row
(one read); each model round is one unit of work: its tools' reads and writes (the refund's
guard and insert, a savepoint of it) and its record (messages, usage, audit rows, each table one
executemany); the reply, the outcome, the token count and the outgoing rows are one write; the
guard reads in one transaction, only when it has something to look up. Issue 19's goals: a
question turn 2 + 1 transactions and 10 statements, a refund turn with four model calls 4 + 2 and
25. Before issue 19: 5 + 2 and 16 + 10 (56 statements); after its first part 1 + 2 (13) and 6 + 8
(54); then 1 + 1 (9) and 4 + 2 (43), then 38 (the order lookup loads its items in one SELECT, the
sanitizer's owner lookups and the claims check's session facts are one UNION each); now 35 (the
Confirm step is rendered from the stored row as its tool described it, and reads only the item's
name). The tools' own guard reads, about 20, are what is left over the goal. A change that adds a
round trip per message, per tool call or per model call fails here, not in production."""

from __future__ import annotations

from dataclasses import dataclass

from agent.loop import Agent
from agent.scripted import ScriptedModel, reply, text, tool_use
from desk import Desk
from storage import metrics
from tools.context import CallContext, Deps
from tools.toolbox import Toolbox


@dataclass(frozen=True)
class Cost:
    reads: int
    writes: int
    read_tx: int
    write_tx: int


def counted() -> Cost:
    def value(name: str, kind: str) -> int:
        return int(metrics.REGISTRY.get_sample_value(f"{name}_total", {"kind": kind}) or 0)

    return Cost(
        value("supportbot_db_statements", "read"),
        value("supportbot_db_statements", "write"),
        value("supportbot_db_transactions", "read"),
        value("supportbot_db_transactions", "write"),
    )


async def cost_of(desk: Desk, ctx: CallContext, said: str) -> Cost:
    before = counted()
    _ = [e async for e in desk.say(ctx, said)]
    after = counted()
    return Cost(*(a - b for a, b in zip(vars(after).values(), vars(before).values(), strict=True)))


async def test_a_question_turn_stays_within_its_store_budget(deps: Deps, sarah: CallContext) -> None:
    desk = Desk(Agent(model=ScriptedModel([reply(text("We answer from 9:00 to 18:00."))]), toolbox=Toolbox(deps)))
    cost = await cost_of(desk, sarah, "what are your support hours?")
    assert cost.writes > 0 and cost.reads > 0  # the counters count
    assert cost.write_tx <= 1 and cost.read_tx <= 3, cost  # the help-center search reads before the model call
    assert cost.reads + cost.writes <= 16, cost  # PostgreSQL reads the search in two more statements


async def test_a_refund_turn_stays_within_its_store_budget(deps: Deps, sarah: CallContext) -> None:
    model = ScriptedModel(
        [
            reply(tool_use("get_customer", email="sarah@example.com")),
            reply(tool_use("lookup_order", order_id="ORD-8842")),
            reply(tool_use("process_refund", order_id="ORD-8842", amount=89.99, reason="arrived broken")),
            reply(text("Your refund of $89.99 is ready: please confirm it.")),
        ]
    )
    desk = Desk(Agent(model=model, toolbox=Toolbox(deps)))
    cost = await cost_of(desk, sarah, "my blender ORD-8842 arrived broken, refund please")
    assert cost.write_tx <= 4 and cost.read_tx <= 2, cost
    assert cost.reads + cost.writes <= 35, cost
