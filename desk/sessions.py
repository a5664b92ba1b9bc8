"""Sessions as the channels open them: get-or-create by the channel's own key, the actor rebuilt
from the store on every turn (so a staff link takes effect at once), and the session's outcome."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ChatSession, Customer, CustomerLink, InboxItem, Message, OutboxMessage, Refund, Ticket
from storage.states import InboxStatus, RefundStatus
from storage.types import estimate_tokens
from tools.context import Actor, CallContext, Deps, new_id
from tools.tickets import visible_open

Session = ChatSession  # what faces hold of a session: they read it, the desk writes it


def slack_thread(session: ChatSession | None) -> tuple[str, str] | None:
    """(channel, thread_ts) of a Slack session, from its key slack:CHANNEL:THREAD_TS."""
    if session is None or not session.external_key or not session.external_key.startswith("slack:"):
        return None
    _, channel, ts = session.external_key.split(":", 2)
    return channel, ts


def _actor(row: ChatSession) -> Actor:
    if row.actor_kind == "customer" and row.customer_id:
        return Actor.customer(row.customer_id, subject=row.subject)
    if row.actor_kind == "staff" and row.staff_id:
        return Actor.staff(row.staff_id)
    return Actor.unverified(row.subject)


async def open_session(
    deps: Deps, *, channel: str, actor: Actor, external_key: str | None = None, locale: str | None = None
) -> CallContext:
    """The session for `external_key` (created with `actor` the first time), or a new one.

    `locale` is the customer's language when the channel knows it (Slack's users.info locale, the
    web's Accept-Language); a later known locale replaces an earlier one."""
    now = deps.clock.now()
    values = {
        "id": new_id("S"),
        "channel": channel,
        "external_key": external_key,
        "actor_kind": actor.kind,
        "customer_id": actor.customer_id,
        "staff_id": actor.staff_id,
        "subject": actor.subject,
        "locale": locale[:16] if locale else None,
        "created_at": now,
        "updated_at": now,
    }
    if external_key is None:
        async with deps.store.write() as s:
            s.add(ChatSession(**values))
        return CallContext(values["id"], actor, channel=channel, locale=values["locale"])  # type: ignore[arg-type]
    insert = postgresql.insert if deps.store.dialect == "postgresql" else sqlite.insert
    async with deps.store.write() as s:
        await s.execute(insert(ChatSession).values(**values).on_conflict_do_nothing(index_elements=["external_key"]))
        if values["locale"]:
            await s.execute(
                update(ChatSession).where(ChatSession.external_key == external_key).values(locale=values["locale"])
            )
        row = (await s.scalars(select(ChatSession).where(ChatSession.external_key == external_key))).one()
    return context_of(row)


def context_of(row: ChatSession) -> CallContext:
    """The call context of a stored session: its actor is the one the channel verified when it opened."""
    return CallContext(row.id, _actor(row), channel=row.channel, locale=row.locale)


async def load_context(deps: Deps, session_id: str) -> CallContext | None:
    async with deps.store.read() as s:
        row = await s.get(ChatSession, session_id)
    return context_of(row) if row else None


async def linked_customer(deps: Deps, *, channel: str, subject: str) -> str | None:
    async with deps.store.read() as s:
        link = await s.get(CustomerLink, (channel, subject))
    return link.customer_id if link else None


async def customer_by_email(deps: Deps, email: str) -> Customer | None:
    async with deps.store.read() as s:
        return (await s.scalars(select(Customer).where(Customer.email == email.strip().lower()))).one_or_none()


async def find_customer(s: AsyncSession, key: str) -> Customer | None:
    """A customer by id, else by email, in the caller's transaction."""
    found = await s.get(Customer, key)
    if found is None:
        found = (await s.scalars(select(Customer).where(Customer.email == key.strip().lower()))).one_or_none()
    return found


async def verify_by_email(deps: Deps, *, channel: str, subject: str, email: str, vouched_by: str) -> str | None:
    """The customer whose email a channel vouches for (a Slack profile's), remembered as that
    identity's link; None when no customer has that email."""
    async with deps.store.write() as s:
        cust = (await s.scalars(select(Customer).where(Customer.email == email.strip().lower()))).one_or_none()
        if cust is None:
            return None
        await remember_link(s, deps, channel=channel, subject=subject, customer_id=cust.id, linked_by=vouched_by)
        return cust.id


