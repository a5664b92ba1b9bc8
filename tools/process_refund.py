"""process_refund: ask for a refund of a looked-up, eligible order of the verified customer."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy import select

from storage.models import SessionOrder
from storage.order_formats import load_formats
from storage.types import to_cents
from tools import refunds
from tools.codes import Code, ToolResult
from tools.context import CallContext, Deps, Tool
from tools.lookup_order import not_found
from tools.order_ids import display, find_order


class ProcessRefundInput(BaseModel):
    """Refund an order of the verified customer. The order must have been looked up with
    lookup_order in this conversation and be eligible now.

    The result tells you what happened: the refund may need the customer's confirmation (they
    press a Confirm button) or a supervisor's approval. Never tell the customer money has been
    refunded unless the result says the refund was processed. Asking twice never refunds twice.
    """

    order_id: str = Field(description="The order number, as looked up.", min_length=1, max_length=40)
    amount: float = Field(description="Amount to refund in the order's currency, e.g. 89.99.", allow_inf_nan=False)
    reason: str = Field(description="Short reason, in the customer's words (e.g. 'arrived damaged').", max_length=500)


async def process_refund(args: ProcessRefundInput, ctx: CallContext, deps: Deps) -> ToolResult:
    actor = ctx.actor
    if actor.kind == "staff":
        return ToolResult(Code.NOT_ALLOWED, "Staff approve refunds through tickets, not through this tool.")
    if actor.kind != "customer":
        return ToolResult(Code.IDENTITY_UNVERIFIED, "No verified customer: refunds are not possible.")
    typed = display(args.order_id)
    try:
        amount_cents = to_cents(args.amount)
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
    code = refunds.refund_guard(order, owner_customer_id=actor.customer_id, amount_cents=amount_cents, deps=deps)
    if code is Code.NOT_ELIGIBLE:
        return ToolResult(code, "This order cannot be refunded now (not delivered, or outside the return window).")
    if code is Code.INVALID_AMOUNT:
        return ToolResult(
            code,
            "The amount must be more than zero and no more than the order total.",
            {"order_total": order.total_cents / 100},
        )
    if code is not None:
        return ToolResult(code)
    return await refunds.create(deps, ctx, order=order, amount_cents=amount_cents, reason=args.reason)


TOOL = Tool("process_refund", ProcessRefundInput, process_refund, "Preparing your refund")
