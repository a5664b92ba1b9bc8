"""Which order a caller means, from a number typed in the shop's own format.

An exact spelling first, over every customer's orders (so the caller's ownership check sees
another customer's order and escalates), then the key (`ord 8842`, `ORD8842`), then the digits
alone (`#8842` for ORD-8842), both only among the verified customer's own orders: an unknown
number and another customer's read exactly alike.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from storage.models import Order, OrderItem
from storage.order_formats import MAX_ID, Formats, digits, key


async def find_order(s: AsyncSession, typed: str, *, customer_id: str | None, formats: Formats) -> Order | None:
    """The order `typed` names: exactly (any customer's), else by key or digits among the customer's own."""
    spellings = formats.spellings(typed)
    if spellings:
        order = (await s.scalars(select(Order).where(Order.id.in_(spellings)).limit(1))).one_or_none()
        if order is not None:
            return order
    if customer_id is None:
        return None
    own = list((await s.execute(select(Order.id).where(Order.customer_id == customer_id))).scalars())
    wanted = key(typed)
    if not wanted:
        return None
    by_key = [oid for oid in own if key(oid) == wanted]
    if not by_key and wanted.isdigit():
        by_key = [oid for oid in own if digits(oid) == wanted]
    if len(by_key) != 1:
        return None  # none, or ambiguous: ask again rather than guess
    return await s.get(Order, by_key[0])


async def load_items(s: AsyncSession, order: Order) -> list[OrderItem]:
    """The order's lines into `order.items`, in one statement (a refresh costs two)."""
    items = list(
        (await s.scalars(select(OrderItem).where(OrderItem.order_id == order.id).order_by(OrderItem.line_no))).all()
    )
    set_committed_value(order, "items", items)
    return items


def display(typed: str) -> str:
    """How a typed number is echoed back: the same for an unknown order and another customer's, and
    only the characters an order number has (a pasted `{"code": …}` does not come back as JSON)."""
    kept = "".join(ch for ch in typed if ch.isalnum() or ch in "#-/. ")
    return " ".join(kept.split()).upper()[:MAX_ID]
