"""The staff ticket workflow, handoff included:

    open ──claim──▶ claimed ──resolve──▶ resolved        claimed ──release──▶ open
      └──────────────resolve───────────────┘

Claiming hands the ticket's conversation to that person in the same transaction (the bot goes
quiet there, on every channel); releasing or resolving gives it back. A person who writes in a
customer's thread takes it over (`take_over`): a handoff ticket claimed in their name. Only staff
act on tickets, by one rule (`_may_act`): a ticket that is open, claimed by themselves, or
claimed by a colleague who is not staff. Every action is audit-logged, and each transition is a
single conditional UPDATE: when two people press Claim at once exactly one of them owns the
ticket, on one process or on several.
Every escalation into a ticket and every transition is also a row of its history
(`ticket_events`), which `details` returns with the conversation for staff.

    TicketQuotaExceeded   a new ticket was refused: its quota (an anonymous visitor's address,
                          say) has opened its share this hour; nothing was written
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import PRIORITIES, ChatSession, Customer, HelpAnswer, Message, Ticket, TicketEvent
from storage.ratelimit import hit_in
from tools import outbox, wording
from tools.codes import Code, ToolResult
from tools.context import Actor, Deps, TicketQuota, audit
from tools.sessions import remember_link, settle

BOT = "supportbot"  # the actor of escalations: the agent, a guard or a face, never a person's choice
REASONS = {
    "legal": "Legal threat or complaint",
    "fraud": "Fraud or chargeback concern",
    "human_request": "Customer asked for a person",
    "security": "Asked about another customer's order or account",
    "identity": "Identity could not be verified",
    "refund_approval": "Refund over the autonomous limit needs approval",
    "change_approval": "Order change whose refund passes the autonomous limit needs approval",
    "payment_failed": "Payment gateway declined a refund",
    "tool_failure": "A system the bot relies on kept failing",
    "model_failure": "The AI model was unavailable",
    "turn_limit": "The bot could not finish within its step limit",
    "token_budget": "The conversation used up its token budget",
    "clarification": "The bot could not get what it needed after two tries",
    "handoff": "A person took over the conversation",
    "question": "A question the help center could not answer",
    "dead_letter": "A message could not be answered after several attempts",
    "other": "Escalated by the bot",
}


def new_ref() -> str:
    """An unguessable public reference for a ticket (ids are one global sequence)."""
    return "T-" + secrets.token_hex(5).upper()


class TicketQuotaExceeded(Exception):
    def __init__(self, quota: TicketQuota) -> None:
        self.quota = quota
        super().__init__(f"at most {quota.limit} new tickets per {quota.window_s} s for this caller")


def reason_text(reason: str) -> str:
    return REASONS.get(reason, REASONS["other"])


def _higher(a: str, b: str) -> str:
    return min(a, b, key=PRIORITIES.index)  # P1 is the highest


def log_event(
    s: AsyncSession, deps: Deps, ticket: Ticket, kind: str, *, actor: str, reason: str, note: str = ""
) -> None:
    s.add(
        TicketEvent(
            ticket_id=ticket.id,
            kind=kind,
            priority=ticket.priority,
            reason=reason,
            actor=actor,
            note=note[:1000],
            created_at=deps.clock.now(),
        )
    )


def describe(t: Ticket) -> dict[str, object]:
    """A ticket as staff see it (never a customer: they see at most its public reference)."""
    return {
        "ticket_id": t.id,
        "ref": t.public_ref,
        "priority": t.priority,
        "reason": t.reason,
        "status": t.status,
        "customer_id": t.customer_id,
        "order_id": t.order_id,
        "refund_id": t.refund_id,
        "change_id": t.change_id,
        "claimed_by": t.claimed_by,
        "claimed_kind": t.claimed_kind,
        "summary": t.summary,
    }


async def open_or_update(
    s: AsyncSession,
    deps: Deps,
    *,
    session_id: str | None,
    priority: str,
    reason: str,
    summary: str,
    customer_id: str | None = None,
    order_id: str | None = None,
    refund_id: str | None = None,
    change_id: str | None = None,
    quota: TicketQuota | None = None,
) -> tuple[Ticket, bool]:
    """Open a ticket, or update the session's unresolved one (a unique index allows only one).

    Returns (ticket, created). Runs inside the caller's transaction. A new ticket counts against
    `quota`; past it, TicketQuotaExceeded and no ticket (updating the session's ticket is free).
    """
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {PRIORITIES}")
    now = deps.clock.now()
    if session_id is not None:  # a help-center answer given earlier in the session did not settle it
        await s.execute(
            update(HelpAnswer)
            .where(HelpAnswer.session_id == session_id, HelpAnswer.escalated_at.is_(None))
            .values(escalated_at=now)
        )
    for _ in range(3):
        current = None
        if session_id is not None:
            current = (
                await s.scalars(select(Ticket).where(Ticket.session_id == session_id, Ticket.status != "resolved"))
            ).one_or_none()
        if current is not None:
            raised = _higher(current.priority, priority) != current.priority
            current.priority = _higher(current.priority, priority)
            # a raised ticket shows why it was raised; a vague first reason gives way to any better one
            if raised or (reason != current.reason and current.reason in ("other", "clarification", "identity")):
                current.reason = reason
            if summary and summary not in current.summary:
                current.summary = f"{current.summary}\n{summary}"[-4000:]
            current.customer_id = current.customer_id or customer_id
            current.order_id = current.order_id or order_id
            current.refund_id = current.refund_id or refund_id
            current.change_id = current.change_id or change_id
            current.updated_at = now
            log_event(s, deps, current, "raised" if raised else "updated", actor=BOT, reason=reason, note=summary)
            await s.flush()
            return current, False
        ticket = Ticket(
            public_ref=new_ref(),
            priority=priority,
            reason=reason,
            status="open",
            customer_id=customer_id,
            order_id=order_id,
            refund_id=refund_id,
            change_id=change_id,
            summary=summary[:4000],
            session_id=session_id,
            created_at=now,
            updated_at=now,
        )
        try:
            async with s.begin_nested():
                s.add(ticket)
                await s.flush()
                if quota is not None and await hit_in(
                    s, subject=f"tickets:{quota.key}", now=now, limit=quota.limit, window_s=quota.window_s
                ):
                    raise TicketQuotaExceeded(quota)  # leaves the savepoint: the ticket is not kept
        except IntegrityError:
            continue  # another process opened the session's ticket a moment ago: update that one
        log_event(s, deps, ticket, "opened", actor=BOT, reason=reason, note=summary)
        return ticket, True
    raise RuntimeError("could not open or update the session's ticket")


def _may_act(actor: Actor) -> Any:
    """Staff may act on a ticket that is open, claimed by themselves, or claimed by a colleague (who
    took the thread over but cannot press staff buttons): one rule for release, resolve, approve,
    deny and reply, on every face."""
    return or_(
        Ticket.status == "open",
        and_(Ticket.status == "claimed", or_(Ticket.claimed_by == actor.staff_id, Ticket.claimed_kind == "colleague")),
    )


def _refusal(current: Ticket | None, actor: Actor) -> ToolResult:
    """Why a conditional transition found nothing to move."""
    if current is None:
        return ToolResult(Code.NOT_FOUND, "No such ticket.")
    if current.status == "claimed" and current.claimed_by != actor.staff_id:
        return ToolResult(Code.ALREADY_CLAIMED, f"Already claimed by {current.claimed_by}.", describe(current))
    return ToolResult(Code.INVALID_STATE, f"The ticket is {current.status}.", describe(current))


After = Callable[[AsyncSession, Ticket], Awaitable[None]]


async def _transition(
    deps: Deps, *, ticket_id: int, staff: Actor, action: str, where: Any, values: dict[str, object], after: After
) -> ToolResult:
    """One conditional UPDATE (so racing replicas change a ticket once), then `after` (the handoff
    and what the customer is told) in the same transaction."""
    async with deps.store.write() as s:
        moved = None
        if staff.kind == "staff":
            moved = (
                await s.scalars(
                    update(Ticket)
                    .where(Ticket.id == ticket_id, where)
                    .values(updated_at=deps.clock.now(), **values)
                    .returning(Ticket)
                    .execution_options(synchronize_session=False)
                )
            ).one_or_none()
        if staff.kind != "staff":
            result = ToolResult(Code.NOT_ALLOWED, "Only support staff can act on tickets.")
        elif moved is not None:
            await after(s, moved)
            result = ToolResult(Code.OK, f"Ticket {action}.", describe(moved))
            log_event(s, deps, moved, action, actor=staff.ref, reason=moved.reason)
        else:
            result = _refusal(await s.get(Ticket, ticket_id), staff)
        audit(
            s,
            deps,
            actor=staff,
            action=f"ticket_{action}",
            input={"ticket_id": ticket_id},
            outcome=result.code,
            session_id=moved.session_id if moved else None,
        )
    return result


async def hand_to(s: AsyncSession, deps: Deps, ticket: Ticket, person: str) -> None:
    """A claimed ticket takes its conversation from the bot; the customer is told once a person joined."""
    session = await s.get(ChatSession, ticket.session_id) if ticket.session_id else None
    if session is None or session.actor_kind == "staff":
        return
    if session.handed_off_by is None:
        outbox.add(s, deps, session=session, kind="notice", text=wording.STAFF_JOINED)
    session.handed_off_by = person
    session.updated_at = deps.clock.now()


async def _give_back(s: AsyncSession, deps: Deps, ticket: Ticket) -> None:
    """A released or resolved ticket returns its conversation to the bot, and says so."""
    session = await s.get(ChatSession, ticket.session_id) if ticket.session_id else None
    if session is None or session.handed_off_by is None:
        return
    session.handed_off_by = None
    session.updated_at = deps.clock.now()
    outbox.add(s, deps, session=session, kind="notice", text=wording.HANDED_BACK)


async def claim(deps: Deps, *, ticket_id: int, staff: Actor) -> ToolResult:
    """Claim an open ticket, or take over one a colleague holds; the conversation becomes theirs."""
    where = or_(
        Ticket.status == "open",
        and_(Ticket.status == "claimed", Ticket.claimed_kind == "colleague", Ticket.claimed_by != staff.staff_id),
    )

    async def after(s: AsyncSession, ticket: Ticket) -> None:
        await hand_to(s, deps, ticket, str(staff.staff_id))

    values = {
        "status": "claimed",
        "claimed_by": staff.staff_id,
        "claimed_kind": "staff",
        "claimed_at": deps.clock.now(),
    }
    return await _transition(
        deps, ticket_id=ticket_id, staff=staff, action="claimed", where=where, values=values, after=after
    )


async def release(deps: Deps, *, ticket_id: int, staff: Actor) -> ToolResult:
    """Give a claimed ticket back to the queue; the conversation goes back to the bot."""
    where = and_(_may_act(staff), Ticket.status == "claimed")

    async def after(s: AsyncSession, ticket: Ticket) -> None:
        await _give_back(s, deps, ticket)

    values = {"status": "open", "claimed_by": None, "claimed_kind": None, "claimed_at": None}
    return await _transition(
        deps, ticket_id=ticket_id, staff=staff, action="released", where=where, values=values, after=after
    )


async def resolve(deps: Deps, *, ticket_id: int, staff: Actor) -> ToolResult:
    """Resolve a ticket that is open, claimed by this staff member, or claimed by a colleague."""

    async def after(s: AsyncSession, ticket: Ticket) -> None:
        await _give_back(s, deps, ticket)
        if ticket.session_id:
            await settle(s, deps, ticket.session_id)

    values = {"status": "resolved", "resolved_at": deps.clock.now()}
    return await _transition(
        deps, ticket_id=ticket_id, staff=staff, action="resolved", where=_may_act(staff), values=values, after=after
    )


async def touch_for(s: AsyncSession, deps: Deps, *, ticket_id: int, staff: Actor) -> Ticket | ToolResult:
    """In the caller's transaction: the ticket, if this staff member may act on it now (the same
    rule as release and resolve), else the refusal. The conditional UPDATE holds the ticket's row
    for the rest of the transaction, so a racing claim waits for it."""
    if staff.kind != "staff":
        return ToolResult(Code.NOT_ALLOWED, "Only support staff can act on tickets.")
    ticket = (
        await s.scalars(
            update(Ticket)
            .where(Ticket.id == ticket_id, _may_act(staff))
            .values(updated_at=deps.clock.now())
            .returning(Ticket)
            .execution_options(synchronize_session=False)
        )
    ).one_or_none()
    return ticket if ticket is not None else _refusal(await s.get(Ticket, ticket_id), staff)


async def take_over(deps: Deps, *, session_id: str, person: Actor) -> Ticket | None:
    """A person (staff or a colleague) wrote in a customer's conversation: from now on it is theirs.
    A handoff ticket claimed in their name always exists, so staff can resolve it (which gives the
    conversation back). Returns the ticket, or None when there was nothing to take over."""
    async with deps.store.write() as s:
        session = await s.get(ChatSession, session_id)
        if session is None or session.actor_kind == "staff" or session.handed_off_by is not None:
            return None
        session.handed_off_by = person.staff_id
        session.updated_at = deps.clock.now()
        ticket, _ = await open_or_update(
            s,
            deps,
            session_id=session.id,
            priority="P3",
            reason="handoff",
            summary=f"<@{person.staff_id}> took over the conversation.",
            customer_id=session.customer_id,
        )
        if ticket.status == "open":
            ticket.status, ticket.claimed_by, ticket.claimed_kind = "claimed", person.staff_id, person.kind
            ticket.claimed_at = ticket.updated_at = deps.clock.now()
            log_event(s, deps, ticket, "claimed", actor=person.ref, reason=ticket.reason, note="took the thread over")
        audit(
            s,
            deps,
            actor=person,
            action="take_over",
            input={"session_id": session_id},
            outcome="OK",
            session_id=session_id,
        )
        return ticket


async def list_tickets(deps: Deps, *, statuses: tuple[str, ...] = ("open", "claimed"), limit: int = 50) -> list[Ticket]:
    async with deps.store.read() as s:
        rows = await s.scalars(
            select(Ticket).where(Ticket.status.in_(statuses)).order_by(Ticket.priority, Ticket.created_at).limit(limit)
        )
        return list(rows.all())


async def details(deps: Deps, *, ticket_id: int, staff: Actor, messages: int = 40) -> ToolResult:
    """A ticket for staff eyes: its fields, its history (oldest first) and the newest `messages`
    of its conversation (text and tool calls; tool results are the bot's, not the customer's)."""
    if staff.kind != "staff":
        return ToolResult(Code.NOT_ALLOWED, "Only support staff can see tickets.")
    async with deps.store.read() as s:
        ticket = await s.get(Ticket, ticket_id)
        if ticket is None:
            return ToolResult(Code.NOT_FOUND, "No such ticket.")
        events = (
            await s.scalars(select(TicketEvent).where(TicketEvent.ticket_id == ticket_id).order_by(TicketEvent.id))
        ).all()
        customer = await s.get(Customer, ticket.customer_id) if ticket.customer_id else None
        session = await s.get(ChatSession, ticket.session_id) if ticket.session_id else None
        rows = (
            await s.scalars(
                select(Message)
                .where(Message.session_id == ticket.session_id)
                .order_by(Message.id.desc())
                .limit(messages)
            )
        ).all()
    history = [
        {
            "at": e.created_at.isoformat(timespec="seconds"),
            "kind": e.kind,
            "priority": e.priority,
            "reason": e.reason,
            "actor": e.actor,
            "note": e.note,
        }
        for e in events
    ]
    data = {
        **describe(ticket),
        "customer": f"{customer.name} <{customer.email}>" if customer else None,
        "channel": session.channel if session else None,
        "created_at": ticket.created_at.isoformat(timespec="seconds"),
        "history": history,
        "transcript": [line for m in reversed(rows) for line in _transcript(m)],
    }
    return ToolResult(Code.OK, "", data)


def _transcript(m: Message) -> list[dict[str, str]]:
    who = "customer" if m.role == "user" else "supportbot"
    out = []
    for block in m.content:
        if block.get("type") == "text" and str(block.get("text", "")).strip():
            out.append({"who": who, "text": str(block["text"])})
        elif block.get("type") == "tool_use":
            out.append({"who": "tool", "text": f"{block.get('name')} {json.dumps(block.get('input'))[:300]}"})
    return out


@dataclass(frozen=True, slots=True)
class Link:
    channel: str
    subject: str
    customer_id: str


async def link_customer(
    deps: Deps, *, staff: Actor, channel: str, subject: str, customer: str, ticket_id: int | None = None
) -> ToolResult:
    """Staff bind a channel identity (e.g. a Slack user) to a customer, by id or email.

    Sessions of that identity that are unverified become verified for that customer.
    """
    cust = None
    if staff.kind == "staff":
        async with deps.store.read() as s:
            cust = (
                await s.get(Customer, customer)
                or (await s.scalars(select(Customer).where(Customer.email == customer.strip().lower()))).one_or_none()
            )
    if staff.kind != "staff":
        result = ToolResult(Code.NOT_ALLOWED, "Only support staff can link customers.")
    elif cust is None:
        result = ToolResult(Code.NOT_FOUND, "No such customer.")
    else:
        await remember_link(deps, channel=channel, subject=subject, customer_id=cust.id, linked_by=staff.ref)
        result = ToolResult(Code.OK, "Linked.", {"channel": channel, "subject": subject, "customer_id": cust.id})
    async with deps.store.write() as s:
        if cust is not None and result.ok and ticket_id is not None:
            await s.execute(
                update(Ticket).where(Ticket.id == ticket_id, Ticket.customer_id.is_(None)).values(customer_id=cust.id)
            )
        audit(
            s,
            deps,
            actor=staff,
            action="link_customer",
            input={"channel": channel, "subject": subject, "customer": customer, "ticket_id": ticket_id},
            outcome=result.code,
        )
    return result
