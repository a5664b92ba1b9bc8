"""exchange_delivered_order_items: prepare exchanging items of a delivered order for other variants."""

from __future__ import annotations

from pydantic import BaseModel

from tools.codes import ToolResult
from tools.context import CallContext, Deps, Tool
from tools.order_changes import ItemIds, MethodId, NewItemIds, OrderId, prepare


class ExchangeDeliveredOrderItemsInput(BaseModel):
    """Exchange items of a delivered order of the verified customer, inside the return window, for
    available variants of the same products (get_product_details lists them). The price difference
    is paid from, or refunded to, the payment method named when the items are exchanged (a gift card
    must cover a difference to pay); the customer gets an email on how to send the items back. An
    order has one return or exchange: collect every item first.

    This prepares the exchange; nothing changes until the customer confirms it.
    """

    order_id: OrderId
    item_ids: ItemIds
    new_item_ids: NewItemIds
    payment_method_id: MethodId


async def exchange_delivered_order_items(
    args: ExchangeDeliveredOrderItemsInput, ctx: CallContext, deps: Deps
) -> ToolResult:
    return await prepare(deps, ctx, "exchange", args.model_dump())


TOOL = Tool(
    "exchange_delivered_order_items",
    ExchangeDeliveredOrderItemsInput,
    exchange_delivered_order_items,
    "Preparing your exchange",
)
