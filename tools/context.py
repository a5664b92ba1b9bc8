"""Who is asking, and what every tool may use.

An `Actor` and its `CallContext` are built by the channel that opened the session (Slack, the
shell, MCP, the web API) from that channel's own notion of identity. No tool input can change
them: tools read the actor from here and never from their arguments.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from storage.engine import Store
from storage.models import AuditLog
from storage.settings import Settings
from storage.types import Clock

ActorKind = Literal["customer", "unverified", "staff", "colleague"]


@dataclass(frozen=True, slots=True)
class Actor:
    kind: ActorKind
    customer_id: str | None = None
    staff_id: str | None = None  # the person's id, for staff and for colleagues
    subject: str | None = None  # the channel identity, e.g. "T01:U02" for a Slack user

    def __post_init__(self) -> None:
        if (self.kind == "customer") != (self.customer_id is not None):
            raise ValueError("a customer actor needs a customer id, and only a customer actor has one")
        if (self.kind in ("staff", "colleague")) != (self.staff_id is not None):
            raise ValueError("staff and colleagues need a person id, and only they have one")

    @classmethod
    def customer(cls, customer_id: str, subject: str | None = None) -> Actor:
        return cls("customer", customer_id=customer_id, subject=subject)

    @classmethod
    def staff(cls, staff_id: str) -> Actor:
        return cls("staff", staff_id=staff_id, subject=staff_id)

    @classmethod
    def colleague(cls, person_id: str) -> Actor:
        """Someone of the support company's own workspace who is not staff: they can take a thread
        over by writing in it, but not act on tickets."""
        return cls("colleague", staff_id=person_id, subject=person_id)

    @classmethod
    def unverified(cls, subject: str | None = None) -> Actor:
        return cls("unverified", subject=subject)

    @property
    def is_person(self) -> bool:
        """Staff or a colleague: a person of the support company, who can take a conversation over."""
        return self.kind in ("staff", "colleague")

    @property
    def ref(self) -> str:
        """How the audit log and the refunds table name this actor."""
        if self.kind == "customer":
            return f"customer:{self.customer_id}"
        if self.kind in ("staff", "colleague"):
            return f"{self.kind}:{self.staff_id}"
        return f"unverified:{self.subject or '-'}"


@dataclass(frozen=True, slots=True)
class TicketQuota:
    """At most `limit` new tickets per `window_s` seconds for everyone sharing `key` (the website
    gives each anonymous visitor's client address one), counted in the store across replicas."""

    key: str
    limit: int
    window_s: int = 3600


@dataclass(frozen=True, slots=True)
class CallContext:
    session_id: str
    actor: Actor
    channel: str = "other"  # the session's channel (slack, web, shell, mcp): a metrics label
    ticket_quota: TicketQuota | None = None  # set by a face whose callers may not open tickets freely
    locale: str | None = None  # the customer's language as the channel knows it (e.g. "es-MX"), if it does


@dataclass(frozen=True, slots=True)
class Deps:
    """The outside world as tools see it: the store, settings, the clock and the payment gateway."""

    store: Store
    settings: Settings
    clock: Clock
    gateway: Any  # tools.gateway.PaymentGateway (Any here to keep this module import-light)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12].upper()}"


def audit(
    s: AsyncSession,
    deps: Deps,
    *,
    actor: Actor,
    action: str,
    outcome: str,
    input: dict[str, Any],
    session_id: str | None = None,
) -> None:
    s.add(
        AuditLog(
            session_id=session_id,
            actor=actor.ref,
            action=action,
            input=input,
            outcome=outcome,
            created_at=deps.clock.now(),
        )
    )


@dataclass(frozen=True, slots=True)
class Tool:
    """A model tool: its input model's docstring and JSON schema are exactly what the model sees."""

    name: str
    input: type[BaseModel]
    run: Callable[[Any, CallContext, Deps], Awaitable[Any]]
    activity: str  # what the customer sees while it runs, in plain words

    @property
    def description(self) -> str:
        return inspect.cleandoc(self.input.__doc__ or "")

    def schema(self) -> dict[str, Any]:
        schema = self.input.model_json_schema()
        schema.pop("title", None)
        schema.pop("description", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        return {"name": self.name, "description": self.description, "input_schema": schema}
