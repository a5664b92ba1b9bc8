"""The website chat's turns, as work in the process's one queue, so that any replica can serve any
request and a session's turns run one at a time, in order.

    POST ─▶ a turn row and its work item, in one transaction ─▶ a worker (any replica) claims it in
            the session's order ─▶ `Desk.say` (or Confirm/Cancel): every event is stored as it
            happens, each write fenced by the work item's lease ─▶ `done` event and status together

- Leases, take-over, bounded attempts and dead letters are the queue's (`bot.queue`): a replica
  that dies mid-turn loses its lease and another runs the turn again; a turn that failed
  INBOX_MAX_ATTEMPTS times gets the desk's one failure policy (an apology event, an alert and a
  P2 ticket), and `supportbot inbox retry ID` replays it.
- A retried turn whose reply was already stored only finishes: the visitor never gets two answers.
- Replay: a stream is the stored events, so reading again from `Last-Event-ID` runs nothing.
- The session's message log (staff replies, notices, every reply) is the outgoing log
  (`tools.outbox`), streamed by `follow_session`.
- In-process wake-ups only shorten waits, and only a turn's own followers (or its session's) are
  woken by what it stores; what is true lives in the store, and readers poll it (other replicas).
  A follower reads only what is newer than the last thing it sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import func, select, update

from agent.events import Done, Error, Reply
from bot.host import Host
from bot.queue import Claimed
from bot.web.events import DoneData, TextData, session_state, shown
from storage import metrics
from storage.models import InboxItem, OutboxMessage, Refund, WebTurn, WebTurnEvent
from storage.notify import WEB
from tools import outbox, wording
from tools.codes import Code
from tools.context import TicketQuota
from tools.sessions import load_context

log = logging.getLogger(__name__)
UNFINISHED = ("queued", "running")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TurnRef:
    id: int
    key: str
    session_id: str


@dataclass(frozen=True, slots=True)
class Stored:
    seq: int
    kind: str
    data: dict[str, Any]


class LeaseLost(Exception):
    """Another worker took this turn over (ours was presumed dead): stop without writing."""


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
        self.store = host.store
        self.clock = host.clock
        self.poll_s = host.settings.inbox_poll_seconds
        self.closing = False
        self.wakeups = Wakeups()
        host.listener.on(WEB, self.wakeups.wake)  # another replica stored a turn event or an outgoing row
        host.workers.serve("web", handle=self.handle, on_dead=self.dead_letter)

    async def _wait(self, woken: asyncio.Event) -> None:
        """Until woken in this process, or a poll interval passed (other replicas are seen by polling)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.poll_s):
                await woken.wait()

    async def close(self) -> None:
        """Stop streams (turns in flight belong to the workers, which the server stops)."""
        self.closing = True
        self.wakeups.wake_all()

    # --- creating ---------------------------------------------------------------------------------
    async def create(
        self, session_id: str, *, kind: str, text: str, refund_id: str | None = None, client: str | None = None
    ) -> TurnRef:
        """The turn and its work item in one transaction: a turn is never stored without its work.
        `client` (an anonymous visitor's hashed address) sets its new-ticket quota, stored with it so
        that whichever replica runs the turn applies it."""
        now = self.clock.now()
        key = f"turn_{secrets.token_hex(12)}"
        async with self.store.write(ack=True) as s:  # the visitor waits for its 202
            item = InboxItem(
                face="web",
                kind=kind,
                conversation=f"web:{session_id}",
                session_id=session_id,
                text=text,
                payload={"turn": key},
                status="pending",
                attempts=0,
                received_at=now,
            )
            s.add(item)
            await s.flush()
            row = WebTurn(
                key=key,
                session_id=session_id,
                inbox_id=item.id,
                kind=kind,
                text=text,
                refund_id=refund_id,
                client=client,
                status="queued",
                created_at=now,
            )
            s.add(row)
            await s.flush()
        self.host.workers.nudge()
        self.wakeups.wake(f"session:{session_id}")
        return TurnRef(row.id, key, session_id)

    async def wait_stored(self, session_id: str, n: int) -> None:
        """Until the session has at least `n` turns stored (for tests and benchmarks, which bound the
        wait with asyncio.timeout)."""
        with self.wakeups.watch(f"session:{session_id}") as woken:
            while True:
                woken.clear()
                async with self.store.read() as s:
                    count = await s.scalar(select(func.count()).where(WebTurn.session_id == session_id))
                if int(count or 0) >= n:
                    return
                await self._wait(woken)

    # --- reading --------------------------------------------------------------------------------------
    async def find(self, key: str) -> WebTurn | None:
        async with self.store.read() as s:
            return (await s.scalars(select(WebTurn).where(WebTurn.key == key))).one_or_none()

    async def events(self, turn_id: int, *, after: int = 0) -> list[Stored]:
        async with self.store.read() as s:
            return await _events(s, turn_id, after)

    async def follow(self, turn_id: int, *, after: int, keepalive_s: float = 15.0) -> AsyncIterator[Stored | None]:
        """The turn's stored events after `after`, then each new one as it is stored, up to `done`.
        Yields None when nothing happened for `keepalive_s` (for a keep-alive comment)."""
        seen = after

        async def read() -> tuple[list[Stored], bool]:
            nonlocal seen
            async with self.store.read() as s:  # the status first: once finished, all its events are stored
                status = await s.scalar(select(WebTurn.status).where(WebTurn.id == turn_id))
                new = await _events(s, turn_id, seen)
            seen = new[-1].seq if new else seen
            return new, status not in UNFINISHED or any(e.kind == "done" for e in new)

        async for event in self._tail(f"turn:{turn_id}", read, keepalive_s):
            yield event

    async def follow_session(
        self, session_id: str, *, after: int, keepalive_s: float = 15.0
    ) -> AsyncIterator[OutboxMessage | None]:
        """The session's message log after row `after`, then each new row as it is written (on any
        replica), until the stream is closed. None every `keepalive_s` of silence."""
        seen = after

        async def read() -> tuple[list[OutboxMessage], bool]:
            nonlocal seen
            rows = await outbox.for_session(self.host.deps, session_id, after=seen)
            seen = rows[-1].id if rows else seen
            return rows, False

        async for row in self._tail(f"session:{session_id}", read, keepalive_s):
            yield row

    async def _tail(
        self, key: str, read: Callable[[], Awaitable[tuple[list[T], bool]]], keepalive_s: float
    ) -> AsyncIterator[T | None]:
        """What `read` finds new, each time `key` is woken (or a poll interval passed), until it says
        finished or the log closes; None after `keepalive_s` of silence."""
        quiet = 0.0
        with self.wakeups.watch(key) as woken:
            while not self.closing:
                woken.clear()
                new, finished = await read()
                for item in new:
                    quiet = 0.0
                    yield item
                if finished:
                    return
                if quiet >= keepalive_s:
                    quiet = 0.0
                    yield None
                started = asyncio.get_running_loop().time()
                await self._wait(woken)
                quiet += asyncio.get_running_loop().time() - started

    # --- running (the web face's work handler) ---------------------------------------------------------
    async def handle(self, item: Claimed) -> None:
        turn = await self._turn_of(item)
        if turn is None:
            return  # the turn is gone (its session was deleted)
        out = _Writer(self, turn.id, item, await self._last_seq(turn.id))
        try:
            if await self._replied(turn.id):  # an earlier attempt answered: only finishing is left
                await out.add("done", DoneData(state=await session_state(self.store, turn.session_id)), finish="done")
                return
            await self._start(turn, item)
            await self._run(turn, item, out)
        finally:
            self.wakeups.wake(f"turn:{turn.id}", f"session:{turn.session_id}")

    async def _turn_of(self, item: Claimed) -> WebTurn | None:
        async with self.store.read() as s:
            return (await s.scalars(select(WebTurn).where(WebTurn.inbox_id == item.id))).one_or_none()

    async def _last_seq(self, turn_id: int) -> int:
        async with self.store.read() as s:
            return int(await s.scalar(select(func.max(WebTurnEvent.seq)).where(WebTurnEvent.turn_id == turn_id)) or 0)

    async def _replied(self, turn_id: int) -> bool:
        async with self.store.read() as s:
            found = await s.scalar(
                select(WebTurnEvent.seq).where(WebTurnEvent.turn_id == turn_id, WebTurnEvent.kind == "reply").limit(1)
            )
        return found is not None

    async def _start(self, turn: WebTurn, item: Claimed) -> None:
        async with self.store.write() as s:
            await s.execute(
                update(WebTurn)
                .where(WebTurn.id == turn.id, WebTurn.status == "queued")
                .values(status="running", started_at=self.clock.now())
            )

    async def _run(self, turn: WebTurn, item: Claimed, out: _Writer) -> None:
        ctx = await load_context(self.host.deps, turn.session_id)
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
            async with self.store.read() as s:
                refund = await s.get(Refund, turn.refund_id or "")
            if refund is None:
                text = wording.for_code(Code.NOT_FOUND)
            else:
                _, text, row = await self.host.desk.decide_refund(
                    ctx, refund.id, yes=turn.kind == "confirm", inbox_id=item.id
                )
                said += [row] if row is not None else []
            for kind, data in shown(Reply(text)):
                await out.add(kind, data)
        await outbox.delivered(self.host.deps, said)  # shown in this turn's stream
        await out.add("done", DoneData(state=await session_state(self.store, turn.session_id)), finish="done")

    async def dead_letter(self, item: Claimed) -> None:
        """The desk's one failure policy; the visitor's apology arrives as the turn's last events."""
        metrics.DEAD_LETTERS.labels("web").inc()
        turn = await self._turn_of(item)
        await self.host.desk.dead_letter(
            self.host.deps, session_id=item.session_id, item_id=item.id, attempts=item.attempts
        )
        if turn is None:
            return
        apology = await outbox.for_session(self.host.deps, turn.session_id, undelivered=True)
        await outbox.delivered(self.host.deps, [r.id for r in apology if r.kind == "apology"])
        out = _Writer(self, turn.id, None, await self._last_seq(turn.id))
        await out.add("error", TextData(text=wording.DEAD_LETTER))
        state = await session_state(self.store, turn.session_id)
        await out.add("done", DoneData(state=state), finish="failed")
        self.wakeups.wake(f"session:{turn.session_id}")


