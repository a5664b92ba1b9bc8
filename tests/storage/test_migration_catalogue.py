"""Migration 0012 on a database holding data of the schema before it: every line's SKU becomes a
single-variant product, every order a payment history whose totals match, refunds already sent
are in it, and what worked before still reads the same. Run on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from storage.engine import Store, is_sqlite
from storage.migrate import downgrade, schema_diff, upgrade
from storage.settings import Settings
from tests.conftest import _pg_exec

BEFORE = [
    "INSERT INTO customers (id, name, email) VALUES ('C1', 'Ada', 'ada@example.com')",
    "INSERT INTO orders (id, customer_id, status, total_cents, currency, placed_at, delivered_at) VALUES "
    "('O1', 'C1', 'delivered', 9900, 'USD', '2026-01-01 10:00:00', '2026-01-03 10:00:00'), "
    "('O2', 'C1', 'cancelled', 4500, 'USD', '2026-01-02 10:00:00', NULL), "
    "('O3', 'C1', 'pending', 1200, 'USD', '2026-01-04 10:00:00', NULL)",
    "INSERT INTO order_items (order_id, line_no, sku, name, quantity, unit_price_cents) VALUES "
    "('O1', 1, 'BLND', 'Blender', 1, 8900), ('O1', 2, 'LID', 'Lid', 2, 500), "
    "('O2', 1, 'KTL', 'Kettle', 1, 4500), ('O3', 1, 'BLND', 'Blender (old name)', 1, 1200)",
    "INSERT INTO refunds (id, order_id, amount_cents, currency, status, reason, actor, created_at, updated_at) "
    "VALUES ('R1', 'O1', 2000, 'USD', 'processed', 'broken lid', 'customer:C1', '2026-01-05 10:00:00', "
    "'2026-01-05 10:00:00'), ('R2', 'O2', 1000, 'USD', 'failed', 'x', 'customer:C1', '2026-01-05 10:00:00', "
    "'2026-01-05 10:00:00')",
]


@pytest.fixture
async def empty_store(database_url: str, tmp_path: Any) -> AsyncIterator[Store]:
    """An empty database (no schema) on the pass's server."""
    if is_sqlite(database_url):
        url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        name = None
    else:
        name = f"sb_mig_{uuid.uuid4().hex[:10]}"
        await _pg_exec(database_url, f"CREATE DATABASE {name}")
        url = make_url(database_url).set(database=name).render_as_string(hide_password=False)
    store = Store.from_settings(Settings(_env_file=None), url=url)  # type: ignore[call-arg]
    yield store
    await store.dispose()
    if name is not None:
        await _pg_exec(database_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def migrated_with_old_data(store: Store) -> None:
    """The data of the schema before 0012, then 0012 run over it."""
    await upgrade(store, "0011")
    async with store.write() as s:
        for statement in BEFORE:
            await s.execute(text(statement))
    await upgrade(store)


async def rows(store: Store, sql: str) -> list[tuple[Any, ...]]:
    async with store.read() as s:
        return [tuple(r) for r in (await s.execute(text(sql))).all()]


async def test_old_data_becomes_products_and_payment_history(empty_store: Store) -> None:
    store = empty_store
    await migrated_with_old_data(store)
    assert await schema_diff(store) == []
    assert await rows(store, "SELECT id, name FROM products ORDER BY id") == [
        ("BLND", "Blender"),
        ("KTL", "Kettle"),
        ("LID", "Lid"),
    ]
    variants = await rows(store, "SELECT item_id, product_id, price_cents FROM variants ORDER BY item_id")
    assert variants == [("BLND", "BLND", 8900), ("KTL", "KTL", 4500), ("LID", "LID", 500)]
    lines = await rows(store, "SELECT order_id, line_no, item_id, product_id, name FROM order_items ORDER BY 1, 2")
    assert lines[2] == ("O2", 1, "KTL", "KTL", "Kettle")
    assert lines[3] == ("O3", 1, "BLND", "BLND", "Blender (old name)")  # the line keeps its own name
    history = await rows(
        store, "SELECT order_id, seq, kind, amount_cents, method_id, refund_id FROM order_payments ORDER BY 1, 2"
    )
    assert history == [
        ("O1", 1, "payment", 9900, None, None),
        ("O1", 2, "refund", 2000, None, "R1"),
        ("O2", 1, "payment", 4500, None, None),
        ("O2", 2, "refund", 1000, None, "R2"),  # failed: still owed, and retried with its key
        ("O2", 3, "refund", 3500, None, None),  # the rest of a cancelled order's total
        ("O3", 1, "payment", 1200, None, None),
    ]
    totals = await rows(store, "SELECT id, paid_cents, refunded_cents, promised_cents FROM orders ORDER BY id")
    assert totals == [("O1", 9900, 2000, 0), ("O2", 4500, 4500, 0), ("O3", 1200, 0, 0)]


async def test_a_second_refund_of_what_remains_may_follow_a_paid_one_after_the_migration(empty_store: Store) -> None:
    store = empty_store
    await migrated_with_old_data(store)
    async with store.write() as s:
        await s.execute(
            text(
                "INSERT INTO refunds (id, order_id, amount_cents, currency, status, reason, actor, created_at, "
                "updated_at) VALUES ('R3', 'O1', 500, 'USD', 'awaiting_confirmation', 'rest', 'customer:C1', "
                "'2026-01-06 10:00:00', '2026-01-06 10:00:00')"
            )
        )
    assert await rows(store, "SELECT count(*) FROM refunds WHERE order_id = 'O1'") == [(2,)]


async def test_downgrade_returns_to_the_old_schema_with_the_data(empty_store: Store) -> None:
    store = empty_store
    await migrated_with_old_data(store)
    async with store.write() as s:
        await s.execute(text("UPDATE orders SET status = 'items_modified' WHERE id = 'O3'"))
    await downgrade(store, "0011")
    assert await rows(store, "SELECT id, status FROM orders ORDER BY id") == [
        ("O1", "delivered"),
        ("O2", "cancelled"),
        ("O3", "pending"),
    ]
    assert (await rows(store, "SELECT order_id, line_no, sku FROM order_items ORDER BY 1, 2"))[0] == ("O1", 1, "BLND")
    await upgrade(store)  # and up again
    assert await schema_diff(store) == []
