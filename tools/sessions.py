"""Sessions as the channels open them: get-or-create by the channel's own key, and the actor
rebuilt from the store on every turn (so a staff `link_customer` takes effect at once)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ChatSession, Customer, CustomerLink, Message, Refund, Ticket
from tools.context import Actor, CallContext, Deps, new_id


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


async def remember_link(deps: Deps, *, channel: str, subject: str, customer_id: str, linked_by: str) -> None:
    """Bind a channel identity to a customer, and verify that identity's unverified sessions."""
    insert = postgresql.insert if deps.store.dialect == "postgresql" else sqlite.insert
    now = deps.clock.now()
    stmt = insert(CustomerLink).values(
        channel=channel, subject=subject, customer_id=customer_id, linked_by=linked_by, created_at=now
    )
    async with deps.store.write() as s:
        await s.execute(
            stmt.on_conflict_do_update(
                index_elements=["channel", "subject"],
                set_={"customer_id": customer_id, "linked_by": linked_by, "created_at": now},
            )
        )
        await s.execute(
            update(ChatSession)
            .where(
                ChatSession.channel == channel, ChatSession.subject == subject, ChatSession.actor_kind == "unverified"
            )
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
    select(Ticket.priority)
    .where(Ticket.session_id == bindparam("sid"), Ticket.status != "resolved", Ticket.reason != "security")
    .limit(1)
    .scalar_subquery(),
    select(Refund.id)
    .where(Refund.session_id == bindparam("sid"), Refund.status == "awaiting_confirmation")
    .limit(1)
    .scalar_subquery(),
)


def estimate_tokens(content: Any) -> int:
    """About four characters a token: close enough to budget a history, with no network call."""
    return len(json.dumps(content, ensure_ascii=False)) // 4 + 4


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
