"""escalate_to_human: hand the conversation to a person. Always allowed."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from tools.codes import Code, TicketQuotaExceeded, ToolResult
from tools.context import CallContext, Deps, Tool
from tools.tickets import SECURITY, open_or_update

QUOTA_NOTE = (
    "No ticket was opened: this visitor has reached the limit of new requests to our team for now. "
    "Do not say a person will follow up; say politely that they can try again later, or sign in."
)


class EscalateToHumanInput(BaseModel):
    """Hand this conversation to a human support agent by opening (or updating) its ticket.

    Use P1 for legal threats, fraud, security concerns or when the customer asks for a person;
    P2 for problems you cannot fix (system errors, approvals); P3 when you cannot work out what
    the customer needs, or for a question the help center cannot answer when the customer wants a
    person. Tell the customer a person will follow up, without promising an outcome.
    """

    reason: Literal[
        "legal", "fraud", "human_request", "security", "refund_approval", "clarification", "question", "other"
    ] = Field(description="Why a person is needed (question: one the help center could not answer).")
    priority: Literal["P1", "P2", "P3"] = Field(description="P1 urgent, P2 needs a person soon, P3 routine.")
    summary: str = Field(description="One or two sentences for the support agent.", max_length=1000)


async def escalate_to_human(args: EscalateToHumanInput, ctx: CallContext, deps: Deps) -> ToolResult:
    try:
        async with deps.store.write() as s:
            ticket, created = await open_or_update(
                s,
                deps,
                session_id=ctx.session_id,
                priority=args.priority,
                reason="security_concern" if args.reason == SECURITY else args.reason,  # "security" is the hidden kind
                summary=args.summary,
                customer_id=ctx.actor.customer_id,
                quota=ctx.ticket_quota,
            )
    except TicketQuotaExceeded:
        return ToolResult(Code.NOT_ALLOWED, QUOTA_NOTE)
    return ToolResult(
        Code.TICKET_OPENED if created else Code.TICKET_UPDATED,
        "A person will follow up in this conversation.",
        {"ticket": ticket.public_ref, "priority": ticket.priority},
    )


TOOL = Tool("escalate_to_human", EscalateToHumanInput, escalate_to_human, "Bringing in a member of our team")
