"""cancel_pending_order: prepare the cancellation of a pending order of the verified customer."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from tools.codes import ToolResult
from tools.context import CallContext, Deps, Tool
from tools.order_changes import OrderId, prepare


class CancelPendingOrderInput(BaseModel):
    """Cancel a pending order of the verified customer (look it up with lookup_order first). Only an
    order whose status is exactly pending can be cancelled: not once its items were modified, nor
    once it was processed, shipped or delivered.

    This prepares the cancellation; nothing changes until the customer confirms it. Each payment is
    refunded to the method that made it: a gift card at once, a card or PayPal in 5-7 business
    days. Never say the order is cancelled unless the result says the change was made.
    """

    order_id: OrderId
    reason: Literal["no longer needed", "ordered by mistake"] = Field(
        description="Why, as the customer confirmed it: 'no longer needed' or 'ordered by mistake'."
    )


async def cancel_pending_order(args: CancelPendingOrderInput, ctx: CallContext, deps: Deps) -> ToolResult:
    return await prepare(deps, ctx, "cancel", args.model_dump())


TOOL = Tool("cancel_pending_order", CancelPendingOrderInput, cancel_pending_order, "Preparing your cancellation")
