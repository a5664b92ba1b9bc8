"""The acts of staff and of the support company's people, each one transaction:

    claim · release · resolve      the ticket state machine (tools.tickets); claiming hands the
                                   conversation to that person, releasing or resolving gives it back
    approve · deny                 the refund a ticket is about, by the same rule as resolve
    reply                          a staff member writes to the customer, on the customer's channel
    link                           bind the ticket's channel identity to a customer record
    take_over                      a person wrote in a customer's conversation: it is theirs now
    dead_letter                    work given up on: an apology, an alert, a P2 ticket

What the customer is told is written to the outgoing log (`desk.outbox`) in the act's own
transaction, so it is said exactly once whatever face or replica acted.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from desk import outbox
from desk.sessions import find_customer, remember_link, settle, text_message
from storage.models import ChatSession, Refund, Ticket
from storage.states import RefundStatus, TicketStatus
from storage.types import format_cents
from tools import refunds, tickets, wording
from tools.codes import Code, ToolResult
from tools.context import Actor, Deps, audit

MAX_REPLY_CHARS = 4000


# --- the queue ----------------------------------------------------------------------------------------
async def queue(deps: Deps, *, limit: int = 50) -> list[Ticket]:
    """Open and claimed tickets, highest priority first, oldest first within one."""
    return await tickets.list_tickets(deps, limit=limit)


details = tickets.details  # a ticket, its history and its conversation, for staff eyes
describe = tickets.describe  # a ticket as staff see it


# --- the ticket's life ------------------------------------------------------------------------------
async def claim(deps: Deps, *, ticket_id: int, staff: Actor) -> ToolResult:
    """Claim an open ticket, or take over one a colleague holds; the conversation becomes theirs."""
    values = {
        "status": TicketStatus.CLAIMED,
        "claimed_by": staff.staff_id,
        "claimed_kind": "staff",
        "claimed_at": deps.clock.now(),
    }
    async with deps.store.write() as s:
        moved = await tickets.move(
            s, deps, ticket_id=ticket_id, staff=staff, action="claimed", where=tickets.claim_rule(staff), values=values
        )
        if isinstance(moved, Ticket):
            await _hand_to(s, deps, moved, str(staff.staff_id))
    return _moved(moved, "claimed")


async def release(deps: Deps, *, ticket_id: int, staff: Actor) -> ToolResult:
    """Give a claimed ticket back to the queue; the conversation goes back to the bot."""
    values = {"status": TicketStatus.OPEN, "claimed_by": None, "claimed_kind": None, "claimed_at": None}
    async with deps.store.write() as s:
        where = tickets.release_rule(staff)
        moved = await tickets.move(
            s, deps, ticket_id=ticket_id, staff=staff, action="released", where=where, values=values
        )
        if isinstance(moved, Ticket):
            await _give_back(s, deps, moved)
    return _moved(moved, "released")


async def resolve(deps: Deps, *, ticket_id: int, staff: Actor) -> ToolResult:
    """Resolve a ticket that is open, claimed by this staff member, or claimed by a colleague."""
    values = {"status": TicketStatus.RESOLVED, "resolved_at": deps.clock.now()}
    async with deps.store.write() as s:
        where = tickets.resolve_rule(staff)
        moved = await tickets.move(
            s, deps, ticket_id=ticket_id, staff=staff, action="resolved", where=where, values=values
        )
        if isinstance(moved, Ticket):
            await _give_back(s, deps, moved)
            if moved.session_id:
                await settle(s, deps, moved.session_id)
    return _moved(moved, "resolved")


def _moved(moved: Ticket | ToolResult, action: str) -> ToolResult:
    return moved if isinstance(moved, ToolResult) else ToolResult(Code.OK, f"Ticket {action}.", tickets.describe(moved))


async def _hand_to(s: AsyncSession, deps: Deps, ticket: Ticket, person: str) -> None:
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
        ticket, _ = await tickets.open_or_update(
            s,
            deps,
            session_id=session.id,
            priority="P3",
            reason="handoff",
            summary=f"<@{person.staff_id}> took over the conversation.",
            customer_id=session.customer_id,
        )
        if ticket.status == TicketStatus.OPEN:
            tickets.claimed_by(ticket, person, deps)
            tickets.log_event(s, deps, ticket, "claimed", actor=person.ref, reason=ticket.reason, note="took over")
        audit(s, deps, actor=person, action="take_over", input={"session_id": session_id}, outcome="OK")
        return ticket


# --- the refund a ticket is about -------------------------------------------------------------------
async def decide(deps: Deps, *, staff: Actor, ticket_id: int, approve: bool) -> ToolResult:
    """Approve or deny the refund a ticket is about. Allowed by the ticket rule of `resolve` (open,
    yours, or a colleague's), checked in the same transaction as the refund's move; the customer
    hears the decision in that transaction, or, for a payout, once the gateway has answered."""
    action = "approve_refund" if approve else "deny_refund"
    async with deps.store.write() as s:
        found = await tickets.lock_for(s, deps, ticket_id=ticket_id, staff=staff)
        if isinstance(found, ToolResult):
            audit(s, deps, actor=staff, action=action, input={"ticket_id": ticket_id}, outcome=found.code)
            return found
        if found.refund_id is None:
            return ToolResult(Code.NOT_FOUND, "This ticket has no refund waiting for a decision.")
        refund_id = found.refund_id
        if approve:
            result = await refunds.approve_in(s, deps, refund_id=refund_id, staff=staff)
        else:
            result = await refunds.deny_in(s, deps, refund_id=refund_id, staff=staff)
            if result.code is Code.OK:
                await _tell_decision(s, deps, refund_id)
    if approve and result is None:
        result = await refunds.pay(deps, refund_id)
        if result.code in (Code.OK, Code.REFUND_PROCESSED, Code.PAYMENT_FAILED):
            async with deps.store.write() as s:
                await _tell_decision(s, deps, refund_id)
    assert result is not None
    return result


async def _tell_decision(s: AsyncSession, deps: Deps, refund_id: str) -> None:
    """The customer hears the decision in words built from the refund row as it is now."""
    refund = await s.get(Refund, refund_id)
    session = await s.get(ChatSession, refund.session_id) if refund and refund.session_id else None
    if refund is None or session is None:
        return
    outbox.add(s, deps, session=session, kind="notice", text=decision_text(refund))
    await settle(s, deps, session.id)


async def awaiting_approval(deps: Deps, ticket_id: int) -> tuple[str, str] | None:
    """(order id, amount) of the refund a ticket waits on approval for; None when nothing waits."""
    async with deps.store.read() as s:
        ticket = await s.get(Ticket, ticket_id)
        refund = await s.get(Refund, ticket.refund_id) if ticket and ticket.refund_id else None
    if refund is None or refund.status != RefundStatus.PENDING_APPROVAL:
        return None
    return refund.order_id, format_cents(refund.amount_cents, refund.currency)


async def not_approved(deps: Deps, *, staff: Actor, ticket_id: int, answer: bool | None, session_id: str) -> ToolResult:
    """The person asked to confirm an approval did not (declined, or could not be asked): nothing
    moves, and the audit log says so."""
    async with deps.store.write() as s:
        asked = {"ticket_id": ticket_id, "confirmed": answer}
        audit(
            s, deps, actor=staff, action="approve_refund", outcome=Code.NOT_ALLOWED, input=asked, session_id=session_id
        )
    return ToolResult(Code.NOT_ALLOWED, wording.NOT_APPROVED)


def decision_text(refund: Refund) -> str:
    amount = format_cents(refund.amount_cents, refund.currency)
    if refund.status == RefundStatus.PROCESSED:
        return wording.refund_done(order_id=refund.order_id, amount=amount)
    if refund.status == RefundStatus.DENIED:
        return wording.refund_denied(order_id=refund.order_id)
    if refund.status == RefundStatus.FAILED:
        return wording.for_code(Code.PAYMENT_FAILED)
    return wording.refund_processing(order_id=refund.order_id, amount=amount)


# --- words to the customer --------------------------------------------------------------------------
async def reply(deps: Deps, *, staff: Actor, ticket_id: int, text: str) -> ToolResult:
    """A staff member writes to the ticket's customer. Replying to an open ticket claims it (a person
    is now in the conversation); one claimed by another member of staff is refused."""
    text = text.replace("\x00", "").strip()[:MAX_REPLY_CHARS]
    if not text:
        return ToolResult(Code.INVALID_INPUT, "The reply is empty.")
    async with deps.store.write() as s:
        found = await tickets.lock_for(s, deps, ticket_id=ticket_id, staff=staff)
        result = found if isinstance(found, ToolResult) else await _reply_in(s, deps, found, staff, text)
        audit(
            s,
            deps,
            actor=staff,
            action="staff_reply",
            input={"ticket_id": ticket_id, "chars": len(text)},
            outcome=result.code,
            session_id=found.session_id if isinstance(found, Ticket) else None,
        )
    return result


async def _reply_in(s: AsyncSession, deps: Deps, ticket: Ticket, staff: Actor, text: str) -> ToolResult:
    session = await s.get(ChatSession, ticket.session_id) if ticket.session_id else None
    if session is None or session.actor_kind == "staff":
        return ToolResult(Code.NOT_FOUND, "This ticket has no customer conversation to reply to.")
    if ticket.status == TicketStatus.OPEN:
        tickets.claimed_by(ticket, staff, deps)
        tickets.log_event(s, deps, ticket, "claimed", actor=staff.ref, reason=ticket.reason, note="replied")
    await _hand_to(s, deps, ticket, str(staff.staff_id))
    row = outbox.add(s, deps, session=session, kind="staff_reply", text=text, author=staff.ref)
    s.add(text_message(deps, session_id=session.id, role="assistant", text=f"{wording.STAFF_REPLY_PREFIX}{text}"))
    await s.flush()
    return ToolResult(Code.OK, "Sent to the customer.", {"ticket_id": ticket.id, "message_id": row.id})


# --- who the customer is ----------------------------------------------------------------------------
async def link(deps: Deps, *, staff: Actor, ticket_id: int, customer: str) -> ToolResult:
    """Bind the ticket's channel identity (a Slack user, a web visitor) to a customer, by id or
    email: that identity's unverified sessions become verified for that customer."""
    if staff.kind != "staff":
        return ToolResult(Code.NOT_ALLOWED, "Only support staff can link customers.")
    async with deps.store.write() as s:
        ticket = await s.get(Ticket, ticket_id)
        session = await s.get(ChatSession, ticket.session_id) if ticket and ticket.session_id else None
        if ticket is None or session is None or not session.subject:
            return ToolResult(Code.NOT_FOUND, "That ticket has no channel identity to link.")
        cust = await find_customer(s, customer)
        if cust is None:
            result = ToolResult(Code.NOT_FOUND, "No such customer.")
        else:
            await remember_link(
                s, deps, channel=session.channel, subject=session.subject, customer_id=cust.id, linked_by=staff.ref
            )
            ticket.customer_id = ticket.customer_id or cust.id
            data = {"channel": session.channel, "subject": session.subject, "customer_id": cust.id}
            result = ToolResult(Code.OK, "Linked.", data)
        audit(
            s,
            deps,
            actor=staff,
            action="link_customer",
            input={
                "channel": session.channel,
                "subject": session.subject,
                "customer": customer,
                "ticket_id": ticket_id,
            },
            outcome=result.code,
        )
    return result


