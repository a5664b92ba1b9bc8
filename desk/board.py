"""The staff board's bookkeeping: which tickets the staff channel shows, and where.

A ticket's message is posted once: the first post is claimed with a conditional update of
`tickets.slack_ts` to POSTING (the claim's time in `rendered_at`), so two replicas never both post
it; once posted, the message's ts is recorded and later changes re-render it in place. A claim
left POSTING (a replica died between its post and recording the ts) is settled by the sweep.
The face posts; every read and write of that bookkeeping is here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update

from desk.sessions import slack_thread
from storage.models import ChatSession, Customer, Refund, Ticket
from storage.states import RefundStatus, TicketStatus
from storage.types import format_cents
from tools.context import Deps

POSTING = "posting"  # a ticket's message while one replica posts it


@dataclass(frozen=True, slots=True)
class Card:
    """What the staff channel shows of a ticket."""

    ticket: Ticket
    customer: str | None  # "Name (id)"
    thread: tuple[str, str] | None  # the customer's Slack thread (channel, ts), if the session is Slack's
    unverified_user: str | None  # the Slack user to link, when the session is unverified
    refund_pending: str | None  # the amount of a refund waiting for approval
    conversation: bool  # the ticket has a customer conversation (not a staff shell's)


async def card(deps: Deps, ticket_id: int) -> Card | None:
    async with deps.store.read() as s:
        t = await s.get(Ticket, ticket_id)
        if t is None:
            return None
        cust = await s.get(Customer, t.customer_id) if t.customer_id else None
        session = await s.get(ChatSession, t.session_id) if t.session_id else None
        refund = await s.get(Refund, t.refund_id) if t.refund_id else None
    thread = slack_thread(session)
    unverified = None
    if session is not None and session.actor_kind == "unverified" and session.subject and thread is not None:
        unverified = session.subject.split(":", 1)[1]
    pending = refund is not None and refund.status == RefundStatus.PENDING_APPROVAL
    return Card(
        ticket=t,
        customer=f"{cust.name} ({cust.id})" if cust else None,
        thread=thread,
        unverified_user=unverified,
        refund_pending=format_cents(refund.amount_cents, refund.currency) if refund and pending else None,
        conversation=session is not None and session.actor_kind != "staff",
    )


def overdue(deps: Deps, t: Ticket) -> bool:
    """An unclaimed P1 older than SLA_P1_MINUTES."""
    waited = deps.clock.now() - t.created_at
    return (
        t.priority == "P1"
        and t.status == TicketStatus.OPEN
        and waited > timedelta(minutes=deps.settings.sla_p1_minutes)
    )


async def claim_first_post(deps: Deps, ticket_id: int, at: datetime) -> bool:
    """This replica may post the ticket's first message (no other has, or is)."""
    async with deps.store.write() as s:
        res = await s.execute(
            update(Ticket)
            .where(Ticket.id == ticket_id, Ticket.slack_ts.is_(None))
            .values(slack_ts=POSTING, rendered_at=at)
        )
    return bool(res.rowcount)  # type: ignore[attr-defined]


async def record_post(deps: Deps, ticket_id: int, *, ts: str, channel: str | None, rendered: datetime | None) -> None:
    """The ticket's message is `ts`; `rendered` None has the sweep render its current state."""
    async with deps.store.write() as s:
        await s.execute(
            update(Ticket)
            .where(Ticket.id == ticket_id, Ticket.slack_ts == POSTING)
            .values(slack_ts=ts, slack_channel=channel, rendered_at=rendered)
        )


async def drop_post_claim(deps: Deps, ticket_id: int, claimed: datetime) -> None:
    async with deps.store.write() as s:
        await s.execute(
            update(Ticket)
            .where(Ticket.id == ticket_id, Ticket.slack_ts == POSTING, Ticket.rendered_at == claimed)
            .values(slack_ts=None)
        )


async def mark_rendered(deps: Deps, ticket_id: int, at: datetime) -> None:
    async with deps.store.write() as s:
        await s.execute(update(Ticket).where(Ticket.id == ticket_id).values(rendered_at=at))


async def stale_post_claims(deps: Deps, *, older_than: datetime, limit: int = 20) -> list[tuple[int, datetime]]:
    """Tickets left POSTING since before `older_than`: (id, when the claim was made)."""
    async with deps.store.read() as s:
        rows = await s.execute(
            select(Ticket.id, Ticket.rendered_at)
            .where(Ticket.slack_ts == POSTING, Ticket.rendered_at < older_than)
            .order_by(Ticket.id)
            .limit(limit)
        )
        return [(int(i), at) for i, at in rows.all()]


async def to_render(deps: Deps, limit: int = 50) -> list[int]:
    """Tickets never shown, or changed since they were last rendered (none mid-post)."""
    async with deps.store.read() as s:
        ids = await s.scalars(
            select(Ticket.id)
            .where(or_(Ticket.slack_ts.is_(None), Ticket.rendered_at.is_(None), Ticket.updated_at > Ticket.rendered_at))
            .where(or_(Ticket.slack_ts.is_(None), Ticket.slack_ts != POSTING))
            .order_by(Ticket.id)
            .limit(limit)
        )
        return list(ids.all())


async def due_reannounce(deps: Deps) -> list[Ticket]:
    """Unclaimed P1s older than SLA_P1_MINUTES, not announced for SLA_REANNOUNCE_MINUTES: marked
    announced now, in the statement that finds them, so one replica announces each."""
    st, now = deps.settings, deps.clock.now()
    async with deps.store.write() as s:
        due = await s.scalars(
            update(Ticket)
            .where(
                Ticket.status == TicketStatus.OPEN,
                Ticket.priority == "P1",
                Ticket.created_at < now - timedelta(minutes=st.sla_p1_minutes),
                or_(
                    Ticket.announced_at.is_(None),
                    and_(Ticket.announced_at < now - timedelta(minutes=st.sla_reannounce_minutes)),
                ),
            )
            .values(announced_at=now, updated_at=now)
            .returning(Ticket)
            .execution_options(synchronize_session=False)
        )
        return list(due.all())
