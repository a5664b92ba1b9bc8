"""Escalation verdicts and output rules, enforced in code whatever the model does.

Every reason to hand a conversation to people is decided here, once, as a `Verdict`: the ticket
to open (priority and reason), what the customer is told, and whether the model may go on. The
agent loop alone acts on verdicts (the MCP face, which has no loop, applies them through the
same `apply` in `desk`).

- `classify`, before any model call (agent.verdict_patterns, English, Spanish, German, French): a
  hazard or injury, a legal threat, fraud (P1), a billing dispute, a delivery marked delivered
  that never came (P2), a request for a person (P1): a fixed reply, no model call; a request for a
  person that comes with other requests opens the ticket and lets the model answer the rest (its
  `notice` goes first). A refusal ("do NOT transfer me"), a condition ("if you still see Silver, a
  supervisor") or a question about what the bot is asks for nobody; a lawyer mentioned or
  "unacceptable" threatens nothing.
- `for_tool`: tool outcomes that decide by themselves. An ownership mismatch (another customer's
  order) is P1 and ends the turn with exactly the words of an unknown order, which also ends the
  turn, so the two are indistinguishable to the customer; the ticket stays hidden from them. An
  identity mismatch is P1 and ends the turn. An over-limit refund is P2, ticketed by the refund
  itself, and the model goes on to tell the customer.
- `for_failure`: a tool that kept failing (P2, the model is told and goes on), the model failing,
  the call cap, the token budget, the context window (P2, fixed apology, the turn ends).
- `is_failed_round` / CLARIFICATION: the model could not get what it needed in two consecutive
  turns -> P3.
- `guard`: every model text on its way to a customer, cut to MAX_REPLY characters first: tool
  traffic out word by word with the layout kept, or the reply replaced when it is pasted JSON
  (tools.sanitizer.strip_tool_text), the claims check against the store and the turn's evidence
  (agent.claims), then the sanitizer. A reply the store contradicts comes back with code's true
  answer in the customer's language and, for each contradicted sentence, what the store holds
  (`Guarded.corrections`), so the loop can ask the model once more (agent.repair). A reply not sent
  as written says why (`Guarded.reason`); the loop logs, counts
  (`supportbot_replies_replaced_total{reason}`) and audits it.

The limits the loop hits (`agent.errors.AgentLimit`) each turn into a verdict here (`for_failure`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agent import claims, facts, truthful
from agent import verdict_patterns as vp
from agent.events import Escalation
from storage import metrics
from storage.analysis import guess_language, language_of
from storage.engine import Store
from storage.models import Ticket
from storage.states import TicketStatus
from tools import wording
from tools.codes import Code
from tools.context import CallContext, Deps
from tools.sanitizer import (
    Sanitized,
    ToolText,
    cap,
    looks_like_exception,
    needs_lookup,
    sanitize,
    strip_tool_text,
)
from tools.tickets import SECURITY, open_or_update
from tools.toolbox import TOOLS

MAX_REPLY = 12_000  # characters of model text looked at; a model reply is a few hundred


CLASSIFY_MAX_CHARS = 8000  # the classifier reads the start of a message: bounded work on any input
CLARIFICATION_ROUNDS = 2
_CLARIFY_CODES = {Code.ORDER_NOT_FOUND, Code.INVALID_INPUT, Code.ORDER_NOT_LOOKED_UP, Code.INVALID_AMOUNT}


@dataclass(frozen=True, slots=True)
class Verdict:
    """What must happen: a ticket (unless `priority` is None), and, when `reply` is set, the turn
    ends at once with that reply and the model is not called again. A verdict with a `notice`
    instead lets the model go on (the customer asked for more than the person) and the notice is
    said before its answer."""

    priority: str | None
    reason: str
    reply: str | None = None
    already_ticketed: bool = False  # the tool opened the ticket itself (over-limit refunds, payouts)
    hidden: bool = False  # never shown to the customer: it would tell them another customer's order exists
    notice: str | None = None

    @property
    def ends_turn(self) -> bool:
        return self.reply is not None


# what each kind of message gets, most urgent first (README, "Escalations"): the model stops for
# every one but a request for a person that comes with other requests
VERDICTS = {
    "safety": Verdict("P1", "safety", wording.ESCALATED_SAFETY),
    "legal": Verdict("P1", "legal", wording.ESCALATED_LEGAL),
    "fraud": Verdict("P1", "fraud", wording.ESCALATED_LEGAL),
    "billing_dispute": Verdict("P2", "billing_dispute", wording.ESCALATED_BILLING),
    "not_received": Verdict("P2", "not_received", wording.ESCALATED_NOT_RECEIVED),
    "human_request": Verdict("P1", "human_request", wording.ESCALATED_HUMAN),
}
PERSON_AND_MORE = Verdict("P1", "human_request", notice=wording.ESCALATED_HUMAN_ALSO)


def classify(text: str) -> Verdict | None:
    """What a customer's message reports or asks for that goes to a person, before any model call."""
    head = text[:CLASSIFY_MAX_CHARS]  # bounded, linear-time patterns on a bounded head
    sentences = [s for s in vp.SENTENCE.split(head) if s.strip()]
    if any(vp.hazard(s) for s in sentences):
        return VERDICTS["safety"]
    for reason, pattern in (("legal", vp.LEGAL), ("fraud", vp.FRAUD), ("billing_dispute", vp.BILLING)):
        if pattern.search(head):
            return VERDICTS[reason]
    if vp.NOT_ARRIVED.search(head) and vp.MARKED_DELIVERED.search(head):
        return VERDICTS["not_received"]
    asked = [s for s in sentences if vp.asks_for_person(s)]
    if not asked:
        return None
    rest = " ".join(vp.without_request(s) for s in sentences)
    return PERSON_AND_MORE if vp.MORE_REQUEST.search(rest) else VERDICTS["human_request"]


