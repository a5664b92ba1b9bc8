"""The facts the claims check reads for one session (agent.claims): the customer's orders and
refunds, which refunds this conversation made or was told of, and whether its ticket is open."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import String, cast, literal_column, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from storage.engine import Store, reading
from storage.models import Order, Refund, SessionOrder, Ticket
from storage.order_formats import Formats, load_formats
from storage.states import TicketStatus


@dataclass(frozen=True, slots=True)
class OrderFact:
    id: str
    status: str
    total_cents: int
    currency: str
    placed_on: date
    delivered_on: date | None
    items: tuple[tuple[str, int, int], ...] = ()  # (name, unit price cents, quantity)

    @property
    def item(self) -> str:
        return self.items[0][0] if self.items else "your order"

    def amounts(self) -> set[int]:
        return {self.total_cents} | {p for _, p, _ in self.items} | {p * q for _, p, q in self.items}


@dataclass(frozen=True, slots=True)
class RefundFact:
    id: str
    order_id: str
    amount_cents: int
    currency: str
    status: str
    here: bool  # made in this conversation, or reported to it by a tool


@dataclass(frozen=True, slots=True)
class Facts:
    """What the store says for one session: the customer's orders and refunds, the session's ticket."""

    orders: dict[str, OrderFact]
    refunds: tuple[RefundFact, ...]
    ticket_open: bool
    looked_up: tuple[str, ...]
    today: date
    formats: Formats = field(default_factory=Formats)


async def load_facts(
    store: Store | AsyncSession,
    *,
    session_id: str,
    customer_id: str | None,
    today: date,
    seen_refunds: Iterable[str] = (),
    order_pattern: str | None = None,
) -> Facts:
    """What the store says of this customer and session (in `store`'s own read transaction, or in
    the caller's when given a session)."""
    seen = set(seen_refunds)
    async with reading(store) as s:
        formats = await load_formats(s, order_pattern)
        orders, refunds = await _customers(s, customer_id) if customer_id else ([], [])
        rows = (await s.execute(_session_rows(session_id))).all()
    ticket = next((v for k, v in rows if k == "ticket"), None)
    looked = [v for k, v in rows if k == "order"]
    return Facts(
        orders={o.id: _order(o) for o in orders},
        refunds=tuple(
            RefundFact(
                r.id, r.order_id, r.amount_cents, r.currency, r.status, r.session_id == session_id or r.id in seen
            )
            for r in refunds
        ),
        ticket_open=ticket is not None,
        looked_up=tuple(looked),
        today=today,
        formats=formats,
    )


async def _customers(s: AsyncSession, customer_id: str) -> tuple[list[Order], list[Refund]]:
    """The customer's orders (with their items) and refunds, oldest refund first."""
    orders = (
        (await s.scalars(select(Order).where(Order.customer_id == customer_id).options(joinedload(Order.items))))
        .unique()
        .all()
    )
    refunds = (
        await s.scalars(
            select(Refund)
            .join(Order, Order.id == Refund.order_id)
            .where(Order.customer_id == customer_id)
            .order_by(Refund.created_at)
        )
    ).all()
    return list(orders), list(refunds)


def _session_rows(session_id: str) -> Any:
    """("ticket", id) of the session's unresolved tickets and ("order", id) of the orders it looked
    up, in one statement."""
    ticket = literal_column("'ticket'", String).label("kind")
    order = literal_column("'order'", String).label("kind")
    return union_all(
        select(ticket, cast(Ticket.id, String)).where(
            Ticket.session_id == session_id, Ticket.status != TicketStatus.RESOLVED
        ),
        select(order, SessionOrder.order_id).where(SessionOrder.session_id == session_id),
    )


def _order(o: Order) -> OrderFact:
    return OrderFact(
        o.id,
        o.status,
        o.total_cents,
        o.currency,
        o.placed_at.date(),
        o.delivered_at.date() if o.delivered_at else None,
        tuple((i.name, i.unit_price_cents, i.quantity) for i in o.items),
    )
