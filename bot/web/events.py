"""What a website visitor is shown: the events of a turn and of their session's message log, and
the session's state, as pydantic models (the API's schemas). Plain words and guarded text only,
never an internal id: a ticket appears by its public reference, and a hidden one not at all."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from agent.events import Confirmation, Escalation, Event, Reply, Status
from desk import turnlog
from desk.outbox import Row
from tools import wording
from tools.context import Deps


class TicketView(BaseModel):
    ref: str
    status: Literal["open", "claimed"]


class PendingRefund(BaseModel):
    refund_id: str
    order_id: str
    amount: str
    expires_at: datetime | None


class SessionState(BaseModel):
    escalated: bool
    ticket: TicketView | None
    awaiting_confirmation: PendingRefund | None
    with_person: bool  # a member of the support team has the conversation; the bot is quiet


class TextData(BaseModel):
    text: str


class CitationData(BaseModel):
    """A help-center article a reply used (only ever one its search returned)."""

    article_id: int
    title: str
    url: str


class ReplyData(BaseModel):
    text: str
    citations: list[CitationData] = []  # on a reply's last sentence: the articles it cites


class EscalationData(BaseModel):
    ticket: str  # the ticket's public reference


class ConfirmationData(BaseModel):
    refund_id: str
    order_id: str
    item: str
    amount: str
    text: str


class DoneData(BaseModel):
    state: SessionState


class MessageData(BaseModel):
    """One entry of the session's message log (`GET /api/sessions/{id}/events`)."""

    kind: Literal["reply", "confirmation", "notice", "staff_reply", "apology"]
    author: Literal["bot", "support"]
    text: str
    at: datetime
    citations: list[CitationData] = []  # the help-center articles a reply used


EVENT_DATA: dict[str, type[BaseModel]] = {
    "status": TextData,
    "reply": ReplyData,
    "escalation": EscalationData,
    "confirmation": ConfirmationData,
    "error": TextData,
    "done": DoneData,
}


def shown(event: Event) -> list[tuple[str, BaseModel]]:
    """An agent event as the customer may see it: plain words, guarded text, their own ids only."""
    if isinstance(event, Status):
        return [("status", TextData(text=event.text))]
    if isinstance(event, Reply):
        if not event.text:
            return []
        parts = event.sentences() or [event.text]
        cites = [CitationData(article_id=c.article_id, title=c.title, url=c.url) for c in event.citations]
        last = len(parts) - 1
        return [("reply", ReplyData(text=s, citations=cites if i == last else [])) for i, s in enumerate(parts)]
    if isinstance(event, Escalation) and not event.hidden and event.ref:
        return [("escalation", EscalationData(ticket=event.ref))]
    if isinstance(event, Confirmation):
        text = f"{event.text} {wording.confirm_how('web')}"
        data = ConfirmationData(
            refund_id=event.refund_id, order_id=event.order_id, item=event.item, amount=event.amount, text=text
        )
        return [("confirmation", data)]
    return []  # Error and Done: the reply already apologised; outcomes are for logs and metrics


def message(row: Row) -> MessageData:
    author: Literal["bot", "support"] = "support" if row.kind == "staff_reply" else "bot"
    cited = [CitationData.model_validate(c) for c in (row.data or {}).get("citations") or []]
    return MessageData(kind=row.kind, author=author, text=row.text, at=row.created_at, citations=cited)  # type: ignore[arg-type]


async def session_state(deps: Deps, session_id: str) -> SessionState:
    """The session as its visitor may see it (a hidden ticket stays hidden: see desk.turnlog)."""
    facts = await turnlog.session_facts(deps, session_id)
    pending = facts.pending
    return SessionState(
        escalated=facts.ticket_ref is not None,
        ticket=TicketView(ref=facts.ticket_ref, status=facts.ticket_status)  # type: ignore[arg-type]
        if facts.ticket_ref
        else None,
        awaiting_confirmation=PendingRefund(
            refund_id=pending.refund_id, order_id=pending.order_id, amount=pending.amount, expires_at=pending.expires_at
        )
        if pending
        else None,
        with_person=facts.with_person,
    )
