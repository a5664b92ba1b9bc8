"""get_order_changes: the verified customer's order changes (cancellations, item and address
changes, returns, exchanges) with their money, and an order's payment history."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select

from storage.models import OrderChange, PaymentMethod
from storage.types import format_cents
from tools import ledger
from tools.codes import Code, ToolResult
from tools.context import CallContext, Deps, Tool
from tools.lookup_order import visible_order
from tools.wording import method_label

LIMIT = 10


class GetOrderChangesInput(BaseModel):
    """Check the verified customer's order changes (cancellations, item, address and payment
    changes, returns, exchanges, and their default address), each with its status and its money:
    of one order (with the order's payment history), or their recent ones."""

    order_id: str | None = Field(
        default=None, description="An order number as the customer gave it, or omit for recent changes.", max_length=40
    )


async def order_changes(deps: Deps, ctx: CallContext, order_id: str | None) -> ToolResult:
    """Shared by the tool and staff faces: one rule for who sees which changes."""
    actor = ctx.actor
    if actor.kind not in ("customer", "staff"):
        return ToolResult(Code.IDENTITY_UNVERIFIED, "No verified customer: order changes cannot be looked up.")
    stmt = select(OrderChange).order_by(OrderChange.created_at.desc(), OrderChange.id).limit(LIMIT)
    data: dict[str, Any] = {}
    async with deps.store.read() as s:
        if order_id and order_id.strip():
            order = await visible_order(s, deps, actor, order_id)
            if isinstance(order, ToolResult):
                return order
            stmt = stmt.where(OrderChange.order_id == order.id)
            methods = await _methods(s, order.customer_id)
            data["order_id"] = order.id
            data["payments"] = [
                {
                    "kind": p.kind,
                    "amount": format_cents(p.amount_cents, order.currency),
                    "method": method_label(methods.get(p.method_id or "")),
                }
                for p in await ledger.history(s, order.id)
            ]
            if order.promised_cents:
                data["refund_due_on_return"] = format_cents(order.promised_cents, order.currency)
        elif actor.kind == "customer":
            stmt = stmt.where(OrderChange.customer_id == actor.customer_id)
        rows = list(await s.scalars(stmt))
    data["changes"] = [_row(c) for c in rows]
    return ToolResult(Code.OK, "" if rows else "No order changes found.", data)


async def _methods(s: Any, customer_id: str) -> dict[str, PaymentMethod]:
    return {m.id: m for m in await s.scalars(select(PaymentMethod).where(PaymentMethod.customer_id == customer_id))}


def _row(change: OrderChange) -> dict[str, Any]:
    plan = change.plan
    out: dict[str, Any] = {
        "change_id": change.id,
        "kind": change.kind,
        "status": change.status,
        "order_id": change.order_id,
        "requested_on": change.created_at.date().isoformat(),
        "money": [
            {
                "kind": m["kind"],
                "amount": format_cents(m["amount_cents"]),
                "method": m["method"],
                "when": m["when"],
            }
            for m in plan.get("money", [])
        ],
    }
    if plan.get("lines"):
        out["items"] = [line["name"] for line in plan["lines"]]
    for key in ("reason", "address"):
        if plan.get(key):
            out[key] = plan[key]
    return out


async def get_order_changes(args: GetOrderChangesInput, ctx: CallContext, deps: Deps) -> ToolResult:
    return await order_changes(deps, ctx, args.order_id)


TOOL = Tool("get_order_changes", GetOrderChangesInput, get_order_changes, "Checking your order changes")
