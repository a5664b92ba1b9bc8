"""The model tools, listed once, and the one door every tool call goes through.

`Toolbox.call` validates the input against the tool's pydantic model, runs it with the
session's context, audit-logs the call and its outcome, and turns an unexpected exception into
`ToolFailure` (which the agent loop retries). Refusals come back as `ToolResult`s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select

from storage.engine import Store
from storage.importer import seed
from storage.kb_import import seed_help_center
from storage.migrate import upgrade
from storage.models import AuditLog, Customer
from storage.settings import Settings
from storage.types import Clock, SystemClock, no_nul
from tools import (
    cancel_pending_order,
    escalate_to_human,
    exchange_delivered_order_items,
    get_customer,
    get_order_changes,
    get_product_details,
    get_refund_status,
    list_orders,
    lookup_order,
    modify_pending_order_address,
    modify_pending_order_items,
    modify_pending_order_payment,
    modify_user_address,
    order_changes,
    process_refund,
    refunds,
    return_delivered_order_items,
    search_help_center,
)
from tools.codes import Code, ToolFailure, ToolResult
from tools.context import CallContext, Deps, Tool
from tools.gateway import StoreGateway
from tools.order_ids import not_an_order_number

log = logging.getLogger(__name__)
# the tools that take a typed order number (and count towards the unknown-order limit)
ORDER_TOOLS = frozenset(
    {
        "lookup_order",
        "process_refund",
        "get_refund_status",
        "get_order_changes",
        "cancel_pending_order",
        "modify_pending_order_items",
        "modify_pending_order_address",
        "modify_pending_order_payment",
        "return_delivered_order_items",
        "exchange_delivered_order_items",
    }
)
UNKNOWN = (Code.ORDER_NOT_FOUND, Code.OWNERSHIP_MISMATCH)  # alike on purpose: "not on your account"

TOOLS: tuple[Tool, ...] = (
    get_customer.TOOL,
    lookup_order.TOOL,
    list_orders.TOOL,
    process_refund.TOOL,
    escalate_to_human.TOOL,
    get_refund_status.TOOL,
    search_help_center.TOOL,
    get_product_details.TOOL,
    get_order_changes.TOOL,
)
# The order changes, named as τ2-bench's retail tools. Each prepares a change its customer confirms
# through tools.order_changes.confirm; they join TOOLS once every face can show that Confirm step.
ORDER_CHANGE_TOOLS: tuple[Tool, ...] = (
    cancel_pending_order.TOOL,
    modify_pending_order_items.TOOL,
    modify_pending_order_address.TOOL,
    modify_pending_order_payment.TOOL,
    return_delivered_order_items.TOOL,
    exchange_delivered_order_items.TOOL,
    modify_user_address.TOOL,
)


def validation_note(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        loc = ".".join(str(p) for p in e["loc"]) or "input"
        parts.append(f"{loc}: {e['msg']}")
    return "Invalid input. " + "; ".join(parts)


@dataclass
class Ledger:
    """A turn's audit rows not written yet (the agent loop adds them to its round's one write) and
    the customer's unknown-order count, read from the audit log once per turn and counted on here."""

    rows: list[AuditLog] = field(default_factory=list)
    unknown_before: int | None = None  # in the audit log when the turn first needed it
    unknown_now: int = 0  # tried since, this turn

    def take(self) -> list[AuditLog]:
        rows, self.rows = self.rows, []
        return rows


