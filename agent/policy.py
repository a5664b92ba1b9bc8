"""Escalation verdicts and output rules, enforced in code whatever the model does.

Every reason to hand a conversation to people is decided here, once, as a `Verdict`: the ticket
to open (priority and reason), what the customer is told, and whether the model may go on. The
agent loop alone acts on verdicts (the MCP face, which has no loop, applies them through the
same `apply` in `agent.desk`).

- `classify`: legal and fraud words, or a request for a person, before any model call: P1, a
  fixed reply, no model call.
- `for_tool`: tool outcomes that decide by themselves. An ownership mismatch (another customer's
  order) is P1 and ends the turn with exactly the words of an unknown order, which also ends the
  turn, so the two are indistinguishable to the customer; the ticket stays hidden from them. An
  identity mismatch is P1 and ends the turn. An over-limit refund is P2, ticketed by the refund
  itself, and the model goes on to tell the customer.
- `for_failure`: a tool that kept failing (P2, the model is told and goes on), the model failing,
  the call cap, the token budget, the context window (P2, fixed apology, the turn ends).
- `is_failed_round` / CLARIFICATION: the model could not get what it needed in two consecutive
  turns -> P3.
- `guard`: every model text is cut to MAX_REPLY_BYTES and passes the sanitizer before a customer
  sees it.

Exceptions (limits the loop hits; it turns each into its verdict):

    AgentLimit
     ├── MaxModelCallsExceeded   MAX_MODEL_CALLS_PER_TURN model calls without an answer
     └── TokenBudgetExceeded     the session spent SESSION_TOKEN_BUDGET tokens
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agent.events import Escalation
from agent.model import cap_text
from storage import metrics
from storage.engine import Store
from storage.models import Ticket
from tools import wording
from tools.codes import Code
from tools.context import CallContext, Deps
from tools.sanitizer import sanitize
from tools.tickets import open_or_update

_WORDS = {
    "legal": [r"lawyers?", r"attorneys?", r"sue", r"suing", r"sued", r"lawsuits?", r"legal action", r"unacceptable"],
    "fraud": [r"fraud", r"fraudulent", r"scams?", r"scammed", r"chargebacks?"],
    "human_request": [
        r"humans?",
        r"managers?",
        r"supervisors?",
        r"real person",
        r"agents?",
        r"speak (?:to|with) (?:someone|somebody|a person)",
        r"talk (?:to|with) (?:someone|somebody|a person)",
    ],
}
_PATTERNS = {reason: re.compile(r"\b(?:" + "|".join(words) + r")\b", re.IGNORECASE) for reason, words in _WORDS.items()}
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
        if _PATTERNS[reason].search(head):
            reply = wording.ESCALATED_HUMAN if reason == "human_request" else wording.ESCALATED_LEGAL
            return Verdict("P1", reason, reply)
    return None


_TOOL_VERDICTS = {
    Code.OWNERSHIP_MISMATCH: Verdict("P1", "security", wording.NOT_FOUND_ORDER, hidden=True),
    Code.ORDER_NOT_FOUND: Verdict(None, "not_found", wording.NOT_FOUND_ORDER),
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


async def guard(text: str, *, store: Store, customer_id: str | None) -> str:
    return (await sanitize(cap_text(text), store=store, customer_id=customer_id)).text


async def apply(deps: Deps, ctx: CallContext, verdict: Verdict, summary: str) -> Escalation | None:
    """Open or raise the ticket a verdict calls for (none when `priority` is None). Probes of other
    customers' orders by one customer are grouped into their one unresolved security ticket, which is
    not announced again, so a customer probing many ids pages staff once. Raises
    TicketQuotaExceeded when the caller's quota refuses a new ticket (nothing is written)."""
    if verdict.priority is None:
        return None
    async with deps.store.write() as s:
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
                Ticket.status != "resolved",
            )
            .order_by(Ticket.id)
            .limit(1)
        )
    ).one_or_none()
