"""The loop with scripted models: stop reasons, caps, retries, escalations, persistence."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from sqlalchemy import text as sql

from agent.errors import ModelUnavailable
from agent.events import Confirmation, Done, Error, Escalation, Event, Reply, Status
from agent.loop import Agent
from agent.model import ModelRequest
from agent.scripted import ScriptedModel, reply, text, tool_use
from desk import Desk
from tools import wording
from tools.codes import Code
from tools.context import CallContext, Deps
from tools.toolbox import Toolbox
from tools.wording import ESCALATED_HUMAN, MODEL_OUTAGE, NOT_FOUND_ORDER, TURN_LIMIT


async def run(agent: Agent, ctx: CallContext, message: str) -> list[Event]:
    return [e async for e in Desk(agent).say(ctx, message)]


def replies(events: list[Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, Reply)]


def done(events: list[Event]) -> Done:
    last = events[-1]
    assert isinstance(last, Done)
    return last


async def q(deps: Deps, query: str) -> list[tuple[Any, ...]]:
    async with deps.store.read() as s:
        return [tuple(r) for r in (await s.execute(sql(query))).all()]


def happy_path() -> ScriptedModel:
    return ScriptedModel(
        [
            reply(tool_use("get_customer", email="sarah@example.com")),
            reply(text("Let me check."), tool_use("lookup_order", order_id="ORD-8842")),
            reply(tool_use("process_refund", order_id="ORD-8842", amount=89.99, reason="arrived broken")),
        ]
    )


async def test_happy_path_to_confirmation(deps: Deps, sarah: CallContext) -> None:
    model = happy_path()
    events = await run(Agent(model=model, toolbox=Toolbox(deps)), sarah, "My blender ORD-8842 arrived broken")
    kinds = [e.kind for e in events]
    assert kinds == ["status", "status", "status", "confirmation", "done"]  # the Confirm step is the message
    assert [e.text for e in events if isinstance(e, Status)] == [
        "Checking your account",
        "Looking up your order",
        "Preparing your refund",
    ]
    conf = next(e for e in events if isinstance(e, Confirmation))
    assert conf.order_id == "ORD-8842" and conf.amount == "$89.99" and conf.item == "ProBlend 500 blender"
    assert done(events).outcome == "awaiting_customer" and done(events).model_calls == 3  # none to re-word it
    # tool results were paired by id in one user message after each tool_use
    last = model.requests[-1].messages
    for i, m in enumerate(last):
        for b in m["content"]:
            if b.get("type") == "tool_use":
                assert last[i + 1]["content"][0]["tool_use_id"] == b["id"]
    assert await q(deps, "SELECT status FROM refunds") == [("awaiting_confirmation",)]
    assert await q(deps, "SELECT count(*) FROM model_calls") == [(3,)]
    assert await q(deps, f"SELECT outcome FROM sessions WHERE id = '{sarah.session_id}'") == [("awaiting_customer",)]


async def test_parallel_tool_use_results_in_one_message(deps: Deps, sarah: CallContext) -> None:
    model = ScriptedModel(
        [
            reply(tool_use("lookup_order", order_id="ORD-8842"), tool_use("lookup_order", order_id="ORD-7710")),
            reply(text("Both found.")),
        ]
    )
    await run(Agent(model=model, toolbox=Toolbox(deps)), sarah, "two orders: ORD-8842 and ORD-7710")
    msgs = model.requests[1].messages
    assert [b["type"] for b in msgs[-1]["content"]] == ["tool_result", "tool_result"]
    uses = [b["id"] for b in msgs[-2]["content"] if b["type"] == "tool_use"]
    assert [b["tool_use_id"] for b in msgs[-1]["content"]] == uses


async def test_trigger_words_escalate_p1_without_calling_the_model(deps: Deps, sarah: CallContext) -> None:
    model = ScriptedModel([])
    events = await run(Agent(model=model, toolbox=Toolbox(deps)), sarah, "I want to talk to a human now")
    assert model.requests == []
    esc = next(e for e in events if isinstance(e, Escalation))
    assert (esc.priority, esc.reason) == ("P1", "human_request")
    assert replies(events) == [ESCALATED_HUMAN]
    assert done(events).outcome == "escalated"
    assert await q(deps, "SELECT priority, reason, status FROM tickets") == [("P1", "human_request", "open")]


async def test_max_tokens_never_runs_a_truncated_tool_use(deps: Deps, sarah: CallContext) -> None:
    model = ScriptedModel(
        [
            reply(
                text("Refunding now"),
                tool_use("process_refund", order_id="ORD-8842", amount=89.99, reason="x"),
                stop="max_tokens",
            ),
        ]
    )
    events = await run(Agent(model=model, toolbox=Toolbox(deps)), sarah, "refund ORD-8842")
    assert replies(events) == ["Refunding now"]
    assert await q(deps, "SELECT count(*) FROM audit_log") == [(0,)]
    assert await q(deps, "SELECT count(*) FROM refunds") == [(0,)]


async def test_pause_turn_continues_and_refusal_is_polite(deps: Deps, sarah: CallContext) -> None:
    model = ScriptedModel([reply(text("thinking"), stop="pause_turn"), reply(text("All good."))])
    events = await run(Agent(model=model, toolbox=Toolbox(deps)), sarah, "hi")
    assert replies(events) == ["All good."] and len(model.requests) == 2
    model = ScriptedModel([reply(text("I won't"), stop="refusal")])
    events = await run(Agent(model=model, toolbox=Toolbox(deps)), sarah, "hi again")
    assert any(isinstance(e, Error) and e.what == "refusal" for e in events)
    assert "I won't" not in replies(events)[0]


async def test_context_window_exceeded_escalates(deps: Deps, sarah: CallContext) -> None:
    model = ScriptedModel([reply(text(""), stop="model_context_window_exceeded")])
    events = await run(Agent(model=model, toolbox=Toolbox(deps)), sarah, "hi")
    assert replies(events) == [TURN_LIMIT] and done(events).priority == "P2"


async def test_model_call_cap_escalates_p2(deps: Deps, sarah: CallContext) -> None:
    loop_forever = [reply(tool_use("get_customer", email="sarah@example.com")) for _ in range(20)]
    model = ScriptedModel(loop_forever)
    events = await run(Agent(model=model, toolbox=Toolbox(deps)), sarah, "hello")
    assert len(model.requests) == deps.settings.max_model_calls_per_turn == 8
    assert replies(events) == [TURN_LIMIT]
    assert await q(deps, "SELECT priority, reason FROM tickets") == [("P2", "turn_limit")]


async def test_token_budget_escalates_p2(deps: Deps, sarah: CallContext) -> None:
    deps = dataclasses.replace(deps, settings=deps.settings.model_copy(update={"session_token_budget": 1000}))
    heavy = dataclasses.replace(reply(text("ok")), usage=dataclasses.replace(reply(text("x")).usage, input_tokens=999))
    model = ScriptedModel([heavy, reply(text("never"))])
    agent = Agent(model=model, toolbox=Toolbox(deps))
    assert replies(await run(agent, sarah, "first")) == ["ok"]
    events = await run(agent, sarah, "second")
    assert replies(events) == [TURN_LIMIT] and len(model.requests) == 1
    assert await q(deps, "SELECT reason FROM tickets") == [("token_budget",)]


class Unavailable:
    name = "down"

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, request: ModelRequest) -> Any:
        self.calls += 1
        raise ModelUnavailable("529 overloaded")


async def test_model_outage_apologises_escalates_and_keeps_the_message(deps: Deps, sarah: CallContext) -> None:
    events = await run(Agent(model=Unavailable(), toolbox=Toolbox(deps)), sarah, "where is ORD-8842?")
    assert replies(events) == [MODEL_OUTAGE]
    assert await q(deps, "SELECT priority, reason FROM tickets") == [("P2", "model_failure")]
    stored = await q(deps, "SELECT role, content FROM messages ORDER BY id")
    assert stored[0][0] == "user" and "where is ORD-8842?" in str(stored[0][1])


async def test_tool_failing_after_two_retries_escalates_p2(deps: Deps, sarah: CallContext) -> None:
    attempts = 0
    box = Toolbox(deps)
    real_call = box.call

    async def failing(name: str, raw: Any, ctx: CallContext, **_: Any) -> Any:
        nonlocal attempts
        if name == "lookup_order":
            attempts += 1
            from tools.codes import ToolFailure

            raise ToolFailure(name, ConnectionError("db down"))
        return await real_call(name, raw, ctx)

    box.call = failing  # type: ignore[method-assign]
    model = ScriptedModel([reply(tool_use("lookup_order", order_id="ORD-8842")), reply(text("Sorry about that."))])
    events = await run(Agent(model=model, toolbox=box), sarah, "ORD-8842?")
    assert attempts == 3
    result = model.requests[1].messages[-1]["content"][0]
    assert result["is_error"] is True and "db down" not in result["content"]
    assert any(isinstance(e, Escalation) and e.reason == "tool_failure" for e in events)
    assert await q(deps, "SELECT priority, reason FROM tickets") == [("P2", "tool_failure")]


async def test_tool_recovering_on_retry_is_not_escalated(deps: Deps, sarah: CallContext) -> None:
    attempts = 0
    box = Toolbox(deps)
    real_call = box.call

    async def flaky(name: str, raw: Any, ctx: CallContext, **kw: Any) -> Any:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            from tools.codes import ToolFailure

            raise ToolFailure(name, ConnectionError("blip"))
        return await real_call(name, raw, ctx, **kw)

    box.call = flaky  # type: ignore[method-assign]
    model = ScriptedModel([reply(tool_use("lookup_order", order_id="ORD-8842")), reply(text("Found it."))])
    events = await run(Agent(model=model, toolbox=box), sarah, "ORD-8842?")
    assert replies(events) == ["Found it."] and attempts == 2
    assert await q(deps, "SELECT count(*) FROM tickets") == [(0,)]


async def test_ownership_and_identity_mismatch_escalate_p1(deps: Deps, sarah: CallContext) -> None:
    model = ScriptedModel(
        [
            reply(tool_use("lookup_order", order_id="ORD-5501")),
            reply(tool_use("process_refund", order_id="ORD-5501", amount=129, reason="x")),
            reply(text("Refunded.")),
        ]
    )
    events = await run(Agent(model=model, toolbox=Toolbox(deps)), sarah, "status of ORD-5501?")
    # the mismatch ends the turn at once: the model is not called again, the customer reads only the
    # fixed reply, byte for byte what an unknown order reads
    assert replies(events) == [NOT_FOUND_ORDER] and len(model.requests) == 1
    unknown = ScriptedModel([reply(tool_use("lookup_order", order_id="ORD-0000"))])
    assert replies(await run(Agent(model=unknown, toolbox=Toolbox(deps)), sarah, "ORD-0000?")) == [NOT_FOUND_ORDER]
    assert await q(deps, "SELECT priority, reason FROM tickets") == [("P1", "security")]
    model = ScriptedModel([reply(tool_use("get_customer", email="james@example.com")), reply(text("Hmm."))])
    await run(Agent(model=model, toolbox=Toolbox(deps)), sarah, "I'm james@example.com")
    # the identity mismatch is its own, visible ticket: never folded into the hidden security one
    assert await q(deps, "SELECT priority, reason FROM tickets ORDER BY id") == [("P1", "security"), ("P1", "identity")]


async def test_two_failed_rounds_escalate_p3(deps: Deps, sarah: CallContext) -> None:
    model = ScriptedModel(
        [reply(tool_use("lookup_order", order_id="ORD-1111")), reply(tool_use("lookup_order", order_id="ORD-2222"))]
    )
    agent = Agent(model=model, toolbox=Toolbox(deps))
    first = await run(agent, sarah, "ORD-1111")
    assert not any(isinstance(e, Escalation) for e in first)
    second = await run(agent, sarah, "ORD-2222")
    esc = [e for e in second if isinstance(e, Escalation)]
    assert [(e.priority, e.reason) for e in esc] == [("P3", "clarification")]
    assert done(second).outcome == "escalated"


async def test_a_success_resets_the_clarification_count(deps: Deps, sarah: CallContext) -> None:
    model = ScriptedModel(
        [
            reply(tool_use("lookup_order", order_id="ORD-1111")),
            reply(text("Not found?")),
            reply(tool_use("lookup_order", order_id="ORD-8842")),
            reply(text("Found it.")),
            reply(tool_use("lookup_order", order_id="ORD-3333")),
            reply(text("Not found?")),
        ]
    )
    agent = Agent(model=model, toolbox=Toolbox(deps))
    for msg in ("ORD-1111", "ORD-8842", "ORD-3333"):
        await run(agent, sarah, msg)
    assert await q(deps, "SELECT count(*) FROM tickets") == [(0,)]


async def test_history_survives_a_restart(deps: Deps, sarah: CallContext) -> None:
    await run(Agent(model=happy_path(), toolbox=Toolbox(deps)), sarah, "My blender ORD-8842 arrived broken")
    fresh = ScriptedModel([reply(text("Anything else?"))])
    await run(Agent(model=fresh, toolbox=Toolbox(deps)), sarah, "also, the box was dented")  # a new process
    sent = fresh.requests[0].messages
    flat = json.dumps(sent)
    assert "My blender ORD-8842 arrived broken" in flat and "process_refund" in flat
    assert sent[0]["content"][0]["text"].startswith("[Session note] The customer is verified as Sarah Chen")
    assert sent[-1]["content"][-1]["text"] == "also, the box was dented"


async def test_history_is_trimmed_at_customer_messages(deps: Deps, sarah: CallContext) -> None:
    deps = dataclasses.replace(deps, settings=deps.settings.model_copy(update={"history_token_budget": 500}))
    model = ScriptedModel([])
    agent = Agent(model=model, toolbox=Toolbox(deps))
    for i in range(12):
        model.steps += [reply(tool_use("lookup_order", order_id="ORD-8842")), reply(text(f"answer {i} " * 20))]
        await run(agent, sarah, f"question {i} " * 20)
    sent = model.requests[-1].messages
    assert sent[0]["role"] == "user"
    flat = json.dumps(sent)
    assert "question 11" in flat and "question 0 " not in flat
    ids_used = {b["id"] for m in sent for b in m["content"] if b.get("type") == "tool_use"}
    ids_answered = {b["tool_use_id"] for m in sent for b in m["content"] if b.get("type") == "tool_result"}
    assert ids_used == ids_answered


async def test_escalate_tool_opens_one_ticket_per_session(deps: Deps, sarah: CallContext) -> None:
    model = ScriptedModel(
        [
            reply(tool_use("escalate_to_human", reason="other", priority="P3", summary="needs help")),
            reply(tool_use("escalate_to_human", reason="other", priority="P2", summary="more")),
        ]
    )
    agent = Agent(model=model, toolbox=Toolbox(deps))
    await run(agent, sarah, "something odd")
    events = await run(agent, sarah, "again")
    assert [e.created for e in events if isinstance(e, Escalation)] == [False]
    assert await q(deps, "SELECT priority FROM tickets") == [("P2",)]
    assert Code.TICKET_UPDATED.value in str(done(events).tools)


async def test_the_models_words_before_its_call_lead_the_confirm_step(deps: Deps, sarah: CallContext) -> None:
    model = ScriptedModel(
        [
            reply(tool_use("lookup_order", order_id="ORD-8842")),
            reply(
                text("I'm sorry it arrived broken."),
                tool_use("process_refund", order_id="ORD-8842", amount=89.99, reason="arrived broken"),
            ),
        ]
    )
    events = await run(Agent(model=model, toolbox=Toolbox(deps)), sarah, "My blender ORD-8842 arrived broken")
    assert [e.text for e in events if isinstance(e, Reply)] == ["I'm sorry it arrived broken."]
    assert [e.kind for e in events][-3:] == ["confirmation", "reply", "done"] and done(events).model_calls == 2


async def test_a_handoff_alone_ends_the_turn_in_the_codes_words(deps: Deps, sarah: CallContext) -> None:
    model = ScriptedModel(
        [reply(tool_use("escalate_to_human", reason="other", priority="P3", summary="Wants a custom engraving."))]
    )
    events = await run(Agent(model=model, toolbox=Toolbox(deps)), sarah, "can you engrave my kettle?")
    assert replies(events) == [wording.ESCALATED_GENERIC] and done(events).model_calls == 1
    assert done(events).outcome == "escalated"


async def test_a_person_asked_for_with_a_refund_keeps_its_notice_before_the_confirm_step(
    deps: Deps, sarah: CallContext
) -> None:
    model = ScriptedModel(
        [
            reply(tool_use("lookup_order", order_id="ORD-8842")),
            reply(tool_use("process_refund", order_id="ORD-8842", amount=89.99, reason="arrived broken")),
        ]
    )
    said = "My blender ORD-8842 arrived broken, please refund it. I also want to talk to a person."
    events = await run(Agent(model=model, toolbox=Toolbox(deps)), sarah, said)
    assert replies(events) == [wording.ESCALATED_HUMAN_ALSO]  # said first, though the code ends the turn
    assert [e for e in events if isinstance(e, Confirmation)] and done(events).outcome == "escalated"