class Toolbox:
    def __init__(self, deps: Deps, tools: tuple[Tool, ...] = TOOLS) -> None:
        self.deps = deps
        self.tools = {t.name: t for t in tools}

    def schemas(self) -> list[dict[str, Any]]:
        return [t.schema() for t in self.tools.values()]

    def activity(self, name: str) -> str:
        tool = self.tools.get(name)
        return tool.activity if tool else "Working on it"

    async def call(self, name: str, raw_input: Any, ctx: CallContext, *, ledger: Ledger | None = None) -> ToolResult:
        """One tool call, audit-logged: at once, or with `ledger` into the caller's next write."""
        tool = self.tools.get(name)
        if tool is None:
            result = ToolResult(Code.INVALID_INPUT, f"There is no tool named {name[:40]!r}.")
        elif not isinstance(raw_input, dict):
            result = ToolResult(Code.INVALID_INPUT, "Tool input must be a JSON object.")
        else:
            raw_input = no_nul(raw_input)
            try:
                args = tool.input.model_validate(raw_input)
            except ValidationError as err:
                result = ToolResult(Code.INVALID_INPUT, validation_note(err))
            else:
                result = await self._run(tool, args, raw_input, ctx, ledger)
        await self._audit(ctx, name, raw_input, result.code, ledger)
        return result

    async def _run(
        self, tool: Tool, args: Any, raw_input: dict[str, Any], ctx: CallContext, ledger: Ledger | None
    ) -> ToolResult:
        typed = raw_input.get("order_id")
        shape = not_an_order_number(typed) if tool.name in ORDER_TOOLS and isinstance(typed, str) and typed else None
        if shape is not None:  # an amount, a size or a date: no order is looked up, and none counts as unknown
            return ToolResult(
                Code.INVALID_INPUT,
                f"That is {shape}, not an order number. Ask the customer for the order number on their confirmation "
                "email, or list their recent orders.",
            )
        if tool.name in ORDER_TOOLS and await self._probing(ctx, ledger):
            return ToolResult(
                Code.TOO_MANY_UNKNOWN_ORDERS,
                "Too many order numbers that are not on this customer's account were tried in the last "
                "hour: order numbers are not looked up for now. Tell the customer to check the number "
                "and try again later, or offer a person.",
            )
        try:
            return await tool.run(args, ctx, self.deps)
        except Exception as exc:
            log.warning("tool %s failed: %s", tool.name, type(exc).__name__, exc_info=True)
            await self._audit(ctx, tool.name, raw_input, "ERROR", ledger)
            raise ToolFailure(tool.name, exc) from exc

    async def _probing(self, ctx: CallContext, ledger: Ledger | None) -> bool:
        """Whether this customer tried UNKNOWN_ORDERS_PER_HOUR order numbers not on their account in
        the last hour. Unknown and other customers' orders count alike, and once over the limit every
        number is refused alike (theirs too), so the limit itself tells nothing about any order."""
        if ctx.actor.kind != "customer":
            return False
        if ledger is None:
            return await self._unknown_orders(ctx) >= self.deps.settings.unknown_orders_per_hour
        if ledger.unknown_before is None:
            ledger.unknown_before = await self._unknown_orders(ctx)
        return ledger.unknown_before + ledger.unknown_now >= self.deps.settings.unknown_orders_per_hour

    async def _unknown_orders(self, ctx: CallContext) -> int:
        since = self.deps.clock.now() - timedelta(hours=1)
        async with self.deps.store.read() as s:
            tried = await s.scalar(
                select(func.count())
                .select_from(AuditLog)
                .where(
                    AuditLog.actor == ctx.actor.ref,
                    AuditLog.created_at > since,
                    AuditLog.outcome.in_([str(c) for c in UNKNOWN]),
                )
            )
        return int(tried or 0)

    async def _audit(self, ctx: CallContext, name: str, raw_input: Any, outcome: str, ledger: Ledger | None) -> None:
        safe_input = raw_input if isinstance(raw_input, dict) else {"raw": repr(raw_input)[:500]}
        row = AuditLog(
            session_id=ctx.session_id,
            actor=ctx.actor.ref,
            action=name[:64],
            input=safe_input,
            outcome=str(outcome),
            created_at=self.deps.clock.now(),
        )
        if ledger is not None:
            ledger.rows.append(row)
            ledger.unknown_now += str(outcome) in {str(c) for c in UNKNOWN}
            return
        try:
            async with self.deps.store.write() as s:
                s.add(row)
        except Exception:  # an audit write failing must not turn a completed action into a failure
            log.exception("could not write the audit log for %s", name)


def make_deps(store: Store, settings: Settings, clock: Clock) -> Deps:
    """Everything tools need, with the default gateway (payouts recorded in our own store)."""
    return Deps(store=store, settings=settings, clock=clock, gateway=StoreGateway(store, clock))


async def ready(store: Store, settings: Settings) -> Deps:
    """A store ready for a face that runs on its own (the shell, MCP): the latest schema, the demo
    company and its help center in an empty store, refunds a crash left `processing` completed,
    lapsed confirmations expired."""
    await upgrade(store)
    async with store.read() as s:
        empty = not await s.scalar(select(func.count()).select_from(Customer))
    clock = SystemClock()
    if empty:
        await seed(store, clock)
        await seed_help_center(
            store, clock, base_url=settings.help_center_url, return_window_days=settings.return_window_days
        )
    deps = make_deps(store, settings, clock)
    await refunds.recover(deps)
    await refunds.expire_due(deps)
    await order_changes.expire_due(deps)
    return deps
