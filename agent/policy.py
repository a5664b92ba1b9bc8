"""Escalation verdicts and output rules, enforced in code whatever the model does.

Every reason to hand a conversation to people is decided here, once, as a `Verdict`: the ticket
to open (priority and reason), what the customer is told, and whether the model may go on. The
agent loop alone acts on verdicts (the MCP face, which has no loop, applies them through the
same `apply` in `desk`).

- `classify`: legal and fraud words, or a request for a person, before any model call: P1, a
  fixed reply, no model call (English, Spanish, German). Asking *what* the bot is ("are you a real
  person or an AI?", "is this a bot?") is a question, not a request for a person.
- `for_tool`: tool outcomes that decide by themselves. An ownership mismatch (another customer's
  order) is P1 and ends the turn with exactly the words of an unknown order, which also ends the
  turn, so the two are indistinguishable to the customer; the ticket stays hidden from them. An
  identity mismatch is P1 and ends the turn. An over-limit refund is P2, ticketed by the refund
  itself, and the model goes on to tell the customer.
- `for_failure`: a tool that kept failing (P2, the model is told and goes on), the model failing,
  the call cap, the token budget, the context window (P2, fixed apology, the turn ends).
- `is_failed_round` / CLARIFICATION: the model could not get what it needed in two consecutive
  turns -> P3.
- `guard`: every model text on its way to a customer, cut to MAX_REPLY characters first: pasted
  tool traffic removed or the reply replaced (tools.sanitizer.strip_tool_text), the claims check
  against the store (agent.claims), then the sanitizer. A replaced reply says why
  (`Guarded.reason`); the loop logs, counts (`supportbot_replies_replaced_total{reason}`) and
  audits it.

Exceptions (limits the loop hits; it turns each into its verdict):

    AgentLimit
     ├── MaxModelCallsExceeded   MAX_MODEL_CALLS_PER_TURN model calls without an answer
     └── TokenBudgetExceeded     the session spent SESSION_TOKEN_BUDGET tokens
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agent import claims, facts
from agent.events import Escalation
from storage import metrics
from storage.engine import Store
from storage.models import Ticket
from storage.states import TicketStatus
from tools import wording
from tools.codes import Code
from tools.context import CallContext, Deps
from tools.sanitizer import EXCEPTION_TEXT, ToolText, cap, needs_lookup, sanitize, strip_tool_text
from tools.tickets import open_or_update

MAX_REPLY = 12_000  # characters of model text looked at; a model reply is a few hundred


def _rx(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(alternatives), re.IGNORECASE)


_DET = r"(?:(?:a|an|the|your|some|any|one of your|real|actual|live)\s+){0,3}"  # whole words, bounded
_PERSON = (
    r"(?:humans?|persons?|people|someone|somebody|agents?|representatives?|reps?|managers?|supervisors?|staff"
    r"|employees?|operators?|colleagues?)"
)
_PATTERNS = {
    "legal": _rx(
        r"\b(?:lawyers?|attorneys?|sue|suing|sued|lawsuits?|legal action|unacceptable|small claims court)\b",
        r"\b(?:abogad[oa]s?|demandar\w{0,4}|demandar[eé]|una demanda|acciones? legales?|inaceptable|juicio)\b",
        r"\b(?:anw[aä]lt\w{0,3}|rechtsanw[aä]lt\w{0,3}|verklagen|verklage|klage|rechtliche schritte|inakzeptabel)\b",
    ),
    "fraud": _rx(
        r"\b(?:fraud|fraudulent|scams?|scammed|scammers?|chargebacks?)\b",
        r"\b(?:fraude|fraudulent[oa]|estafa\w{0,3}|estafador\w{0,2}|timo|contracargos?)\b",
        r"\b(?:betrug|betr[uü]gerisch|betr[uü]ger|abzocke|r[uü]ckbuchung)\b",
    ),
    "human_request": _rx(
        rf"\b(?:talk|speak|chat)\s+(?:to|with)\s+{_DET}(?:\w+\s+)?{_PERSON}\b",
        rf"\b(?:want|need|get|give|put|transfer|connect|escalate|forward|pass|bring|prefer)\s+(?:me\s+)?"
        rf"(?:through\s+)?(?:to\s+|with\s+)?{_DET}(?:\w+\s+)?{_PERSON}\b",
        rf"\b{_PERSON}\s+(?:I|we)\s+(?:can|could)\s+(?:talk|speak|chat)\s+(?:to|with)\b",
        rf"\b(?:is|are)\s+(?:there\s+)?(?:a|an|any)\s+(?:real\s+|actual\s+|live\s+)?{_PERSON}\s+(?:available|around|there)\b",
        r"^\W{0,3}(?:a\s+)?(?:real\s+)?(?:human|person|agent|representative|operator|manager|supervisor)"
        r"(?:\s+please)?\W{0,3}$",
        r"\b(?:human|manager|supervisor|representative|real person)\s+please\b",
        r"\bescalate\b",
        r"\bhablar\s+con\s+(?:(?:un|una|el|la|alg[uú]n|alguna|su|tu)\s+){0,3}(?:\w+\s+)?"
        r"(?:humano|persona|agente|responsable|encargad[oa]|supervisor\w{0,2}|gerente|operador\w{0,2}|alguien)\b",
        r"\b(?:p[aá]same|p[oó]ngame|p[aá]seme|comun[ií]queme|ponme)\s+con\b",
        r"\bquiero\s+(?:un|una|a)\s+(?:humano|persona real|persona|agente|responsable|gerente)\b",
        r"\bmit\s+(?:(?:einem|einer|dem|der|ihrem|ihrer)\s+){0,3}(?:\w+\s+)?"
        r"(?:menschen|mitarbeiter\w{0,2}|vorgesetzten|manager|person|kundenberater\w{0,2}|jemandem|chef)\s+"
        r"(?:sprechen|reden)\b",
        r"\b(?:verbinden|stellen)\s+sie\s+mich\b|\bverbinde\s+mich\b",
        r"\b(?:einen|ein|eine)\s+(?:menschen|mitarbeiter\w{0,2}|manager|vorgesetzten|person)\s+bitte\b",
    ),
}
CLASSIFY_MAX_CHARS = 8000  # the classifier reads the start of a message: bounded work on any input
CLARIFICATION_ROUNDS = 2
_CLARIFY_CODES = {Code.ORDER_NOT_FOUND, Code.INVALID_INPUT, Code.ORDER_NOT_LOOKED_UP, Code.INVALID_AMOUNT}


@dataclass(frozen=True, slots=True)
class Verdict:
    """What must happen: a ticket (unless `priority` is None), and, when `reply` is set, the turn
    ends at once with that reply and the model is not called again."""

    priority: str | None
    reason: str
    reply: str | None = None
    already_ticketed: bool = False  # the tool opened the ticket itself (over-limit refunds, payouts)
    hidden: bool = False  # never shown to the customer: it would tell them another customer's order exists

    @property
    def ends_turn(self) -> bool:
        return self.reply is not None


class AgentLimit(Exception):
    """A bound of the loop was reached; the loop turns it into `for_failure(exc.reason)`."""

    reason = "turn_limit"


class MaxModelCallsExceeded(AgentLimit):
    reason = "turn_limit"

    def __init__(self, calls: int) -> None:
        self.calls = calls
        super().__init__(f"no answer after {calls} model calls")


class TokenBudgetExceeded(AgentLimit):
    reason = "token_budget"

    def __init__(self, used: int, budget: int) -> None:
        self.used, self.budget = used, budget
        super().__init__(f"the session used {used} of its {budget} tokens")


def classify(text: str) -> Verdict | None:
    """Words that go straight to a person, before any model call."""
    head = text[:CLASSIFY_MAX_CHARS]
    for reason in ("legal", "fraud", "human_request"):
        if _PATTERNS[reason].search(head):  # bounded, linear-time patterns
            reply = wording.ESCALATED_HUMAN if reason == "human_request" else wording.ESCALATED_LEGAL
            return Verdict("P1", reason, reply)
    return None


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
@dataclass(frozen=True, slots=True)
class Guarded:
    """What a customer gets for a model's text, and why it differs from what the model wrote.

    `reason` is None when the text went out as written (ids withheld and refund sentences rendered
    from their rows aside); otherwise false_refund, false_handoff or false_order (a claim the store
    contradicts), tool_text (pasted JSON or a code field), unsafe_text (an exception), or
    tool_text_removed (sentences naming tools or repeating internal notes were dropped)."""

    text: str
    reason: str | None = None
    found: tuple[str, ...] = ()  # what was wrong, for the audit log

    @property
    def replaced(self) -> bool:
        return self.reason is not None


async def guard(
    text: str,
    *,
    deps: Deps,
    ctx: CallContext,
    notes: Iterable[str] = (),
    seen_refunds: Iterable[str] = (),
    quotes: Iterable[str] = (),
) -> Guarded:
    """Tool traffic out, claims checked against the store, then the sanitizer, in one read
    transaction. `quotes` are the help-center passages this turn's search returned: repeating
    them claims nothing."""
    tool = strip_tool_text(cap(text, MAX_REPLY), notes=notes)
    claimed = ctx.actor.kind != "staff" and claims.has_claims(tool.text)
    if tool.unusable or EXCEPTION_TEXT.search(tool.text) or claimed or needs_lookup(tool.text):
        async with deps.store.read() as s:
            return await _guarded(s, tool, claimed, deps=deps, ctx=ctx, seen_refunds=seen_refunds, quotes=quotes)
    return await _guarded(deps.store, tool, claimed, deps=deps, ctx=ctx, seen_refunds=seen_refunds, quotes=quotes)


async def _guarded(
    s: Store | AsyncSession,
    tool: ToolText,
    claimed: bool,
    *,
    deps: Deps,
    ctx: CallContext,
    seen_refunds: Iterable[str],
    quotes: Iterable[str],
) -> Guarded:
    """The guard's steps, reading through `s` (the store itself when nothing needs reading)."""
    customer_id = ctx.actor.customer_id
    pattern = deps.settings.order_number_pattern

    async def clean(value: str) -> str:
        return (await sanitize(value, store=s, customer_id=customer_id, order_pattern=pattern)).text

    async def read_facts() -> facts.Facts:
        return await facts.load_facts(
            s,
            session_id=ctx.session_id,
            customer_id=customer_id,
            today=deps.clock.now().date(),
            seen_refunds=seen_refunds,
            order_pattern=pattern,
        )

    if tool.unusable or EXCEPTION_TEXT.search(tool.text):
        reason = "tool_text" if tool.unusable else "unsafe_text"
        return Guarded(await clean(claims.state_summary(await read_facts())), reason, tool.found)
    text = tool.text
    if claimed:
        verdict = claims.review(text, await read_facts(), quotes=quotes)
        if verdict.reason is not None:
            return Guarded(await clean(verdict.text), verdict.reason, tuple(c.sentence for c in verdict.contradicted))
        text = verdict.text
    out = await sanitize(text, store=s, customer_id=customer_id, order_pattern=pattern)
    if out.replaced:
        return Guarded(await clean(claims.state_summary(await read_facts())), "unsafe_text", tuple(out.withheld))
    return Guarded(out.text, "tool_text_removed" if tool.found else None, tool.found)


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
    grouped = await _security_ticket(s, ctx) if verdict.reason == "security" else None
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
                Ticket.reason == "security",
                Ticket.status != TicketStatus.RESOLVED,
            )
            .order_by(Ticket.id)
            .limit(1)
        )
    ).one_or_none()
