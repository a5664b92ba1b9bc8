"""Order numbers in the shop's own format, imported for real: typed any way by the customer, found by
the tools and the offline model; another customer's and an unknown one withheld alike."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text as sql

from agent.events import Confirmation
from agent.loop import Agent
from agent.offline import OfflineModel
from desk import Desk
from desk.sessions import open_session
from storage.engine import Store
from storage.importer import import_records, parse
from storage.order_formats import Formats, parse_shape, shape
from storage.settings import Settings
from storage.types import FrozenClock
from tools.codes import Code
from tools.context import Actor, CallContext, Deps
from tools.gateway import StoreGateway
from tools.sanitizer import sanitize
from tools.toolbox import Toolbox

# (Ann's order as the import stores it, Bob's, an unknown one of the same shape, how Ann may type hers)
FORMATS = {
    "shopify": ("#1001", "#1002", "#1009", ["#1001", "1001", " 1001 ", "# 1001", "order 1001"]),
    "bare": ("1234", "1235", "1239", ["1234", "#1234", "order 1234"]),
    "letter": ("#W7678072", "#W7678073", "#W7678079", ["#W7678072", "w7678072", "W 7678072", "#w7678072"]),
    "dated": ("SO-2026-000123", "SO-2026-000124", "SO-2026-000129", ["so-2026-000123", "SO2026000123"]),
    "ord": ("ORD-8842", "ORD-5501", "ORD-5599", ["ORD8842", "ord 8842", "#8842", "ord-8842"]),
}


def document(clock: FrozenClock, ann: str, bob: str) -> dict[str, Any]:
    delivered = (clock.now() - timedelta(days=3)).isoformat()

    def order(oid: str, cust: str) -> dict[str, Any]:
        return {
            "id": oid,
            "customer_id": cust,
            "status": "delivered",
            "total": "49.00",
            "currency": "USD",
            "placed_at": delivered,
            "delivered_at": delivered,
            "items": [{"sku": "KTL-1", "name": "Electric kettle", "quantity": 1, "unit_price": "49.00"}],
        }

    return {
        "customers": [
            {"id": "C-ANN", "name": "Ann", "email": "ann@shop.example"},
            {"id": "C-BOB", "name": "Bob", "email": "bob@shop.example"},
        ],
        "orders": [order(ann, "C-ANN"), order(bob, "C-BOB")],
    }


async def shop(store: Store, settings: Settings, ann: str, bob: str) -> tuple[Deps, CallContext]:
    clock = FrozenClock()
    await import_records(store, parse(document(clock, ann, bob)))
    deps = Deps(store=store, settings=settings, clock=clock, gateway=StoreGateway(store, clock))
    return deps, await open_session(deps, channel="test", actor=Actor.customer("C-ANN"))


@pytest.mark.parametrize("fmt", FORMATS)
async def test_the_customer_types_their_number_any_way(store: Store, settings: Settings, fmt: str) -> None:
    ann, bob, unknown, typed = FORMATS[fmt]
    deps, ctx = await shop(store, settings, ann, bob)
    toolbox = Toolbox(deps)
    for spelling in typed:
        found = await toolbox.call("lookup_order", {"order_id": spelling.removeprefix("order ")}, ctx)
        assert found.code is Code.OK and found.data["order_id"] == ann, spelling
    other = await toolbox.call("lookup_order", {"order_id": bob}, ctx)
    nobody = await toolbox.call("lookup_order", {"order_id": unknown}, ctx)
    assert other.code is Code.OWNERSHIP_MISMATCH and nobody.code is Code.ORDER_NOT_FOUND
    seen_other, seen_nobody = other.for_model(), nobody.for_model()
    assert seen_other.pop("order_id") == bob.upper() and seen_nobody.pop("order_id") == unknown.upper()
    assert seen_other == seen_nobody  # the model cannot tell them apart


@pytest.mark.parametrize("fmt", FORMATS)
async def test_the_sanitizer_withholds_every_number_of_the_shops_shape_but_the_customers(
    store: Store, settings: Settings, fmt: str
) -> None:
    ann, bob, unknown, _ = FORMATS[fmt]
    deps, ctx = await shop(store, settings, ann, bob)

    async def clean(text: str) -> str:
        return (await sanitize(text, store=deps.store, customer_id="C-ANN")).text

    assert await clean(f"Your order {ann} is on its way.") == f"Your order {ann} is on its way."
    assert await clean(f"Order {bob} is not yours.") == await clean(f"Order {unknown} is not yours.")
    assert await clean(f"Order {bob} is not yours.") == "Order that order is not yours."
    assert await clean("Delivered in 2026 for $1234.00, 3-5 days.") == "Delivered in 2026 for $1234.00, 3-5 days."


@pytest.mark.parametrize("fmt", FORMATS)
async def test_the_offline_model_refunds_the_number_as_typed(store: Store, settings: Settings, fmt: str) -> None:
    ann, bob, _, typed = FORMATS[fmt]
    deps, ctx = await shop(store, settings, ann, bob)
    spelling = typed[-1] if not typed[-1].lstrip("#").isdigit() else f"order {typed[-1]}"
    desk = Desk(Agent(model=OfflineModel(), toolbox=Toolbox(deps)))
    events = [e async for e in desk.say(ctx, f"my kettle from {spelling} arrived broken, refund please")]
    (conf,) = [e for e in events if isinstance(e, Confirmation)]
    assert conf.order_id == ann and conf.amount == "$49.00"
    async with deps.store.read() as s:
        assert (await s.execute(sql("SELECT order_id, status FROM refunds"))).all() == [(ann, "awaiting_confirmation")]


def test_shapes_of_the_stored_ids() -> None:
    assert [shape(ids[0]) for ids in FORMATS.values()] == ["<d4>", "<d4>", "W<d7>", "SO-<d4>-<d6>", "ORD-<d4>"]
    formats = Formats((parse_shape("SO-<d4>-<d6>"),))
    assert formats.matches("SO-2026-000999") and formats.matches("so-2027-1000000")
    assert not formats.matches("SO-2026") and not formats.matches("USB-C")
    assert formats.spellings("so2026000123")[-2:] == ["SO-2026-000123", "#SO-2026-000123"]


async def test_order_number_pattern_covers_a_shop_without_orders_yet(store: Store, settings: Settings) -> None:
    custom = settings.model_copy(update={"order_number_pattern": r"SO-\d{4}-\d{6}"})
    out = await sanitize(
        "Order SO-2026-999999 shipped.", store=store, customer_id=None, order_pattern=custom.order_number_pattern
    )
    assert out.text == "Order that order shipped."
    with pytest.raises(ValueError, match="not a regular expression"):
        Settings(_env_file=None, order_number_pattern="SO-(")  # type: ignore[call-arg]


async def test_the_import_records_shapes_once(store: Store, settings: Settings) -> None:
    deps, _ = await shop(store, settings, "#1001", "#1002")
    await import_records(store, parse(document(FrozenClock(), "#1003", "#1004")))
    async with deps.store.read() as s:
        assert (await s.execute(sql("SELECT shape FROM order_formats"))).all() == [("<d4>",)]
