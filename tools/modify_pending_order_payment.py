"""modify_pending_order_payment: prepare paying a pending order with another of the customer's methods."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tools.codes import ToolResult
from tools.context import CallContext, Deps, Tool
from tools.order_changes import OrderId, prepare


class ModifyPendingOrderPaymentInput(BaseModel):
    """Pay a pending order of the verified customer with another of their payment methods (from
    get_customer): the new method is charged the order's amount and the original one refunded (a
    gift card at once, a card or PayPal in 5-7 business days). A gift card must cover the whole
    amount. Only while the order has its one original payment. This prepares the change; nothing
    changes until the customer confirms it.
    """

    order_id: OrderId
    payment_method_id: str = Field(description="The customer's new payment method.", min_length=1, max_length=64)


async def modify_pending_order_payment(
    args: ModifyPendingOrderPaymentInput, ctx: CallContext, deps: Deps
) -> ToolResult:
    return await prepare(deps, ctx, "modify_payment", args.model_dump())


TOOL = Tool(
    "modify_pending_order_payment",
    ModifyPendingOrderPaymentInput,
    modify_pending_order_payment,
    "Preparing your payment change",
)
