"""The demo database: emptied and seeded again on request (`supportbot db reset --demo`, run by
`python3 dev.py demo` on its own `.demo/supportbot-demo.db`), so every demo starts fresh.

It never empties real data: a database holding any customer the demo company does not have is
refused with `NotADemoDatabase`.
"""

from __future__ import annotations

from sqlalchemy import select

from storage.engine import Store
from storage.errors import NotADemoDatabase
from storage.importer import seed, seed_document
from storage.models import Base, Customer, Order, Refund
from storage.types import Clock


async def empty(store: Store) -> None:
    """Delete every row of every table (children first), in one transaction."""
    async with store.write() as s:
        for table in reversed(Base.metadata.sorted_tables):
            await s.execute(table.delete())


async def reset_demo(store: Store, clock: Clock) -> dict[str, int]:
    demo = [c["id"] for c in seed_document(clock)["customers"]]
    async with store.read() as s:
        others = list((await s.scalars(select(Customer.id).where(Customer.id.not_in(demo)).limit(3))).all())
    if others:
        raise NotADemoDatabase(others)
    await empty(store)
    return await seed(store, clock)


async def past_refund(store: Store, clock: Clock, *, order_id: str, amount_cents: int, status: str) -> None:
    """A refund the customer asked for before the conversation starts (an eval scenario's setup)."""
    async with store.write() as s:
        order = await s.get(Order, order_id)
        if order is None:
            raise LookupError(f"no order {order_id} in the demo store")
        now = clock.now()
        s.add(
            Refund(
                id=f"RF-SETUP-{order_id}",
                order_id=order_id,
                amount_cents=amount_cents,
                currency=order.currency,
                status=status,
                reason="earlier request",
                actor=f"customer:{order.customer_id}",
                decided_by=f"customer:{order.customer_id}",
                created_at=now,
                updated_at=now,
            )
        )
