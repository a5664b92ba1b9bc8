"""Order changes: prepared by their tools, applied once their customer confirms them, refused when
the rules say no (at preparation and again at confirmation), over the limit to staff; and refunds
by item and of what remains."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from desk.sessions import open_session
from storage.engine import Store
from storage.settings import Settings
from storage.types import FrozenClock
from tests.tools.shop import ADA, BO, HOME, balance, money, open_shop, rows
from tools import order_changes, refunds
from tools.codes import Code, ToolResult
from tools.context import Actor, CallContext, Deps
from tools.gateway import StoreGateway
from tools.toolbox import ORDER_CHANGE_TOOLS, TOOLS, Toolbox

NEW_HOME = {
    "address1": "9 Elm St",
    "address2": "Apt 2",
    "city": "Shelbyville",
    "state": "IL",
    "country": "USA",
    "zip": "2",
}


@pytest.fixture
async def shop(store: Store, settings: Settings, clock: FrozenClock) -> Deps:
    await open_shop(store, clock)
    return Deps(store=store, settings=settings, clock=clock, gateway=StoreGateway(store, clock))


@pytest.fixture
async def ada(shop: Deps) -> CallContext:
    return await open_session(shop, channel="test", actor=Actor.customer(ADA))


@pytest.fixture
async def bo(shop: Deps) -> CallContext:
    return await open_session(shop, channel="test", actor=Actor.customer(BO))


@pytest.fixture
def tools(shop: Deps) -> Toolbox:
    return Toolbox(shop, TOOLS + ORDER_CHANGE_TOOLS)


async def ask(tools: Toolbox, ctx: CallContext, name: str, **args: Any) -> ToolResult:
    if "order_id" in args:
        await tools.call("lookup_order", {"order_id": args["order_id"]}, ctx)
    return await tools.call(name, args, ctx)


async def confirmed(deps: Deps, ctx: CallContext, prepared: ToolResult) -> ToolResult:
    assert prepared.code is Code.AWAITING_CONFIRMATION, prepared
    return await order_changes.confirm(deps, change_id=prepared.data["change_id"], actor=ctx.actor)


async def test_a_cancellation_is_prepared_and_made_once_its_customer_confirms(
    shop: Deps, tools: Toolbox, ada: CallContext
) -> None:
    before = await money(shop.store, "O-PEND")
    prepared = await ask(tools, ada, "cancel_pending_order", order_id="O-PEND", reason="no longer needed")
    assert prepared.code is Code.AWAITING_CONFIRMATION
    assert prepared.data["money"] == [
        {
            "kind": "refund",
            "amount_cents": 3000,
            "method_id": "card-1",
            "method": "Visa card ending 4242",
            "gift_card": False,
            "when": "now",
        }
    ]
    assert await money(shop.store, "O-PEND") == before  # nothing changes before the customer says yes
    done = await confirmed(shop, ada, prepared)
    assert done.code is Code.CHANGE_APPLIED and done.data["status"] == "applied"
    after = await money(shop.store, "O-PEND")
    assert after["status"] == "cancelled" and after["refunded"] == 3000
    assert after["history"] == [("payment", 3000, "card-1"), ("refund", 3000, "card-1")]
    again = await order_changes.confirm(shop, change_id=prepared.data["change_id"], actor=ada.actor)
    assert again.code is Code.INVALID_STATE
    assert (await order_changes.cancel(shop, change_id=prepared.data["change_id"], actor=ada.actor)).code is (
        Code.INVALID_STATE
    )
    assert await money(shop.store, "O-PEND") == after
    audited = await rows(shop.store, "SELECT action, outcome FROM audit_log WHERE action LIKE '%order_change%'")
    assert audited == [
        ("confirm_order_change", "CHANGE_APPLIED"),
        ("confirm_order_change", "INVALID_STATE"),
        ("cancel_order_change", "INVALID_STATE"),
    ]


ORDER_TOOL_ARGS: dict[str, dict[str, Any]] = {
    "cancel_pending_order": {"reason": "ordered by mistake"},
    "modify_pending_order_items": {"item_ids": ["MUG-W"], "new_item_ids": ["MUG-B"], "payment_method_id": "gift-9"},
    "modify_pending_order_address": dict(NEW_HOME),
    "modify_pending_order_payment": {"payment_method_id": "gift-9"},
    "return_delivered_order_items": {"item_ids": ["MUG-W"]},
    "exchange_delivered_order_items": {"item_ids": ["MUG-W"], "new_item_ids": ["MUG-B"], "payment_method_id": "gift-9"},
}


@pytest.mark.parametrize("name", sorted(ORDER_TOOL_ARGS))
async def test_another_customers_order_reads_exactly_like_an_unknown_one(
    shop: Deps, tools: Toolbox, ada: CallContext, name: str
) -> None:
    theirs = await tools.call(name, {"order_id": "O-BO", **ORDER_TOOL_ARGS[name]}, ada)
    unknown = await tools.call(name, {"order_id": "O-NOPE", **ORDER_TOOL_ARGS[name]}, ada)
    assert theirs.code is Code.OWNERSHIP_MISMATCH and unknown.code is Code.ORDER_NOT_FOUND
    assert theirs.for_model() == {**unknown.for_model(), "order_id": "O-BO"}
    assert await rows(shop.store, "SELECT count(*) FROM order_changes") == [(0,)]


async def test_only_the_changes_own_customer_confirms_or_cancels_it(
    shop: Deps, tools: Toolbox, ada: CallContext, bo: CallContext
) -> None:
    prepared = await ask(tools, ada, "cancel_pending_order", order_id="O-PEND", reason="no longer needed")
    cid = prepared.data["change_id"]
    for actor in (bo.actor, Actor.staff("U-1"), Actor.unverified("T:U")):
        assert (await order_changes.confirm(shop, change_id=cid, actor=actor)).code is Code.NOT_ALLOWED
        assert (await order_changes.cancel(shop, change_id=cid, actor=actor)).code is Code.NOT_ALLOWED
    assert (await money(shop.store, "O-PEND"))["status"] == "pending"
    assert (await order_changes.confirm(shop, change_id="OC-NOPE", actor=ada.actor)).code is Code.NOT_FOUND


async def test_staff_and_unverified_callers_prepare_nothing(shop: Deps, tools: Toolbox) -> None:
    staff = await open_session(shop, channel="test", actor=Actor.staff("U-1"))
    anon = await open_session(shop, channel="test", actor=Actor.unverified("T:U"))
    args = {"order_id": "O-PEND", "reason": "no longer needed"}
    assert (await tools.call("cancel_pending_order", args, staff)).code is Code.NOT_ALLOWED
    assert (await tools.call("cancel_pending_order", args, anon)).code is Code.IDENTITY_UNVERIFIED
    assert (await tools.call("modify_user_address", NEW_HOME, anon)).code is Code.IDENTITY_UNVERIFIED


async def test_the_order_must_be_looked_up_first(tools: Toolbox, ada: CallContext) -> None:
    res = await tools.call("cancel_pending_order", {"order_id": "O-PEND", "reason": "no longer needed"}, ada)
    assert res.code is Code.ORDER_NOT_LOOKED_UP


async def test_an_expired_confirmation_changes_nothing(shop: Deps, tools: Toolbox, ada: CallContext) -> None:
    assert isinstance(shop.clock, FrozenClock)
    first = await ask(tools, ada, "modify_pending_order_address", order_id="O-PEND", **NEW_HOME)
    second = await ask(tools, ada, "modify_user_address", **NEW_HOME)
    shop.clock.advance(minutes=shop.settings.refund_confirmation_ttl_minutes + 1)
    assert (await confirmed(shop, ada, first)).code is Code.EXPIRED
    assert [c.id for c in await order_changes.expire_due(shop)] == [second.data["change_id"]]
    assert (await confirmed(shop, ada, second)).code is Code.EXPIRED
    assert await rows(shop.store, "SELECT address FROM customers WHERE id = :c", c=ADA) != [(NEW_HOME,)]


async def test_the_customers_no_withdraws_it(shop: Deps, tools: Toolbox, ada: CallContext) -> None:
    prepared = await ask(tools, ada, "return_delivered_order_items", order_id="O-DELV", item_ids=["MUG-W"])
    cancelled = await order_changes.cancel(shop, change_id=prepared.data["change_id"], actor=ada.actor)
    assert cancelled.code is Code.OK and cancelled.data["status"] == "cancelled"
    assert (await confirmed(shop, ada, prepared)).code is Code.INVALID_STATE
    assert (await money(shop.store, "O-DELV"))["status"] == "delivered"


async def test_asking_twice_gives_the_same_change_and_a_new_version_replaces_it(
    shop: Deps, tools: Toolbox, ada: CallContext
) -> None:
    one = await ask(tools, ada, "modify_pending_order_address", order_id="O-PEND", **NEW_HOME)
    same = await ask(tools, ada, "modify_pending_order_address", order_id="O-PEND", **NEW_HOME)
    assert same.data["change_id"] == one.data["change_id"]
    other = await ask(tools, ada, "modify_pending_order_address", order_id="O-PEND", **{**NEW_HOME, "zip": "3"})
    assert other.data["change_id"] != one.data["change_id"]
    assert await rows(shop.store, "SELECT status, decided_by FROM order_changes ORDER BY created_at, status") == [
        ("awaiting_confirmation", None),
        ("cancelled", "superseded"),
    ]
    assert (await confirmed(shop, ada, one)).code is Code.INVALID_STATE
    assert (await confirmed(shop, ada, other)).code is Code.CHANGE_APPLIED
    ((address,),) = await rows(shop.store, "SELECT address FROM orders WHERE id = 'O-PEND'")
    assert (address if isinstance(address, dict) else json.loads(address))["zip"] == "3"


async def test_confirming_plans_again_and_refuses_what_the_order_no_longer_allows(
    shop: Deps, tools: Toolbox, ada: CallContext
) -> None:
    cancel = await ask(tools, ada, "cancel_pending_order", order_id="O-PEND", reason="ordered by mistake")
    modify = await ask(
        tools,
        ada,
        "modify_pending_order_items",
        order_id="O-PEND",
        item_ids=["TEE-BM"],
        new_item_ids=["TEE-RL"],
        payment_method_id="gift-1",
    )
    assert (await confirmed(shop, ada, modify)).code is Code.CHANGE_APPLIED
    refused = await confirmed(shop, ada, cancel)
    assert refused.code is Code.NOT_ELIGIBLE and refused.data["status"] == "refused"
    after = await money(shop.store, "O-PEND")
    assert after["status"] == "items_modified" and after["total"] == 3250
    assert after["history"] == [("payment", 3000, "card-1"), ("payment", 250, "gift-1")]
    assert await balance(shop.store, "gift-1") == 2750
    again = await ask(
        tools,
        ada,
        "modify_pending_order_items",
        order_id="O-PEND",
        item_ids=["MUG-W"],
        new_item_ids=["MUG-B"],
        payment_method_id="card-1",
    )
    assert again.code is Code.NOT_ELIGIBLE  # once per order, then locked
    assert (await ask(tools, ada, "modify_pending_order_address", order_id="O-PEND", **NEW_HOME)).ok


async def test_a_prepared_change_whose_order_moved_is_refused_not_applied_differently(
    shop: Deps, tools: Toolbox, ada: CallContext
) -> None:
    prepared = await ask(
        tools,
        ada,
        "modify_pending_order_items",
        order_id="O-PEND",
        item_ids=["TEE-BM"],
        new_item_ids=["TEE-RL"],
        payment_method_id="card-1",
    )
    async with shop.store.write() as s:  # the catalogue's price changes meanwhile
        await s.execute(text("UPDATE variants SET price_cents = 2600 WHERE item_id = 'TEE-RL'"))
    refused = await confirmed(shop, ada, prepared)
    assert refused.code is Code.INVALID_STATE and refused.data["status"] == "refused"
    assert (await money(shop.store, "O-PEND"))["status"] == "pending"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ({"item_ids": ["TEE-BM"], "new_item_ids": ["TEE-GS"], "payment_method_id": "card-1"}, Code.VARIANT_UNAVAILABLE),
        ({"item_ids": ["TEE-BM"], "new_item_ids": ["MUG-B"], "payment_method_id": "card-1"}, Code.VARIANT_UNAVAILABLE),
        ({"item_ids": ["TEE-BM"], "new_item_ids": ["TEE-BM"], "payment_method_id": "card-1"}, Code.INVALID_INPUT),
        ({"item_ids": ["TEE-RL"], "new_item_ids": ["TEE-BM"], "payment_method_id": "card-1"}, Code.ITEM_NOT_IN_ORDER),
        (
            {"item_ids": ["TEE-BM", "TEE-BM"], "new_item_ids": ["TEE-RL", "TEE-RL"], "payment_method_id": "card-1"},
            Code.ITEM_NOT_IN_ORDER,
        ),
        (
            {"item_ids": ["TEE-BM"], "new_item_ids": ["TEE-RL", "MUG-B"], "payment_method_id": "card-1"},
            Code.INVALID_INPUT,
        ),
        (
            {"item_ids": ["TEE-BM"], "new_item_ids": ["TEE-RL"], "payment_method_id": "gift-9"},
            Code.PAYMENT_METHOD_NOT_FOUND,
        ),  # Bo's gift card reads like an unknown method
        (
            {"item_ids": ["TEE-BM"], "new_item_ids": ["TEE-RL"], "payment_method_id": "nope"},
            Code.PAYMENT_METHOD_NOT_FOUND,
        ),
    ],
)
async def test_item_changes_keep_to_the_product_and_the_customers_methods(
    shop: Deps, tools: Toolbox, ada: CallContext, args: dict[str, Any], code: Code
) -> None:
    assert (await ask(tools, ada, "modify_pending_order_items", order_id="O-PEND", **args)).code is code


async def test_a_gift_card_must_cover_what_it_pays(shop: Deps, tools: Toolbox, ada: CallContext) -> None:
    big = await ask(tools, ada, "modify_pending_order_payment", order_id="O-BIG", payment_method_id="gift-1")
    assert big.code is Code.INSUFFICIENT_BALANCE
    prepared = await ask(
        tools,
        ada,
        "modify_pending_order_items",
        order_id="O-PEND",
        item_ids=["TEE-BM"],
        new_item_ids=["TEE-RL"],
        payment_method_id="gift-1",
    )
    async with shop.store.write() as s:  # spent elsewhere meanwhile
        await s.execute(text("UPDATE payment_methods SET balance_cents = 100 WHERE id = 'gift-1'"))
    refused = await confirmed(shop, ada, prepared)
    assert refused.code is Code.INSUFFICIENT_BALANCE
    assert (await money(shop.store, "O-PEND"))["status"] == "pending" and await balance(shop.store, "gift-1") == 100


async def test_a_payment_change_charges_the_new_method_and_refunds_the_old(
    shop: Deps, tools: Toolbox, ada: CallContext
) -> None:
    same = await ask(tools, ada, "modify_pending_order_payment", order_id="O-GIFT", payment_method_id="gift-1")
    assert same.code is Code.INVALID_INPUT
    done = await confirmed(
        shop, ada, await ask(tools, ada, "modify_pending_order_payment", order_id="O-GIFT", payment_method_id="card-1")
    )
    assert done.code is Code.CHANGE_APPLIED and done.data["refund_cents"] == 0  # a swap gives nothing back
    after = await money(shop.store, "O-GIFT")
    assert after["history"] == [("payment", 1200, "gift-1"), ("payment", 1200, "card-1"), ("refund", 1200, "gift-1")]
    assert after["status"] == "pending" and await balance(shop.store, "gift-1") == 4200
    again = await ask(tools, ada, "modify_pending_order_payment", order_id="O-GIFT", payment_method_id="pp-1")
    assert again.code is Code.NOT_ELIGIBLE
    cancel = await confirmed(
        shop, ada, await ask(tools, ada, "cancel_pending_order", order_id="O-GIFT", reason="no longer needed")
    )
    assert cancel.code is Code.CHANGE_APPLIED  # each method refunded what it paid net: the card
    assert (await money(shop.store, "O-GIFT"))["history"][-1] == ("refund", 1200, "card-1")
    assert await balance(shop.store, "gift-1") == 4200


async def test_cancelling_an_order_paid_by_gift_card_credits_it_at_once(
    shop: Deps, tools: Toolbox, ada: CallContext
) -> None:
    prepared = await ask(tools, ada, "cancel_pending_order", order_id="O-GIFT", reason="no longer needed")
    assert prepared.data["money"][0]["gift_card"] is True
    assert (await confirmed(shop, ada, prepared)).code is Code.CHANGE_APPLIED
    assert await balance(shop.store, "gift-1") == 4200


async def test_a_return_is_refunded_on_receipt_to_the_original_method_or_a_gift_card(
    shop: Deps, tools: Toolbox, ada: CallContext
) -> None:
    paypal = await ask(
        tools, ada, "return_delivered_order_items", order_id="O-DELV", item_ids=["MUG-W"], payment_method_id="pp-1"
    )
    assert paypal.code is Code.METHOD_NOT_ALLOWED
    prepared = await ask(tools, ada, "return_delivered_order_items", order_id="O-DELV", item_ids=["TEE-BM", "MUG-W"])
    assert prepared.data["money"][0] | {} == {
        "kind": "refund",
        "amount_cents": 3000,
        "method_id": "card-1",
        "method": "Visa card ending 4242",
        "gift_card": False,
        "when": "on_return",
    }
    assert (await confirmed(shop, ada, prepared)).code is Code.CHANGE_APPLIED
    after = await money(shop.store, "O-DELV")
    assert after["status"] == "return_requested" and after["promised"] == 3000
    assert after["history"] == [("payment", 5000, "card-1")]  # refunded when the items arrive
    assert await rows(shop.store, "SELECT line_no, kind FROM returned_items ORDER BY line_no") == [
        (1, "return"),
        (3, "return"),
    ]
    again = await ask(tools, ada, "return_delivered_order_items", order_id="O-DELV", item_ids=["TEE-BM"])
    assert again.code is Code.NOT_ELIGIBLE  # one return or exchange per order


async def test_an_item_is_given_back_once_ever(shop: Deps, tools: Toolbox, ada: CallContext) -> None:
    await tools.call("lookup_order", {"order_id": "O-DELV"}, ada)
    refund = await tools.call("process_refund", {"order_id": "O-DELV", "item_ids": ["TEE-BM"], "reason": "torn"}, ada)
    assert refund.code is Code.AWAITING_CONFIRMATION and refund.data["amount_cents"] == 2000
    assert (await refunds.confirm(shop, refund_id=refund.data["refund_id"], actor=ada.actor)).code is (
        Code.REFUND_PROCESSED
    )
    both = await ask(tools, ada, "return_delivered_order_items", order_id="O-DELV", item_ids=["TEE-BM", "TEE-BM"])
    assert both.code is Code.ALREADY_RETURNED
    again = await tools.call(
        "process_refund", {"order_id": "O-DELV", "item_ids": ["TEE-BM", "TEE-BM"], "reason": "x"}, ada
    )
    assert again.code is Code.ALREADY_RETURNED
    other = await ask(tools, ada, "return_delivered_order_items", order_id="O-DELV", item_ids=["TEE-BM"])
    assert [line["line_no"] for line in other.data["lines"]] == [2]  # the shirt not refunded yet


async def test_returns_and_exchanges_keep_to_the_return_window(shop: Deps, tools: Toolbox, ada: CallContext) -> None:
    old = await ask(tools, ada, "return_delivered_order_items", order_id="O-OLD", item_ids=["MUG-W"])
    assert old.code is Code.NOT_ELIGIBLE
    swap = await ask(
        tools,
        ada,
        "exchange_delivered_order_items",
        order_id="O-OLD",
        item_ids=["MUG-W"],
        new_item_ids=["MUG-B"],
        payment_method_id="card-1",
    )
    assert swap.code is Code.NOT_ELIGIBLE
    pending = await ask(
        tools,
        ada,
        "exchange_delivered_order_items",
        order_id="O-PEND",
        item_ids=["MUG-W"],
        new_item_ids=["MUG-B"],
        payment_method_id="card-1",
    )
    assert pending.code is Code.NOT_ELIGIBLE


async def test_an_exchange_records_the_difference_without_moving_money_yet(
    shop: Deps, tools: Toolbox, ada: CallContext
) -> None:
    prepared = await ask(
        tools,
        ada,
        "exchange_delivered_order_items",
        order_id="O-DELV",
        item_ids=["TEE-BM"],
        new_item_ids=["TEE-YS"],
        payment_method_id="gift-1",
    )
    assert prepared.data["diff_cents"] == -500 and prepared.data["refund_cents"] == 500
    assert (await confirmed(shop, ada, prepared)).code is Code.CHANGE_APPLIED
    after = await money(shop.store, "O-DELV")
    assert after["status"] == "exchange_requested" and after["promised"] == 500 and len(after["history"]) == 1
    assert await balance(shop.store, "gift-1") == 3000


async def test_a_default_address_change_is_the_customers_own(
    shop: Deps, tools: Toolbox, ada: CallContext, bo: CallContext
) -> None:
    done = await confirmed(shop, ada, await tools.call("modify_user_address", NEW_HOME, ada))
    assert done.code is Code.CHANGE_APPLIED
    stored = dict(await rows(shop.store, "SELECT id, address FROM customers"))
    loaded = {k: v if isinstance(v, dict) or v is None else json.loads(v) for k, v in stored.items()}
    assert loaded == {ADA: NEW_HOME, BO: None} and HOME != NEW_HOME


# --- refunds by item and of what remains; the limit on an order's refunds in all ----------------------------------


async def test_a_second_refund_of_what_remains(shop: Deps, tools: Toolbox, ada: CallContext) -> None:
    await tools.call("lookup_order", {"order_id": "O-DELV"}, ada)

    async def refund(amount: float) -> ToolResult:
        return await tools.call("process_refund", {"order_id": "O-DELV", "amount": amount, "reason": "x"}, ada)

    first = await refund(20)
    assert (await refunds.confirm(shop, refund_id=first.data["refund_id"], actor=ada.actor)).code is (
        Code.REFUND_PROCESSED
    )
    too_much = await refund(30.01)
    assert too_much.code is Code.INVALID_AMOUNT and too_much.data["refundable"] == 30.0
    rest = await refund(30)
    assert (await refunds.confirm(shop, refund_id=rest.data["refund_id"], actor=ada.actor)).code is (
        Code.REFUND_PROCESSED
    )
    assert (await refund(1)).code is Code.REFUND_EXISTS  # refunded in full
    after = await money(shop.store, "O-DELV")
    assert after["history"] == [("payment", 5000, "card-1"), ("refund", 2000, "card-1"), ("refund", 3000, "card-1")]
    assert after["refunded"] == 5000
    looked = await tools.call("lookup_order", {"order_id": "O-DELV"}, ada)
    assert looked.data["refundable_amount"] == 0 and looked.data["refund_eligible"] is False


async def test_the_limit_counts_an_orders_refunds_in_all(deps: Deps, toolbox: Toolbox, sarah: CallContext) -> None:
    """The security review's case: parts of a $349 order under the $150 limit must not pass it together."""
    await toolbox.call("lookup_order", {"order_id": "ORD-8901"}, sarah)
    first = await toolbox.call("process_refund", {"order_id": "ORD-8901", "amount": 100, "reason": "dent"}, sarah)
    assert (await refunds.confirm(deps, refund_id=first.data["refund_id"], actor=sarah.actor)).code is (
        Code.REFUND_PROCESSED
    )
    second = await toolbox.call("process_refund", {"order_id": "ORD-8901", "amount": 60, "reason": "more"}, sarah)
    assert second.code is Code.LIMIT_EXCEEDED and second.data["status"] == "pending_approval"


