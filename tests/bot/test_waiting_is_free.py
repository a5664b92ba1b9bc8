"""Waiting is free: a turn awaiting the model holds a worker slot of WORKER_CONCURRENCY (memory)
but no database connection, so many more conversations than the pool holds wait on a slow model
at once, and the database work of all of them goes through the store's few slots."""

from __future__ import annotations

import asyncio

from agent.events import Reply
from agent.loop import Agent
from agent.model import ModelReply, ModelRequest
from agent.scripted import reply, text
from bot.workers import Workers
from desk import Desk
from desk.inbox import Claimed, Queue
from desk.sessions import open_session
from storage.engine import Store
from storage.settings import Settings
from tools.context import Actor, Deps
from tools.toolbox import Toolbox

CONVERSATIONS = 24


class GatedModel:
    """Answers only once the gate opens; counts the calls waiting at it."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.waiting = 0
        self.all_waiting = asyncio.Event()

    async def complete(self, request: ModelRequest) -> ModelReply:
        self.waiting += 1
        if self.waiting == CONVERSATIONS:
            self.all_waiting.set()
        await self.gate.wait()
        return reply(text("We answer from 9:00 to 18:00."))


async def test_turns_awaiting_the_model_hold_no_connection_and_outnumber_the_pool(
    deps: Deps, settings: Settings
) -> None:
    store: Store = deps.store
    assert store.slots.n < CONVERSATIONS  # the pool is far smaller than the conversations waiting
    model = GatedModel()
    desk = Desk(Agent(model=model, toolbox=Toolbox(deps)))
    queue = Queue(store, deps.clock, settings.model_copy(update={"worker_concurrency": 64}), owner="w1")
    workers = Workers(queue, settings=settings.model_copy(update={"worker_concurrency": 64}))
    replies: dict[str, str] = {}

    async def handle(item: Claimed) -> None:
        ctx = await open_session(deps, channel="test", actor=Actor.unverified(item.conversation))
        async for event in desk.say(ctx, item.text):
            if isinstance(event, Reply):
                replies[item.conversation] = event.text

    async def dead(item: Claimed) -> None:
        raise AssertionError(f"item {item.id} was given up on")

    workers.serve("web", handle=handle, on_dead=dead)
    for i in range(CONVERSATIONS):
        await queue.put(face="web", conversation=f"visitor-{i}", text="what are your support hours?", payload={})
    workers.start()
    try:
        async with asyncio.timeout(60):
            await model.all_waiting.wait()
            # every conversation is in the model at once, and none of them holds the database
            assert model.waiting == CONVERSATIONS
            assert store.slots.in_use == 0
            assert store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
            model.gate.set()
            await workers.wait_completed(CONVERSATIONS)
    finally:
        await workers.stop()
    assert len(replies) == CONVERSATIONS
    assert set(replies.values()) == {"We answer from 9:00 to 18:00."}


async def test_transactions_beyond_the_slots_wait_their_turn_instead_of_failing(store: Store) -> None:
    """More transactions at once than the store has slots: none fails on the pool's checkout, and
    never more than `slots.n` are open at once."""
    most = 0

    async def one() -> None:
        nonlocal most
        async with store.read() as s:
            most = max(most, store.slots.in_use)
            await s.connection()
            await asyncio.sleep(0)  # let the others try for a slot while this one holds it

    await asyncio.gather(*(one() for _ in range(store.slots.n * 5)))
    assert most == store.slots.n  # all of them used, never one more
    assert store.slots.in_use == 0
