"""The demo database: emptied and seeded again on request (`supportbot db reset --demo`, run by
`python3 dev.py demo` on its own `.demo/supportbot-demo.db`), so every demo starts fresh.

It never empties real data: a database holding any customer the demo company does not have is
refused with `NotADemoDatabase`.
"""

from __future__ import annotations

from sqlalchemy import select

from storage.engine import Store
from storage.importer import seed, seed_document
from storage.models import Base, Customer
from storage.types import Clock


class NotADemoDatabase(Exception):
    """The database holds customers of its own; `db reset --demo` leaves it alone."""

    def __init__(self, customers: list[str]) -> None:
        self.customers = customers
        super().__init__(
            f"this database holds customers that are not the demo company's ({', '.join(customers)}), "
            "so it was left unchanged; `db reset --demo` only resets demo databases"
        )


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