_TOOL_VERDICTS = {
    Code.OWNERSHIP_MISMATCH: Verdict("P1", "security", wording.NOT_FOUND_ORDER, hidden=True),
    Code.ORDER_NOT_FOUND: Verdict(None, "not_found", wording.NOT_FOUND_ORDER),
    Code.TOO_MANY_UNKNOWN_ORDERS: Verdict(None, "unknown_orders", wording.TOO_MANY_UNKNOWN_ORDERS),
    Code.IDENTITY_MISMATCH: Verdict("P1", "identity", wording.for_code(Code.IDENTITY_MISMATCH)),
    Code.LIMIT_EXCEEDED: Verdict("P2", "refund_approval", already_ticketed=True),
    Code.PAYMENT_FAILED: Verdict("P2", "payment_failed", already_ticketed=True),
}


def for_tool(code: Code) -> Verdict | None:
    """The verdict a tool outcome carries by itself, whichever face made the call."""
    return _TOOL_VERDICTS.get(code)


_FAILURES = {
    "tool_failure": Verdict("P2", "tool_failure"),
    "model_failure": Verdict("P2", "model_failure", wording.MODEL_OUTAGE),
    "turn_limit": Verdict("P2", "turn_limit", wording.TURN_LIMIT),
    "token_budget": Verdict("P2", "token_budget", wording.TURN_LIMIT),
    "context_exceeded": Verdict("P2", "turn_limit", wording.TURN_LIMIT),
}


def for_failure(kind: str) -> Verdict:
    return _FAILURES[kind]


CLARIFICATION = Verdict("P3", "clarification")


def is_failed_round(codes: list[Code]) -> bool:
    """A turn in which the model's tool calls were refused for missing or wrong information."""
    informative = [c for c in codes if c not in (Code.TICKET_OPENED, Code.TICKET_UPDATED)]
    return bool(informative) and all(c in _CLARIFY_CODES for c in informative)


