"""The rule matrix: every guard of every tool, allowed and refused, for each kind of actor."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from tools.codes import Code
from tools.context import CallContext, Deps
from tools.toolbox import Toolbox

# (actor, tool, input, look up first?, expected code)
MATRIX: list[tuple[str, str, dict[str, Any], bool, Code]] = [
    # get_customer
    ("customer", "get_customer", {"email": "sarah@example.com"}, False, Code.OK),
    ("customer", "get_customer", {"email": "  SARAH@example.com "}, False, Code.OK),
    ("customer", "get_customer", {"email": "james@example.com"}, False, Code.IDENTITY_MISMATCH),
    ("customer", "get_customer", {"email": "nobody@example.com"}, False, Code.IDENTITY_MISMATCH),
    ("unverified", "get_customer", {"email": "sarah@example.com"}, False, Code.IDENTITY_UNVERIFIED),
    ("staff", "get_customer", {"email": "james@example.com"}, False, Code.OK),
    ("staff", "get_customer", {"email": "nobody@example.com"}, False, Code.NOT_FOUND),
    # lookup_order
    ("customer", "lookup_order", {"order_id": "ORD-8842"}, False, Code.OK),
    ("customer", "lookup_order", {"order_id": "ord-8842"}, False, Code.OK),
    ("customer", "lookup_order", {"order_id": "ORD-5501"}, False, Code.OWNERSHIP_MISMATCH),
    ("customer", "lookup_order", {"order_id": "ORD-0000"}, False, Code.ORDER_NOT_FOUND),
    ("unverified", "lookup_order", {"order_id": "ORD-8842"}, False, Code.IDENTITY_UNVERIFIED),
    ("staff", "lookup_order", {"order_id": "ORD-5501"}, False, Code.OK),
    ("customer", "lookup_order", {"order_id": "ORD8842"}, False, Code.OK),
    ("customer", "lookup_order", {"order_id": "ord 8842"}, False, Code.OK),
    ("customer", "lookup_order", {"order_id": "#8842"}, False, Code.OK),
    ("customer", "lookup_order", {"order_id": "ord5501"}, False, Code.OWNERSHIP_MISMATCH),
    ("customer", "lookup_order", {"order_id": "#5501"}, False, Code.ORDER_NOT_FOUND),  # digits: own orders only
    ("staff", "lookup_order", {"order_id": "#8842"}, False, Code.ORDER_NOT_FOUND),
    # list_orders
    ("customer", "list_orders", {}, False, Code.OK),
    ("customer", "list_orders", {"limit": 11}, False, Code.INVALID_INPUT),
    ("unverified", "list_orders", {}, False, Code.IDENTITY_UNVERIFIED),
    ("staff", "list_orders", {}, False, Code.NOT_ALLOWED),
    # process_refund
    (
        "customer",
        "process_refund",
        {"order_id": "ORD-8842", "amount": 89.99, "reason": "broken"},
        True,
        Code.AWAITING_CONFIRMATION,
    ),
    (
        "customer",
        "process_refund",
        {"order_id": "ORD-8842", "amount": 20, "reason": "partial"},
        True,
        Code.AWAITING_CONFIRMATION,
    ),
    (
        "customer",
        "process_refund",
        {"order_id": "ORD-8842", "amount": 89.99, "reason": "x"},
        False,
        Code.ORDER_NOT_LOOKED_UP,
    ),
    ("customer", "process_refund", {"order_id": "ORD-8842", "amount": 90.00, "reason": "x"}, True, Code.INVALID_AMOUNT),
    ("customer", "process_refund", {"order_id": "ORD-8842", "amount": 0, "reason": "x"}, True, Code.INVALID_AMOUNT),
    ("customer", "process_refund", {"order_id": "ORD-8842", "amount": -5, "reason": "x"}, True, Code.INVALID_AMOUNT),
    ("customer", "process_refund", {"order_id": "ORD-8842", "amount": 1.234, "reason": "x"}, True, Code.INVALID_AMOUNT),
    ("customer", "process_refund", {"order_id": "ORD-8842", "amount": 1e300, "reason": "x"}, True, Code.INVALID_AMOUNT),
    ("customer", "process_refund", {"order_id": "ORD-7710", "amount": 45, "reason": "old"}, True, Code.NOT_ELIGIBLE),
    (
        "customer",
        "process_refund",
        {"order_id": "ORD-9120", "amount": 10, "reason": "pending"},
        True,
        Code.NOT_ELIGIBLE,
    ),
    ("customer", "process_refund", {"order_id": "ORD-8901", "amount": 349, "reason": "big"}, True, Code.LIMIT_EXCEEDED),
    (
        "customer",
        "process_refund",
        {"order_id": "ORD-5501", "amount": 10, "reason": "not mine"},
        False,
        Code.OWNERSHIP_MISMATCH,
    ),
    ("customer", "process_refund", {"order_id": "ORD-0000", "amount": 10, "reason": "?"}, False, Code.ORDER_NOT_FOUND),
    ("customer", "process_refund", {"order_id": "ORD-8842", "amount": "lots", "reason": "x"}, True, Code.INVALID_INPUT),
    (
        "unverified",
        "process_refund",
        {"order_id": "ORD-8842", "amount": 10, "reason": "x"},
        False,
        Code.IDENTITY_UNVERIFIED,
    ),
    ("staff", "process_refund", {"order_id": "ORD-8842", "amount": 10, "reason": "x"}, True, Code.NOT_ALLOWED),
    # escalate_to_human: always allowed
    (
        "customer",
        "escalate_to_human",
        {"reason": "human_request", "priority": "P1", "summary": "wants a person"},
        False,
        Code.TICKET_OPENED,
    ),
    (
        "unverified",
        "escalate_to_human",
        {"reason": "other", "priority": "P3", "summary": "?"},
        False,
        Code.TICKET_OPENED,
    ),
    ("staff", "escalate_to_human", {"reason": "other", "priority": "P2", "summary": "?"}, False, Code.TICKET_OPENED),
    ("customer", "escalate_to_human", {"reason": "other", "priority": "P0", "summary": "?"}, False, Code.INVALID_INPUT),
    # get_refund_status
    ("customer", "get_refund_status", {}, False, Code.OK),
    ("customer", "get_refund_status", {"order_id": "ORD-8842"}, False, Code.OK),
    ("customer", "get_refund_status", {"order_id": "ORD-5501"}, False, Code.OWNERSHIP_MISMATCH),
    ("customer", "get_refund_status", {"order_id": "ORD-0000"}, False, Code.ORDER_NOT_FOUND),
    ("unverified", "get_refund_status", {}, False, Code.IDENTITY_UNVERIFIED),
    ("staff", "get_refund_status", {"order_id": "ORD-5501"}, False, Code.OK),
    # not a tool
    ("customer", "confirm_refund", {"refund_id": "RF-1"}, False, Code.INVALID_INPUT),
]


@pytest.mark.parametrize(
    ("actor", "tool", "args", "lookup", "expected"),
    MATRIX,
    ids=[f"{a}-{t}-{e.value}-{i}" for i, (a, t, _, _, e) in enumerate(MATRIX)],
)
async def test_rule_matrix(
    toolbox: Toolbox,
    deps: Deps,
    sarah: CallContext,
    anon: CallContext,
    staff: CallContext,
    actor: str,
    tool: str,
    args: dict[str, Any],
    lookup: bool,
    expected: Code,
) -> None:
    ctx = {"customer": sarah, "unverified": anon, "staff": staff}[actor]
    if lookup:
        assert (await toolbox.call("lookup_order", {"order_id": args["order_id"]}, ctx)).ok
    result = await toolbox.call(tool, args, ctx)
    assert result.code is expected, result
    async with deps.store.read() as s:
        outcome = (
            await s.execute(
                text("SELECT outcome FROM audit_log WHERE session_id = :s AND action = :a ORDER BY id DESC"),
                {"s": ctx.session_id, "a": tool},
            )
        ).scalar()
    assert outcome == expected.value  # every call is audit-logged with its outcome


async def test_ownership_mismatch_looks_exactly_like_an_unknown_order(toolbox: Toolbox, sarah: CallContext) -> None:
    other = await toolbox.call("lookup_order", {"order_id": "ORD-5501"}, sarah)
    unknown = await toolbox.call("lookup_order", {"order_id": "ORD-5599"}, sarah)
    assert other.code is Code.OWNERSHIP_MISMATCH and unknown.code is Code.ORDER_NOT_FOUND
    strip = lambda d: {k: v for k, v in d.items() if k != "order_id"}  # noqa: E731
    assert strip(other.for_model()) == strip(unknown.for_model())
    assert other.for_model()["code"] == "ORDER_NOT_FOUND"
    assert "CUST-1002" not in str(other.for_model()) and "129" not in str(other.for_model())


async def test_lookup_reports_eligibility_computed_now(toolbox: Toolbox, deps: Deps, sarah: CallContext) -> None:
    res = await toolbox.call("lookup_order", {"order_id": "ORD-8842"}, sarah)
    assert res.data["refund_eligible"] is True and res.data["total"] == "$89.99"
    deps.clock.advance(days=26)  # delivered 5 days ago + 26 > 30-day window
    res = await toolbox.call("lookup_order", {"order_id": "ORD-8842"}, sarah)
    assert res.data["refund_eligible"] is False
    assert "outside the return window" in res.data["eligibility"]
    assert "150" not in str(res.for_model())  # the model never learns the limit


async def test_list_orders_lists_only_the_customers_recent_orders(toolbox: Toolbox, sarah: CallContext) -> None:
    listed = await toolbox.call("list_orders", {"limit": 3}, sarah)
    assert [o["order_id"] for o in listed.data["orders"]] == ["ORD-9120", "ORD-8901", "ORD-8842"]  # newest first
    assert listed.data["orders"][0] == {
        "order_id": "ORD-9120",
        "placed_on": "2026-11-23",
        "status": "pending",
        "items": ["Stoneware mug set"],
        "total": "$32.50",
        "delivered_on": None,
    }


async def test_an_order_with_a_refund_is_not_eligible_and_says_why(toolbox: Toolbox, sarah: CallContext) -> None:
    assert (await toolbox.call("lookup_order", {"order_id": "ORD-8842"}, sarah)).data["refund_eligible"] is True
    await toolbox.call("process_refund", {"order_id": "ORD-8842", "amount": 89.99, "reason": "broken"}, sarah)
    pending = (await toolbox.call("lookup_order", {"order_id": "ORD-8842"}, sarah)).data
    assert pending["refund_eligible"] is False and pending["eligibility"].startswith("refund pending")
    assert pending["existing_refund"]["status"] == "awaiting_confirmation"
    over = await toolbox.call("lookup_order", {"order_id": "ORD-8901"}, sarah)
    await toolbox.call("process_refund", {"order_id": "ORD-8901", "amount": 349, "reason": "leaks"}, sarah)
    assert over.data["refund_eligible"] is True
    review = (await toolbox.call("lookup_order", {"order_id": "ORD-8901"}, sarah)).data
    assert review["refund_eligible"] is False and "waiting for approval" in review["eligibility"]


async def test_a_refunded_order_says_already_refunded(toolbox: Toolbox, deps: Deps, sarah: CallContext) -> None:
    from tools import refunds

    await toolbox.call("lookup_order", {"order_id": "ORD-8842"}, sarah)
    made = await toolbox.call("process_refund", {"order_id": "ORD-8842", "amount": 89.99, "reason": "broken"}, sarah)
    await refunds.confirm(deps, refund_id=made.data["refund_id"], actor=sarah.actor, session_id=sarah.session_id)
    done = (await toolbox.call("lookup_order", {"order_id": "ORD-8842"}, sarah)).data
    assert done["refund_eligible"] is False and done["eligibility"].startswith("already refunded")
    assert "inside the return window" not in done["eligibility"]


async def test_the_session_customer_cannot_be_changed_by_tool_input(toolbox: Toolbox, sarah: CallContext) -> None:
    res = await toolbox.call("get_customer", {"email": "james@example.com", "customer_id": "CUST-1002"}, sarah)
    assert res.code is Code.IDENTITY_MISMATCH
    res = await toolbox.call("lookup_order", {"order_id": "ORD-5501", "customer_id": "CUST-1002"}, sarah)
    assert res.code is Code.OWNERSHIP_MISMATCH


async def test_a_tool_that_crashes_raises_tool_failure_and_is_audited(
    toolbox: Toolbox, deps: Deps, sarah: CallContext
) -> None:
    from tools.codes import ToolFailure

    await deps.store.dispose()
    async with deps.store.engine.begin() as conn:
        await conn.execute(text("DROP TABLE session_orders"))
    with pytest.raises(ToolFailure) as err:
        await toolbox.call("lookup_order", {"order_id": "ORD-8842"}, sarah)
    assert err.value.tool == "lookup_order"
    async with deps.store.read() as s:
        assert (await s.execute(text("SELECT outcome FROM audit_log ORDER BY id DESC"))).scalar() == "ERROR"


async def test_nul_characters_in_tool_input_are_dropped_not_fatal(toolbox: Toolbox, sarah: CallContext) -> None:
    """Found by the hostile caller on PostgreSQL, whose text columns cannot hold NUL."""
    res = await toolbox.call("escalate_to_human", {"reason": "other", "priority": "P1", "summary": "a\x00b"}, sarah)
    assert res.code is Code.TICKET_OPENED
    async with toolbox.deps.store.read() as s:
        assert (await s.execute(text("SELECT summary FROM tickets"))).scalar() == "ab"
