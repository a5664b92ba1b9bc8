"""The website chat's turns, as work in the process's one queue, so that any replica can serve any
request and a session's turns run one at a time, in order.

    POST ─▶ a turn row and its work item, in one transaction ─▶ a worker (any replica) claims it in
            the session's order ─▶ `Desk.say` (or Confirm/Cancel): every event is stored as it
            happens, each write fenced by the work item's lease ─▶ `done` event and status together

- Leases, take-over, bounded attempts and dead letters are the queue's (`desk.inbox`): a replica
  that dies mid-turn loses its lease and another runs the turn again; a turn that failed
  INBOX_MAX_ATTEMPTS times gets the desk's one failure policy (an apology event, an alert and a
  P2 ticket), and `supportbot inbox retry ID` replays it.
- A retried turn whose reply was already stored only finishes: the visitor never gets two answers.
- Replay: a stream is the stored events, so reading again from `Last-Event-ID` runs nothing.
- The session's message log (staff replies, notices, every reply) is the outgoing log
  (`desk.outbox`), streamed by `follow_session`.
- In-process wake-ups only shorten waits, and only a turn's own followers (or its session's) are
  woken by what it stores; what is true lives in the store, and readers poll it (other replicas).
  A follower reads only what is newer than the last thing it sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from typing import TypeVar

from pydantic import BaseModel

from agent.events import Done, Error, Reply
from bot.host import Host
from bot.web.events import DoneData, TextData, session_state, shown
from desk import outbox, turnlog
from desk.inbox import Claimed
from desk.outbox import Row
from desk.sessions import load_context
from desk.turnlog import Stored, Turn, TurnRef
from storage import metrics
from storage.notify import WEB
from storage.states import WebTurnStatus
from tools import wording
from tools.context import TicketQuota

log = logging.getLogger(__name__)
DONE = WebTurnStatus.DONE
STREAM_POLL_MAX_S = 5.0  # a quiet stream still looks at the store at least this often
T = TypeVar("T")


class Wakeups:
    """In-process wake-ups by key (`turn:ID`, `session:ID`): what a turn stores wakes its own
    followers only, so 50 chats streaming at once do not each re-read on every chat's event."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Event]] = {}

    @contextlib.contextmanager
    def watch(self, key: str) -> Iterator[asyncio.Event]:
        """An event set by every `wake(key)` while the block runs (clear it before each read)."""
        event = asyncio.Event()
        self._waiting.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            waiting = self._waiting.get(key, set())
            waiting.discard(event)
            if not waiting:
                self._waiting.pop(key, None)

    def wake(self, *keys: str) -> None:
        for key in keys:
            for event in self._waiting.get(key, ()):
                event.set()

    def wake_all(self) -> None:
        self.wake(*list(self._waiting))