# --- the output guard ----------------------------------------------------------------------------------
CONTRADICTED = ("false_refund", "false_order", "false_handoff")
WORDS = re.compile(r"[^\W\d_]{2,}")
TOOL_NAMES = frozenset(t.name for t in TOOLS)  # our own tools: their names never reach a customer
GUARD_LANGUAGES = ("en", "es", "de", "fr")


@dataclass(frozen=True, slots=True)
class Guarded:
    """What a customer gets for a model's text, and why it differs from what the model wrote.

    `reason` is None when the text went out as written (internal names put in plain words, ids
    withheld and refund sentences rendered from their rows aside); otherwise false_refund,
    false_handoff or false_order (a claim the store contradicts: `text` is then code's true answer,
    and `corrections` says for each contradicted sentence what the store holds, so the model can be
    asked once more), tool_text (pasted JSON or a code field), unsafe_text (an exception), or
    tool_text_removed (a sentence repeating an internal note was dropped, or an internal name put
    in plain words)."""

    text: str
    reason: str | None = None
    found: tuple[str, ...] = ()  # what was wrong, for the audit log
    corrections: tuple[tuple[str, str], ...] = ()  # (the contradicted sentence, what the store holds)

    @property
    def replaced(self) -> bool:
        """Not sent exactly as the model wrote it (logged, counted and audited)."""
        return self.reason is not None

    @property
    def contradicted(self) -> bool:
        return self.reason in CONTRADICTED


async def guard(
    text: str,
    *,
    deps: Deps,
    ctx: CallContext,
    notes: Iterable[str] = (),
    seen_refunds: Iterable[str] = (),
    quotes: Iterable[str] = (),
    evidence: facts.Evidence | None = None,
) -> Guarded:
    """Tool traffic out, claims checked against the store, then the sanitizer, in one read
    transaction (none when nothing needs reading). `quotes` are the help-center passages this
    turn's search returned: repeating them claims nothing. `evidence` is what the conversation's
    tool results showed and what the customer wrote: an amount or identifier there is grounded."""
    grounds = (evidence or facts.Evidence()).grounds()
    tool = strip_tool_text(cap(text, MAX_REPLY), notes=notes, tools=grounds.evidence.tools | TOOL_NAMES)
    claimed = ctx.actor.kind != "staff" and claims.has_claims(tool.text)
    step = _Guard(deps, ctx, tool, grounds, seen_refunds=seen_refunds, quotes=quotes)
    if tool.unusable or looks_like_exception(tool.text) or claimed or needs_lookup(tool.text, grounds.showed):
        async with deps.store.read() as s:
            return await step.run(s, claimed)
    return await step.run(deps.store, claimed)