async def test_the_refund_limit_counts_refunds_of_goods_kept_not_returns(
    deps: Deps, toolbox: Toolbox, sarah: CallContext
) -> None:
    await toolbox.call("lookup_order", {"order_id": "ORD-8901"}, sarah)
    asked = await toolbox.call("process_refund", {"order_id": "ORD-8901", "amount": 100, "reason": "dent"}, sarah)
    async with deps.store.write() as s:  # an order change refunded part of it meanwhile
        await s.execute(text("UPDATE orders SET promised_cents = 6000 WHERE id = 'ORD-8901'"))
        await s.execute(
            text(
                "INSERT INTO order_changes (id, kind, status, customer_id, order_id, target, args, plan, refund_cents, "
                "charge_cents, actor, created_at, updated_at) VALUES ('OC-X', 'return', 'applied', 'CUST-1001', "
                "'ORD-8901', 'ORD-8901', '{}', '{}', 6000, 0, 'customer:CUST-1001', '2026-11-24 00:00:00', "
                "'2026-11-24 00:00:00')"
            )
        )
    res = await refunds.confirm(deps, refund_id=asked.data["refund_id"], actor=sarah.actor)
    assert res.code is Code.REFUND_PROCESSED  # the return's money comes back with its goods: not counted
    again = await toolbox.call("process_refund", {"order_id": "ORD-8901", "amount": 60, "reason": "more"}, sarah)
    assert again.code is Code.LIMIT_EXCEEDED  # the refunds of goods kept, $100 + $60, pass it together
    assert await rows(deps.store, "SELECT count(*) FROM payouts") == [(1,)]


