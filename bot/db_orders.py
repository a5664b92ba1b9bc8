"""`supportbot db orders`: every order with its lines (variant and options), payment history and
changes, as an operator reads them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select

from storage.engine import Store
from storage.models import Customer, Order, OrderChange, OrderItem, OrderPayment
from storage.types import format_cents

HEADER = f"{'order':<12} {'customer':<30} {'status':<18} {'total':>11}  delivered"


async def order_lines(store: Store) -> list[str]:
    async with store.read() as s:
        orders = (await s.execute(select(Order, Customer.email).join(Customer).order_by(Customer.id, Order.id))).all()
        items = _by_order((await s.scalars(select(OrderItem).order_by(OrderItem.order_id, OrderItem.line_no))).all())
        ledger = _by_order(
            (await s.scalars(select(OrderPayment).order_by(OrderPayment.order_id, OrderPayment.seq))).all()
        )
        changes = _by_order(
            (
                await s.scalars(
                    select(OrderChange)
                    .where(OrderChange.order_id.is_not(None))
                    .order_by(OrderChange.order_id, OrderChange.created_at)
                )
            ).all()
        )
    out = [HEADER]
    for order, email in orders:
        out += _order(order, email, items[order.id], ledger[order.id], changes[order.id])
    return out


def _by_order(rows: Any) -> defaultdict[str, list[Any]]:
    grouped: defaultdict[str, list[Any]] = defaultdict(list)
    for row in rows:
        grouped[row.order_id].append(row)
    return grouped


def _order(
    order: Order, email: str, items: list[OrderItem], ledger: list[OrderPayment], changes: list[OrderChange]
) -> Iterator[str]:
    delivered = order.delivered_at.date().isoformat() if order.delivered_at else "-"
    total = format_cents(order.total_cents, order.currency)
    yield f"{order.id:<12} {email:<30} {order.status:<18} {total:>11}  {delivered}"
    pad = " " * 13
    for it in items:
        yield f"{pad}{it.quantity} x {it.name}{options(it.options)} [{it.item_id}]  " + format_cents(
            it.unit_price_cents, order.currency
        )
    for p in ledger:
        yield f"{pad}{p.kind} {format_cents(p.amount_cents, order.currency)} {p.method_id or '(original method)'}"
    if order.promised_cents:
        yield f"{pad}refund due on return {format_cents(order.promised_cents, order.currency)}"
    for c in changes:
        money = f", refund {format_cents(c.refund_cents, order.currency)}" if c.refund_cents else ""
        money += f", charge {format_cents(c.charge_cents, order.currency)}" if c.charge_cents else ""
        yield f"{pad}change {c.id} {c.kind} {c.status}{money}"


def options(opts: dict[str, str] | None) -> str:
    """`(colour: blue, size: M)`, or nothing for a variant without options."""
    if not opts:
        return ""
    return " (" + ", ".join(f"{k}: {v}" for k, v in opts.items()) + ")"
