"""Escalation and output rules enforced in code, whatever the model does.

- `classify`: legal and fraud words, or a request for a person, escalate P1 before any model call.
- `escalation_for` (in tools.tickets, shared with the MCP face): tool outcomes that escalate on
  their own (identity and ownership mismatches P1; over-limit refunds P2, already ticketed).
- `is_failed_round` / CLARIFICATION_ROUNDS: the model could not get what it needed (its tool calls
  were refused for missing or wrong information, and none succeeded) in two consecutive customer
  turns -> P3.
- `guard`: every model text is cut to MAX_REPLY_BYTES and passes the sanitizer before a customer
  sees it.
Each returns a small verdict; the loop acts on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.model import cap_text
from storage.engine import Store
from tools.codes import Code
from tools.sanitizer import sanitize
from tools.tickets import ToolEscalation, escalation_for

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
CLARIFICATION_ROUNDS = 2
_CLARIFY_CODES = {Code.ORDER_NOT_FOUND, Code.INVALID_INPUT, Code.ORDER_NOT_LOOKED_UP, Code.INVALID_AMOUNT}


@dataclass(frozen=True, slots=True)
class Trigger:
    reason: str  # legal | fraud | human_request
    priority: str
    matched: str


def classify(text: str) -> Trigger | None:
    for reason in ("legal", "fraud", "human_request"):
        m = _PATTERNS[reason].search(text)
        if m:
            return Trigger(reason, "P1", m.group(0))
    return None


def is_failed_round(codes: list[Code]) -> bool:
    """A turn in which the model's tool calls were refused for missing or wrong information."""
    informative = [c for c in codes if c not in (Code.TICKET_OPENED, Code.TICKET_UPDATED)]
    return bool(informative) and all(c in _CLARIFY_CODES for c in informative)


async def guard(text: str, *, store: Store, customer_id: str | None) -> str:
    return (await sanitize(cap_text(text), store=store, customer_id=customer_id)).text


__all__ = [
    "CLARIFICATION_ROUNDS",
    "ToolEscalation",
    "Trigger",
    "classify",
    "escalation_for",
    "guard",
    "is_failed_round",
]
