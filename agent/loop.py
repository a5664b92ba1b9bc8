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
    once more, agent.repair) ─▶ TurnResult

`Agent.run_turn` is a function the desk calls: given the turn's inputs (`TurnInput`, read by the
desk) it yields progress events (Status, Confirmation, Escalation, Error) and, last, its
`TurnResult`: the guarded reply, the verdicts whose tickets must be opened, and the records not
yet written. It calls nothing back; the desk writes the result in the turn's last transaction.
A tool round is a unit of work of its own: its tools' writes and its record commit together.

Verdicts come from `agent.policy`. A verdict that ends the turn (another customer's order, an
identity mismatch, the model failing, a limit) stops the model at once: the blocks it asked for
after that are not run, and the customer gets the verdict's fixed reply. Knows nothing of Slack
or the terminal.
"""

from __future__ import annotations

import functools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from agent import citations, history, policy, repair
from agent.confirmations import refund_prompt
from agent.errors import AgentLimit, MaxModelCallsExceeded, ModelUnavailable, TokenBudgetExceeded
from agent.events import Citation, Error, Escalation, Event, Status, Usage
from agent.model import Model, ModelReply, ModelRequest
from agent.offline_kb import is_general_question
from agent.offline_text import WHO
from agent.policy import Verdict
from agent.prompts import system_prompt
from storage import metrics
from storage.engine import insert_all
from storage.models import AuditLog, Message, ModelCall, Ticket
from storage.states import RefundStatus
from tools import wording
from tools.codes import Code, ToolFailure, ToolResult
from tools.context import CallContext
from tools.lookup_order import mark_looked_up
from tools.toolbox import Ledger, Toolbox

log = logging.getLogger(__name__)

TOOL_ATTEMPTS = 3  # the first call and two retries
SUCCEEDED = (Code.OK, Code.AWAITING_CONFIRMATION, Code.REFUND_PROCESSED, Code.REFUND_EXISTS)
SEARCH = "search_help_center"
REPLY_REPLACED = "reply_replaced"  # the audit log's action for a reply the guard did not send as written


@dataclass(frozen=True)
class TurnInput:
    """What a turn needs, read by the desk before the first model call."""

    ctx: CallContext
    text: str
    history: list[Message]  # the session's conversation so far
    note: str  # who the customer is, as the channel verified it
    tokens_before: int  # the session's tokens before this turn
    failed_before: int  # the session's failed rounds before this turn
    known_orders: tuple[str, ...] = ()  # the customer's orders the note describes: looked up already


@dataclass(frozen=True)
class TurnResult:
    """What a turn produced, for the desk to write in the turn's last transaction."""

    reply: str  # guarded model text, or a verdict's fixed wording
    citations: tuple[Citation, ...]
    verdicts: list[tuple[Verdict, str]]  # tickets to open or raise, with what staff read about each
    replaces_reply: bool  # the first verdict's ticket is what the reply promises (ticket_limit if refused)
    records: list[Any]  # messages, model calls and audit rows not yet written
    sources: citations.TurnSources
    failed_rounds: int  # the session's consecutive failed rounds after this turn
    tokens: int  # tokens this turn spent
    offered: frozenset[str]  # refunds whose Confirm step this turn showed
    calls: int
    usage: Usage
    model_s: float
    started: float
    codes: tuple[Code, ...]
    known_orders: tuple[str, ...]  # marked looked up in the session (the note showed them)


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
    verdicts: list[tuple[Verdict, str]] = field(default_factory=list)  # for the desk to apply
    code_spoke: bool = False  # a tool's result is what the customer is told (the Confirm step, a handoff)
    known_orders: tuple[str, ...] = ()  # the orders the session note showed
    marked: bool = False  # they are marked looked up in the store already
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
    async def run_turn(self, inp: TurnInput) -> AsyncIterator[Event | TurnResult]:
        """Progress events as they happen, then the turn's `TurnResult`, last."""
        ctx, text = inp.ctx, inp.text.replace("\x00", "")
        turn = _Turn(sources=citations.TurnSources(started=self.deps.clock.now()))
        turn.rows, turn.note = list(inp.history), inp.note
        turn.tokens_before, turn.failed_before = inp.tokens_before, inp.failed_before
        turn.known_orders = inp.known_orders
        # written with the first round (or the reply): a turn cut off before then is run again from its work item
        self._stage(turn, ctx, ("user", [{"type": "text", "text": text}]), customer_text=True)
        trigger = policy.classify(text)
        if trigger is not None and not trigger.ends_turn:  # a person asked for, and more
            trigger = self._also_answer(turn, ctx, trigger, text)
        if trigger is not None:
            turn.end(trigger, f"Customer wrote: {text[:500]}")
        else:
            try:
                if asks_the_help_center(text) and SEARCH in self.toolbox.tools:
                    yield Status(self.toolbox.activity(SEARCH))
                    await self._search_first(turn, ctx, text)
                async for event in self._rounds(turn, ctx, text):
                    yield event
            except AgentLimit as exc:
                yield Error(exc.reason)  # type: ignore[arg-type]
                turn.end(policy.for_failure(exc.reason), f"{exc}.")
        ended = turn.verdict is not None and turn.verdict.ends_turn
        if turn.verdict is not None and ended:
            turn.verdicts.insert(0, (turn.verdict, turn.summary))
            reply = str(turn.verdict.reply)
        elif turn.code_spoke:
            reply = await self._guarded(turn, ctx, turn.reply) if turn.reply else self._spoken(turn)
        else:
            reply = await self._guarded(turn, ctx, turn.reply or wording.TRUNCATED)
        yield self._result(turn, ctx, reply, replaces_reply=ended)

    def _also_answer(self, turn: _Turn, ctx: CallContext, verdict: Verdict, text: str) -> Verdict | None:
        """A person asked for with other requests: the desk opens the ticket and the model answers the
        rest, after the verdict's notice. Where a ticket may be refused (an anonymous visitor's quota)
        the reply waits for it instead: it must never promise a person who is not coming."""
        if ctx.ticket_quota is not None:
            return policy.VERDICTS["human_request"]
        turn.verdicts.append((verdict, f"Customer wrote: {text[:500]}"))
        turn.notice = verdict.notice
        return None

    async def _search_first(self, turn: _Turn, ctx: CallContext, text: str) -> None:
        """A general question arrives with its help-center passages: the search the model would make
        first is made before its first call, as a round of the conversation (the tool stays for
        follow-ups), so one model call answers it."""
        block = {"type": "tool_use", "id": f"toolu_search_{uuid.uuid4().hex[:16]}", "name": SEARCH}
        block["input"] = {"query": text[:500]}
        result = await self._call_tool(turn, SEARCH, block["input"], ctx)
        if result is None:
            return  # the model may search itself
        turn.sources.add(SEARCH, result)
        self._stage(turn, ctx, ("assistant", [block]), ("user", [_tool_result(block, result.for_model(), error=False)]))

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
                offered_before, codes_before = len(turn.offered), len(turn.codes)
                async for event in self._tool_round(turn, ctx, resp):
                    yield event
                if turn.verdict is not None:
                    return
                if _code_speaks(turn.codes[codes_before:], confirmed=len(turn.offered) > offered_before):
                    turn.reply, turn.code_spoke = resp.text, True  # the model's own words before its call
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
            if not turn.marked and turn.known_orders:  # the tools that act on an order ask for this
                async with self.deps.store.write() as s:
                    await mark_looked_up(s, self.deps, ctx.session_id, list(turn.known_orders))
                turn.marked = True
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
            # the model's words beside its calls reach the history only as the guard lets them (the reply)
            calls = [b for b in resp.content if b.get("type") != "text"]
            await self._remember(turn, ctx, ("assistant", calls), ("user", results))
        for event in events:
            yield event

    async def _guarded(self, turn: _Turn, ctx: CallContext, text: str) -> str:
        """The one way model text reaches a customer: tool traffic out, claims checked against the
        store and the conversation's evidence, the sanitizer (a contradicted reply is asked for once
        more, agent.repair), then only the links this turn's search returned."""
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
        said = f"{turn.notice}\n\n{fixed.out.text}" if turn.notice else fixed.out.text
        text, turn.cited = citations.check(said, turn.sources)
        return text

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
            turn.verdicts.append(
                (policy.for_failure("tool_failure"), f"{name} kept failing after {TOOL_ATTEMPTS} attempts.")
            )
            yield _tool_result(block, {"outcome": "error", "note": wording.TOOL_UNAVAILABLE_NOTE}, error=True)
            return
        turn.codes.append(result.code)
        turn.sources.add(name, result)
        async for event in self._verdict_of(turn, ctx, name, args, result):
            yield event
        if _awaits_confirmation(result) and str(result.data["refund_id"]) not in turn.offered:
            turn.offered.add(str(result.data["refund_id"]))
            yield await refund_prompt(self.deps.store, str(result.data["refund_id"]), stored=result.data)
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
            turn.verdicts.append((verdict, f"{name}: {result.code.value} for input {json.dumps(args)[:300]}"))
        if result.code in (Code.TICKET_OPENED, Code.TICKET_UPDATED):
            yield await self._ticketed(ctx, result, Verdict(str(result.data["priority"]), "requested_by_model"))

    async def _ticketed(self, ctx: CallContext, result: ToolResult, verdict: Verdict) -> Escalation:
        """The event for a ticket a tool opened itself (by its public reference; its priority as stored)."""
        async with self.deps.store.read() as s:
            ticket = (await s.scalars(select(Ticket).where(Ticket.public_ref == result.data["ticket"]))).one()
        created = bool(result.data.get("ticket_created")) or result.code is Code.TICKET_OPENED
        metrics.ESCALATIONS.labels(ctx.channel, ticket.priority).inc()
        return Escalation(ticket.id, ticket.priority, verdict.reason, created, ticket.public_ref)

    def _spoken(self, turn: _Turn) -> str:
        """What the code said for the turn, when the model wrote nothing before its call: the Confirm
        step stands alone (its prompt is the message), a handoff says a person will follow up; a
        notice the turn owes (a person asked for, with more to answer) comes first either way."""
        said = "" if turn.offered else wording.ESCALATED_GENERIC
        return "\n\n".join(part for part in (turn.notice, said) if part)

    # --- the result -----------------------------------------------------------------------------------
    def _result(self, turn: _Turn, ctx: CallContext, reply: str, *, replaces_reply: bool) -> TurnResult:
        """The clarification rule and everything the desk writes: the reply's message, what is staged."""
        failed = policy.is_failed_round(turn.codes)
        succeeded = any(c in SUCCEEDED for c in turn.codes)
        rounds = turn.failed_before + 1 if failed else 0 if succeeded else turn.failed_before
        if failed and rounds >= policy.CLARIFICATION_ROUNDS:
            summary = f"The bot could not get what it needed in {rounds} consecutive turns."
            turn.verdicts.append((policy.CLARIFICATION, summary))
        said = reply or wording.CONFIRM_STEP_SHOWN  # the history never holds an empty text block
        self._stage(turn, ctx, ("assistant", [{"type": "text", "text": said}]))
        records = [*turn.unsaved, *turn.pending, *turn.ledger.take()]
        turn.unsaved, turn.pending = [], []
        return TurnResult(
            reply=reply,
            citations=turn.cited,
            verdicts=turn.verdicts,
            replaces_reply=replaces_reply,
            records=records,
            sources=turn.sources,
            failed_rounds=rounds,
            tokens=turn.usage.total,
            offered=frozenset(turn.offered),
            calls=turn.calls,
            usage=turn.usage,
            model_s=turn.model_s,
            started=turn.started,
            codes=tuple(turn.codes),
            known_orders=turn.known_orders if not turn.marked else (),
        )

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

    async def _persist(self, s: Any, turn: _Turn, ctx: CallContext) -> None:
        """Add what is staged (messages, the model calls' usage, audit rows) to the caller's
        transaction. What is left at the end goes into the desk's last write (`TurnResult.records`)."""
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


def asks_the_help_center(text: str) -> bool:
    """A general question (not about the customer's own order, nor about the bot itself)."""
    return is_general_question(text) and not WHO.search(text[:2000])


# what the code tells the customer by itself: the turn ends there, with no model call to re-word it
_HANDOFF = frozenset({Code.TICKET_OPENED, Code.TICKET_UPDATED})


def _code_speaks(codes: list[Code], *, confirmed: bool) -> bool:
    """A round whose result the code renders for the customer: a Confirm step it showed, or a
    handoff when handing off was all the round did (other results the model would still need)."""
    return confirmed or (bool(codes) and all(c in _HANDOFF for c in codes))


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
    return result.code is Code.REFUND_EXISTS and result.data.get("status") == RefundStatus.AWAITING_CONFIRMATION
