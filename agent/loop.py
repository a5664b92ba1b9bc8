"""The agent loop: one customer message in, guarded tool calls and a safe reply out.

    classify ─▶ (P1 trigger: fixed reply, no model call)
       │
       ▼
    model ─▶ tool_use? ─▶ run each block through the Toolbox (retry a failing tool twice), all
       ▲                  results in one user message paired by id, escalations enforced in code
       └──────────────────┘   … until the model stops asking for tools (or a cap is hit)
       │
       ▼
    guard the text ─▶ Reply ─▶ record the session's outcome ─▶ Done

Knows nothing of Slack or the terminal: faces consume the events.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agent import citations, history, policy
from agent.events import Citation, Confirmation, Done, Error, Escalation, Event, Reply, Status, Usage
from agent.model import Model, ModelReply, ModelRequest, ModelUnavailable
from agent.prompts import session_note, system_prompt
from storage.models import ChatSession, Customer, Message, ModelCall, Order, Refund, Ticket
from storage.types import format_cents
from tools import wording
from tools.codes import Code, ToolFailure, ToolResult
from tools.context import CallContext
from tools.tickets import open_or_update
from tools.toolbox import Toolbox

log = logging.getLogger(__name__)

TOOL_ATTEMPTS = 3  # the first call and two retries
REFUSAL = "Sorry, that's not something I can help with here. Is there anything else about your order I can do?"
TRUNCATED = "Sorry, I lost my train of thought there. Could you say that again?"


@dataclass
class _Turn:
    started: float = field(default_factory=time.perf_counter)
    calls: int = 0
    model_s: float = 0.0
    usage: Usage = field(default_factory=Usage)
    codes: list[Code] = field(default_factory=list)
    rows: list[Message] = field(default_factory=list)
    note: str = ""  # the session note (who the customer is), read once per turn
    tokens_before: int = 0  # the session's tokens before this turn
    pending: list[ModelCall] = field(default_factory=list)  # usage rows written with the next message
    sources: citations.TurnSources = field(default_factory=citations.TurnSources)  # what searches returned
    cited: tuple[Citation, ...] = ()


class Agent:
    def __init__(self, *, model: Model, toolbox: Toolbox) -> None:
        self.model = model
        self.toolbox = toolbox
        self.deps = toolbox.deps
        self.system = system_prompt(self.deps.settings)
        self.tools = toolbox.schemas()

    # --- the turn --------------------------------------------------------------------------------------
    async def run_turn(self, ctx: CallContext, text: str) -> AsyncIterator[Event]:
        settings = self.deps.settings
        text = text.replace("\x00", "")
        turn = _Turn(sources=citations.TurnSources(started=self.deps.clock.now()))
        await self._start(turn, ctx)
        await self._remember(turn, ctx, "user", [{"type": "text", "text": text}], customer_text=True)

        trigger = policy.classify(text)
        if trigger is not None:
            yield await self._escalate(ctx, trigger.priority, trigger.reason, f"Customer wrote: {text[:500]}")
            fixed = wording.ESCALATED_HUMAN if trigger.reason == "human_request" else wording.ESCALATED_LEGAL
            async for event in self._reply(turn, ctx, fixed, guarded=True):
                yield event
            return

        reply: str | None = None
        while reply is None:
            if turn.tokens_before + turn.usage.total >= settings.session_token_budget:
                yield Error("token_budget")
                yield await self._escalate(ctx, "P2", "token_budget", "The session used up its token budget.")
                reply = wording.TURN_LIMIT
                break
            if turn.calls >= settings.max_model_calls_per_turn:
                yield Error("turn_limit")
                yield await self._escalate(ctx, "P2", "turn_limit", f"No answer after {turn.calls} model calls.")
                reply = wording.TURN_LIMIT
                break
            try:
                resp = await self._call_model(turn, ctx)
            except ModelUnavailable as exc:
                log.warning("session %s: %s", ctx.session_id, exc)
                yield Error("model_unavailable")
                yield await self._escalate(
                    ctx, "P2", "model_failure", f"Model unavailable; customer wrote: {text[:500]}"
                )
                reply = wording.MODEL_OUTAGE
                break
            if resp.stop_reason == "tool_use" and resp.tool_uses:
                await self._remember(turn, ctx, "assistant", resp.content)
                results = []
                for block in resp.tool_uses:
                    yield Status(self.toolbox.activity(str(block.get("name"))))
                    async for item in self._run_tool(turn, ctx, block):
                        if isinstance(item, dict):
                            results.append(item)
                        else:
                            yield item
                await self._remember(turn, ctx, "user", results)
            elif resp.stop_reason == "pause_turn":
                kept = [b for b in resp.content if b.get("type") == "text"]
                if kept:
                    await self._remember(turn, ctx, "assistant", kept)
            elif resp.stop_reason == "refusal":
                yield Error("refusal")
                reply = REFUSAL
            elif resp.stop_reason == "model_context_window_exceeded":
                yield Error("context_exceeded")
                yield await self._escalate(ctx, "P2", "turn_limit", "The conversation outgrew the model's context.")
                reply = wording.TURN_LIMIT
            else:  # end_turn, stop_sequence, max_tokens (a truncated tool_use is never run)
                reply = resp.text or TRUNCATED
        async for event in self._reply(turn, ctx, reply, guarded=False):
            yield event

    async def _reply(self, turn: _Turn, ctx: CallContext, text: str, *, guarded: bool) -> AsyncIterator[Event]:
        if not guarded:
            text = await policy.guard(text, store=self.deps.store, customer_id=ctx.actor.customer_id)
            text, turn.cited = citations.check(text, turn.sources)
        await self._remember(turn, ctx, "assistant", [{"type": "text", "text": text}])
        yield Reply(text, turn.cited)
        clarification, done = await self._finish(turn, ctx, text)
        if clarification is not None:
            yield clarification
        yield done

    async def _start(self, turn: _Turn, ctx: CallContext) -> None:
        """Everything a turn reads up front, in one transaction: history, token count, the session note."""
        async with self.deps.store.read() as s:
            turn.rows = list(
                (
                    await s.scalars(select(Message).where(Message.session_id == ctx.session_id).order_by(Message.id))
                ).all()
            )
            turn.tokens_before = int(
                await s.scalar(select(ChatSession.tokens_used).where(ChatSession.id == ctx.session_id)) or 0
            )
            cust = await s.get(Customer, ctx.actor.customer_id) if ctx.actor.customer_id else None
        if ctx.actor.kind == "staff":
            turn.note = session_note(verified_name=None, verified_email=None, staff_id=ctx.actor.staff_id)
        else:
            turn.note = session_note(
                verified_name=cust.name if cust else None, verified_email=cust.email if cust else None
            )

    # --- model -----------------------------------------------------------------------------------------
    async def _call_model(self, turn: _Turn, ctx: CallContext) -> ModelReply:
        rows = history.trim(turn.rows, self.deps.settings.history_token_budget)
        messages = history.to_messages(rows)
        messages[0]["content"].insert(0, {"type": "text", "text": turn.note})
        request = ModelRequest(
            system=self.system, tools=self.tools, messages=messages, max_tokens=self.deps.settings.anthropic_max_tokens
        )
        turn.calls += 1
        started = time.perf_counter()
        try:
            resp = await self.model.complete(request)
        finally:
            turn.model_s += time.perf_counter() - started
        latency_ms = int((time.perf_counter() - started) * 1000)
        turn.usage += resp.usage
        turn.pending.append(
            ModelCall(
                session_id=ctx.session_id,
                model=(resp.model or self.model.name)[:64],
                stop_reason=resp.stop_reason,
                input_tokens=resp.usage.input_tokens,
                cache_read_tokens=resp.usage.cache_read_tokens,
                cache_write_tokens=resp.usage.cache_write_tokens,
                output_tokens=resp.usage.output_tokens,
                latency_ms=latency_ms,
                created_at=self.deps.clock.now(),
            )
        )
        return resp

    # --- tools -----------------------------------------------------------------------------------------
    async def _run_tool(self, turn: _Turn, ctx: CallContext, block: dict[str, Any]) -> AsyncIterator[Any]:
        """Yields events, then the tool_result block (a dict) last."""
        name, args = str(block.get("name")), block.get("input")
        result: ToolResult | None = None
        for attempt in range(1, TOOL_ATTEMPTS + 1):
            try:
                result = await self.toolbox.call(name, args, ctx)
                break
            except ToolFailure as exc:
                log.warning("tool %s failed (attempt %d/%d)", name, attempt, TOOL_ATTEMPTS, exc_info=exc.cause)
        if result is None:
            yield Error("tool_failure")
            yield await self._escalate(
                ctx, "P2", "tool_failure", f"{name} kept failing after {TOOL_ATTEMPTS} attempts."
            )
            yield _tool_result(
                block,
                {
                    "outcome": "error",
                    "note": "This system is unavailable right now. A person "
                    "has been asked to help; tell the customer so.",
                },
                error=True,
            )
            return
        turn.codes.append(result.code)
        turn.sources.add(name, result)
        rule = policy.escalation_for(result.code)
        if rule is not None and rule.already_ticketed:
            async with self.deps.store.read() as s:
                ticket = await s.get(Ticket, int(result.data["ticket_id"]))
            priority = ticket.priority if ticket else rule.priority
            yield Escalation(
                int(result.data["ticket_id"]), priority, rule.reason, bool(result.data.get("ticket_created"))
            )
        elif rule is not None:
            summary = f"{name} was refused ({result.code.value}) for input {json.dumps(args)[:300]}"
            yield await self._escalate(ctx, rule.priority, rule.reason, summary)
        if result.code in (Code.TICKET_OPENED, Code.TICKET_UPDATED):
            yield Escalation(
                int(result.data["ticket_id"]),
                str(result.data["priority"]),
                "requested_by_model",
                created=result.code is Code.TICKET_OPENED,
            )
        if result.code is Code.AWAITING_CONFIRMATION:
            yield await self._confirmation(str(result.data["refund_id"]))
        yield _tool_result(block, result.for_model(), error=not result.ok)

    async def _confirmation(self, refund_id: str) -> Confirmation:
        async with self.deps.store.read() as s:
            refund = await s.get(Refund, refund_id)
            assert refund is not None
            order = (await s.scalars(select(Order).where(Order.id == refund.order_id))).one()
            await s.refresh(order, ["items"])
            item = order.items[0].name if order.items else "your order"
        amount = format_cents(refund.amount_cents, refund.currency)
        return Confirmation(
            refund_id=refund.id,
            order_id=order.id,
            item=item,
            amount=amount,
            text=wording.refund_confirm_prompt(order_id=order.id, item=item, amount=amount),
        )

    # --- escalation and outcome ------------------------------------------------------------------------
    async def _escalate(self, ctx: CallContext, priority: str, reason: str, summary: str) -> Escalation:
        async with self.deps.store.write() as s:
            ticket, created = await open_or_update(
                s,
                self.deps,
                session_id=ctx.session_id,
                priority=priority,
                reason=reason,
                summary=summary,
                customer_id=ctx.actor.customer_id,
            )
        return Escalation(ticket.id, ticket.priority, reason, created)

    async def _finish(self, turn: _Turn, ctx: CallContext, reply: str) -> tuple[Escalation | None, Done]:
        """The clarification rule and the session's outcome, in one transaction."""
        failed = policy.is_failed_round(turn.codes)
        succeeded = any(
            c in (Code.OK, Code.AWAITING_CONFIRMATION, Code.REFUND_PROCESSED, Code.REFUND_EXISTS) for c in turn.codes
        )
        escalation = None
        async with self.deps.store.write() as s:
            session = await s.get(ChatSession, ctx.session_id)
            assert session is not None
            if failed:
                session.failed_rounds += 1
            elif succeeded:
                session.failed_rounds = 0
            if failed and session.failed_rounds >= policy.CLARIFICATION_ROUNDS:
                ticket, created = await open_or_update(
                    s,
                    self.deps,
                    session_id=ctx.session_id,
                    priority="P3",
                    reason="clarification",
                    summary=f"The bot could not get what it needed in {session.failed_rounds} consecutive turns.",
                    customer_id=ctx.actor.customer_id,
                )
                escalation = Escalation(ticket.id, ticket.priority, "clarification", created)
            await citations.record(s, session_id=ctx.session_id, sources=turn.sources, cited=turn.cited)
            outcome, priority = await self._settle_in(s, ctx, last_reply=reply, count_turn=True)
        return escalation, Done(
            outcome=outcome,
            priority=priority,
            model_calls=turn.calls,
            usage=turn.usage,
            turn_s=time.perf_counter() - turn.started,
            model_s=turn.model_s,
            tools=dict(Counter(c.value for c in turn.codes)),
        )

    async def settle(
        self, ctx: CallContext, *, last_reply: str = "", count_turn: bool = False
    ) -> tuple[str, str | None]:
        """Record the session's outcome from the store: an unresolved ticket means escalated; a
        refund awaiting confirmation, or a question just asked, means awaiting_customer."""
        async with self.deps.store.write() as s:
            return await self._settle_in(s, ctx, last_reply=last_reply, count_turn=count_turn)

    async def _settle_in(
        self, s: AsyncSession, ctx: CallContext, *, last_reply: str, count_turn: bool
    ) -> tuple[str, str | None]:
        ticket = (
            await s.scalars(
                select(Ticket).where(Ticket.session_id == ctx.session_id, Ticket.status != "resolved").limit(1)
            )
        ).one_or_none()
        waiting = await s.scalar(
            select(Refund.id)
            .where(Refund.session_id == ctx.session_id, Refund.status == "awaiting_confirmation")
            .limit(1)
        )
        if ticket is not None:
            outcome, priority = "escalated", ticket.priority
        elif waiting is not None or last_reply.rstrip().endswith("?"):
            outcome, priority = "awaiting_customer", None
        else:
            outcome, priority = "auto_resolved", None
        values: dict[str, Any] = {"outcome": outcome, "outcome_priority": priority, "updated_at": self.deps.clock.now()}
        if count_turn:
            values["turns"] = ChatSession.turns + 1
        await s.execute(update(ChatSession).where(ChatSession.id == ctx.session_id).values(**values))
        return outcome, priority

    async def _remember(
        self, turn: _Turn, ctx: CallContext, role: str, content: list[dict[str, Any]], *, customer_text: bool = False
    ) -> None:
        """Persist a message, with the usage of the model calls since the last one, in one transaction."""
        row = Message(
            session_id=ctx.session_id,
            role=role,
            content=content,
            is_customer_text=customer_text,
            tokens_est=history.estimate_tokens(content),
            created_at=self.deps.clock.now(),
        )
        calls, turn.pending = turn.pending, []
        async with self.deps.store.write() as s:
            s.add(row)
            s.add_all(calls)
            if calls:
                await s.execute(
                    update(ChatSession)
                    .where(ChatSession.id == ctx.session_id)
                    .values(
                        tokens_used=ChatSession.tokens_used
                        + sum(
                            c.input_tokens + c.cache_read_tokens + c.cache_write_tokens + c.output_tokens for c in calls
                        )
                    )
                )
        turn.rows.append(row)


def _tool_result(block: dict[str, Any], payload: dict[str, Any], *, error: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "tool_result", "tool_use_id": block.get("id"), "content": json.dumps(payload)}
    if error:
        out["is_error"] = True
    return out
