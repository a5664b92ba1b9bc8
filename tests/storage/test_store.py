"""The store behaves the same on SQLite and PostgreSQL: aware UTC times, exact cents,
constraints enforced by the database itself, migrations equal to the ORM."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from storage.engine import Gate, Store, is_unavailable
from storage.migrate import current_revision, schema_diff
from storage.models import Customer, Order
from storage.settings import Settings
from storage.types import format_cents, to_cents


async def test_migrations_produce_exactly_the_orm_schema(store: Store) -> None:
    assert await current_revision(store) is not None
    assert await schema_diff(store) == []


async def test_times_come_back_aware_utc(store: Store) -> None:
    placed = datetime(2026, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=-5)))
    async with store.write() as s:
        s.add(Customer(id="C1", name="A", email="a@x.io"))
        s.add(Order(id="O1", customer_id="C1", status="pending", total_cents=1, currency="USD", placed_at=placed))
    async with store.read() as s:
        order = await s.get(Order, "O1")
    assert order is not None
    assert order.placed_at.tzinfo is not None
    assert order.placed_at.utcoffset() == timedelta(0)
    assert order.placed_at == placed


async def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        async with store.write() as s:
            s.add(Customer(id="C1", name="A", email="a@x.io"))
            s.add(
                Order(
                    id="O1",
                    customer_id="C1",
                    status="pending",
                    total_cents=1,
                    currency="USD",
                    placed_at=datetime(2026, 1, 1),  # noqa: DTZ001 - the point of the test
                )
            )


async def test_sqlite_pragmas(store: Store) -> None:
    if store.dialect != "sqlite":
        assert store.dialect == "postgresql"
        return
    async with store.engine.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
        assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
        # SQLite never waits in its busy handler (the event loop's thread): Store.write retries BEGIN
        assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 0


def _begins(store: Store) -> list[str]:
    """Every BEGIN IMMEDIATE the store sends (failed ones included)."""
    seen: list[str] = []

    def on_execute(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("BEGIN IMMEDIATE"):
            seen.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", on_execute)
    return seen


async def test_a_write_waits_for_another_process_without_blocking_the_event_loop(settings: Settings) -> None:
    """Another process's write transaction (a raw sqlite3 connection, as the command line would
    hold) makes our BEGIN IMMEDIATE busy: the store retries with asyncio sleeps, the event loop
    keeps running other work meanwhile, and the write lands once the other transaction ends."""
    store = Store.from_settings(settings)
    if store.dialect != "sqlite":
        await store.dispose()
        return
    other = sqlite3.connect(make_url(settings.database_url).database, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    begins = _begins(store)

    async def write() -> None:
        async with store.write() as s:
            s.add(Customer(id="C1", name="A", email="a@x.io"))

    task = asyncio.create_task(write())
    ticks = 0
    async with asyncio.timeout(10):
        while len(begins) < 3:  # the loop runs this coroutine between the store's attempts
            ticks += 1
            await asyncio.sleep(0)
    assert not task.done() and ticks > 0
    other.execute("COMMIT")
    await asyncio.wait_for(task, timeout=10)
    async with store.read() as s:
        assert (await s.get(Customer, "C1")) is not None
    other.close()
    await store.dispose()


async def test_a_write_gives_up_after_the_busy_timeout_as_an_outage(settings: Settings) -> None:
    store = Store.from_settings(settings.model_copy(update={"sqlite_busy_timeout_ms": 50}))
    if store.dialect != "sqlite":
        await store.dispose()
        return
    other = sqlite3.connect(make_url(settings.database_url).database, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(OperationalError) as caught:
        async with store.write() as s:
            s.add(Customer(id="C1", name="A", email="a@x.io"))
    assert is_unavailable(caught.value)
    other.execute("ROLLBACK")
    other.close()
    async with store.read() as s:
        assert (await s.get(Customer, "C1")) is None
    await store.dispose()


async def test_concurrent_read_then_write_transactions_never_lock(settings: Settings) -> None:
    """Two engines (as two processes would have) run 2 x 25 read-modify-write transactions at once.

    With deferred BEGIN, SQLite fails some of these with "database is locked" when the read lock
    is upgraded; BEGIN IMMEDIATE makes each writer wait its turn instead.
    """
    stores = [Store.from_settings(settings) for _ in range(2)]
    async with stores[0].write() as s:
        s.add(Customer(id="C1", name="0", email="c@x.io"))

    async def bump(store: Store) -> None:
        async with store.write() as s:
            cust = await s.get(Customer, "C1", with_for_update=True)  # a row lock on PostgreSQL
            assert cust is not None
            await asyncio.sleep(0)  # yield inside the transaction so the others pile up
            cust.name = str(int(cust.name) + 1)

    await asyncio.gather(*(bump(stores[i % 2]) for i in range(50)))
    async with stores[0].read() as s:
        assert (await s.get(Customer, "C1")).name == "50"  # type: ignore[union-attr]
    for st_ in stores:
        await st_.dispose()


async def test_acks_go_ahead_of_waiting_writes_and_a_cancelled_waiter_passes_its_turn_on() -> None:
    lock = Gate(1)
    await lock.acquire()
    order: list[str] = []

    async def writer(name: str, *, ack: bool = False) -> None:
        await lock.acquire(ack=ack)
        order.append(name)
        lock.release()

    tasks = [asyncio.create_task(writer("turn-1")), asyncio.create_task(writer("turn-2"))]
    gone = asyncio.create_task(writer("cancelled"))
    tasks.append(asyncio.create_task(writer("ack", ack=True)))
    async with asyncio.timeout(5):
        while lock.waiting < 4:  # until each task has taken its place in line
            await asyncio.sleep(0)
    gone.cancel()
    lock.release()
    await asyncio.gather(*tasks)
    assert order == ["ack", "turn-1", "turn-2"]
    assert gone.cancelled()
    await lock.acquire()  # free again: taken at once
    lock.release()


LINE = "INSERT INTO order_items (order_id, line_no, item_id, product_id, options, name, quantity, unit_price_cents)"
RAW_REFUSED = {
    "duplicate email": "INSERT INTO customers (id, name, email) VALUES ('C2', 'B', 'a@x.io')",
    "unknown customer": "INSERT INTO orders (id, customer_id, status, total_cents, currency, placed_at) "
    "VALUES ('O9', 'NOPE', 'pending', 100, 'USD', '2026-01-01 00:00:00')",
    "bad status": "INSERT INTO orders (id, customer_id, status, total_cents, currency, placed_at) "
    "VALUES ('O9', 'C1', 'lost', 100, 'USD', '2026-01-01 00:00:00')",
    "negative total": "INSERT INTO orders (id, customer_id, status, total_cents, currency, placed_at) "
    "VALUES ('O9', 'C1', 'pending', -1, 'USD', '2026-01-01 00:00:00')",
    "delivered without time": "INSERT INTO orders (id, customer_id, status, total_cents, currency, placed_at) "
    "VALUES ('O9', 'C1', 'delivered', 100, 'USD', '2026-01-01 00:00:00')",
    "delivered_at on pending": "INSERT INTO orders "
    "(id, customer_id, status, total_cents, currency, placed_at, delivered_at) "
    "VALUES ('O9', 'C1', 'pending', 100, 'USD', '2026-01-01 00:00:00', '2026-01-02 00:00:00')",
    "zero quantity": f"{LINE} VALUES ('O1', 2, 'S', 'P', '{{}}', 'n', 0, 100)",
    "item of unknown order": f"{LINE} VALUES ('NOPE', 1, 'S', 'P', '{{}}', 'n', 1, 100)",
    "item of unknown variant": f"{LINE} VALUES ('O1', 2, 'NOPE', 'P', '{{}}', 'n', 1, 100)",
    "refunds beyond what was paid": "UPDATE orders SET refunded_cents = 60, promised_cents = 41 WHERE id = 'O1'",
    "a negative refunded total": "UPDATE orders SET refunded_cents = -1 WHERE id = 'O1'",
    "a gift card below zero": "UPDATE payment_methods SET balance_cents = -1 WHERE id = 'GC1'",
    "a card with a balance": "INSERT INTO payment_methods (id, customer_id, kind, balance_cents) "
    "VALUES ('CC1', 'C1', 'credit_card', 5)",
    "an item given back twice": "INSERT INTO returned_items (order_id, line_no, kind, created_at) "
    "VALUES ('O1', 1, 'refund', '2026-01-01 00:00:00')",
    "a second open refund": "INSERT INTO refunds (id, order_id, amount_cents, currency, status, reason, actor, "
    "created_at, updated_at) VALUES ('R2', 'O1', 1, 'USD', 'pending_approval', 'r', 'a', "
    "'2026-01-01 00:00:00', '2026-01-01 00:00:00')",
    "a second open change of a kind": "INSERT INTO order_changes (id, kind, status, customer_id, order_id, target, "
    "args, plan, refund_cents, charge_cents, actor, created_at, updated_at) VALUES ('OC2', 'cancel', "
    "'pending_approval', 'C1', 'O1', 'O1', '{}', '{}', 0, 0, 'a', '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
}
SETUP = [
    "INSERT INTO customers (id, name, email) VALUES ('C1', 'A', 'a@x.io')",
    "INSERT INTO products (id, name) VALUES ('P', 'Thing')",
    "INSERT INTO variants (item_id, product_id, options, price_cents, available) VALUES ('S', 'P', '{}', 100, true)",
    "INSERT INTO payment_methods (id, customer_id, kind, balance_cents) VALUES ('GC1', 'C1', 'gift_card', 0)",
    "INSERT INTO orders (id, customer_id, status, total_cents, currency, placed_at, paid_cents) "
    "VALUES ('O1', 'C1', 'pending', 100, 'USD', '2026-01-01 00:00:00', 100)",
    f"{LINE} VALUES ('O1', 1, 'S', 'P', '{{}}', 'n', 1, 100)",
    "INSERT INTO returned_items (order_id, line_no, kind, created_at) VALUES ('O1', 1, 'return', '2026-01-01 00:00:00')",
    "INSERT INTO refunds (id, order_id, amount_cents, currency, status, reason, actor, created_at, updated_at) "
    "VALUES ('R1', 'O1', 1, 'USD', 'awaiting_confirmation', 'r', 'a', '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
    "INSERT INTO order_changes (id, kind, status, customer_id, order_id, target, args, plan, refund_cents, "
    "charge_cents, actor, created_at, updated_at) VALUES ('OC1', 'cancel', 'awaiting_confirmation', 'C1', 'O1', "
    "'O1', '{}', '{}', 0, 0, 'a', '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
]


@pytest.mark.parametrize("case", sorted(RAW_REFUSED))
async def test_the_database_itself_refuses(store: Store, case: str) -> None:
    async with store.write() as s:
        for statement in SETUP:
            await s.execute(text(statement))
    with pytest.raises(IntegrityError):
        async with store.write() as s:
            await s.execute(text(RAW_REFUSED[case]))
    async with store.read() as s:
        assert (await s.scalar(text("SELECT count(*) FROM orders"))) == 1
        assert (await s.scalar(text("SELECT count(*) FROM customers"))) == 1


@given(st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False, allow_infinity=False))
def test_to_cents_is_exact(amount: Decimal) -> None:
    cents = to_cents(amount)
    assert Decimal(cents) / 100 == amount
    assert to_cents(str(amount)) == cents


@pytest.mark.parametrize("bad", ["1.234", "0.001", "nan", "inf", "abc"])
def test_to_cents_refuses_more_than_two_places_and_junk(bad: str) -> None:
    with pytest.raises(ValueError):
        to_cents(bad)


def test_float_amounts_convert_through_their_repr() -> None:
    assert to_cents(89.99) == 8999
    assert format_cents(8999) == "$89.99"
    assert format_cents(123456789, "JPY") == "1,234,567.89 JPY"


async def test_health_ping(store: Store) -> None:
    assert await store.ping() is True
    broken = Store.from_settings(
        Settings(_env_file=None, database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none")  # type: ignore[call-arg]
    )
    assert await broken.ping() is False
    await broken.dispose()


async def test_now_is_aware() -> None:
    from storage.types import FrozenClock, SystemClock

    assert SystemClock().now().tzinfo is UTC
    clock = FrozenClock()
    before = clock.now()
    assert clock.advance(days=31) - before == timedelta(days=31)
