"""Escalation and output rules enforced in code, whatever the model does.

- `classify`: legal and fraud words, or a request for a person, escalate P1 before any model call
  (English, Spanish, German). Asking *what* the bot is ("are you a real person or an AI?", "is
  this a bot?") is a question, not a request for a person.
- `escalation_for` (in tools.tickets, shared with the MCP face): tool outcomes that escalate on
  their own (identity and ownership mismatches P1; over-limit refunds P2, already ticketed).
- `is_failed_round` / CLARIFICATION_ROUNDS: the model could not get what it needed (its tool calls
  were refused for missing or wrong information, and none succeeded) in two consecutive customer
  turns -> P3.
- `guard`: every model text on its way to a customer: pasted tool traffic removed or the reply
  replaced (tools.sanitizer.strip_tool_text), the claims check against the store (agent.claims),
  then the sanitizer. A replaced reply says why (`Guarded.reason`); the loop logs, counts and
  audits it.
Each returns a small verdict; the loop acts on it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import Counter

from agent import claims, facts
from tools.codes import Code
from tools.context import CallContext, Deps
from tools.sanitizer import EXCEPTION_TEXT, cap, sanitize, strip_tool_text
from tools.tickets import ToolEscalation, escalation_for

MAX_REPLY = 12_000  # characters of model text looked at; a model reply is a few hundred
# registered on the /metrics registry by bot.metrics (the agent knows nothing of the faces)
REPLIES_REPLACED = Counter(
    "supportbot_replies_replaced",
    "Model replies not sent as written: contradicted by the store, or tool output",
    ["reason"],
    registry=None,
)


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
CLARIFICATION_ROUNDS = 2
_CLARIFY_CODES = {Code.ORDER_NOT_FOUND, Code.INVALID_INPUT, Code.ORDER_NOT_LOOKED_UP, Code.INVALID_AMOUNT}


@dataclass(frozen=True, slots=True)
class Trigger:
    reason: str  # legal | fraud | human_request
    priority: str
    matched: str


def classify(text: str) -> Trigger | None:
    text = text[:4000]
    for reason in ("legal", "fraud", "human_request"):
        m = _PATTERNS[reason].search(text)
        if m:
            return Trigger(reason, "P1", m.group(0))
    return None


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
    text: str, *, deps: Deps, ctx: CallContext, notes: Iterable[str] = (), seen_refunds: Iterable[str] = ()
) -> Guarded:
    """Tool traffic out, claims checked against the store, then the sanitizer."""
    customer_id = ctx.actor.customer_id
    pattern = deps.settings.order_number_pattern

    async def clean(value: str) -> str:
        return (await sanitize(value, store=deps.store, customer_id=customer_id, order_pattern=pattern)).text

    async def read_facts() -> facts.Facts:
        return await facts.load_facts(
            deps.store,
            session_id=ctx.session_id,
            customer_id=customer_id,
            today=deps.clock.now().date(),
            seen_refunds=seen_refunds,
            order_pattern=pattern,
        )

    tool = strip_tool_text(cap(text, MAX_REPLY), notes=notes)
    if tool.unusable or EXCEPTION_TEXT.search(tool.text):
        reason = "tool_text" if tool.unusable else "unsafe_text"
        return Guarded(await clean(claims.state_summary(await read_facts())), reason, tool.found)
    text = tool.text
    if ctx.actor.kind != "staff" and claims.has_claims(text):
        verdict = claims.review(text, await read_facts())
        if verdict.reason is not None:
            return Guarded(await clean(verdict.text), verdict.reason, tuple(c.sentence for c in verdict.contradicted))
        text = verdict.text
    out = await sanitize(text, store=deps.store, customer_id=customer_id, order_pattern=pattern)
    if out.replaced:
        return Guarded(await clean(claims.state_summary(await read_facts())), "unsafe_text", tuple(out.withheld))
    return Guarded(out.text, "tool_text_removed" if tool.found else None, tool.found)


__all__ = [
    "CLARIFICATION_ROUNDS",
    "REPLIES_REPLACED",
    "Guarded",
    "ToolEscalation",
    "Trigger",
    "classify",
    "escalation_for",
    "guard",
    "is_failed_round",
]
