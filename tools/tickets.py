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
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import PRIORITIES, ChatSession, Customer, Ticket
from tools import outbox, wording
from tools.codes import Code, ToolResult
from tools.context import Actor, Deps, audit
from tools.sessions import remember_link, settle

REASONS = {
    "legal": "Legal threat or complaint",
    "fraud": "Fraud or chargeback concern",
    "human_request": "Customer asked for a person",
    "security": "Asked about another customer's order or account",
    "identity": "Identity could not be verified",
    "refund_approval": "Refund over the autonomous limit needs approval",
    "payment_failed": "Payment gateway declined a refund",
    "tool_failure": "A system the bot relies on kept failing",
    "model_failure": "The AI model was unavailable",
    "turn_limit": "The bot could not finish within its step limit",
    "token_budget": "The conversation used up its token budget",
    "clarification": "The bot could not get what it needed after two tries",
    "handoff": "A person took over the conversation",
    "dead_letter": "A message could not be answered after several attempts",
    "other": "Escalated by the bot",
}


def new_ref() -> str:
    """An unguessable public reference for a ticket (ids are one global sequence)."""
    return "T-" + secrets.token_hex(5).upper()


def reason_text(reason: str) -> str:
    return REASONS.get(reason, REASONS["other"])


def _higher(a: str, b: str) -> str:
    return min(a, b, key=PRIORITIES.index)  # P1 is the highest


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
) -> tuple[Ticket, bool]:
    """Open a ticket, or update the session's unresolved one (a unique index allows only one).

    Returns (ticket, created). Runs inside the caller's transaction.
    """
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {PRIORITIES}")
    now = deps.clock.now()
    for _ in range(3):
        current = None
        if session_id is not None:
            current = (
                await s.scalars(select(Ticket).where(Ticket.session_id == session_id, Ticket.status != "resolved"))
            ).one_or_none()
        if current is not None:
            current.priority = _higher(current.priority, priority)
            if reason != current.reason and current.reason in ("other", "clarification", "identity"):
                current.reason = reason
            if summary and summary not in current.summary:
                current.summary = f"{current.summary}\n{summary}"[-4000:]
            current.customer_id = current.customer_id or customer_id
            current.order_id = current.order_id or order_id
            current.refund_id = current.refund_id or refund_id
            current.updated_at = now
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
            summary=summary[:4000],
            session_id=session_id,
            created_at=now,
            updated_at=now,
        )
        try:
            async with s.begin_nested():
                s.add(ticket)
                await s.flush()
        except IntegrityError:
            continue  # another process opened the session's ticket a moment ago: update that one
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
