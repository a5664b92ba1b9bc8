"""get_customer: confirm the customer's identity and fetch their record."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy import select

from storage.models import Customer
from tools.codes import Code, ToolResult
from tools.context import CallContext, Deps, Tool


class GetCustomerInput(BaseModel):
    """Fetch the account of the customer you are talking to, by the email address they gave.

    Call this before looking up orders. It only ever returns the customer this conversation is
    verified as: any other email address is refused.
    """

    email: str = Field(description="The customer's email address.", max_length=320)


async def get_customer(args: GetCustomerInput, ctx: CallContext, deps: Deps) -> ToolResult:
    actor = ctx.actor
    email = args.email.strip().lower()
    async with deps.store.read() as s:
        if actor.kind == "staff":
            cust = (await s.scalars(select(Customer).where(Customer.email == email))).one_or_none()
            if cust is None:
                return ToolResult(Code.NOT_FOUND, "No customer has that email address.")
        elif actor.kind != "customer":
            return ToolResult(
                Code.IDENTITY_UNVERIFIED,
                "This conversation is not linked to a verified customer, so no account can be accessed. "
                "Answer general questions only; a person will verify the customer.",
            )
        else:
            cust = await s.get(Customer, actor.customer_id)
            if cust is None or cust.email != email:
                return ToolResult(
                    Code.IDENTITY_MISMATCH,
                    "That email is not the email of the verified customer in this conversation. "
                    "Do not look up anything for it.",
                )
    return ToolResult(Code.OK, data={"customer_id": cust.id, "name": cust.name, "email": cust.email})


TOOL = Tool("get_customer", GetCustomerInput, get_customer, "Checking your account")