class TurnLog:
    def __init__(self, host: Host) -> None:
        self.host = host
        self.deps = host.deps
        self.poll_s = host.settings.inbox_poll_seconds
        self.idle_s = host.settings.chat_stream_idle_s
        self.closing = False
        self.wakeups = Wakeups()
        host.listener.on(WEB, self.wakeups.wake)  # another replica stored a turn event or an outgoing row
        host.workers.serve("web", handle=self.handle, on_dead=self.dead_letter)

    async def _wait(self, woken: asyncio.Event, quiet_polls: int = 0) -> None:
        """Until woken in this process, or a poll interval passed. Writes in this process and, on
        PostgreSQL, other replicas' NOTIFY wake a reader at once; polling is the fallback, and it
        backs off while nothing happens."""
        poll = min(self.poll_s * 2 ** min(quiet_polls, 6), max(self.poll_s, STREAM_POLL_MAX_S))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(poll):
                await woken.wait()

    async def close(self) -> None:
        """Stop streams (turns in flight belong to the workers, which the server stops)."""
        self.closing = True
        self.wakeups.wake_all()

    # --- creating ---------------------------------------------------------------------------------
    async def create(
        self, session_id: str, *, kind: str, text: str, refund_id: str | None = None, client: str | None = None
    ) -> TurnRef:
        ref = await turnlog.create(self.deps, session_id, kind=kind, text=text, refund_id=refund_id, client=client)
        self.host.workers.wake()
        self.wakeups.wake(f"session:{session_id}")
        return ref

    async def wait_stored(self, session_id: str, n: int) -> None:
        """Until the session has at least `n` turns stored (for tests and benchmarks, which bound the
        wait with asyncio.timeout)."""
        with self.wakeups.watch(f"session:{session_id}") as woken:
            while True:
                woken.clear()
                if await turnlog.count(self.deps, session_id) >= n:
                    return
                await self._wait(woken)

    # --- reading --------------------------------------------------------------------------------------
    async def events(self, turn_id: int, *, after: int = 0) -> list[Stored]:
        return await turnlog.events(self.deps, turn_id, after=after)

    async def follow(self, turn_id: int, *, after: int, keepalive_s: float = 15.0) -> AsyncIterator[Stored | None]:
        """The turn's stored events after `after`, then each new one as it is stored, up to `done`.
        Yields None when nothing happened for `keepalive_s` (for a keep-alive comment)."""
        seen = after

        async def read() -> tuple[list[Stored], bool]:
            nonlocal seen
            new, finished = await turnlog.events_and_finished(self.deps, turn_id, after=seen)
            seen = new[-1].seq if new else seen
            return new, finished

        async for event in self._tail(f"turn:{turn_id}", read, keepalive_s):
            yield event

    async def follow_session(
        self, session_id: str, *, after: int, keepalive_s: float = 15.0
    ) -> AsyncIterator[Row | None]:
        """The session's message log after row `after`, then each new row as it is written (on any
        replica), until the stream is closed. None every `keepalive_s` of silence."""
        seen = after

        async def read() -> tuple[list[Row], bool]:
            nonlocal seen
            rows = await outbox.for_session(self.deps, session_id, after=seen)
            seen = rows[-1].id if rows else seen
            return rows, False

        async for row in self._tail(f"session:{session_id}", read, keepalive_s):
            yield row

    async def _tail(
        self, key: str, read: Callable[[], Awaitable[tuple[list[T], bool]]], keepalive_s: float
    ) -> AsyncIterator[T | None]:
        """What `read` finds new, each time `key` is woken (or a poll interval passed), until it says
        finished, the log closes, or nothing new came for CHAT_STREAM_IDLE_S (the reader resumes
        from its last event); None after `keepalive_s` of silence."""
        loop = asyncio.get_running_loop()
        quiet, idle_since, empty = 0.0, loop.time(), 0
        with self.wakeups.watch(key) as woken:
            while not self.closing:
                woken.clear()
                new, finished = await read()
                empty = 0 if new else empty + 1
                for item in new:
                    quiet, idle_since = 0.0, loop.time()
                    yield item
                if finished or loop.time() - idle_since >= self.idle_s:
                    return
                if quiet >= keepalive_s:
                    quiet = 0.0
                    yield None
                started = loop.time()
                await self._wait(woken, empty)
                quiet += loop.time() - started

    # --- running (the web face's work handler) ---------------------------------------------------------
    async def handle(self, item: Claimed) -> None:
        turn = await turnlog.of_item(self.deps, item.id)
        if turn is None:
            return  # the turn is gone (its session was deleted)
        out = _Writer(self, turn.id, item, await turnlog.last_seq(self.deps, turn.id))
        try:
            answered, _ = await outbox.item_rows(self.deps, item.id)
            if answered:  # an earlier attempt answered: show it (unless it was shown) and finish
                await self._show_answered(out, answered)
                state = await session_state(self.deps, turn.session_id)
                await out.add("done", DoneData(state=state), finish=DONE)
                return
            await turnlog.start(self.deps, turn.id)
            await self._run(turn, item, out)
        finally:
            self.wakeups.wake(f"turn:{turn.id}", f"session:{turn.session_id}")

    async def _run(self, turn: Turn, item: Claimed, out: _Writer) -> None:
        ctx = await load_context(self.deps, turn.session_id)
        assert ctx is not None
        if turn.client is not None and ctx.actor.kind == "unverified":
            limit = self.host.settings.chat_anonymous_tickets_per_hour
            ctx = replace(ctx, ticket_quota=TicketQuota(key=f"web:{turn.client}", limit=limit))
        said: list[int] = []
        if turn.kind == "message":
            async for event in self.host.desk.say(ctx, turn.text, inbox_id=item.id):
                if isinstance(event, Error) and event.what == "ticket_limit":
                    metrics.WEB_TICKETS_REFUSED.inc()
                for kind, data in shown(event):
                    await out.add(kind, data)
                if isinstance(event, Done):
                    said += event.said
        else:
            found = await self.host.desk.decide_refund(
                ctx, turn.refund_id or "", yes=turn.kind == "confirm", inbox_id=item.id
            )
            _, text, row = found
            said += [row] if row is not None else []
            for kind, data in shown(Reply(text)):
                await out.add(kind, data)
        await outbox.delivered(self.deps, said)  # shown in this turn's stream
        await out.add("done", DoneData(state=await session_state(self.deps, turn.session_id)), finish=DONE)

    async def _show_answered(self, out: _Writer, rows: list[Row]) -> None:
        """The stored answer of a turn run again after a crash, unless its events were stored too."""
        if any(e.kind == "reply" for e in await turnlog.events(self.deps, out.turn_id)):
            return
        for row in rows:
            for kind, data in shown(Reply(row.text)):
                await out.add(kind, data)
        await outbox.delivered(self.deps, [r.id for r in rows])

    async def dead_letter(self, item: Claimed) -> None:
        """The desk's one failure policy; the visitor's apology arrives as the turn's last events."""
        metrics.DEAD_LETTERS.labels("web").inc()
        turn = await turnlog.of_item(self.deps, item.id)
        await self.host.desk.dead_letter(
            self.host.deps, session_id=item.session_id, item_id=item.id, attempts=item.attempts
        )
        if turn is None:
            return
        apology = await outbox.for_session(self.deps, turn.session_id, undelivered=True)
        await outbox.delivered(self.deps, [r.id for r in apology if r.kind == "apology"])
        out = _Writer(self, turn.id, None, await turnlog.last_seq(self.deps, turn.id))
        await out.add("error", TextData(text=wording.DEAD_LETTER))
        state = await session_state(self.deps, turn.session_id)
        await out.add("done", DoneData(state=state), finish=WebTurnStatus.FAILED)
        self.wakeups.wake(f"session:{turn.session_id}")


class _Writer:
    """Appends a turn's events, each in one transaction that first proves the worker still holds the
    turn's work item (the queue's fence); a dead letter's last words need no lease."""

    def __init__(self, log_: TurnLog, turn_id: int, item: Claimed | None, seq: int = 0) -> None:
        self.log = log_
        self.turn_id = turn_id
        self.item = item
        self.seq = seq

    async def add(self, kind: str, data: BaseModel, *, finish: WebTurnStatus | None = None) -> None:
        tl = self.log
        lease = (self.item.id, self.item.attempts, tl.host.owner) if self.item is not None else None
        dumped = data.model_dump(mode="json")
        await turnlog.append(
            tl.deps, self.turn_id, seq=self.seq + 1, kind=kind, data=dumped, lease=lease, finish=finish
        )
        self.seq += 1
        tl.wakeups.wake(f"turn:{self.turn_id}")
