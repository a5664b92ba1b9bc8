"""Outcome codes, the typed tool result, and the package's exceptions.

Refusals are data, not exceptions: a guard answers with a `ToolResult` whose code says why, and
the caller (the agent loop, a Slack button, an MCP client) decides what follows.

Exceptions (only for things that went wrong, never for a rule saying no):

    ToolsError
     ├── ToolFailure            a tool could not run (store unreachable, a bug); the loop retries it
     ├── GatewayError           the payment gateway failed; the refund is left `failed` or `processing`
     ├── TicketQuotaExceeded    a new ticket was refused: its quota (an anonymous visitor's address,
     │                          say) has opened its share this hour; nothing was written
     └── ChangeRefused          a write the store refused while an order change was applied (a gift
                                card spent meanwhile): the transaction rolls back, the change is refused
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Code(StrEnum):
    # success
    OK = "OK"
    AWAITING_CONFIRMATION = "AWAITING_CONFIRMATION"
    REFUND_PROCESSED = "REFUND_PROCESSED"
    REFUND_EXISTS = "REFUND_EXISTS"
    TICKET_OPENED = "TICKET_OPENED"
    TICKET_UPDATED = "TICKET_UPDATED"
    CHANGE_APPLIED = "CHANGE_APPLIED"
    # refusals
    INVALID_INPUT = "INVALID_INPUT"
    IDENTITY_UNVERIFIED = "IDENTITY_UNVERIFIED"
    IDENTITY_MISMATCH = "IDENTITY_MISMATCH"
    ORDER_NOT_FOUND = "ORDER_NOT_FOUND"
    OWNERSHIP_MISMATCH = "OWNERSHIP_MISMATCH"
    ORDER_NOT_LOOKED_UP = "ORDER_NOT_LOOKED_UP"
    TOO_MANY_UNKNOWN_ORDERS = "TOO_MANY_UNKNOWN_ORDERS"
    NOT_ELIGIBLE = "NOT_ELIGIBLE"
    INVALID_AMOUNT = "INVALID_AMOUNT"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    NOT_ALLOWED = "NOT_ALLOWED"
    NOT_FOUND = "NOT_FOUND"
    INVALID_STATE = "INVALID_STATE"
    EXPIRED = "EXPIRED"
    ALREADY_CLAIMED = "ALREADY_CLAIMED"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    ALREADY_RETURNED = "ALREADY_RETURNED"
    ITEM_NOT_IN_ORDER = "ITEM_NOT_IN_ORDER"
    VARIANT_UNAVAILABLE = "VARIANT_UNAVAILABLE"
    PAYMENT_METHOD_NOT_FOUND = "PAYMENT_METHOD_NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"


SUCCESS = frozenset(
    {
        Code.OK,
        Code.AWAITING_CONFIRMATION,
        Code.REFUND_PROCESSED,
        Code.REFUND_EXISTS,
        Code.TICKET_OPENED,
        Code.TICKET_UPDATED,
        Code.CHANGE_APPLIED,
    }
)

# What the model is told instead: another customer's order must look exactly like an unknown one.
_MODEL_FACING = {Code.OWNERSHIP_MISMATCH: Code.ORDER_NOT_FOUND}


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A tool's answer. `code` is the truth for the caller; `for_model()` is what the model sees."""

    code: Code
    note: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.code in SUCCESS

    @property
    def model_code(self) -> Code:
        return _MODEL_FACING.get(self.code, self.code)

    def for_model(self) -> dict[str, Any]:
        out: dict[str, Any] = {"outcome": "ok" if self.ok else "refused", "code": self.model_code.value}
        if self.note:
            out["note"] = self.note
        out.update(self.data)
        return out


class ToolsError(Exception):
    """Base of everything that went wrong inside `tools` (not a rule saying no)."""


class ToolFailure(ToolsError):
    def __init__(self, tool: str, cause: BaseException) -> None:
        self.tool = tool
        self.cause = cause
        super().__init__(f"tool {tool} failed: {type(cause).__name__}")


class GatewayError(ToolsError):
    def __init__(self, refund_id: str, detail: str) -> None:
        self.refund_id = refund_id
        self.detail = detail
        super().__init__(f"payment gateway failed for refund {refund_id}: {detail}")


class TicketQuotaExceeded(ToolsError):
    def __init__(self, quota: Any) -> None:
        self.quota = quota
        super().__init__(f"at most {quota.limit} new tickets per {quota.window_s} s for this caller")


class ChangeRefused(ToolsError):
    """A write the store refused while a change was applied: the transaction is rolled back and the
    change refused, with `result` saying why."""

    def __init__(self, result: ToolResult) -> None:
        self.result = result
        super().__init__(result.code)