@pytest.fixture
def careful(shop: Deps) -> Deps:
    """A shop that has its order changes' refunds past $150 approved by staff (CHANGE_APPROVAL_LIMIT)."""
    return dataclasses.replace(shop, settings=shop.settings.model_copy(update={"change_approval_limit": Decimal(150)}))


async def test_changes_need_no_approval_by_default(shop: Deps, tools: Toolbox, ada: CallContext) -> None:
    prepared = await ask(tools, ada, "cancel_pending_order", order_id="O-BIG", reason="no longer needed")
    done = await confirmed(shop, ada, prepared)
    assert done.code is Code.CHANGE_APPLIED and (await money(shop.store, "O-BIG"))["status"] == "cancelled"


async def test_a_change_whose_refund_passes_the_limit_waits_for_staff(careful: Deps, ada: CallContext) -> None:
    shop, tools = careful, Toolbox(careful, TOOLS + ORDER_CHANGE_TOOLS)
    prepared = await ask(tools, ada, "cancel_pending_order", order_id="O-BIG", reason="no longer needed")
    waiting = await confirmed(shop, ada, prepared)
    assert waiting.code is Code.LIMIT_EXCEEDED and waiting.data["status"] == "pending_approval"
    assert await rows(shop.store, "SELECT reason, change_id FROM tickets") == [
        ("change_approval", prepared.data["change_id"])
    ]
    assert (await money(shop.store, "O-BIG"))["status"] == "pending"
    cid = prepared.data["change_id"]
    assert (await order_changes.approve(shop, change_id=cid, staff=ada.actor)).code is Code.NOT_ALLOWED
    approved = await order_changes.approve(shop, change_id=cid, staff=Actor.staff("U-1"))
    assert approved.code is Code.CHANGE_APPLIED
    assert (await money(shop.store, "O-BIG"))["status"] == "cancelled"
    assert (await order_changes.deny(shop, change_id=cid, staff=Actor.staff("U-1"))).code is Code.INVALID_STATE


