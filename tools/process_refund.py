"""process_refund: ask for a refund of a looked-up, eligible order of the verified customer."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy import select

from storage.models import Order, OrderItem, Refund, SessionOrder
from storage.order_formats import load_formats
from storage.states import LIVE_REFUNDS
from storage.types import to_cents
from tools import ledger, refunds
from tools.codes import Code, ToolResult
from tools.context import CallContext, Deps, Tool
from tools.lookup_order import not_found
from tools.order_ids import display, find_order, load_items


class ProcessRefundInput(BaseModel):
    """Refund an order of the verified customer, in part or in full: name the items to refund
    (their item_ids from lookup_order; the refund is their price) or an amount. The order must have
    been looked up with lookup_order in this conversation and be eligible now. An order can be
    refunded again later, up to what remains of what was paid; each item is refunded once.

    The result tells you what happened: the refund may need the customer's confirmation (they
    press a Confirm button) or a supervisor's approval. Never tell the customer money has been
    refunded unless the result says the refund was processed. Asking twice never refunds twice.
    """

    order_id: str = Field(description="The order number, as looked up.", min_length=1, max_length=40)
    item_ids: list[str] | None = Field(
        default=None,
        description="The item_ids of the items to refund (an item twice for two of its lines); omit to give an amount.",
        max_length=50,
    )
    amount: float | None = Field(
        default=None, description="Amount to refund in the order's currency, e.g. 89.99.", allow_inf_nan=False
    )
    reason: str = Field(description="Short reason, in the customer's words (e.g. 'arrived damaged').", max_length=500)


async def process_refund(args: ProcessRefundInput, ctx: CallContext, deps: Deps) -> ToolResult:
    actor = ctx.actor
    if actor.kind == "staff":
        return ToolResult(Code.NOT_ALLOWED, "Staff approve refunds through tickets, not through this tool.")
    if actor.kind != "customer":
        return ToolResult(Code.IDENTITY_UNVERIFIED, "No verified customer: refunds are not possible.")
    typed = display(args.order_id)
    if args.amount is None and not args.item_ids:
        return ToolResult(Code.INVALID_INPUT, "Name the items to refund (item_ids) or give an amount.")
    try:
        amount_cents = to_cents(args.amount) if args.amount is not None else None
    except ValueError:
        return ToolResult(Code.INVALID_AMOUNT, "The amount must be a positive number with at most 2 decimal places.")
    async with deps.store.read() as s:
        formats = await load_formats(s, deps.settings.order_number_pattern)
        order = await find_order(s, args.order_id, customer_id=actor.customer_id, formats=formats)
        looked_up = (
            (
                await s.scalars(
                    select(SessionOrder.order_id).where(
                        SessionOrder.session_id == ctx.session_id, SessionOrder.order_id == order.id
                    )
                )
            ).one_or_none()
            if order is not None
            else None
        )
    if order is None:
        return not_found(typed)
    if order.customer_id != actor.customer_id:
        return not_found(typed, Code.OWNERSHIP_MISMATCH)
    if looked_up is None:
        return ToolResult(Code.ORDER_NOT_LOOKED_UP, "Look the order up with lookup_order first.")
    lines: list[int] | None = None
    if args.item_ids:
        picked = await _lines(deps, order, args.item_ids)
        if isinstance(picked, ToolResult):
            return picked
        lines, items_cents = [line.line_no for line in picked], ledger.line_cents(picked)
        if amount_cents is not None and amount_cents != items_cents:
            return ToolResult(
                Code.INVALID_AMOUNT,
                "The amount is not what those items cost: omit the amount to refund their price.",
                {"items_total": items_cents / 100},
            )
        amount_cents = items_cents
    assert amount_cents is not None
    code = refunds.refund_guard(order, owner_customer_id=actor.customer_id, amount_cents=amount_cents, deps=deps)
    if code is Code.NOT_ELIGIBLE:
        return ToolResult(code, "This order cannot be refunded now (not delivered, or outside the return window).")
    if code is Code.INVALID_AMOUNT:
        return await _too_much(deps, order)
    if code is not None:
        return ToolResult(code)
    return await refunds.create(deps, ctx, order=order, amount_cents=amount_cents, reason=args.reason, line_nos=lines)


async def _lines(deps: Deps, order: Order, item_ids: list[str]) -> list[OrderItem] | ToolResult:
    """The order lines the item ids name, none of them given back before."""
    async with deps.store.read() as s:
        items = await load_items(s, order)
        given = await ledger.returned_lines(s, order.id)
    if ledger.pick_lines(items, item_ids) is None:
        return ToolResult(Code.ITEM_NOT_IN_ORDER, "Some of those items are not in this order.")
    picked = ledger.pick_lines(items, item_ids, skip=given)
    if picked is None:
        return ToolResult(Code.ALREADY_RETURNED, "Some of those items were already refunded or returned.")
    return picked


async def _too_much(deps: Deps, order: Order) -> ToolResult:
    """More than remains: an order refunded in full says so with its last refund."""
    left = ledger.remaining(order)
    if left == 0:
        async with deps.store.read() as s:
            last = (
                await s.scalars(
                    select(Refund).where(Refund.order_id == order.id).order_by(Refund.created_at.desc()).limit(1)
                )
            ).one_or_none()
        if last is not None and last.status in LIVE_REFUNDS:
            return ToolResult(
                Code.REFUND_EXISTS,
                "This order has been refunded in full already; no new refund was created.",
                refunds.describe(last),
            )
    return ToolResult(
        Code.INVALID_AMOUNT,
        "The amount must be more than zero and no more than what remains to be refunded.",
        {"order_total": order.total_cents / 100, "refundable": left / 100},
    )


TOOL = Tool("process_refund", ProcessRefundInput, process_refund, "Preparing your refund")
