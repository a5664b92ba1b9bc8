"""modify_user_address: prepare a new default address for the verified customer."""

from __future__ import annotations

from tools.codes import ToolResult
from tools.context import CallContext, Deps, Tool
from tools.order_changes import AddressInput, prepare


class ModifyUserAddressInput(AddressInput):
    """Change the verified customer's own default address (it does not change orders already
    placed: modify_pending_order_address does). This prepares the change; nothing changes until the
    customer confirms it.
    """


async def modify_user_address(args: ModifyUserAddressInput, ctx: CallContext, deps: Deps) -> ToolResult:
    return await prepare(deps, ctx, "user_address", {"address": args.address()})


TOOL = Tool("modify_user_address", ModifyUserAddressInput, modify_user_address, "Preparing your address change")
