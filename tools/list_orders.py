"""list_orders: the verified customer's most recent orders, for "where is my order?" without a number."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from storage.models import Order
from storage.types import format_cents
from tools.codes import Code, ToolResult
from tools.context import CallContext, Deps, Tool


class ListOrdersInput(BaseModel):
    """List the verified customer's most recent orders, newest first: order number, date placed,
    items, total, status and delivery date.

    Use it when the customer asks about their order without giving its number, then ask which one
    they mean (or answer about the only one). It never lists anyone else's orders. Looking an order
    up with lookup_order is still required before process_refund.
    """

    limit: int = Field(default=5, ge=1, le=10, description="How many recent orders to list (1-10).")


async def list_orders(args: ListOrdersInput, ctx: CallContext, deps: Deps) -> ToolResult:
    actor = ctx.actor
    if actor.kind == "staff":
        return ToolResult(Code.NOT_ALLOWED, "Staff look orders up by their number.")
    if actor.kind != "customer":
        return ToolResult(Code.IDENTITY_UNVERIFIED, "No verified customer: orders cannot be listed.")
    async with deps.store.read() as s:
        rows = (
            await s.scalars(
                select(Order)
                .where(Order.customer_id == actor.customer_id)
                .order_by(Order.placed_at.desc(), Order.id)
                .limit(args.limit)
                .options(selectinload(Order.items))
            )
        ).all()
    orders = [
        {
            "order_id": o.id,
            "placed_on": o.placed_at.date().isoformat(),
            "status": o.status,
            "items": [i.name for i in o.items],
            "total": format_cents(o.total_cents, o.currency),
            "delivered_on": o.delivered_at.date().isoformat() if o.delivered_at else None,
        }
        for o in rows
    ]
    return ToolResult(Code.OK, "" if orders else "This customer has no orders.", {"orders": orders})


TOOL = Tool("list_orders", ListOrdersInput, list_orders, "Looking up your orders")
