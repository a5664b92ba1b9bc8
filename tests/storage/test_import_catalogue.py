"""The import format's catalogue and payments: products with variants, payment methods, addresses,
payment histories and fulfilments; every problem named; the τ2-bench retail store taken whole."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from storage.engine import Store
from storage.importer import ImportError_, import_records, parse
from storage.tau2 import load_tau2
from tests.tau2 import TAU2

AS_OF = datetime(2026, 11, 24, tzinfo=UTC)
ADDRESS = {"address1": "1 Main St", "address2": "", "city": "Springfield", "state": "IL", "country": "USA", "zip": "1"}

SHOP: dict[str, Any] = {
    "products": [
        {
            "id": "P-TEE",
            "name": "T-Shirt",
            "variants": [
                {"item_id": "TEE-BM", "options": {"colour": "blue", "size": "M"}, "price": "20.00"},
                {"item_id": "TEE-RL", "options": {"colour": "red", "size": "L"}, "price": "22.50", "available": False},
            ],
        }
    ],
    "customers": [
        {
            "id": "C1",
            "name": "Ada",
            "email": "ada@example.com",
            "address": ADDRESS,
            "payment_methods": [
                {"id": "card-1", "kind": "credit_card", "brand": "visa", "last_four": "4242"},
                {"id": "gift-1", "kind": "gift_card", "balance": "25.5"},
                {"id": "pp-1", "kind": "paypal"},
            ],
        },
        {"id": "C2", "name": "Bo", "email": "bo@example.com"},
    ],
    "orders": [
        {
            "id": "O1",
            "customer_id": "C1",
            "status": "delivered",
            "total": "40.00",
            "currency": "USD",
            "placed_at": "2026-11-01T10:00:00Z",
            "delivered_at": "2026-11-03T10:00:00Z",
            "address": ADDRESS,
            "items": [{"item_id": "TEE-BM", "quantity": 2, "unit_price": "20.00"}],
            "payments": [{"kind": "payment", "amount": "40.00", "method": "card-1"}],
            "fulfilments": [{"tracking_ids": ["1Z9"], "item_ids": ["TEE-BM"]}],
        }
    ],
}


def doc(**changes: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(SHOP))
    for path, value in changes.items():
        target = out
        *head, last = path.split("__")
        for part in head:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(last) if last.isdigit() else last] = value
    return out


async def rows(store: Store, sql: str) -> list[tuple[Any, ...]]:
    async with store.read() as s:
        return [tuple(r) for r in (await s.execute(text(sql))).all()]


async def test_catalogue_methods_addresses_history_and_fulfilments_are_stored(store: Store) -> None:
    counts = await import_records(store, parse(doc()))
    assert counts == {"products": 1, "variants": 2, "customers": 2, "orders": 1, "items": 1}
    assert await rows(store, "SELECT item_id, product_id, price_cents, available FROM variants ORDER BY 1") == [
        ("TEE-BM", "P-TEE", 2000, True),
        ("TEE-RL", "P-TEE", 2250, False),
    ]
    methods = await rows(store, "SELECT id, kind, brand, last_four, balance_cents FROM payment_methods ORDER BY 1")
    assert methods == [
        ("card-1", "credit_card", "visa", "4242", None),
        ("gift-1", "gift_card", None, None, 2550),
        ("pp-1", "paypal", None, None, None),
    ]
    line = await rows(store, "SELECT item_id, product_id, name, quantity, unit_price_cents FROM order_items")
    assert line == [("TEE-BM", "P-TEE", "T-Shirt", 2, 2000)]  # the product's name and the variant's options
    async with store.read() as s:
        options, address = (
            await s.execute(text("SELECT i.options, o.address FROM order_items i JOIN orders o ON o.id = i.order_id"))
        ).one()
    assert (json.loads(options) if isinstance(options, str) else options) == {"colour": "blue", "size": "M"}
    assert (json.loads(address) if isinstance(address, str) else address) == ADDRESS
    assert await rows(store, "SELECT seq, kind, amount_cents, method_id FROM order_payments") == [
        (1, "payment", 4000, "card-1")
    ]
    assert await rows(store, "SELECT paid_cents, refunded_cents FROM orders") == [(4000, 0)]
    assert await rows(store, "SELECT order_id, seq FROM fulfilments") == [("O1", 1)]
    before = {t: await rows(store, f"SELECT * FROM {t}") for t in ("variants", "payment_methods", "order_payments")}
    await import_records(store, parse(doc()))
    assert {t: await rows(store, f"SELECT * FROM {t}") for t in before} == before


BAD = [
    ({"orders__0__items__0__item_id": "NOPE"}, "orders[0] (O1): items.0.item_id: NOPE is not a variant"),
    ({"orders__0__items__0__product_id": "P-X"}, "orders[0] (O1): items.0.product_id: TEE-BM is a variant of"),
    ({"orders__0__payments__0__method": "card-9"}, "orders[0] (O1): payments.0.method: card-9 is not a payment"),
    (
        {"orders__0__payments": [{"kind": "payment", "amount": "40"}, {"kind": "refund", "amount": "40.01"}]},
        "orders[0] (O1): payments: the refunds (40.01) exceed the payments (40.00)",
    ),
    ({"customers__0__payment_methods__1__balance": None}, "customers[0] (C1): payment_methods.1: balance:"),
    ({"customers__0__payment_methods__0__last_four": "42"}, "customers[0] (C1): payment_methods.0.last_four:"),
    ({"customers__0__payment_methods__2__id": "card-1"}, "customers[0] (C1): card-1 appears more than once"),
    ({"products__0__variants__0__price": "-1"}, "products[0] (P-TEE): variants.0.price: must not be negative"),
    ({"products__0__variants": []}, "products[0] (P-TEE): variants: List should have at least 1 item"),
    ({"orders__0__address": {"city": "X"}}, "orders[0] (O1): address.address1: Field required"),
    ({"orders__0__status": "return_requested", "orders__0__delivered_at": None}, "orders[0] (O1): delivered_at:"),
]


@pytest.mark.parametrize(("changes", "message"), BAD)
async def test_bad_catalogue_and_payment_records_are_named_and_nothing_is_written(
    store: Store, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ImportError_) as err:
        await import_records(store, parse(json.loads(json.dumps(doc(**changes)), parse_float=Decimal)))
    assert any(p.startswith(message) for p in err.value.problems), err.value.problems
    assert await rows(store, "SELECT count(*) FROM products") == [(0,)]


async def test_a_method_of_another_customer_in_the_store_is_refused(store: Store) -> None:
    await import_records(store, parse(doc()))
    moved = {
        "customers": [
            {
                "id": "C2",
                "name": "Bo",
                "email": "bo@example.com",
                "payment_methods": [{"id": "card-1", "kind": "paypal"}],
            }
        ]
    }
    with pytest.raises(ImportError_) as err:
        await import_records(store, parse(moved))
    assert err.value.problems == ["customers[0] (C2): payment_methods: card-1 belongs to C1"]


async def test_a_variant_cannot_move_to_another_product(store: Store) -> None:
    await import_records(store, parse(doc()))
    other = {"products": [{"id": "P-2", "name": "Other", "variants": [{"item_id": "TEE-BM", "price": "1"}]}]}
    with pytest.raises(ImportError_) as err:
        await import_records(store, parse(other))
    assert err.value.problems == ["products[0] (P-2): variants: TEE-BM belongs to product P-TEE in the database"]


async def test_older_lines_become_single_variant_products_and_later_files_may_name_them(store: Store) -> None:
    old = {
        "customers": [{"id": "C3", "name": "Cy", "email": "cy@example.com"}],
        "orders": [
            {
                "id": "O3",
                "customer_id": "C3",
                "status": "cancelled",
                "total": "9.99",
                "currency": "USD",
                "placed_at": "2026-11-01T10:00:00Z",
                "items": [{"sku": "MUG", "name": "Mug", "quantity": 1, "unit_price": "9.99"}],
            }
        ],
    }
    await import_records(store, parse(old))
    assert await rows(
        store, "SELECT p.id, p.name, v.item_id FROM products p JOIN variants v ON v.product_id = p.id"
    ) == [("MUG", "Mug", "MUG")]
    # a cancelled order of an older file was paid and refunded
    assert await rows(store, "SELECT kind, amount_cents FROM order_payments ORDER BY seq") == [
        ("payment", 999),
        ("refund", 999),
    ]
    later = {"orders": [dict(old["orders"][0], id="O4", items=[{"item_id": "MUG", "unit_price": "9.99"}])]}
    await import_records(store, parse(later))
    assert await rows(store, "SELECT name FROM order_items WHERE order_id = 'O4'") == [("Mug",)]


async def test_an_order_changed_since_it_was_imported_is_not_overwritten(store: Store) -> None:
    await import_records(store, parse(doc()))
    async with store.write() as s:
        await s.execute(
            text(
                "INSERT INTO order_changes (id, kind, status, customer_id, order_id, target, args, plan, "
                "refund_cents, charge_cents, actor, created_at, updated_at) VALUES ('OC1', 'modify_address', "
                "'applied', 'C1', 'O1', 'O1', '{}', '{}', 0, 0, 'customer:C1', '2026-11-05 00:00:00', "
                "'2026-11-05 00:00:00')"
            )
        )
    with pytest.raises(ImportError_) as err:
        await import_records(store, parse(doc()))
    assert err.value.problems == [
        "customers[0] (C1): changed by a refund or an order change since it was imported; importing it again would "
        "undo that",
        "orders[0] (O1): changed by a refund or an order change since it was imported; importing it again would "
        "undo that",
    ]


# --- τ2-bench's retail store ------------------------------------------------------------------------------------


def tau2_db() -> Path:
    path = TAU2 / "retail_db.json.gz"
    if not path.exists():
        from tests.conftest import IN_CI

        if IN_CI:
            pytest.fail(f"τ2's retail store is missing at {path} (CI has ../shared/data/tau2 beside the checkout)")
        pytest.skip(f"τ2's retail store is not beside the checkout ({path})")
    return path


async def test_the_tau2_store_is_taken_whole_and_again_changes_nothing(store: Store) -> None:
    path = tau2_db()
    raw = json.loads(gzip.decompress(path.read_bytes()), parse_float=Decimal)
    counts = await import_records(store, load_tau2(path, as_of=AS_OF))
    assert counts == {
        "products": 50,
        "variants": 591,
        "customers": 500,
        "orders": 1000,
        "items": sum(len(o["items"]) for o in raw["orders"].values()),
    }
    gift = {
        m["id"]: int(m["balance"] * 100)
        for u in raw["users"].values()
        for m in u["payment_methods"].values()
        if m["source"] == "gift_card"
    }
    assert dict(await rows(store, "SELECT id, balance_cents FROM payment_methods WHERE kind = 'gift_card'")) == gift
    history = await rows(
        store, "SELECT order_id, kind, amount_cents, method_id FROM order_payments ORDER BY order_id, seq"
    )
    assert history == [
        (oid, p["transaction_type"], int(p["amount"] * 100), p["payment_method_id"])
        for oid in sorted(raw["orders"])
        for p in raw["orders"][oid]["payment_history"]
    ]
    statuses = dict(await rows(store, "SELECT status, count(*) FROM orders GROUP BY status"))
    assert statuses == {"pending": 423, "delivered": 373, "processed": 102, "cancelled": 102}
    before = {t: await rows(store, f"SELECT * FROM {t} ORDER BY 1, 2") for t in ("orders", "order_items", "variants")}
    await import_records(store, load_tau2(path, as_of=AS_OF))
    assert {t: await rows(store, f"SELECT * FROM {t} ORDER BY 1, 2") for t in before} == before


def test_a_file_that_is_not_a_tau2_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db.json"
    path.write_text(json.dumps({"products": {}, "users": {"u": {"user_id": "u"}}, "orders": {}}))
    with pytest.raises(ImportError_) as err:
        load_tau2(path, as_of=AS_OF)
    assert err.value.problems == ["users (u): not a τ2 record: KeyError 'name'"]
    path.write_text("[]")
    with pytest.raises(ImportError_, match="not a τ2 retail store"):
        load_tau2(path, as_of=AS_OF)


def test_cli_imports_the_tau2_store(tmp_path: Path) -> None:
    path = tau2_db()
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "db", "import", "--format", "tau2", "--as-of", "2026-11-24T00:00:00Z", str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "imported 500 customers, 1000 orders, 2978 items, 50 products (591 variants)" in proc.stdout
    orders = subprocess.run(
        [sys.executable, "-m", "bot", "db", "orders"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert (
        "1 x Bluetooth Speaker (color: black, battery life: 20 hours, water resistance: no) [5650803029]  $324.63"
        in orders.stdout
    )
    assert "payment $536.65 gift_card_1725971" in orders.stdout


async def test_the_generated_shop_of_the_import_benchmark_imports(store: Store) -> None:
    from bot.bench.catalogue import generate

    doc = generate(products=20, variants=12, customers=10, orders=30)
    counts = await import_records(store, parse(json.loads(json.dumps(doc), parse_float=Decimal)))
    assert counts["products"] == 20 and counts["variants"] == 240 and counts["orders"] == 30
    assert await rows(store, "SELECT count(*) FROM payment_methods") == [(30,)]
