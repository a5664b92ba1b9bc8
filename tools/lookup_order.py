"""lookup_order: an order of the verified customer, with its refund eligibility now."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Order, Refund, SessionOrder
from storage.order_formats import load_formats
from storage.states import LIVE_REFUNDS, OPEN_REFUNDS, RefundStatus
from storage.types import format_cents
from tools.codes import Code, ToolResult
from tools.context import Actor, CallContext, Deps, Tool
from tools.ledger import remaining
from tools.order_ids import display, find_order, load_items
from tools.refunds import eligibility


class LookupOrderInput(BaseModel):
    """Look up one of the verified customer's orders by its order number, as the customer wrote it
    (for example ORD-8842, #1001 or SO-2026-000123; case, spaces and a leading # do not matter).

    Returns the items (each with its item_id, product_id and options), total, status, shipping
    address, delivery date, whether it can be refunded right now under the return policy (and why
    not), how much of it can still be refunded, and its latest refund. Required before
    process_refund and before any change to the order.
    """

    order_id: str = Field(description="The order number as the customer gave it.", min_length=1, max_length=40)


def not_found(order_id: str, code: Code = Code.ORDER_NOT_FOUND) -> ToolResult:
    # the same note and data for an unknown order and another customer's: nothing tells them apart
    return ToolResult(code, "No order with that number was found on this customer's account.", {"order_id": order_id})


async def visible_order(s: AsyncSession, deps: Deps, actor: Actor, typed: str) -> Order | ToolResult:
    """The order a typed number names, if this actor may see it (staff see any): another customer's
    reads exactly like an unknown one."""
    formats = await load_formats(s, deps.settings.order_number_pattern)
    order = await find_order(s, typed, customer_id=actor.customer_id, formats=formats)
    if order is None:
        return not_found(display(typed))
    if actor.kind == "customer" and order.customer_id != actor.customer_id:
        return not_found(display(typed), Code.OWNERSHIP_MISMATCH)
    return order


async def lookup_order(args: LookupOrderInput, ctx: CallContext, deps: Deps) -> ToolResult:
    actor = ctx.actor
    if actor.kind == "unverified":
        return ToolResult(Code.IDENTITY_UNVERIFIED, "No verified customer: orders cannot be looked up.")
    async with deps.store.read() as s:
        order = await visible_order(s, deps, actor, args.order_id)
        if isinstance(order, ToolResult):
            return order
        await load_items(s, order)
        refund = (
            await s.scalars(
                select(Refund).where(Refund.order_id == order.id).order_by(Refund.created_at.desc()).limit(1)
            )
        ).one_or_none()
    now = deps.clock.now()
    insert = postgresql.insert if deps.store.dialect == "postgresql" else sqlite.insert
    async with deps.store.write() as s:
        await s.execute(
            insert(SessionOrder)
            .values(session_id=ctx.session_id, order_id=order.id, looked_up_at=now)
            .on_conflict_do_nothing(index_elements=["session_id", "order_id"])
        )
    elig = eligibility(order, now=now, window_days=deps.settings.return_window_days)
    left = remaining(order)
    # a refund in progress blocks another; a paid one blocks only what it paid
    blocking = refund.status if refund is not None and (refund.status in OPEN_REFUNDS or not left) else None
    blocking = blocking if blocking in LIVE_REFUNDS else None
    data: dict[str, object] = {
        "order_id": order.id,
        "status": order.status,
        "items": [
            {
                "name": i.name,
                "item_id": i.item_id,
                "product_id": i.product_id,
                "options": i.options,
                "quantity": i.quantity,
                "unit_price": format_cents(i.unit_price_cents, order.currency),
            }
            for i in order.items
        ],
        "total": format_cents(order.total_cents, order.currency),
        "total_amount": order.total_cents / 100,
        "refundable": format_cents(left, order.currency),
        "refundable_amount": left / 100,
        "shipping_address": order.address,
        "placed_on": order.placed_at.date().isoformat(),
        "delivered_on": order.delivered_at.date().isoformat() if order.delivered_at else None,
        "refund_eligible": elig.eligible and blocking is None and left > 0,
        "eligibility": _why(elig.reason, blocking, deps.settings.return_window_days),
        "return_deadline": elig.deadline.date().isoformat() if elig.deadline else None,
        "existing_refund": (
            {
                "refund_id": refund.id,
                "status": refund.status,
                "amount": format_cents(refund.amount_cents, refund.currency),
            }
            if refund
            else None
        ),
    }
    return ToolResult(Code.OK, data=data)


def _why(reason: str, live_status: str | None, window_days: int) -> str:
    """Why the order can or cannot be refunded now: a live refund wins over the return window."""
    if live_status in (RefundStatus.PROCESSED, RefundStatus.PROCESSING):
        return "already refunded: it has a refund that was issued or is being sent"
    if live_status == RefundStatus.AWAITING_CONFIRMATION:
        return "refund pending: a refund is already prepared and waiting for the customer to confirm it"
    if live_status == RefundStatus.PENDING_APPROVAL:
        return "refund pending: a refund is already waiting for approval by our team"
    return {
        "in_window": "delivered and inside the return window",
        "not_delivered": "not delivered yet, so it cannot be refunded",
        "window_closed": f"delivered over {window_days} days ago: outside the return window",
    }[reason]


TOOL = Tool("lookup_order", LookupOrderInput, lookup_order, "Looking up your order")
