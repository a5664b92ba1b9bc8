"""return_delivered_order_items: prepare the return of items of a delivered order."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tools.codes import ToolResult
from tools.context import CallContext, Deps, Tool
from tools.order_changes import ItemIds, OrderId, prepare


class ReturnDeliveredOrderItemsInput(BaseModel):
    """Return items of a delivered order of the verified customer, inside the return window. The
    items' prices are refunded once they arrive back, to the original payment method or to one of
    the customer's gift cards; the customer gets an email on how to send them. Each item can be
    returned once, and an order has one return or exchange: collect every item first.

    This prepares the return; nothing changes until the customer confirms it.
    """

    order_id: OrderId
    item_ids: ItemIds
    payment_method_id: str | None = Field(
        default=None,
        description="Where the refund goes: the original payment method (omit) or one of the customer's gift cards.",
        max_length=64,
    )


async def return_delivered_order_items(
    args: ReturnDeliveredOrderItemsInput, ctx: CallContext, deps: Deps
) -> ToolResult:
    return await prepare(deps, ctx, "return", args.model_dump())


TOOL = Tool(
    "return_delivered_order_items",
    ReturnDeliveredOrderItemsInput,
    return_delivered_order_items,
    "Preparing your return",
)
