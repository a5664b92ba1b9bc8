"""The agent loop: one customer message in, guarded tool calls and a safe reply out.

    classify ─▶ (a verdict: ticket, fixed reply, no model call)
       │
       ▼
    model ─▶ tool_use? ─▶ run each block through the Toolbox (retry a failing tool twice), all
       ▲                  results in one user message paired by id; each outcome's verdict applied
       └──────────────────┘   … until the model stops asking for tools, a verdict ends the turn,
       │                      or a limit is hit
       ▼
    guard the text (tool traffic, claims vs the store, sanitizer; a contradicted reply is asked for
    once more, agent.repair) ─▶ Reply ─▶ record the outcome ─▶ Done

Verdicts come from `agent.policy`; this loop is the only place that acts on them. A verdict that
ends the turn (another customer's order, an identity mismatch, the model failing, a limit) stops
the model at once: the blocks it asked for after that are not run, and the customer gets the
verdict's fixed reply. Knows nothing of Slack or the terminal: faces consume the events.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agent import citations, history, policy, repair
from agent.events import Citation, Confirmation, Done, Error, Escalation, Event, Reply, Status, Usage
from agent.model import Model, ModelReply, ModelRequest, ModelUnavailable
from agent.policy import AgentLimit, MaxModelCallsExceeded, TokenBudgetExceeded, Verdict
from agent.prompts import session_note, system_prompt
from storage import metrics
from storage.engine import insert_all, reading
from storage.models import AuditLog, ChatSession, Customer, Message, ModelCall, OrderItem, Refund, Ticket
from storage.types import format_cents
from tools import wording
from tools.codes import Code, ToolFailure, ToolResult
from tools.context import CallContext
from tools.sessions import settle
from tools.tickets import TicketQuotaExceeded
from tools.toolbox import Ledger, Toolbox

log = logging.getLogger(__name__)

TOOL_ATTEMPTS = 3  # the first call and two retries
SUCCEEDED = (Code.OK, Code.AWAITING_CONFIRMATION, Code.REFUND_PROCESSED, Code.REFUND_EXISTS)
REPLY_REPLACED = "reply_replaced"  # the audit log's action for a reply the guard did not send as written
_HISTORY = select(Message).where(Message.session_id == bindparam("sid")).order_by(Message.id)  # built once
_FIRST_ITEM = select(OrderItem.name).where(OrderItem.order_id == bindparam("oid")).order_by(OrderItem.line_no).limit(1)
# what the caller adds to the turn's last write, given the session's outcome (the desk: its outgoing rows)
Finisher = Callable[[AsyncSession, str], Awaitable[None]]


@dataclass(frozen=True)
class Start:
    """What a turn reads before its first model call (`Agent.start`)."""

    rows: list[Message]
    note: str
    tokens_before: int
    failed_before: int


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
    failed_before: int = 0  # the session's failed rounds before this turn
    pending: list[ModelCall] = field(default_factory=list)  # usage rows written with the next message
    unsaved: list[Message] = field(default_factory=list)  # history rows for the next write
    ledger: Ledger = field(default_factory=Ledger)  # audit rows for the next write
    reply: str | None = None  # the model's final text
    verdict: Verdict | None = None  # a verdict that ended the turn
    summary: str = ""  # what staff read about that verdict
    offered: set[str] = field(default_factory=set)  # refunds whose Confirm step this turn already showed
    sources: citations.TurnSources = field(default_factory=citations.TurnSources)  # what searches returned
    cited: tuple[Citation, ...] = ()
    on_finish: Finisher | None = None
    request: ModelRequest | None = None  # the last request sent (a contradicted reply is repaired against it)
    notice: str | None = None  # said before the model's answer (a person asked for with other requests)

    def end(self, verdict: Verdict, summary: str) -> None:
        self.verdict, self.summary = verdict, summary


class Agent:
    def __init__(self, *, model: Model, toolbox: Toolbox) -> None:
        self.model = model
        self.toolbox = toolbox
        self.deps = toolbox.deps
        self.system = system_prompt(self.deps.settings)
        self.tools = toolbox.schemas()

    # --- the turn --------------------------------------------------------------------------------------
    async def run_turn(
        self, ctx: CallContext, text: str, *, on_finish: Finisher | None = None, start: Start | None = None
    ) -> AsyncIterator[Event]:
        """`on_finish` runs in the transaction that records the reply and the outcome; `start` is
        what the caller read for the turn already (`Agent.start`)."""
        text = text.replace("\x00", "")
        turn = _Turn(sources=citations.TurnSources(started=self.deps.clock.now()), on_finish=on_finish)
        await self._start(turn, ctx, start)
        # written with the first round (or the reply): a turn cut off before then is run again from its work item
        self._stage(turn, ctx, ("user", [{"type": "text", "text": text}]), customer_text=True)
        trigger = policy.classify(text)
        if trigger is not None and not trigger.ends_turn:  # a person asked for, and more: the model goes on
            for event in await self._apply(ctx, trigger, f"Customer wrote: {text[:500]}"):
                yield event
                turn.notice = wording.TICKET_LIMIT if isinstance(event, Error) else trigger.notice
            trigger = None
        if trigger is not None:
            turn.end(trigger, f"Customer wrote: {text[:500]}")
        else:
            try:
                async for event in self._rounds(turn, ctx, text):
                    yield event
            except AgentLimit as exc:
                yield Error(exc.reason)  # type: ignore[arg-type]
                turn.end(policy.for_failure(exc.reason), f"{exc}.")
        if turn.verdict is not None and turn.verdict.ends_turn:
            reply, guarded = str(turn.verdict.reply), True
            for event in await self._apply(ctx, turn.verdict, turn.summary):
                yield event
                if isinstance(event, Error):  # no ticket (the caller's quota): never promise a person
                    reply = wording.TICKET_LIMIT
        else:
            reply, guarded = turn.reply or wording.TRUNCATED, False
        async for event in self._reply(turn, ctx, reply, guarded=guarded):
            yield event

    async def _rounds(self, turn: _Turn, ctx: CallContext, text: str) -> AsyncIterator[Event]:
        """Model calls and tool rounds until the model answers or a verdict ends the turn."""
        while True:
            self._check_limits(turn)
            try:
                resp = await self._call_model(turn, ctx)
            except ModelUnavailable as exc:
                log.warning("session %s: %s", ctx.session_id, exc)
                yield Error("model_unavailable")
                turn.end(policy.for_failure("model_failure"), f"Model unavailable; customer wrote: {text[:500]}")
                return
            if resp.stop_reason == "tool_use" and resp.tool_uses:
                async for event in self._tool_round(turn, ctx, resp):
                    yield event
                if turn.verdict is not None:
                    return
            elif resp.stop_reason == "pause_turn":
                kept = [b for b in resp.content if b.get("type") == "text"]
                if kept:
                    await self._remember(turn, ctx, ("assistant", kept))
            elif resp.stop_reason == "refusal":
                yield Error("refusal")
                turn.reply = wording.MODEL_REFUSAL
                return
            elif resp.stop_reason == "model_context_window_exceeded":
                yield Error("context_exceeded")
                turn.end(policy.for_failure("context_exceeded"), "The conversation outgrew the model's context.")
                return
            else:  # end_turn, stop_sequence, max_tokens (a truncated tool_use is never run)
                turn.reply = resp.text or wording.TRUNCATED
                return

    def _check_limits(self, turn: _Turn) -> None:
        settings = self.deps.settings
        if turn.tokens_before + turn.usage.total >= settings.session_token_budget:
            raise TokenBudgetExceeded(turn.tokens_before + turn.usage.total, settings.session_token_budget)
        if turn.calls >= settings.max_model_calls_per_turn:
            raise MaxModelCallsExceeded(turn.calls)

    async def _tool_round(self, turn: _Turn, ctx: CallContext, resp: ModelReply) -> AsyncIterator[Event]:
        """Every tool_use block answered in one user message; once a verdict ends the turn, the
        remaining blocks are answered "not run" (the history stays valid) and never executed."""
        results: list[dict[str, Any]] = []
        events: list[Event] = []
        # the round is one unit of work: its tools' reads and writes and its record, one write
        # transaction (the payment gateway alone goes outside it). A crash before its commit leaves
        # no half round in the history, and the turn run again finds what was done. Its events go
        # out after the commit: a Confirm step is shown only for a refund that is stored.
        async with self.deps.store.unit():
            for block in resp.tool_uses:
                if turn.verdict is not None:
                    results.append(_tool_result(block, {"outcome": "not_run"}, error=True))
                    continue
                events.append(Status(self.toolbox.activity(str(block.get("name")))))
                async for item in self._run_tool(turn, ctx, block):
                    if isinstance(item, dict):
                        results.append(item)
                    else:
                        events.append(item)
            await self._remember(turn, ctx, ("assistant", resp.content), ("user", results))
        for event in events:
            yield event

    async def _reply(self, turn: _Turn, ctx: CallContext, text: str, *, guarded: bool) -> AsyncIterator[Event]:
        """The one way a reply reaches a customer: model text through the guard (tool traffic out,
        claims checked against the store, the sanitizer); fixed wording (`guarded`) as it is."""
        if not guarded:
            notes, seen = _tool_traffic(turn.rows)
            check = functools.partial(
                policy.guard,
                deps=self.deps,
                ctx=ctx,
                notes=notes,
                seen_refunds=seen,
                quotes=turn.sources.quotes,
                evidence=history.evidence(turn.rows, frozenset(t["name"] for t in self.tools)),
            )
            ask = functools.partial(self._ask, turn, ctx)
            fixed = await repair.guard_or_repair(text, check=check, ask=ask, request=turn.request)
            if fixed.first.replaced:
                self._replaced(turn, ctx, text, fixed.first, rewritten=fixed.rewritten)
            text = f"{turn.notice}\n\n{fixed.out.text}" if turn.notice else fixed.out.text
            text, turn.cited = citations.check(text, turn.sources)
        yield Reply(text, turn.cited)
        clarification, done = await self._finish(turn, ctx, text)
        if clarification is not None:
            yield clarification
        yield done

    def _replaced(
        self, turn: _Turn, ctx: CallContext, original: str, out: policy.Guarded, *, rewritten: bool = False
    ) -> None:
        """Logged and counted; the original goes to the audit log (staff may read it; written with
        the reply), never to the customer. `rewritten`: the model's second answer went out instead."""
        reason = out.reason or "replaced"
        log.warning("session %s: the model's reply was not sent as written (%s)", ctx.session_id, reason)
        metrics.REPLIES_REPLACED.labels("repaired" if rewritten else reason).inc()
        turn.ledger.rows.append(
            AuditLog(
                session_id=ctx.session_id,
                actor="agent:guard",
                action=REPLY_REPLACED,
                input={"original": original[:4000], "found": [f[:300] for f in out.found[:20]]},
                outcome=reason,
                created_at=self.deps.clock.now(),
            )
        )

    async def start(self, s: AsyncSession, ctx: CallContext, session: ChatSession | None) -> Start:
        """Everything a turn reads up front, in the caller's read transaction (the desk's, which has
        read the session row already): the history and the session note."""
        rows = list((await s.scalars(_HISTORY, {"sid": ctx.session_id})).all())
        if ctx.actor.kind == "staff":
            note = session_note(verified_name=None, verified_email=None, staff_id=ctx.actor.staff_id)
        else:
            cust = await s.get(Customer, ctx.actor.customer_id) if ctx.actor.customer_id else None
            note = session_note(verified_name=cust.name if cust else None, verified_email=cust.email if cust else None)
        return Start(
            rows=rows,
            note=note,
            tokens_before=session.tokens_used if session else 0,
            failed_before=session.failed_rounds if session else 0,
        )

    async def _start(self, turn: _Turn, ctx: CallContext, start: Start | None) -> None:
        if start is None:
            async with self.deps.store.read() as s:
                start = await self.start(s, ctx, await s.get(ChatSession, ctx.session_id))
        turn.rows, turn.note = start.rows, start.note
        turn.tokens_before, turn.failed_before = start.tokens_before, start.failed_before

    # --- model -----------------------------------------------------------------------------------------
    async def _call_model(self, turn: _Turn, ctx: CallContext) -> ModelReply:
        rows = history.trim(turn.rows, self.deps.settings.history_token_budget)
        messages = history.to_messages(rows)
        messages[0]["content"].insert(0, {"type": "text", "text": turn.note})
        request = ModelRequest(
            system=self.system, tools=self.tools, messages=messages, max_tokens=self.deps.settings.anthropic_max_tokens
        )
        turn.request = request
        return await self._ask(turn, ctx, request)

    async def _ask(self, turn: _Turn, ctx: CallContext, request: ModelRequest) -> ModelReply:
        """One model call, counted and its usage recorded with the turn's next write."""
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
    async def _call_tool(self, turn: _Turn, name: str, args: Any, ctx: CallContext) -> ToolResult | None:
        for attempt in range(1, TOOL_ATTEMPTS + 1):
            try:
                return await self.toolbox.call(name, args, ctx, ledger=turn.ledger)
            except ToolFailure as exc:
                log.warning("tool %s failed (attempt %d/%d)", name, attempt, TOOL_ATTEMPTS, exc_info=exc.cause)
        return None

    async def _run_tool(self, turn: _Turn, ctx: CallContext, block: dict[str, Any]) -> AsyncIterator[Any]:
        """Yields events, then the tool_result block (a dict) last."""
        name, args = str(block.get("name")), block.get("input")
        result = await self._call_tool(turn, name, args, ctx)
        if result is None:
            yield Error("tool_failure")
            summary = f"{name} kept failing after {TOOL_ATTEMPTS} attempts."
            for event in await self._apply(ctx, policy.for_failure("tool_failure"), summary):
                yield event
            yield _tool_result(block, {"outcome": "error", "note": wording.TOOL_UNAVAILABLE_NOTE}, error=True)
            return
        turn.codes.append(result.code)
        turn.sources.add(name, result)
        async for event in self._verdict_of(turn, ctx, name, args, result):
            yield event
        if _awaits_confirmation(result) and str(result.data["refund_id"]) not in turn.offered:
            turn.offered.add(str(result.data["refund_id"]))
            yield await self.confirmation(str(result.data["refund_id"]), stored=result.data)
        yield _tool_result(block, result.for_model(), error=not result.ok)

    async def _verdict_of(
        self, turn: _Turn, ctx: CallContext, name: str, args: Any, result: ToolResult
    ) -> AsyncIterator[Event]:
        verdict = policy.for_tool(result.code)
        if verdict is not None and verdict.already_ticketed and result.data.get("ticket"):
            yield await self._ticketed(ctx, result, verdict)
        elif verdict is not None and verdict.ends_turn:
            turn.end(verdict, f"{name} was refused ({result.code.value}) for input {json.dumps(args)[:300]}")
        elif verdict is not None:
            summary = f"{name}: {result.code.value} for input {json.dumps(args)[:300]}"
            for event in await self._apply(ctx, verdict, summary):
                yield event
        if result.code in (Code.TICKET_OPENED, Code.TICKET_UPDATED):
            yield await self._ticketed(ctx, result, Verdict(str(result.data["priority"]), "requested_by_model"))

    async def _ticketed(self, ctx: CallContext, result: ToolResult, verdict: Verdict) -> Escalation:
        """The event for a ticket a tool opened itself (by its public reference; its priority as stored)."""
        async with self.deps.store.read() as s:
            ticket = (await s.scalars(select(Ticket).where(Ticket.public_ref == result.data["ticket"]))).one()
        created = bool(result.data.get("ticket_created")) or result.code is Code.TICKET_OPENED
        metrics.ESCALATIONS.labels(ctx.channel, ticket.priority).inc()
        return Escalation(ticket.id, ticket.priority, verdict.reason, created, ticket.public_ref)

    async def confirmation(
        self, refund_id: str, s: AsyncSession | None = None, *, stored: Mapping[str, Any] | None = None
    ) -> Confirmation:
        """The Confirm step of a refund, rendered from its row (in `s`, the caller's transaction, if
        given). `stored`: the row as the tool that just stored it in this unit of work described it
        (`tools.refunds.describe`), so it is not read back."""
        async with reading(s or self.deps.store) as r:
            if stored is not None and stored.get("refund_id") == refund_id:
                order_id, cents, currency = (
                    str(stored["order_id"]),
                    int(stored["amount_cents"]),
                    str(stored["currency"]),
                )
            else:
                refund = await r.get(Refund, refund_id)
                assert refund is not None
                order_id, cents, currency = refund.order_id, refund.amount_cents, refund.currency
            item = (await r.scalars(_FIRST_ITEM, {"oid": order_id})).first() or "your order"
        amount = format_cents(cents, currency)
        return Confirmation(
            refund_id=refund_id,
            order_id=order_id,
            item=item,
            amount=amount,
            text=wording.refund_confirm_prompt(order_id=order_id, item=item, amount=amount),
        )

    # --- escalation and outcome ------------------------------------------------------------------------
    async def _apply(self, ctx: CallContext, verdict: Verdict, summary: str) -> list[Event]:
        """A verdict's ticket, as events: the escalation, or Error("ticket_limit") when the caller's
        ticket quota (an anonymous website visitor's address) refused a new one."""
        try:
            escalation = await policy.apply(self.deps, ctx, verdict, summary)
        except TicketQuotaExceeded:
            log.info("session %s: no new ticket (%s): over its ticket quota", ctx.session_id, verdict.reason)
            return [Error("ticket_limit")]
        return [escalation] if escalation is not None else []

    async def _finish(self, turn: _Turn, ctx: CallContext, reply: str) -> tuple[Escalation | None, Done]:
        """The clarification rule and the session's outcome, with the turn's token count and failed
        rounds (one turn of a session runs at a time: the counts read at its start are current)."""
        failed = policy.is_failed_round(turn.codes)
        succeeded = any(c in SUCCEEDED for c in turn.codes)
        rounds = turn.failed_before + 1 if failed else 0 if succeeded else turn.failed_before
        clarify = failed and rounds >= policy.CLARIFICATION_ROUNDS
        async with self.deps.store.write() as s:  # one transaction, unless a clarification ticket comes between
            self._stage(turn, ctx, ("assistant", [{"type": "text", "text": reply}]))
            await self._persist(s, turn, ctx)
            counts = {"failed_rounds": rounds, "tokens_used": ChatSession.tokens_used + turn.usage.total}
            if clarify:
                await s.execute(update(ChatSession).where(ChatSession.id == ctx.session_id).values(**counts))
            else:
                outcome, priority = await self._settle(s, turn, ctx, reply, counts)
        escalation = None
        if clarify:
            summary = f"The bot could not get what it needed in {rounds} consecutive turns."
            applied = await self._apply(ctx, policy.CLARIFICATION, summary)
            escalation = next((e for e in applied if isinstance(e, Escalation)), None)
            async with self.deps.store.write() as s:
                outcome, priority = await self._settle(s, turn, ctx, reply, {})
        return escalation, Done(
            outcome=outcome,
            priority=priority,
            model_calls=turn.calls,
            usage=turn.usage,
            turn_s=time.perf_counter() - turn.started,
            model_s=turn.model_s,
            tools=dict(Counter(c.value for c in turn.codes)),
        )

    async def _settle(
        self, s: AsyncSession, turn: _Turn, ctx: CallContext, reply: str, counts: dict[str, Any]
    ) -> tuple[str, str | None]:
        """The turn's help-center sources, the session's outcome (with `counts`) and the caller's
        `on_finish`, in the caller's transaction."""
        await citations.record(s, session_id=ctx.session_id, sources=turn.sources, cited=turn.cited)
        outcome, priority = await settle(s, self.deps, ctx.session_id, last_reply=reply, count_turn=True, also=counts)
        if turn.on_finish is not None:
            await turn.on_finish(s, outcome)
        return outcome, priority

    async def _remember(self, turn: _Turn, ctx: CallContext, *messages: tuple[str, list[dict[str, Any]]]) -> None:
        """Persist messages with everything staged since the last write, in one transaction."""
        self._stage(turn, ctx, *messages)
        async with self.deps.store.write() as s:
            await self._persist(s, turn, ctx)

    def _stage(
        self, turn: _Turn, ctx: CallContext, *messages: tuple[str, list[dict[str, Any]]], customer_text: bool = False
    ) -> None:
        """Messages into the turn's history now, into the store with its next write."""
        now = self.deps.clock.now()
        rows = [
            Message(
                session_id=ctx.session_id,
                role=role,
                content=content,
                is_customer_text=customer_text,
                tokens_est=history.estimate_tokens(content),
                created_at=now,
            )
            for role, content in messages
        ]
        turn.rows.extend(rows)
        turn.unsaved.extend(rows)

    async def _persist(self, s: AsyncSession, turn: _Turn, ctx: CallContext) -> None:
        """Add what is staged (messages, the model calls' usage, audit rows) to the caller's
        transaction. The session's token count is written with the turn's outcome (`_finish`)."""
        rows, turn.unsaved = turn.unsaved, []
        calls, turn.pending = turn.pending, []
        await insert_all(s, [*rows, *calls, *turn.ledger.take()])