# --- work given up on -------------------------------------------------------------------------------
async def dead_letter(
    deps: Deps,
    *,
    session_id: str | None,
    item_id: int,
    attempts: int,
    channel: str | None = None,
    thread_ts: str | None = None,
) -> Ticket:
    """Work given up on after INBOX_MAX_ATTEMPTS: the customer gets an apology on their own channel,
    staff an alert and a P2 ticket (replay with `supportbot inbox retry ID`). One rule, every face."""
    async with deps.store.write() as s:
        session = await s.get(ChatSession, session_id) if session_id else None
        ticket, _ = await tickets.open_or_update(
            s,
            deps,
            session_id=session.id if session else None,
            priority="P2",
            reason="dead_letter",
            summary=f"A customer message could not be answered after {attempts} attempts (inbox item {item_id}). "
            f"Replay it with `supportbot inbox retry {item_id}` once the cause is fixed.",
            customer_id=session.customer_id if session else None,
        )
        outbox.add(
            s, deps, session=session, kind="apology", text=wording.DEAD_LETTER, channel=channel, thread_ts=thread_ts
        )
        staff_channel = deps.settings.support_staff_channel
        if staff_channel:
            outbox.add(
                s,
                deps,
                session=None,
                kind="alert",
                text=wording.dead_letter_alert(item_id=item_id, attempts=attempts),
                channel=staff_channel,
                data={"ticket_id": ticket.id, "thread": [channel, thread_ts] if channel else None},
            )
        if session is not None:
            await settle(s, deps, session.id)
        return ticket
