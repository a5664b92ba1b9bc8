"""get_refund_status: the verified customer's refunds, or one order's."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from storage.models import Order, Refund
from storage.types import format_cents
from tools.codes import Code, ToolResult
from tools.context import CallContext, Deps, Tool
from tools.lookup_order import visible_order


class GetRefundStatusInput(BaseModel):
    """Check the status of the verified customer's refunds: of one order, or their recent ones."""

    order_id: str | None = Field(
        default=None, description="An order number as the customer gave it, or omit for recent refunds.", max_length=40
    )


async def refund_status(deps: Deps, ctx: CallContext, order_id: str | None, *, limit: int = 10) -> ToolResult:
    """Shared by the tool and the /refund-status command: one rule for who sees which refunds."""
    actor = ctx.actor
    if actor.kind == "unverified":
        return ToolResult(Code.IDENTITY_UNVERIFIED, "No verified customer: refunds cannot be looked up.")
    stmt = select(Refund, Order).join(Order, Order.id == Refund.order_id).options(selectinload(Order.items))
    async with deps.store.read() as s:
        if order_id and order_id.strip():
            order = await visible_order(s, deps, actor, order_id)
            if isinstance(order, ToolResult):
                return order
            stmt = stmt.where(Refund.order_id == order.id)
        elif actor.kind == "customer":
            stmt = stmt.where(Order.customer_id == actor.customer_id)
        rows = (await s.execute(stmt.order_by(Refund.created_at.desc()).limit(limit))).all()
    refunds = [
        {
            "refund_id": r.id,
            "order_id": o.id,
            "item": o.items[0].name if o.items else "your order",
            "amount": format_cents(r.amount_cents, r.currency),
            "status": r.status,
            "requested_on": r.created_at.date().isoformat(),
        }
        for r, o in rows
    ]
    data: dict[str, object] = {"refunds": refunds}
    if order_id and order_id.strip():
        data["order_id"] = order.id  # the customer's own order, as stored
    return ToolResult(Code.OK, "" if refunds else "No refunds found.", data)


async def get_refund_status(args: GetRefundStatusInput, ctx: CallContext, deps: Deps) -> ToolResult:
    return await refund_status(deps, ctx, args.order_id)


TOOL = Tool("get_refund_status", GetRefundStatusInput, get_refund_status, "Checking your refund")
