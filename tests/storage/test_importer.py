"""`db import` and `db seed`: exact cents, one transaction, idempotent, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from storage.engine import Store
from storage.importer import ImportError_, import_records, load_file, parse, seed
from storage.types import FrozenClock

GOOD: dict[str, Any] = {
    "customers": [
        {"id": "CUST-1", "name": "Ada", "email": "Ada@Example.com"},
        {"id": "CUST-2", "name": "Bo", "email": "bo@example.com"},
    ],
    "orders": [
        {
            "id": "ORD-1",
            "customer_id": "CUST-1",
            "status": "delivered",
            "total": 89.99,
            "currency": "USD",
            "placed_at": "2026-11-01T10:00:00Z",
            "delivered_at": "2026-11-03T10:00:00+02:00",
            "items": [{"sku": "B1", "name": "Blender", "quantity": 1, "unit_price": 89.99}],
        },
        {
            "id": "ORD-2",
            "customer_id": "CUST-2",
            "status": "pending",
            "total": 0.1,
            "currency": "EUR",
            "placed_at": "2026-11-05T10:00:00Z",
            "delivered_at": None,
            "items": [{"sku": "X", "name": "Thing", "quantity": 2, "unit_price": 0.05}],
        },
    ],
}


async def dump(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    async with store.read() as s:
        for table, key in (("customers", "id"), ("orders", "id"), ("order_items", "order_id, line_no")):
            out[table] = [tuple(r) for r in (await s.execute(text(f"SELECT * FROM {table} ORDER BY {key}"))).all()]
    return out


def write(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "import.json"
    path.write_text(json.dumps(doc))
    return path


async def test_import_converts_amounts_exactly_and_is_idempotent(store: Store, tmp_path: Path) -> None:
    counts = await import_records(store, load_file(write(tmp_path, GOOD)))
    assert counts == {"products": 2, "variants": 2, "customers": 2, "orders": 2, "items": 2}
    first = await dump(store)
    assert [r[1:4] for r in first["orders"]] == [("CUST-1", "delivered", 8999), ("CUST-2", "pending", 10)]
    assert first["customers"][0][2] == "ada@example.com"
    await import_records(store, load_file(write(tmp_path, GOOD)))
    assert await dump(store) == first


async def test_reimport_with_fewer_lines_drops_the_old_lines(store: Store) -> None:
    doc = json.loads(json.dumps(GOOD))
    doc["orders"][0]["items"].append({"sku": "B2", "name": "Lid", "quantity": 1, "unit_price": 0})
    await import_records(store, parse(json.loads(json.dumps(doc), parse_float=Decimal)))
    assert len((await dump(store))["order_items"]) == 3
    await import_records(store, parse(json.loads(json.dumps(GOOD), parse_float=Decimal)))
    assert len((await dump(store))["order_items"]) == 2


BAD_CASES = [
    ("orders", 0, "total", 1.234, "orders[0] (ORD-1): total: amount must have at most 2 decimal places"),
    ("orders", 0, "total", -5, "orders[0] (ORD-1): total: must not be negative"),
    ("orders", 1, "status", "lost", "orders[1] (ORD-2): status:"),
    ("orders", 0, "delivered_at", None, "orders[0] (ORD-1): delivered_at: required when status is delivered"),
    ("orders", 1, "delivered_at", "2026-11-06T00:00:00Z", "orders[1] (ORD-2): delivered_at: must be null"),
    ("orders", 0, "placed_at", "2026-11-01T10:00:00", "orders[0] (ORD-1): placed_at: needs a time zone"),
    ("orders", 0, "placed_at", "yesterday", "orders[0] (ORD-1): placed_at:"),
    ("orders", 0, "currency", "usd", "orders[0] (ORD-1): currency:"),
    ("customers", 1, "email", "not-an-email", "customers[1] (CUST-2): email:"),
    (
        "customers",
        1,
        "email",
        "ada@example.com",
        "customers[1] (CUST-2): email: ada@example.com is also used",
    ),
    ("customers", 1, "id", "CUST-1", "customers[1] (CUST-1): id: appears more than once"),
]


@pytest.mark.parametrize(("table", "index", "field", "value", "message"), BAD_CASES)
async def test_bad_records_name_record_and_field_and_import_nothing(
    store: Store, tmp_path: Path, table: str, index: int, field: str, value: Any, message: str
) -> None:
    doc = json.loads(json.dumps(GOOD))
    doc[table][index][field] = value
    with pytest.raises(ImportError_) as err:
        await import_records(store, load_file(write(tmp_path, doc)))
    assert any(p.startswith(message) for p in err.value.problems), err.value.problems
    assert await dump(store) == {"customers": [], "orders": [], "order_items": []}


async def test_unknown_customer_is_checked_against_the_store(store: Store) -> None:
    doc = json.loads(json.dumps(GOOD), parse_float=Decimal)
    doc["orders"][1]["customer_id"] = "CUST-404"
    with pytest.raises(ImportError_) as err:
        await import_records(store, parse(doc))
    assert err.value.problems == ["orders[1] (ORD-2): customer_id: unknown customer CUST-404"]
    assert await dump(store) == {"customers": [], "orders": [], "order_items": []}


async def test_orders_may_refer_to_customers_already_in_the_store(store: Store) -> None:
    await import_records(store, parse(json.loads(json.dumps(GOOD), parse_float=Decimal)))
    doc = {"orders": [dict(GOOD["orders"][1], id="ORD-3")]}
    await import_records(store, parse(json.loads(json.dumps(doc), parse_float=Decimal)))
    assert len((await dump(store))["orders"]) == 3


async def test_email_taken_by_another_customer_in_the_store(store: Store) -> None:
    await import_records(store, parse(json.loads(json.dumps(GOOD), parse_float=Decimal)))
    doc = {"customers": [{"id": "CUST-9", "name": "Imposter", "email": "bo@example.com"}]}
    with pytest.raises(ImportError_, match="already belongs to CUST-2"):
        await import_records(store, parse(doc))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON at line 1"),
        ("[]", "top level: must be an object"),
        ('{"customers": {}}', "customers: must be a list"),
        ('{"people": []}', "unknown key 'people'"),
    ],
)
def test_malformed_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "f.json"
    path.write_text(content)
    with pytest.raises(ImportError_, match=message):
        load_file(path)


async def test_seed_has_the_demo_cases(store: Store, clock: FrozenClock) -> None:
    await seed(store, clock)
    await seed(store, clock)
    async with store.read() as s:
        rows = dict((await s.execute(text("SELECT id, total_cents FROM orders"))).all())
        sarah = (await s.execute(text("SELECT id FROM customers WHERE email = 'sarah@example.com'"))).scalar()
    assert rows["ORD-8842"] == 8999 and rows["ORD-8901"] > 15000
    assert sarah == "CUST-1001"
    assert len(rows) == 7


def test_cli_import_error_exits_nonzero_without_traceback(tmp_path: Path) -> None:
    bad = write(
        tmp_path,
        {
            "customers": [{"id": "C", "name": "x", "email": "x@y.io"}],
            "orders": [
                {
                    "id": "O",
                    "customer_id": "C",
                    "status": "shipped",
                    "total": "1.5.5",
                    "currency": "USD",
                    "placed_at": "2026-01-01T00:00:00Z",
                }
            ],
        },
    )
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "db", "import", str(bad)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "orders[0] (O): total:" in proc.stderr
    assert "Traceback" not in proc.stderr
    ok = write(tmp_path, GOOD)
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "db", "import", str(ok)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "imported 2 customers, 2 orders, 2 items" in proc.stdout


def _order(**changes: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(GOOD))
    doc["orders"][0].update(changes)
    return doc


def test_a_total_that_is_not_the_items_sum_is_refused_with_its_record() -> None:
    with pytest.raises(ImportError_) as err:
        parse(json.loads(json.dumps(_order(total="99.99")), parse_float=Decimal))
    assert err.value.problems == [
        "orders[0] (ORD-1): total: 99.99 is not the items' sum 89.99 + shipping 0 - discount 0 = 89.99; "
        "fix the total, or add the shipping or discount that explains it"
    ]


def test_shipping_and_discount_explain_a_total() -> None:
    ok = _order(total="94.49", shipping="5.00", discount="0.50")
    orders = parse(json.loads(json.dumps(ok), parse_float=Decimal)).orders
    assert orders[0].total == Decimal("94.49")
    with pytest.raises(ImportError_, match=r"shipping: must not be negative"):
        parse(json.loads(json.dumps(_order(total="84.99", shipping="-5")), parse_float=Decimal))


@pytest.mark.parametrize("content", ["{}", '{"customers": [], "orders": []}'])
def test_a_file_with_nothing_to_import_is_an_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "f.json"
    path.write_text(content)
    with pytest.raises(ImportError_, match="nothing to import: the file has no products, no customers and no orders"):
        load_file(path)
