"""The staff ticket workflow: open → claimed → resolved (and claimed → open on release).

Only staff actors act on tickets, every action is audit-logged with the staff id, and each
transition is a single conditional UPDATE: when two people press Claim at once exactly one of
them owns the ticket, on one process or on several.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import PRIORITIES, Customer, HelpAnswer, Ticket
from tools.codes import Code, ToolResult
from tools.context import Actor, Deps, audit
from tools.sessions import remember_link

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
    "question": "A question the help center could not answer",
    "dead_letter": "A message could not be answered after several attempts",
    "other": "Escalated by the bot",
}


@dataclass(frozen=True, slots=True)
class ToolEscalation:
    priority: str
    reason: str
    already_ticketed: bool  # the tool opened the ticket itself (over-limit refunds)


def escalation_for(code: Code) -> ToolEscalation | None:
    """Tool outcomes that escalate by themselves, whichever face made the call."""
    if code is Code.OWNERSHIP_MISMATCH:
        return ToolEscalation("P1", "security", False)
    if code is Code.IDENTITY_MISMATCH:
        return ToolEscalation("P1", "identity", False)
    if code is Code.LIMIT_EXCEEDED:
        return ToolEscalation("P2", "refund_approval", True)
    return None


def reason_text(reason: str) -> str:
    return REASONS.get(reason, REASONS["other"])


def _higher(a: str, b: str) -> str:
    return min(a, b, key=PRIORITIES.index)  # P1 is the highest


def describe(t: Ticket) -> dict[str, object]:
    return {
        "ticket_id": t.id,
        "priority": t.priority,
        "reason": t.reason,
        "status": t.status,
        "customer_id": t.customer_id,
        "order_id": t.order_id,
        "refund_id": t.refund_id,
        "claimed_by": t.claimed_by,
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


async def _transition(
    deps: Deps, *, ticket_id: int, staff: Actor, action: str, where: list[object], values: dict[str, object]
) -> ToolResult:
    async with deps.store.write() as s:
        moved = None
        if staff.kind == "staff":
            moved = (
                await s.scalars(
                    update(Ticket)
                    .where(Ticket.id == ticket_id, *where)
                    .values(updated_at=deps.clock.now(), **values)
                    .returning(Ticket)
                    .execution_options(synchronize_session=False)
                )
            ).one_or_none()
        if staff.kind != "staff":
            result = ToolResult(Code.NOT_ALLOWED, "Only support staff can act on tickets.")
        elif moved is not None:
            result = ToolResult(Code.OK, f"Ticket {action}.", describe(moved))
        else:
            current = await s.get(Ticket, ticket_id)
            if current is None:
                result = ToolResult(Code.NOT_FOUND, "No such ticket.")
            elif action == "claimed" and current.status == "claimed":
                result = ToolResult(
                    Code.ALREADY_CLAIMED, f"Already claimed by {current.claimed_by}.", describe(current)
                )
            else:
                result = ToolResult(Code.INVALID_STATE, f"The ticket is {current.status}.", describe(current))
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


async def claim(deps: Deps, *, ticket_id: int, staff: Actor) -> ToolResult:
    return await _transition(
        deps,
        ticket_id=ticket_id,
        staff=staff,
        action="claimed",
        where=[Ticket.status == "open"],
        values={"status": "claimed", "claimed_by": staff.staff_id, "claimed_at": deps.clock.now()},
    )


async def release(deps: Deps, *, ticket_id: int, staff: Actor) -> ToolResult:
    return await _transition(
        deps,
        ticket_id=ticket_id,
        staff=staff,
        action="released",
        where=[Ticket.status == "claimed", Ticket.claimed_by == staff.staff_id],
        values={"status": "open", "claimed_by": None, "claimed_at": None},
    )


async def resolve(deps: Deps, *, ticket_id: int, staff: Actor) -> ToolResult:
    """Resolve a ticket that is open, or claimed by this staff member."""
    from sqlalchemy import or_

    return await _transition(
        deps,
        ticket_id=ticket_id,
        staff=staff,
        action="resolved",
        where=[or_(Ticket.status == "open", (Ticket.status == "claimed") & (Ticket.claimed_by == staff.staff_id))],
        values={"status": "resolved", "resolved_at": deps.clock.now()},
    )


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
