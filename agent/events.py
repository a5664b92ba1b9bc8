"""What a turn yields, in order, to whichever face runs it (Slack, the shell, the web API, eval).

`Reply.text` has always passed the output guard; nothing else carries model text. `Reply.citations`
are the help-center articles it links, each one a result of this turn's search (agent.citations).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class Status:
    """Tool activity in plain words ("Looking up your order")."""

    text: str
    kind: Literal["status"] = "status"


@dataclass(frozen=True, slots=True)
class Citation:
    """A help-center article a reply used: only ever one this turn's search returned."""

    article_id: int
    title: str
    url: str  # the passage's URL, with its heading's anchor


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    citations: tuple[Citation, ...] = ()
    kind: Literal["reply"] = "reply"

    def sentences(self) -> list[str]:
        """For faces that stream: the guarded reply, one sentence at a time."""
        import re

        parts = re.split(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])", self.text.strip())
        return [p for p in parts if p]


@dataclass(frozen=True, slots=True)
class Escalation:
    """A ticket was opened or raised. Faces show a customer at most `ref` (never the id, a global
    sequence), and nothing of a `hidden` one."""

    ticket_id: int
    priority: str
    reason: str
    created: bool
    ref: str | None = None
    hidden: bool = False
    kind: Literal["escalation"] = "escalation"


@dataclass(frozen=True, slots=True)
class Confirmation:
    """A refund waits for the customer's button (or "yes"): faces render the prompt and buttons."""

    refund_id: str
    order_id: str
    item: str
    amount: str
    text: str
    kind: Literal["confirmation"] = "confirmation"


@dataclass(frozen=True, slots=True)
class Error:
    """Something failed and was handled (the customer got an apology): for logs and metrics."""

    what: Literal[
        "model_unavailable", "tool_failure", "turn_limit", "token_budget", "refusal", "context_exceeded", "ticket_limit"
    ]
    kind: Literal["error"] = "error"


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.output_tokens + other.output_tokens,
        )

    @property
    def total(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class Done:
    outcome: str  # auto_resolved | escalated | awaiting_customer
    priority: str | None
    model_calls: int
    usage: Usage
    turn_s: float
    model_s: float  # time spent awaiting the model; turn_s - model_s is the bot's own time
    tools: dict[str, int] = field(default_factory=dict)  # outcome code -> count
    said: tuple[int, ...] = ()  # the outgoing-log rows the turn wrote (for its face to deliver)
    kind: Literal["done"] = "done"


Event = Status | Reply | Escalation | Confirmation | Error | Done
