"""`Store.unit`: a model round's reads and writes as one write transaction, opened at first use;
a write block inside is a savepoint (a failing one undoes only itself); an error out of the unit
undoes all of it; `alone()` commits what the unit holds before work that must follow a commit;
other tasks never join it."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from storage import metrics
from storage.engine import Store
from storage.models import OrderFormat


def transactions(kind: str) -> float:
    return metrics.REGISTRY.get_sample_value("supportbot_db_transactions_total", {"kind": kind}) or 0.0


async def shapes(store: Store) -> set[str]:
    async with store.read() as s:
        return set((await s.scalars(select(OrderFormat.shape).where(OrderFormat.shape.like("T%")))).all())


async def add(store: Store, shape: str) -> None:
    async with store.write() as s:
        s.add(OrderFormat(shape=shape))
        await s.flush()


async def test_reads_and_writes_in_a_unit_are_one_write_transaction(store: Store) -> None:
    reads, writes = transactions("read"), transactions("write")
    async with store.unit():
        await add(store, "TA")
        assert await shapes(store) == {"TA"}  # the unit's own writes, read back in it
        await add(store, "TB")
    assert (transactions("read") - reads, transactions("write") - writes) == (0, 1)
    assert await shapes(store) == {"TA", "TB"}


async def test_a_failing_write_inside_undoes_only_itself(store: Store) -> None:
    async with store.unit():
        await add(store, "TA")
        with pytest.raises(IntegrityError):
            await add(store, "TA")  # a duplicate: its savepoint is rolled back, the unit goes on
        await add(store, "TB")
    assert await shapes(store) == {"TA", "TB"}


async def test_an_error_out_of_the_unit_undoes_all_of_it(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.unit():
            await add(store, "TA")
            raise RuntimeError("the round failed")
    assert await shapes(store) == set()


async def test_other_tasks_do_not_join_and_alone_commits_first(store: Store) -> None:
    async with store.unit():
        await add(store, "TA")
        assert await asyncio.create_task(shapes(store)) == set()  # not committed, not joined
        async with store.alone():
            assert await asyncio.create_task(shapes(store)) == {"TA"}  # committed before the block
            await add(store, "TB")  # a transaction of its own
        await add(store, "TC")  # a new transaction of the unit
    assert await shapes(store) == {"TA", "TB", "TC"}