async def _events(s: Any, turn_id: int, after: int) -> list[Stored]:
    rows = await s.scalars(
        select(WebTurnEvent).where(WebTurnEvent.turn_id == turn_id, WebTurnEvent.seq > after).order_by(WebTurnEvent.seq)
    )
    return [Stored(r.seq, r.kind, r.data) for r in rows]


class _Writer:
    """Appends a turn's events, each in one transaction that first proves the worker still holds the
    turn's work item (the queue's fence); a dead letter's last words need no lease."""

    def __init__(self, log_: TurnLog, turn_id: int, item: Claimed | None, seq: int = 0) -> None:
        self.log = log_
        self.turn_id = turn_id
        self.item = item
        self.seq = seq

    async def add(self, kind: str, data: BaseModel, *, finish: str | None = None) -> None:
        tl, now = self.log, self.log.clock.now()
        conds: list[Any] = [WebTurn.id == self.turn_id]
        if self.item is not None:
            conds.append(tl.host.queue.holds(self.item.id, self.item.attempts))
        values: dict[str, Any] = {"status": finish, "finished_at": now} if finish else {"status": "running"}
        async with tl.store.write() as s:
            fenced = await s.execute(update(WebTurn).where(*conds).values(**values))
            if not fenced.rowcount:  # type: ignore[attr-defined]
                raise LeaseLost(self.turn_id)
            s.add(
                WebTurnEvent(
                    turn_id=self.turn_id, seq=self.seq + 1, kind=kind, data=data.model_dump(mode="json"), created_at=now
                )
            )
        self.seq += 1
        tl.wakeups.wake(f"turn:{self.turn_id}")
