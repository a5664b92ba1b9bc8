"""Wake-ups between replicas (PostgreSQL LISTEN/NOTIFY): work stored by one replica wakes another
at once; the website's followers are woken by their own turn's events and session's rows."""

from __future__ import annotations

import asyncio

from desk.inbox import Queue
from desk.sessions import open_session
from storage.engine import Store
from storage.models import WebTurn, WebTurnEvent
from storage.notify import INBOX, WEB, Listener
from storage.settings import Settings
from storage.types import FrozenClock
from tools.context import Actor


async def test_work_stored_by_another_replica_wakes_this_one(pg_database_url: str) -> None:
    settings = Settings(_env_file=None, database_url=pg_database_url)  # type: ignore[call-arg]
    store, clock = Store.from_settings(settings), FrozenClock()
    listener = Listener(pg_database_url)
    heard: dict[str, list[str]] = {INBOX: [], WEB: []}
    woke = {INBOX: asyncio.Event(), WEB: asyncio.Event()}
    for channel in heard:
        listener.on(channel, lambda payload, c=channel: (heard[c].append(payload), woke[c].set()))
    listener.start()
    try:
        async with asyncio.timeout(20):
            await listener.connected.wait()
            queue = Queue(store, clock, settings, owner="other-replica")
            item = await queue.put(face="web", conversation="web:x", text="hi", payload={})
            await woke[INBOX].wait()
            (claimed,) = await queue.claim()
            woke[INBOX].clear()
            assert await queue.finish(claimed)  # the conversation's next item may be claimable now
            await woke[INBOX].wait()
            assert item is not None
            await add_turn_event(store, settings, clock, inbox_id=item)
            await woke[WEB].wait()
        assert any(p.startswith("turn:") for p in heard[WEB])
    finally:
        await listener.stop()
        await store.dispose()


async def add_turn_event(store: Store, settings: Settings, clock: FrozenClock, *, inbox_id: int) -> None:
    from tools.context import Deps
    from tools.gateway import StoreGateway

    deps = Deps(store=store, settings=settings, clock=clock, gateway=StoreGateway(store, clock))
    ctx = await open_session(deps, channel="web", actor=Actor.unverified("web:1"))
    async with store.write() as s:
        turn = WebTurn(
            key="turn_x",
            session_id=ctx.session_id,
            inbox_id=inbox_id,
            kind="message",
            text="hi",
            status="queued",
            created_at=clock.now(),
        )
        s.add(turn)
        await s.flush()
        s.add(WebTurnEvent(turn_id=turn.id, seq=1, kind="status", data={"text": "…"}, created_at=clock.now()))


def test_sqlite_has_no_listener() -> None:
    listener = Listener("sqlite+aiosqlite:///x.db")
    listener.on(INBOX, lambda _p: None)
    listener.start()  # nothing to start: one process wakes its own waiters
    assert not listener.enabled
