"""modify_pending_order_address: prepare a new shipping address for a pending order."""

from __future__ import annotations

from tools.codes import ToolResult
from tools.context import CallContext, Deps, Tool
from tools.order_changes import AddressInput, OrderId, prepare


class ModifyPendingOrderAddressInput(AddressInput):
    """Change where a pending order of the verified customer ships to (also after its items were
    modified; not once it was processed or shipped). This prepares the change; nothing changes until
    the customer confirms it.
    """

    order_id: OrderId


async def modify_pending_order_address(
    args: ModifyPendingOrderAddressInput, ctx: CallContext, deps: Deps
) -> ToolResult:
    return await prepare(deps, ctx, "modify_address", {"order_id": args.order_id, "address": args.address()})


TOOL = Tool(
    "modify_pending_order_address",
    ModifyPendingOrderAddressInput,
    modify_pending_order_address,
    "Preparing your address change",
)
