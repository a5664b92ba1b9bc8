"""The lease queue's claim: several items in one transaction, at most one per conversation (its
earliest), none twice when claimers race (on PostgreSQL, `FOR UPDATE SKIP LOCKED`)."""

from __future__ import annotations

import asyncio

from sqlalchemy import select, update

from desk.inbox import CLAIM_BATCH, Queue
from storage import metrics
from storage.engine import Store
from storage.models import InboxItem
from storage.settings import Settings
from storage.types import FrozenClock


def write_transactions() -> float:
    return metrics.REGISTRY.get_sample_value("supportbot_db_transactions_total", {"kind": "write"}) or 0.0


async def fill(queue: Queue, conversations: dict[str, int]) -> None:
    for conversation, n in conversations.items():
        for i in range(n):
            await queue.put(face="web", conversation=conversation, text=f"{conversation}-{i}", payload={})


async def test_one_claim_takes_the_earliest_item_of_each_conversation_in_one_transaction(
    store: Store, settings: Settings, clock: FrozenClock
) -> None:
    queue = Queue(store, clock, settings, owner="w1")
    await fill(queue, {"a": 2, "b": 1, "c": 1})
    before = write_transactions()
    got = await queue.claim(CLAIM_BATCH)
    assert write_transactions() - before == 1
    assert [c.text for c in got] == ["a-0", "b-0", "c-0"]  # oldest first; a-1 waits for a-0
    assert await queue.claim(CLAIM_BATCH) == []
    assert await queue.finish(got[0])
    assert [c.text for c in await queue.claim(CLAIM_BATCH)] == ["a-1"]


async def test_a_claim_takes_no_more_than_asked(store: Store, settings: Settings, clock: FrozenClock) -> None:
    queue = Queue(store, clock, settings, owner="w1")
    await fill(queue, {f"c{i}": 1 for i in range(5)})
    assert [c.text for c in await queue.claim(2)] == ["c0-0", "c1-0"]
    assert len(await queue.claim(100)) == 3  # capped at CLAIM_BATCH, and only three are left


async def test_racing_claimers_never_take_the_same_item(store: Store, settings: Settings, clock: FrozenClock) -> None:
    other = Store.from_settings(settings)  # a second replica's engine
    try:
        queues = [Queue(store, clock, settings, owner="r1"), Queue(other, clock, settings, owner="r2")]
        await fill(queues[0], {f"c{i}": 2 for i in range(12)})
        taken: list[int] = []
        for _ in range(4):
            batches = await asyncio.gather(*(q.claim(CLAIM_BATCH) for q in queues))
            taken += [c.id for batch in batches for c in batch]
            for q, batch in zip(queues, batches, strict=True):
                for c in batch:
                    assert await q.finish(c)
        assert len(taken) == len(set(taken)) == 24
    finally:
        await other.dispose()


async def test_every_lease_in_hand_is_renewed_in_one_statement_and_a_lost_one_is_told(
    store: Store, settings: Settings, clock: FrozenClock
) -> None:
    queue = Queue(store, clock, settings, owner="w1")
    await fill(queue, {"a": 1, "b": 1, "c": 1})
    held = await queue.claim(CLAIM_BATCH)
    async with store.write() as s:  # another replica took c over after our lease lapsed
        await s.execute(update(InboxItem).where(InboxItem.id == held[2].id).values(lease_owner="w2"))
    clock.advance(seconds=5)
    before = write_transactions()
    assert await queue.renew(held) == {held[0].id, held[1].id}
    assert write_transactions() - before == 1
    async with store.read() as s:
        until = (await s.scalars(select(InboxItem.lease_expires_at).where(InboxItem.id == held[0].id))).one()
    assert until == clock.now() + queue.lease
    assert await queue.renew([]) == set()


async def test_a_click_goes_ahead_of_queued_turns_of_other_conversations(
    store: Store, settings: Settings, clock: FrozenClock
) -> None:
    queue = Queue(store, clock, settings, owner="w1")
    await fill(queue, {"a": 1, "b": 1})
    await queue.put(face="slack", kind="confirm", conversation="c", text="", payload={})
    (first,) = await queue.claim(1)
    assert first.kind == "confirm" and first.conversation == "c"
    assert [c.text for c in await queue.claim(CLAIM_BATCH)] == ["a-0", "b-0"]


async def test_a_click_still_waits_for_its_own_conversations_earlier_turn(
    store: Store, settings: Settings, clock: FrozenClock
) -> None:
    queue = Queue(store, clock, settings, owner="w1")
    await fill(queue, {"a": 1})
    await queue.put(face="slack", kind="confirm", conversation="a", text="", payload={})
    assert [(c.kind, c.text) for c in await queue.claim(CLAIM_BATCH)] == [("message", "a-0")]


async def test_a_burst_of_one_authors_messages_is_read_as_one(
    store: Store, settings: Settings, clock: FrozenClock
) -> None:
    queue = Queue(store, clock, settings, owner="w1")
    for text, user in (("my blender", "U1"), ("ORD-8842", "U1"), ("it's broken", "U1"), ("staff here", "U2")):
        await queue.put(face="slack", conversation="t", text=text, payload={}, user_id=user)
    (first,) = await queue.claim(CLAIM_BATCH)
    read = await queue.absorb(first, within_s=2.0)
    assert read.text == "my blender\nORD-8842\nit's broken" and read.id == first.id
    async with store.read() as s:
        rows = (await s.execute(select(InboxItem.text, InboxItem.status).order_by(InboxItem.id))).all()
    assert [tuple(r) for r in rows] == [  # every message stays recorded; the burst's tail is done with it
        ("my blender\nORD-8842\nit's broken", "working"),
        ("ORD-8842", "done"),
        ("it's broken", "done"),
        ("staff here", "pending"),
    ]
    assert await queue.finish(read)
    assert [c.text for c in await queue.claim(CLAIM_BATCH)] == ["staff here"]  # another author: its own turn


async def test_messages_far_apart_or_a_lost_lease_are_not_absorbed(
    store: Store, settings: Settings, clock: FrozenClock
) -> None:
    queue = Queue(store, clock, settings, owner="w1")
    await queue.put(face="slack", conversation="t", text="one", payload={}, user_id="U1")
    clock.advance(seconds=5)
    await queue.put(face="slack", conversation="t", text="two", payload={}, user_id="U1")
    (first,) = await queue.claim(CLAIM_BATCH)
    assert (await queue.absorb(first, within_s=2.0)).text == "one"
    stale = Queue(store, clock, settings, owner="w2")  # not the lease holder: nothing moves
    assert (await stale.absorb(first, within_s=60.0)).text == "one"


async def test_an_item_just_stored_is_claimed_by_its_id_when_its_conversation_is_free(
    store: Store, settings: Settings, clock: FrozenClock
) -> None:
    queue = Queue(store, clock, settings, owner="w1")
    await fill(queue, {"a": 1})
    waits = await queue.put(face="slack", kind="confirm", conversation="a", text="", payload={})
    free = await queue.put(face="slack", kind="confirm", conversation="b", text="", payload={})
    assert waits is not None and free is not None
    assert await queue.claim_item(waits) is None  # a-0 comes first
    got = await queue.claim_item(free)
    assert got is not None and got.id == free and got.attempts == 1
    assert await queue.claim_item(free) is None  # taken once
    assert await Queue(store, clock, settings, owner="w2").claim_item(free) is None
