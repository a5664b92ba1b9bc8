"""The Confirm step of a refund, rendered by code from its row: the customer confirms exactly what
is stored, whatever the model said about it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from agent.events import Confirmation
from storage.engine import Store, reading
from storage.models import OrderItem, Refund
from storage.types import format_cents
from tools import wording

_FIRST_ITEM = select(OrderItem.name).where(OrderItem.order_id == bindparam("oid")).order_by(OrderItem.line_no).limit(1)


async def refund_prompt(
    source: Store | AsyncSession, refund_id: str, *, stored: Mapping[str, Any] | None = None
) -> Confirmation:
    """The prompt for `refund_id`, read through `source` (the caller's transaction, or the store).
    `stored`: the row as the tool that stored it in the caller's unit of work described it
    (`tools.refunds.describe`), so it is not read back."""
    async with reading(source) as r:
        if stored is not None and stored.get("refund_id") == refund_id:
            order_id, cents, currency = str(stored["order_id"]), int(stored["amount_cents"]), str(stored["currency"])
        else:
            refund = await r.get(Refund, refund_id)
            assert refund is not None
            order_id, cents, currency = refund.order_id, refund.amount_cents, refund.currency
        item = (await r.scalars(_FIRST_ITEM, {"oid": order_id})).first() or "your order"
    amount = format_cents(cents, currency)
    return Confirmation(
        refund_id=refund_id,
        order_id=order_id,
        item=item,
        amount=amount,
        text=wording.refund_confirm_prompt(order_id=order_id, item=item, amount=amount),
    )