async def test_staff_deny_and_the_customers_no_leave_the_order_alone(careful: Deps, ada: CallContext) -> None:
    shop, tools = careful, Toolbox(careful, TOOLS + ORDER_CHANGE_TOOLS)
    first = await confirmed(
        shop, ada, await ask(tools, ada, "cancel_pending_order", order_id="O-BIG", reason="no longer needed")
    )
    denied = await order_changes.deny(shop, change_id=first.data["change_id"], staff=Actor.staff("U-1"))
    assert denied.code is Code.OK and denied.data["status"] == "denied"
    second = await confirmed(
        shop, ada, await ask(tools, ada, "cancel_pending_order", order_id="O-BIG", reason="ordered by mistake")
    )
    withdrawn = await order_changes.cancel(shop, change_id=second.data["change_id"], actor=ada.actor)
    assert withdrawn.code is Code.OK and withdrawn.data["status"] == "cancelled"
    assert (await money(shop.store, "O-BIG"))["status"] == "pending"


async def test_every_change_and_its_money_is_visible(shop: Deps, tools: Toolbox, ada: CallContext) -> None:
    await confirmed(
        shop, ada, await ask(tools, ada, "cancel_pending_order", order_id="O-PEND", reason="no longer needed")
    )
    seen = await tools.call("get_order_changes", {"order_id": "O-PEND"}, ada)
    assert seen.data["payments"] == [
        {"kind": "payment", "amount": "$30.00", "method": "Visa card ending 4242"},
        {"kind": "refund", "amount": "$30.00", "method": "Visa card ending 4242"},
    ]
    (change,) = seen.data["changes"]
    assert change["kind"] == "cancel" and change["status"] == "applied" and change["reason"] == "no longer needed"
    recent = await tools.call("get_order_changes", {}, ada)
    assert [c["change_id"] for c in recent.data["changes"]] == [change["change_id"]]
    bo = await open_session(shop, channel="test", actor=Actor.customer(BO))
    assert (await tools.call("get_order_changes", {}, bo)).data["changes"] == []
    theirs = await tools.call("get_order_changes", {"order_id": "O-PEND"}, bo)
    assert theirs.model_code is Code.ORDER_NOT_FOUND


async def test_db_orders_shows_lines_payments_and_changes(shop: Deps, tools: Toolbox, ada: CallContext) -> None:
    from bot.db_orders import order_lines

    done = await confirmed(
        shop, ada, await ask(tools, ada, "cancel_pending_order", order_id="O-PEND", reason="no longer needed")
    )
    lines = await order_lines(shop.store)
    at = next(i for i, line in enumerate(lines) if line.startswith("O-PEND "))
    assert "cancelled" in lines[at]
    assert lines[at + 1 : at + 6] == [
        " " * 13 + "1 x T-Shirt (colour: blue, size: M) [TEE-BM]  $20.00",
        " " * 13 + "1 x Mug (colour: white) [MUG-W]  $10.00",
        " " * 13 + "payment $30.00 card-1",
        " " * 13 + "refund $30.00 card-1",
        " " * 13 + f"change {done.data['change_id']} cancel applied, refund $30.00",
    ]
