"""lookup_order: an order of the verified customer, with its refund eligibility now."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

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
    return ToolResult(
        Code.OK, data=describe_order(order, refund, now=now, window_days=deps.settings.return_window_days)
    )


async def mark_looked_up(s: AsyncSession, deps: Deps, session_id: str, order_ids: list[str]) -> None:
    """These orders were shown in the session (a lookup, or the turn's context): the tools that
    act on an order require it. In the caller's transaction; already marked ones stay as they are."""
    if not order_ids:
        return
    insert = postgresql.insert if deps.store.dialect == "postgresql" else sqlite.insert
    now = deps.clock.now()
    rows = [{"session_id": session_id, "order_id": oid, "looked_up_at": now} for oid in order_ids]
    await s.execute(insert(SessionOrder).values(rows).on_conflict_do_nothing(index_elements=["session_id", "order_id"]))


def describe_order(order: Order, refund: Refund | None, *, now: datetime, window_days: int) -> dict[str, object]:
    """An order as the model reads it (its items loaded): what it holds, where it is, and whether
    and how much of it can be refunded now. `refund`: its latest refund, if any."""
    elig = eligibility(order, now=now, window_days=window_days)
    left = remaining(order)
    # a refund in progress blocks another; a paid one blocks only what it paid
    blocking = refund.status if refund is not None and (refund.status in OPEN_REFUNDS or not left) else None
    blocking = blocking if blocking in LIVE_REFUNDS else None
    return {
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
        "eligibility": _why(elig.reason, blocking, window_days),
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


def _refund(refund: Refund | None) -> dict[str, object] | None:
    if refund is None:
        return None
    return {
        "refund_id": refund.id,
        "status": refund.status,
        "amount": format_cents(refund.amount_cents, refund.currency),
    }


async def recent_orders(s: AsyncSession, deps: Deps, customer_id: str, *, limit: int) -> list[dict[str, object]]:
    """The customer's newest orders, described as lookup_order describes one, in the caller's
    transaction (three statements: the orders, their lines, their latest refunds)."""
    orders = list(
        (
            await s.scalars(
                select(Order)
                .where(Order.customer_id == customer_id)
                .order_by(Order.placed_at.desc(), Order.id)
                .limit(limit)
                .options(selectinload(Order.items))
            )
        ).all()
    )
    if not orders:
        return []
    newest = (
        select(Refund.order_id, func.max(Refund.created_at).label("at"))
        .where(Refund.order_id.in_([o.id for o in orders]))
        .group_by(Refund.order_id)
        .subquery()
    )
    latest = {
        r.order_id: r
        for r in (
            await s.scalars(
                select(Refund).join(newest, (Refund.order_id == newest.c.order_id) & (Refund.created_at == newest.c.at))
            )
        ).all()
    }
    now, window = deps.clock.now(), deps.settings.return_window_days
    return [describe_order(o, latest.get(o.id), now=now, window_days=window) for o in orders]


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
