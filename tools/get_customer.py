"""get_customer: confirm the customer's identity and fetch their record."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Customer, PaymentMethod
from storage.types import format_cents
from tools.codes import Code, ToolResult
from tools.context import CallContext, Deps, Tool
from tools.lookup_order import recent_orders
from tools.wording import method_label


class GetCustomerInput(BaseModel):
    """Fetch the account of the customer you are talking to, by the email address they gave.

    Call this before looking up orders. It only ever returns the customer this conversation is
    verified as: any other email address is refused. It shows their default address and payment
    methods (the ids order changes name, and each gift card's balance).
    """

    email: str = Field(description="The customer's email address.", max_length=320)


async def get_customer(args: GetCustomerInput, ctx: CallContext, deps: Deps) -> ToolResult:
    actor = ctx.actor
    email = args.email.strip().lower()
    if actor.kind not in ("staff", "customer"):
        return ToolResult(
            Code.IDENTITY_UNVERIFIED,
            "This conversation is not linked to a verified customer, so no account can be accessed. "
            "Answer general questions only; a person will verify the customer.",
        )
    # the customer and their payment methods in one statement
    stmt = select(Customer, PaymentMethod).outerjoin(PaymentMethod, PaymentMethod.customer_id == Customer.id)
    who = Customer.email == email if actor.kind == "staff" else Customer.id == actor.customer_id
    stmt = stmt.where(who)
    async with deps.store.read() as s:
        rows = (await s.execute(stmt.order_by(PaymentMethod.id))).all()
    cust = rows[0][0] if rows else None
    if actor.kind == "staff" and cust is None:
        return ToolResult(Code.NOT_FOUND, "No customer has that email address.")
    if cust is None or cust.email != email:
        return ToolResult(
            Code.IDENTITY_MISMATCH,
            "That email is not the email of the verified customer in this conversation. "
            "Do not look up anything for it.",
        )
    data: dict[str, object] = {"customer_id": cust.id, "name": cust.name, "email": cust.email}
    if cust.address:
        data["address"] = cust.address
    methods = [describe_method(m) for _, m in rows if m is not None]
    if methods:
        data["payment_methods"] = methods
    return ToolResult(Code.OK, data=data)


async def customer_context(s: AsyncSession, deps: Deps, customer_id: str, *, orders: int) -> dict[str, Any] | None:
    """What a turn starts knowing of its verified customer, in the caller's transaction: who they
    are, their default address and payment methods, and their newest `orders` as lookup_order
    describes them (these count as looked up for the turn)."""
    rows = (
        await s.execute(
            select(Customer, PaymentMethod)
            .outerjoin(PaymentMethod, PaymentMethod.customer_id == Customer.id)
            .where(Customer.id == customer_id)
            .order_by(PaymentMethod.id)
        )
    ).all()
    if not rows:
        return None
    cust = rows[0][0]
    out: dict[str, Any] = {"customer_id": cust.id, "name": cust.name, "email": cust.email}
    if cust.address:
        out["address"] = cust.address
    methods = [describe_method(m) for _, m in rows if m is not None]
    if methods:
        out["payment_methods"] = methods
    out["recent_orders"] = await recent_orders(s, deps, cust.id, limit=orders)
    return out


def describe_method(m: PaymentMethod) -> dict[str, object]:
    """A payment method as the model sees it: its id (what order changes name), kind and the words
    for it, and a gift card's balance."""
    out: dict[str, object] = {"payment_method_id": m.id, "kind": m.kind, "label": method_label(m)}
    if m.balance_cents is not None:
        out["balance"] = format_cents(m.balance_cents)
    return out


TOOL = Tool("get_customer", GetCustomerInput, get_customer, "Checking your account")