async def remember_link(
    s: AsyncSession, deps: Deps, *, channel: str, subject: str, customer_id: str, linked_by: str
) -> None:
    """Bind a channel identity to a customer, and verify that identity's unverified sessions, in the
    caller's transaction."""
    insert = postgresql.insert if deps.store.dialect == "postgresql" else sqlite.insert
    now = deps.clock.now()
    stmt = insert(CustomerLink).values(
        channel=channel, subject=subject, customer_id=customer_id, linked_by=linked_by, created_at=now
    )
    await s.execute(
        stmt.on_conflict_do_update(
            index_elements=["channel", "subject"],
            set_={"customer_id": customer_id, "linked_by": linked_by, "created_at": now},
        )
    )
    await s.execute(
        update(ChatSession)
        .where(ChatSession.channel == channel, ChatSession.subject == subject, ChatSession.actor_kind == "unverified")
        .values(actor_kind="customer", customer_id=customer_id, updated_at=now)
    )


async def settle(
    s: AsyncSession,
    deps: Deps,
    session_id: str,
    *,
    last_reply: str = "",
    count_turn: bool = False,
    also: dict[str, Any] | None = None,
) -> tuple[str, str | None]:
    """Record the session's outcome from the store, in the caller's transaction: an unresolved
    ticket (other than a hidden one) means escalated; a refund awaiting confirmation, or a question just asked, means
    awaiting_customer; else auto_resolved. `also`: more of the session's columns to set in the
    same statement. Returns (outcome, priority)."""
    ticket_priority, waiting = (await s.execute(_SETTLE_FACTS, {"sid": session_id})).one()
    if ticket_priority is not None:
        outcome, priority = "escalated", ticket_priority
    elif waiting is not None or last_reply.rstrip().endswith("?"):
        outcome, priority = "awaiting_customer", None
    else:
        outcome, priority = "auto_resolved", None
    values: dict[str, Any] = {"outcome": outcome, "outcome_priority": priority, "updated_at": deps.clock.now()}
    if count_turn:
        values["turns"] = ChatSession.turns + 1
    values |= also or {}
    await s.execute(update(ChatSession).where(ChatSession.id == session_id).values(**values))
    return outcome, priority


# built once (its cache key is computed once): the session's open ticket and its waiting refund. A
# hidden ticket (another customer's order: "security") is staff's business and leaves the outcome as
# an unknown order would, or the outcome, and the turns counted by it, would tell the difference.
_SETTLE_FACTS = select(
    select(Ticket.priority).where(visible_open(bindparam("sid"))).limit(1).scalar_subquery(),
    select(Refund.id)
    .where(Refund.session_id == bindparam("sid"), Refund.status == RefundStatus.AWAITING_CONFIRMATION)
    .limit(1)
    .scalar_subquery(),
)


def text_message(deps: Deps, *, session_id: str, role: str, text: str, customer_text: bool = False) -> Message:
    """A plain text turn of the conversation history, for the caller to add to its transaction."""
    content = [{"type": "text", "text": text}]
    return Message(
        session_id=session_id,
        role=role,
        content=content,
        is_customer_text=customer_text,
        tokens_est=estimate_tokens(content),
        created_at=deps.clock.now(),
    )


async def by_key(deps: Deps, key: str) -> ChatSession | None:
    async with deps.store.read() as s:
        return (await s.scalars(_BY_KEY, {"key": key})).one_or_none()


async def with_answer(deps: Deps, key: str, item_id: int) -> tuple[ChatSession | None, bool, bool]:
    """A conversation's session, whether the work item has outgoing rows already (it was answered
    before a crash) and whether more of the conversation's messages wait behind it, in one read."""
    async with deps.store.read() as s:
        row = (await s.execute(_BY_KEY_WITH_ROWS, {"key": key, "item": item_id})).one_or_none()
        more = await s.scalar(_MORE_WAITING, {"key": key, "item": item_id})
    return (row[0], bool(row[1]), bool(more)) if row is not None else (None, False, bool(more))


# built once: a statement's cache key is computed once per object, not at each call
_BY_KEY = select(ChatSession).where(ChatSession.external_key == bindparam("key"))
_MORE_WAITING = select(
    select(InboxItem.id)
    .where(
        InboxItem.conversation == bindparam("key"),
        InboxItem.id > bindparam("item"),
        InboxItem.status == InboxStatus.PENDING,
    )
    .exists()
)
_BY_KEY_WITH_ROWS = select(
    ChatSession, select(OutboxMessage.id).where(OutboxMessage.inbox_id == bindparam("item")).exists()
).where(ChatSession.external_key == bindparam("key"))
