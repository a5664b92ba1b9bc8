"""The refund state machine: confirmation, approval, expiry, idempotency and crash recovery."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import text

from storage.models import Order
from tests.conftest import JAMES, SARAH
from tools import refunds
from tools.codes import Code, GatewayError
from tools.context import Actor, CallContext, Deps
from tools.gateway import PayoutResult, StoreGateway
from tools.toolbox import Toolbox


async def ask(toolbox: Toolbox, ctx: CallContext, order_id: str = "ORD-8842", amount: float = 89.99) -> str:
    assert (await toolbox.call("lookup_order", {"order_id": order_id}, ctx)).ok
    res = await toolbox.call("process_refund", {"order_id": order_id, "amount": amount, "reason": "damaged"}, ctx)
    assert res.ok, res
    return str(res.data["refund_id"])


async def rows(deps: Deps, sql: str, **params: object) -> list[tuple[object, ...]]:
    async with deps.store.read() as s:
        return [tuple(r) for r in (await s.execute(text(sql), params)).all()]


async def test_confirm_moves_money_once(toolbox: Toolbox, deps: Deps, sarah: CallContext) -> None:
    rid = await ask(toolbox, sarah)
    assert await rows(deps, "SELECT count(*) FROM payouts") == [(0,)]
    first = await refunds.confirm(deps, refund_id=rid, actor=sarah.actor)
    assert first.code is Code.REFUND_PROCESSED
    again = await refunds.confirm(deps, refund_id=rid, actor=sarah.actor)
    assert again.code is Code.INVALID_STATE
    assert await rows(deps, "SELECT status, decided_by FROM refunds") == [("processed", f"customer:{SARAH}")]
    assert await rows(deps, "SELECT idempotency_key, amount_cents FROM payouts") == [(rid, 8999)]


async def test_asking_twice_returns_the_same_refund(toolbox: Toolbox, deps: Deps, sarah: CallContext) -> None:
    rid = await ask(toolbox, sarah)
    res = await toolbox.call("process_refund", {"order_id": "ORD-8842", "amount": 10, "reason": "again"}, sarah)
    assert res.code is Code.REFUND_EXISTS and res.data["refund_id"] == rid
    await refunds.confirm(deps, refund_id=rid, actor=sarah.actor)
    res = await toolbox.call("process_refund", {"order_id": "ORD-8842", "amount": 89.99, "reason": "again"}, sarah)
    assert res.code is Code.REFUND_EXISTS and res.data["status"] == "processed"
    assert await rows(deps, "SELECT count(*) FROM refunds") == [(1,)]


async def test_another_customer_cannot_confirm_and_staff_cannot_either(
    toolbox: Toolbox, deps: Deps, sarah: CallContext
) -> None:
    rid = await ask(toolbox, sarah)
    for actor in (Actor.customer(JAMES), Actor.staff("U1"), Actor.unverified("x")):
        assert (await refunds.confirm(deps, refund_id=rid, actor=actor)).code is Code.NOT_ALLOWED
        assert (await refunds.cancel(deps, refund_id=rid, actor=actor)).code is Code.NOT_ALLOWED
    assert await rows(deps, "SELECT status FROM refunds") == [("awaiting_confirmation",)]


async def test_confirm_after_cancel_does_nothing(toolbox: Toolbox, deps: Deps, sarah: CallContext) -> None:
    rid = await ask(toolbox, sarah)
    assert (await refunds.cancel(deps, refund_id=rid, actor=sarah.actor)).code is Code.OK
    assert (await refunds.confirm(deps, refund_id=rid, actor=sarah.actor)).code is Code.INVALID_STATE
    assert await rows(deps, "SELECT status FROM refunds") == [("cancelled",)]
    assert await rows(deps, "SELECT count(*) FROM payouts") == [(0,)]
    # a cancelled refund is not live: the customer may ask again
    rid2 = await ask(toolbox, sarah)
    assert rid2 != rid


async def test_expired_confirmation_does_nothing(toolbox: Toolbox, deps: Deps, sarah: CallContext) -> None:
    rid = await ask(toolbox, sarah)
    deps.clock.advance(minutes=deps.settings.refund_confirmation_ttl_minutes + 1)
    assert (await refunds.confirm(deps, refund_id=rid, actor=sarah.actor)).code is Code.EXPIRED
    assert await rows(deps, "SELECT status FROM refunds") == [("expired",)]
    assert await rows(deps, "SELECT count(*) FROM payouts") == [(0,)]


async def test_a_confirmation_the_housekeeper_expired_still_reads_as_expired(
    toolbox: Toolbox, deps: Deps, sarah: CallContext
) -> None:
    rid = await ask(toolbox, sarah)
    deps.clock.advance(minutes=deps.settings.refund_confirmation_ttl_minutes + 1)
    assert [r.id for r in await refunds.expire_due(deps)] == [rid]
    assert (await refunds.confirm(deps, refund_id=rid, actor=sarah.actor)).code is Code.EXPIRED
    assert (await refunds.cancel(deps, refund_id=rid, actor=sarah.actor)).code is Code.EXPIRED
    assert await rows(deps, "SELECT status FROM refunds") == [("expired",)]
    assert await rows(deps, "SELECT count(*) FROM payouts") == [(0,)]


async def test_expire_due_sweeps_old_confirmations(toolbox: Toolbox, deps: Deps, sarah: CallContext) -> None:
    rid = await ask(toolbox, sarah)
    assert await refunds.expire_due(deps) == []
    deps.clock.advance(hours=1)
    assert [r.id for r in await refunds.expire_due(deps)] == [rid]


async def test_confirm_rechecks_eligibility_at_that_moment(toolbox: Toolbox, deps: Deps, sarah: CallContext) -> None:
    settings = deps.settings.model_copy(update={"refund_confirmation_ttl_minutes": 60 * 24 * 60})
    deps = dataclasses.replace(deps, settings=settings)
    toolbox = Toolbox(deps)
    rid = await ask(toolbox, sarah)
    deps.clock.advance(days=26)  # the return window closes while the customer waits
    assert (await refunds.confirm(deps, refund_id=rid, actor=sarah.actor)).code is Code.NOT_ELIGIBLE
    assert await rows(deps, "SELECT status FROM refunds") == [("expired",)]


async def test_confirm_rechecks_amount_against_the_order_now(toolbox: Toolbox, deps: Deps, sarah: CallContext) -> None:
    rid = await ask(toolbox, sarah)
    async with deps.store.write() as s:  # meanwhile, most of it was refunded another way
        (await s.get(Order, "ORD-8842")).refunded_cents = 8000  # type: ignore[union-attr]
    assert (await refunds.confirm(deps, refund_id=rid, actor=sarah.actor)).code is Code.INVALID_AMOUNT
    assert await rows(deps, "SELECT count(*) FROM payouts") == [(0,)]


async def test_over_limit_waits_for_staff_with_a_p2_ticket(toolbox: Toolbox, deps: Deps, sarah: CallContext) -> None:
    assert (await toolbox.call("lookup_order", {"order_id": "ORD-8901"}, sarah)).ok
    res = await toolbox.call("process_refund", {"order_id": "ORD-8901", "amount": 349, "reason": "leaks"}, sarah)
    assert res.code is Code.LIMIT_EXCEEDED
    assert "150" not in str(res.for_model())
    rid = res.data["refund_id"]
    assert await rows(deps, "SELECT priority, reason, refund_id, status FROM tickets") == [
        ("P2", "refund_approval", rid, "open")
    ]
    assert (await refunds.confirm(deps, refund_id=rid, actor=sarah.actor)).code is Code.INVALID_STATE
    assert (await refunds.approve_refund(deps, refund_id=rid, staff=sarah.actor)).code is Code.NOT_ALLOWED
    staff = Actor.staff("U-LEAD")
    assert (await refunds.approve_refund(deps, refund_id=rid, staff=staff)).code is Code.REFUND_PROCESSED
    assert (await refunds.approve_refund(deps, refund_id=rid, staff=staff)).code is Code.INVALID_STATE
    assert (await refunds.deny(deps, refund_id=rid, staff=staff)).code is Code.INVALID_STATE
    assert await rows(deps, "SELECT status, decided_by FROM refunds") == [("processed", "staff:U-LEAD")]
    assert await rows(deps, "SELECT count(*) FROM payouts") == [(1,)]
    assert ("staff:U-LEAD", "approve_refund") in await rows(deps, "SELECT actor, action FROM audit_log")


async def test_deny(toolbox: Toolbox, deps: Deps, sarah: CallContext) -> None:
    assert (await toolbox.call("lookup_order", {"order_id": "ORD-8901"}, sarah)).ok
    res = await toolbox.call("process_refund", {"order_id": "ORD-8901", "amount": 200, "reason": "x"}, sarah)
    rid = res.data["refund_id"]
    assert (await refunds.deny(deps, refund_id=rid, staff=Actor.staff("U-LEAD"))).code is Code.OK
    assert (await refunds.approve_refund(deps, refund_id=rid, staff=Actor.staff("U-LEAD"))).code is Code.INVALID_STATE
    assert await rows(deps, "SELECT status FROM refunds") == [("denied",)]
    assert await rows(deps, "SELECT count(*) FROM payouts") == [(0,)]


async def test_without_confirmation_step_refunds_go_out_at_once(deps: Deps, sarah: CallContext) -> None:
    deps = dataclasses.replace(deps, settings=deps.settings.model_copy(update={"refund_confirmation": False}))
    toolbox = Toolbox(deps)
    assert (await toolbox.call("lookup_order", {"order_id": "ORD-8842"}, sarah)).ok
    res = await toolbox.call("process_refund", {"order_id": "ORD-8842", "amount": 89.99, "reason": "x"}, sarah)
    assert res.code is Code.REFUND_PROCESSED
    assert await rows(deps, "SELECT status FROM refunds") == [("processed",)]


class CrashAfterPayout(StoreGateway):
    """Records the payout, then dies before the caller can commit `processed`."""

    async def refund(self, order: Order, amount_cents: int, idempotency_key: str) -> PayoutResult:
        await super().refund(order, amount_cents, idempotency_key)
        raise ConnectionResetError("process killed")


class Declines(StoreGateway):
    async def refund(self, order: Order, amount_cents: int, idempotency_key: str) -> PayoutResult:
        raise GatewayError(idempotency_key, "card expired")


@pytest.mark.parametrize("gateway_reached", [True, False])
async def test_crash_recovery_completes_exactly_once(
    toolbox: Toolbox, deps: Deps, sarah: CallContext, gateway_reached: bool
) -> None:
    rid = await ask(toolbox, sarah)
    if gateway_reached:
        crashing = dataclasses.replace(deps, gateway=CrashAfterPayout(deps.store, deps.clock))
        res = await refunds.confirm(crashing, refund_id=rid, actor=sarah.actor)
        assert res.data["status"] == "processing"
        assert await rows(deps, "SELECT count(*) FROM payouts") == [(1,)]
    else:  # killed between the processing commit and the gateway call
        async with deps.store.write() as s:
            await s.execute(text("UPDATE refunds SET status = 'processing' WHERE id = :id"), {"id": rid})
    results = await refunds.recover(deps)  # "at start"
    assert [r.code for r in results] == [Code.REFUND_PROCESSED]
    assert await refunds.recover(deps) == []
    assert await rows(deps, "SELECT status FROM refunds") == [("processed",)]
    assert await rows(deps, "SELECT idempotency_key, amount_cents FROM payouts") == [(rid, 8999)]


async def test_declined_payment_fails_the_refund_and_opens_a_ticket(
    toolbox: Toolbox, deps: Deps, sarah: CallContext
) -> None:
    rid = await ask(toolbox, sarah)
    res = await refunds.confirm(
        dataclasses.replace(deps, gateway=Declines(deps.store, deps.clock)), refund_id=rid, actor=sarah.actor
    )
    assert res.code is Code.PAYMENT_FAILED
    assert await rows(deps, "SELECT status FROM refunds") == [("failed",)]
    assert await rows(deps, "SELECT priority, reason FROM tickets") == [("P2", "payment_failed")]
    assert await rows(deps, "SELECT count(*) FROM payouts") == [(0,)]


async def test_refund_status_sees_only_own_refunds(
    toolbox: Toolbox, deps: Deps, sarah: CallContext, james: CallContext, staff: CallContext
) -> None:
    await ask(toolbox, sarah)
    mine = await toolbox.call("get_refund_status", {}, sarah)
    assert [r["order_id"] for r in mine.data["refunds"]] == ["ORD-8842"]
    assert (await toolbox.call("get_refund_status", {}, james)).data["refunds"] == []
    theirs = await toolbox.call("get_refund_status", {"order_id": "ORD-8842"}, james)
    unknown = await toolbox.call("get_refund_status", {"order_id": "ORD-8843"}, james)
    assert theirs.for_model()["code"] == unknown.for_model()["code"] == "ORDER_NOT_FOUND"
    assert (await toolbox.call("get_refund_status", {"order_id": "ORD-8842"}, staff)).data["refunds"]
