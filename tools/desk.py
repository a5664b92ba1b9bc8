"""The desk: every act a person takes on a conversation, written once. Every face (Slack buttons and
modals, the staff shell, MCP) calls these with the actor it verified, and only renders the result.

    claim · release · resolve      the ticket state machine (tools.tickets), handoff included
    approve · deny                 the refund a ticket is about, by the same rule as resolve
    reply                          a staff member writes to the customer, on the customer's channel
    link                           bind the ticket's channel identity to a customer record
    take_over                      a person wrote in a customer's conversation: it is theirs now
    dead_letter                    work given up on: an apology, an alert, a P2 ticket

What the customer is told is written to the outgoing log (tools.outbox) in the act's own
transaction, so it is said exactly once whatever face or replica acted. The customer's own acts
(say, confirm, cancel) need the agent and live in `agent.desk`, above this.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ChatSession, Refund, Ticket
from storage.states import RefundStatus, TicketStatus
from storage.types import format_cents
from tools import outbox, refunds, tickets, wording
from tools.codes import Code, ToolResult
from tools.context import Actor, Deps, audit
from tools.sessions import settle, text_message

MAX_REPLY_CHARS = 4000

claim = tickets.claim
release = tickets.release
resolve = tickets.resolve
take_over = tickets.take_over


async def decide(deps: Deps, *, staff: Actor, ticket_id: int, approve: bool) -> ToolResult:
    """Approve or deny the refund a ticket is about. Allowed by the ticket rule of `resolve` (open,
    yours, or a colleague's), checked in the same transaction as the refund's move."""
    async with deps.store.write() as s:
        found = await tickets.touch_for(s, deps, ticket_id=ticket_id, staff=staff)
        if isinstance(found, ToolResult):
            audit(
                s,
                deps,
                actor=staff,
                action="approve_refund" if approve else "deny_refund",
                input={"ticket_id": ticket_id},
                outcome=found.code,
            )
            return found
        if found.refund_id is None:
            return ToolResult(Code.NOT_FOUND, "This ticket has no refund waiting for a decision.")
        refund_id = found.refund_id
        if approve:
            result = await refunds.approve_in(s, deps, refund_id=refund_id, staff=staff)
        else:
            result = await refunds.deny_in(s, deps, refund_id=refund_id, staff=staff)
    if approve and result is None:
        result = await refunds.pay(deps, refund_id)
    assert result is not None
    if result.code in (Code.OK, Code.REFUND_PROCESSED, Code.PAYMENT_FAILED):
        await _tell_decision(deps, refund_id, approve=approve)
    return result


async def _tell_decision(deps: Deps, refund_id: str, *, approve: bool) -> None:
    """The customer hears the decision in words built from the refund row as it is now."""
    async with deps.store.write() as s:
        refund = await s.get(Refund, refund_id)
        session = await s.get(ChatSession, refund.session_id) if refund and refund.session_id else None
        if refund is None or session is None:
            return
        outbox.add(s, deps, session=session, kind="notice", text=decision_text(refund))
        await settle(s, deps, session.id)


def decision_text(refund: Refund) -> str:
    amount = format_cents(refund.amount_cents, refund.currency)
    if refund.status == RefundStatus.PROCESSED:
        return wording.refund_done(order_id=refund.order_id, amount=amount)
    if refund.status == RefundStatus.DENIED:
        return wording.refund_denied(order_id=refund.order_id)
    if refund.status == RefundStatus.FAILED:
        return wording.for_code(Code.PAYMENT_FAILED)
    return wording.refund_processing(order_id=refund.order_id, amount=amount)


async def reply(deps: Deps, *, staff: Actor, ticket_id: int, text: str) -> ToolResult:
    """A staff member writes to the ticket's customer. Replying to an open ticket claims it (a person
    is now in the conversation); one claimed by another member of staff is refused."""
    text = text.replace("\x00", "").strip()[:MAX_REPLY_CHARS]
    if not text:
        return ToolResult(Code.INVALID_INPUT, "The reply is empty.")
    async with deps.store.write() as s:
        found = await tickets.touch_for(s, deps, ticket_id=ticket_id, staff=staff)
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
        ticket.status, ticket.claimed_by, ticket.claimed_kind = TicketStatus.CLAIMED, staff.staff_id, "staff"
        ticket.claimed_at = deps.clock.now()
        tickets.log_event(s, deps, ticket, "claimed", actor=staff.ref, reason=ticket.reason, note="replied")
    await tickets.hand_to(s, deps, ticket, str(staff.staff_id))
    row = outbox.add(s, deps, session=session, kind="staff_reply", text=text, author=staff.ref)
    s.add(text_message(deps, session_id=session.id, role="assistant", text=f"{wording.STAFF_REPLY_PREFIX}{text}"))
    await s.flush()
    return ToolResult(Code.OK, "Sent to the customer.", {"ticket_id": ticket.id, "message_id": row.id})


async def link(deps: Deps, *, staff: Actor, ticket_id: int, customer: str) -> ToolResult:
    """Bind the ticket's channel identity (a Slack user, a web visitor) to a customer, by id or email."""
    async with deps.store.read() as s:
        ticket = await s.get(Ticket, ticket_id)
        session = await s.get(ChatSession, ticket.session_id) if ticket and ticket.session_id else None
    if staff.kind != "staff":
        return ToolResult(Code.NOT_ALLOWED, "Only support staff can link customers.")
    if session is None or not session.subject:
        return ToolResult(Code.NOT_FOUND, "That ticket has no channel identity to link.")
    return await tickets.link_customer(
        deps, staff=staff, channel=session.channel, subject=session.subject, customer=customer, ticket_id=ticket_id
    )


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
