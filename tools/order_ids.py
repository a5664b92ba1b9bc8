"""Which order a caller means, from a number typed in the shop's own format.

An exact spelling first, over every customer's orders (so the caller's ownership check sees
another customer's order and escalates), then the key (`ord 8842`, `ORD8842`), then the digits
alone (`#8842` for ORD-8842), both only among the verified customer's own orders: an unknown
number and another customer's read exactly alike.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from storage.models import Order, OrderItem
from storage.order_formats import MAX_ID, Formats, digits, key

# what is typed as an order number but never is one: an amount, a measure or a size, a date
_AMOUNT = re.compile(
    r"[$€£]\s?\d[\d.,]{0,12}|\d[\d.,]{0,12}\s?(?:[$€£]|usd|eur|gbp|dollars?|euros?)|\d{1,7}[.,]\d{2}", re.I
)
_MEASURE = re.compile(
    r"\d{1,5}(?:[.,]\d{1,2})?\s?(?:cm|mm|m|km|kg|g|lbs?|oz|ml|l|in|inch(?:es)?|ft|feet|%|years?|yrs?|y/o|gb|mb|tb"
    r"|st|nd|rd|th|am|pm|h|hrs?|hours?|min|mins|days?)",
    re.I,
)
_DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")
DASHES = str.maketrans(dict.fromkeys("‐‑‒–—―−﹣－", "-"))


def not_an_order_number(typed: str) -> str | None:
    """What a typed value is instead of an order number ("an amount", "a measure", "a date"), or None
    when it may be one. Decided by its shape alone, never by the store: asking never tells whether
    an order exists, and such a value never counts as an unknown order."""
    text = " ".join(typed.split())[:64]
    for what, pattern in (("an amount", _AMOUNT), ("a measure", _MEASURE), ("a date", _DATE)):
        if pattern.fullmatch(text):
            return what
    return None


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
