"""modify_pending_order_items: prepare changing items of a pending order to other variants."""

from __future__ import annotations

from pydantic import BaseModel

from tools.codes import ToolResult
from tools.context import CallContext, Deps, Tool
from tools.order_changes import ItemIds, MethodId, NewItemIds, OrderId, prepare


class ModifyPendingOrderItemsInput(BaseModel):
    """Change items of a pending order of the verified customer to other available variants of the
    same product (another colour or size; get_product_details lists them). Only an order whose
    status is exactly pending, and only once: afterwards its items cannot be changed again and it
    cannot be cancelled, so collect every item the customer wants changed into this one call and
    have them confirm the list is complete.

    The price difference is paid from, or refunded to, the payment method named (a gift card must
    cover a difference to pay). This prepares the change; nothing changes until the customer
    confirms it.
    """

    order_id: OrderId
    item_ids: ItemIds
    new_item_ids: NewItemIds
    payment_method_id: MethodId


async def modify_pending_order_items(args: ModifyPendingOrderItemsInput, ctx: CallContext, deps: Deps) -> ToolResult:
    return await prepare(deps, ctx, "modify_items", args.model_dump())


TOOL = Tool(
    "modify_pending_order_items", ModifyPendingOrderItemsInput, modify_pending_order_items, "Preparing your change"
)
