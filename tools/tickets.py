"""The ticket state machine (storage.states.TICKETS):

    open ──claim──▶ claimed ──resolve──▶ resolved        claimed ──release──▶ open
      └──────────────resolve───────────────┘

Only staff act on tickets, by one rule (`_may_act`): a ticket that is open, claimed by
themselves, or claimed by a colleague who is not staff. Each move is a single conditional UPDATE
in the caller's transaction (`move`), audit-logged: when two people press Claim at once exactly
one of them owns the ticket, on one process or on several. The handoff that goes with a claim
(the bot goes quiet in that conversation) is the desk's (`desk.staff`). Every escalation into a
ticket and every move is also a row of its history (`ticket_events`), which `details` returns
with the conversation for staff. A new ticket past its caller's quota raises
`tools.codes.TicketQuotaExceeded`.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import PRIORITIES, ChatSession, Customer, HelpAnswer, Message, Ticket, TicketEvent
from storage.ratelimit import hit_in
from storage.states import TICKETS, TicketStatus
from tools.codes import Code, TicketQuotaExceeded, ToolResult
from tools.context import Actor, Deps, TicketQuota, audit

SECURITY = "security"  # a hidden ticket: another customer's order was probed; its own, beside the visible one
BOT = "supportbot"  # the actor of escalations: the agent, a guard or a face, never a person's choice


def new_ref() -> str:
    """An unguessable public reference for a ticket (ids are one global sequence)."""
    return "T-" + secrets.token_hex(5).upper()


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
    facts = {"customer_id": customer_id, "order_id": order_id, "refund_id": refund_id, "change_id": change_id}
    if session_id is not None:  # a help-center answer given earlier in the session did not settle it
        await s.execute(
            update(HelpAnswer)
            .where(HelpAnswer.session_id == session_id, HelpAnswer.escalated_at.is_(None))
            .values(escalated_at=now)
        )
    for _ in range(3):
        current = None
        if session_id is not None:
            hidden = Ticket.reason == SECURITY if reason == SECURITY else Ticket.reason != SECURITY
            open_one = Ticket.session_id == session_id, Ticket.status != TicketStatus.RESOLVED, hidden
            current = (await s.scalars(select(Ticket).where(*open_one).limit(1))).one_or_none()
        if current is not None:
            _raise(s, deps, current, priority=priority, reason=reason, summary=summary, facts=facts)
            await s.flush()
            return current, False
        ticket = await _open(s, deps, session_id=session_id, priority=priority, reason=reason, summary=summary,
                             facts=facts, quota=quota)  # fmt: skip
        if ticket is not None:
            return ticket, True
    raise RuntimeError("could not open or update the session's ticket")


def _raise(
    s: AsyncSession, deps: Deps, current: Ticket, *, priority: str, reason: str, summary: str, facts: dict[str, Any]
) -> None:
    """The session's unresolved ticket, raised to `priority` if higher, with what is new about it."""
    raised = _higher(current.priority, priority) != current.priority
    current.priority = _higher(current.priority, priority)
    # a raised ticket shows why it was raised; a vague first reason gives way to any better one
    if raised or (reason != current.reason and current.reason in ("other", "clarification", "identity")):
        current.reason = reason
    if summary and summary not in current.summary:
        current.summary = f"{current.summary}\n{summary}"[-4000:]
    current.customer_id = current.customer_id or facts["customer_id"]
    current.order_id = current.order_id or facts["order_id"]
    current.refund_id = current.refund_id or facts["refund_id"]
    current.change_id = current.change_id or facts["change_id"]
    current.updated_at = deps.clock.now()
    log_event(s, deps, current, "raised" if raised else "updated", actor=BOT, reason=reason, note=summary)


