"""Sessions as the channels open them: get-or-create by the channel's own key, and the actor
rebuilt from the store on every turn (so a staff `link_customer` takes effect at once)."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from storage.models import ChatSession, Customer, CustomerLink
from tools.context import Actor, CallContext, Deps, new_id


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
        return CallContext(values["id"], actor, values["locale"])  # type: ignore[arg-type]
    insert = postgresql.insert if deps.store.dialect == "postgresql" else sqlite.insert
    async with deps.store.write() as s:
        await s.execute(insert(ChatSession).values(**values).on_conflict_do_nothing(index_elements=["external_key"]))
        if values["locale"]:
            await s.execute(
                update(ChatSession).where(ChatSession.external_key == external_key).values(locale=values["locale"])
            )
        row = (await s.scalars(select(ChatSession).where(ChatSession.external_key == external_key))).one()
    return CallContext(row.id, _actor(row), row.locale)


async def load_context(deps: Deps, session_id: str) -> CallContext | None:
    async with deps.store.read() as s:
        row = await s.get(ChatSession, session_id)
    return CallContext(row.id, _actor(row), row.locale) if row else None


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