class _Guard:
    """The guard's steps for one reply, reading through `s` (the store itself when nothing needs reading)."""

    def __init__(
        self,
        deps: Deps,
        ctx: CallContext,
        tool: ToolText,
        grounds: facts.Grounds,
        *,
        seen_refunds: Iterable[str],
        quotes: Iterable[str],
    ) -> None:
        self.deps, self.ctx, self.tool, self.grounds = deps, ctx, tool, grounds
        self.seen_refunds, self.quotes = seen_refunds, quotes

    async def clean(self, s: Store | AsyncSession, value: str) -> Sanitized:
        return await sanitize(
            value,
            store=s,
            customer_id=self.ctx.actor.customer_id,
            order_pattern=self.deps.settings.order_number_pattern,
            trusted=self.grounds.showed,
        )

    async def facts(self, s: Store | AsyncSession) -> facts.Facts:
        return await facts.load_facts(
            s,
            session_id=self.ctx.session_id,
            customer_id=self.ctx.actor.customer_id,
            today=self.deps.clock.now().date(),
            seen_refunds=self.seen_refunds,
            order_pattern=self.deps.settings.order_number_pattern,
        )

    async def language(self) -> str:
        """The customer's language for code's own sentences: the channel's, else their last message's."""
        known = language_of(self.ctx.locale)
        if known in GUARD_LANGUAGES:
            return str(known)
        said = (self.grounds.evidence.customer[-1:] or ("",))[0]
        if len(WORDS.findall(said)) < 4:
            return "en"  # too few words to tell a language by
        return await guess_language(said, GUARD_LANGUAGES) or "en"

    async def run(self, s: Store | AsyncSession, claimed: bool) -> Guarded:
        tool = self.tool
        if tool.unusable or looks_like_exception(tool.text):
            reason = "tool_text" if tool.unusable else "unsafe_text"
            summary = truthful.state_summary(await self.facts(s), await self.language())
            return Guarded((await self.clean(s, summary)).text, reason, tool.found)
        text = tool.text
        if claimed:
            known = await self.facts(s)
            verdict = claims.review(text, known, quotes=self.quotes, grounds=self.grounds)
            if verdict.contradicted:
                return await self.contradicted(s, known, verdict)
            text = verdict.text
        out = await self.clean(s, text)
        if out.replaced:
            summary = truthful.state_summary(await self.facts(s), await self.language())
            return Guarded((await self.clean(s, summary)).text, "unsafe_text", tuple(out.withheld))
        return Guarded(out.text, "tool_text_removed" if tool.found else None, tool.found)

    async def contradicted(self, s: Store | AsyncSession, known: facts.Facts, verdict: claims.Review) -> Guarded:
        """Code's true answer to what the customer asked (the orders they named, every item), in
        their language; and what the store holds for each contradicted sentence."""
        said = self.grounds.evidence.customer[-1:]
        asked = claims.references(said[0], known, self.grounds)[0] if said else []
        text = truthful.truthful_reply(known, verdict.contradicted, asked=asked, language=await self.language())
        return Guarded(
            (await self.clean(s, text)).text,
            verdict.reason,
            tuple(c.sentence for c in verdict.contradicted),
            tuple(truthful.corrections(known, verdict.contradicted)),
        )


async def apply(deps: Deps, ctx: CallContext, verdict: Verdict, summary: str) -> Escalation | None:
    """`apply_in` in a transaction of its own."""
    if verdict.priority is None:
        return None
    async with deps.store.write() as s:
        return await apply_in(s, deps, ctx, verdict, summary)


async def apply_in(s: AsyncSession, deps: Deps, ctx: CallContext, verdict: Verdict, summary: str) -> Escalation | None:
    """Open or raise the ticket a verdict calls for (none when `priority` is None), in the caller's
    transaction. Probes of other customers' orders by one customer are grouped into their one
    unresolved security ticket, which is not announced again, so a customer probing many ids pages
    staff once. Raises TicketQuotaExceeded when the caller's quota refuses a new ticket (nothing
    is written)."""
    if verdict.priority is None:
        return None
    grouped = await _security_ticket(s, ctx) if verdict.reason == SECURITY else None
    if grouped is not None:
        grouped.summary = f"{grouped.summary}\n{summary}"[-4000:]
        grouped.updated_at = deps.clock.now()
        ticket, created = grouped, False
    else:
        ticket, created = await open_or_update(
            s,
            deps,
            session_id=ctx.session_id,
            priority=verdict.priority,
            reason=verdict.reason,
            summary=summary,
            customer_id=ctx.actor.customer_id,
            quota=ctx.ticket_quota,
        )
    if not verdict.hidden:  # a hidden ticket counted would tell /metrics what the reply does not
        metrics.ESCALATIONS.labels(ctx.channel, ticket.priority).inc()
    return Escalation(ticket.id, ticket.priority, verdict.reason, created, ticket.public_ref, verdict.hidden)


async def _security_ticket(s: AsyncSession, ctx: CallContext) -> Ticket | None:
    if ctx.actor.customer_id is None:
        return None
    return (
        await s.scalars(
            select(Ticket)
            .where(
                Ticket.customer_id == ctx.actor.customer_id,
                Ticket.reason == SECURITY,
                Ticket.status != TicketStatus.RESOLVED,
            )
            .order_by(Ticket.id)
            .limit(1)
        )
    ).one_or_none()