async def _open(
    s: AsyncSession,
    deps: Deps,
    *,
    session_id: str | None,
    priority: str,
    reason: str,
    summary: str,
    facts: dict[str, Any],
    quota: TicketQuota | None,
) -> Ticket | None:
    """A new ticket, in a savepoint; None when another process opened the session's ticket a moment
    ago (update that one). Raises TicketQuotaExceeded past `quota` (the ticket is not kept)."""
    now = deps.clock.now()
    ticket = Ticket(
        public_ref=new_ref(),
        priority=priority,
        reason=reason,
        status=TicketStatus.OPEN,
        summary=summary[:4000],
        session_id=session_id,
        created_at=now,
        updated_at=now,
        **facts,
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
        return None
    log_event(s, deps, ticket, "opened", actor=BOT, reason=reason, note=summary)
    return ticket


def _may_act(actor: Actor) -> Any:
    """Staff may act on a ticket that is open, claimed by themselves, or claimed by a colleague (who
    took the thread over but cannot press staff buttons): one rule for release, resolve, approve,
    deny and reply, on every face."""
    return or_(
        Ticket.status == TicketStatus.OPEN,
        and_(
            Ticket.status == TicketStatus.CLAIMED,
            or_(Ticket.claimed_by == actor.staff_id, Ticket.claimed_kind == "colleague"),
        ),
    )


def _refusal(current: Ticket | None, actor: Actor) -> ToolResult:
    """Why a conditional transition found nothing to move."""
    if current is None:
        return ToolResult(Code.NOT_FOUND, "No such ticket.")
    if current.status == TicketStatus.CLAIMED and current.claimed_by != actor.staff_id:
        return ToolResult(Code.ALREADY_CLAIMED, f"Already claimed by {current.claimed_by}.", describe(current))
    return ToolResult(Code.INVALID_STATE, f"The ticket is {current.status}.", describe(current))


def visible_open(session_id: Any) -> Any:
    """For a WHERE: the session's unresolved ticket its customer may know of (not a hidden one)."""
    return and_(Ticket.session_id == session_id, Ticket.status != TicketStatus.RESOLVED, Ticket.reason != SECURITY)


# the WHERE of each staff move: who may make it, and from which states (see storage.states.TICKETS)
def claim_rule(staff: Actor) -> Any:
    """An open ticket, or one a colleague holds (a person who took the thread over but is not staff)."""
    return or_(
        Ticket.status == TicketStatus.OPEN,
        and_(
            Ticket.status == TicketStatus.CLAIMED,
            Ticket.claimed_kind == "colleague",
            Ticket.claimed_by != staff.staff_id,
        ),
    )


def release_rule(staff: Actor) -> Any:
    return and_(_may_act(staff), Ticket.status == TicketStatus.CLAIMED)


def resolve_rule(staff: Actor) -> Any:
    return _may_act(staff)


async def move(
    s: AsyncSession, deps: Deps, *, ticket_id: int, staff: Actor, action: str, where: Any, values: dict[str, object]
) -> Ticket | ToolResult:
    """One conditional UPDATE in the caller's transaction, so racing replicas change a ticket once:
    the moved ticket (its history row written), or why nothing moved. Audited either way."""
    moved = None
    if staff.kind == "staff":
        allowed = Ticket.status.in_(TICKETS.sources(str(values["status"])))
        moved = (
            await s.scalars(
                update(Ticket)
                .where(Ticket.id == ticket_id, allowed, where)
                .values(updated_at=deps.clock.now(), **values)
                .returning(Ticket)
                .execution_options(synchronize_session=False)
            )
        ).one_or_none()
    if staff.kind != "staff":
        result: Ticket | ToolResult = ToolResult(Code.NOT_ALLOWED, "Only support staff can act on tickets.")
    elif moved is not None:
        log_event(s, deps, moved, action, actor=staff.ref, reason=moved.reason)
        result = moved
    else:
        result = _refusal(await s.get(Ticket, ticket_id), staff)
    outcome = result.code if isinstance(result, ToolResult) else Code.OK
    audit(
        s,
        deps,
        actor=staff,
        action=f"ticket_{action}",
        input={"ticket_id": ticket_id},
        outcome=outcome,
        session_id=moved.session_id if moved else None,
    )
    return result


def claimed_by(ticket: Ticket, person: Actor, deps: Deps) -> None:
    """An open ticket becomes this person's (a staff reply, a take-over), in the caller's transaction."""
    ticket.status = TICKETS.check(ticket.status, TicketStatus.CLAIMED)
    ticket.claimed_by, ticket.claimed_kind = person.staff_id, person.kind
    ticket.claimed_at = ticket.updated_at = deps.clock.now()


async def lock_for(s: AsyncSession, deps: Deps, *, ticket_id: int, staff: Actor) -> Ticket | ToolResult:
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


async def list_tickets(
    deps: Deps, *, statuses: tuple[str, ...] = (TicketStatus.OPEN, TicketStatus.CLAIMED), limit: int = 50
) -> list[Ticket]:
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