def _tool_traffic(rows: list[Message]) -> tuple[list[str], set[str]]:
    """The internal notes the model was sent in this conversation, and the refund ids it was told of."""
    notes: list[str] = []
    refunds: set[str] = set()
    for row in rows:
        for block in row.content if row.role == "user" else []:
            if block.get("type") != "tool_result":
                continue
            try:
                payload = json.loads(str(block.get("content") or "{}"))
            except json.JSONDecodeError:
                continue
            if not isinstance(payload, dict):
                continue
            if isinstance(payload.get("note"), str):
                notes.append(payload["note"])
            found = [payload, payload.get("existing_refund"), *(payload.get("refunds") or [])]
            refunds |= {str(d["refund_id"]) for d in found if isinstance(d, dict) and d.get("refund_id")}
    return notes, refunds


def _tool_result(block: dict[str, Any], payload: dict[str, Any], *, error: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "tool_result", "tool_use_id": block.get("id"), "content": json.dumps(payload)}
    if error:
        out["is_error"] = True
    return out


def _awaits_confirmation(result: ToolResult) -> bool:
    """A refund the customer still has to confirm: just prepared, or prepared before (a turn run
    again after a crash, a second request) and still waiting. Either way the answer carries the
    Confirm step, so the customer is never told of a refund without a way to send it."""
    if result.code is Code.AWAITING_CONFIRMATION:
        return True
    return result.code is Code.REFUND_EXISTS and result.data.get("status") == "awaiting_confirmation"
