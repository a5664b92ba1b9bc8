"""The website chat's turns, kept in the store so that any replica can serve any request.

    POST ─▶ insert the turn (queued, leased by this replica) ─▶ wait until no earlier turn of the
            session is unfinished ─▶ claim it (queued → running) ─▶ run it: every event is stored
            as it happens, fenced by the lease ─▶ `done` event and status in one transaction

- Order: a turn is claimable only when every earlier turn of its session is finished (the
  inbox's rule), in one conditional UPDATE; a partial unique index lets at most one turn of a
  session be `running`, so racing replicas cannot run two at once. No FOR UPDATE, and no
  transaction is held across the model call.
- Leases: the replica holding a turn renews its lease while the turn waits and runs. An expired
  lease means that replica died; whoever notices (a reader of the turn's events, a later turn of
  the session) takes it over: a turn that never started is run, one that started is finished as
  failed with an apology and a ticket, never run a second time.
- Replay: a stream is the stored events, so reading again from `Last-Event-ID` runs nothing.
- In-process wake-ups only shorten waits; what is true lives in the store, and replicas poll it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import case, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from agent.chat import Conversation
from agent.events import Confirmation, Escalation, Event, Reply, Status
from agent.loop import Agent
from storage.engine import Store
from storage.models import Refund, Ticket, WebRateLimit, WebTurn, WebTurnEvent
from storage.types import format_cents
from tools import wording
from tools.codes import Code
from tools.context import Deps
from tools.sessions import load_context
from tools.tickets import open_or_update

log = logging.getLogger(__name__)
UNFINISHED = ("queued", "running")
# Escalations the customer is never shown: a "security" ticket (asking about another customer's
# order) would tell them that the order exists, which its reply is worded not to.
HIDDEN_REASONS = frozenset({"security"})


# --- what the customer sees (stored as event data, and the API's schemas) ---------------------------
class TicketView(BaseModel):
    id: int
    status: Literal["open", "claimed"]


class PendingRefund(BaseModel):
    refund_id: str
    order_id: str
    amount: str
    expires_at: datetime | None


class SessionState(BaseModel):
    escalated: bool
    ticket: TicketView | None
    awaiting_confirmation: PendingRefund | None


class TextData(BaseModel):
    text: str


class CitationData(BaseModel):
    """A help-center article the reply used (only ever one its search returned)."""

    article_id: int
    title: str
    url: str


class ReplyData(BaseModel):
    text: str
    citations: list[CitationData] = []  # on a reply's last sentence: the articles it cites


class EscalationData(BaseModel):
    ticket_id: int


class ConfirmationData(BaseModel):
    refund_id: str
    order_id: str
    item: str
    amount: str
    text: str


class DoneData(BaseModel):
    state: SessionState


EVENT_DATA: dict[str, type[BaseModel]] = {
    "status": TextData,
    "reply": ReplyData,
    "escalation": EscalationData,
    "confirmation": ConfirmationData,
    "error": TextData,
    "done": DoneData,
}


def shown(event: Event) -> list[tuple[str, BaseModel]]:
    """An agent event as the customer may see it: plain words, guarded text, their own ids only."""
    if isinstance(event, Status):
        return [("status", TextData(text=event.text))]
    if isinstance(event, Reply):
        parts = event.sentences() or [event.text]
        cites = [CitationData(article_id=c.article_id, title=c.title, url=c.url) for c in event.citations]
        return [
            ("reply", ReplyData(text=s, citations=cites if i == len(parts) - 1 else [])) for i, s in enumerate(parts)
        ]
    if isinstance(event, Escalation) and event.reason not in HIDDEN_REASONS:
        return [("escalation", EscalationData(ticket_id=event.ticket_id))]
    if isinstance(event, Confirmation):
        return [
            (
                "confirmation",
                ConfirmationData(
                    refund_id=event.refund_id,
                    order_id=event.order_id,
                    item=event.item,
                    amount=event.amount,
                    text=event.text,
                ),
            )
        ]
    return []  # Error and Done: the reply already apologised; outcomes are for logs and metrics


async def session_state(store: Store, session_id: str) -> SessionState:
    """The session as its visitor may see it. A ticket shows once they were told of an escalation
    into it, so a hidden one (see HIDDEN_REASONS) stays hidden until, say, they ask for a person."""
    async with store.read() as s:
        ticket = (
            await s.scalars(select(Ticket).where(Ticket.session_id == session_id, Ticket.status != "resolved"))
        ).one_or_none()
        refund = (
            await s.scalars(
                select(Refund)
                .where(Refund.session_id == session_id, Refund.status == "awaiting_confirmation")
                .order_by(Refund.created_at.desc())
                .limit(1)
            )
        ).one_or_none()
        told = ticket is not None and (
            ticket.reason not in HIDDEN_REASONS
            or any(
                shown.get("ticket_id") == ticket.id
                for shown in await s.scalars(
                    select(WebTurnEvent.data)
                    .join(WebTurn, WebTurn.id == WebTurnEvent.turn_id)
                    .where(WebTurn.session_id == session_id, WebTurnEvent.kind == "escalation")
                )
            )
        )
    visible = ticket if told else None
    return SessionState(
        escalated=visible is not None,
        ticket=TicketView(id=visible.id, status=visible.status) if visible else None,  # type: ignore[arg-type]
        awaiting_confirmation=PendingRefund(
            refund_id=refund.id,
            order_id=refund.order_id,
            amount=format_cents(refund.amount_cents, refund.currency),
            expires_at=refund.expires_at,
        )
        if refund
        else None,
    )


# --- the turn log -----------------------------------------------------------------------------------
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
    """Another replica took this turn over (ours was presumed dead): stop without writing."""


class TurnLog:
    def __init__(self, *, deps: Deps, agent: Agent, owner: str, lease_s: float, poll_s: float) -> None:
        self.deps = deps
        self.store = deps.store
        self.clock = deps.clock
        self.agent = agent
        self.owner = owner
        self.lease = timedelta(seconds=lease_s)
        self.poll_s = poll_s
        self.closing = False
        self._version = 0
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()

    # --- wake-ups (this process only; other replicas are seen by polling) ----------------------------
    async def _bump(self) -> None:
        async with self._changed:
            self._version += 1
            self._changed.notify_all()

    async def _wait_change(self, seen: int) -> None:
        """Until something changed in this process, or a poll interval passed (other replicas)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.poll_s), self._changed:
                await self._changed.wait_for(lambda: self._version != seen)

    async def close(self, grace: float = 10.0) -> None:
        """Stop streams; let turns in flight finish for up to `grace` seconds, then cancel them (a
        turn cut off keeps its lease until it expires, and then any replica takes it over)."""
        self.closing = True
        await self._bump()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for t in pending:
                t.cancel()
            for t in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

    # --- creating and starting ------------------------------------------------------------------------
    async def create(self, session_id: str, *, kind: str, text: str, refund_id: str | None = None) -> TurnRef:
        now = self.clock.now()
        row = WebTurn(
            key=f"turn_{secrets.token_hex(12)}",
            session_id=session_id,
            kind=kind,
            text=text,
            refund_id=refund_id,
            status="queued",
            lease_owner=self.owner,
            lease_expires_at=now + self.lease,
            created_at=now,
        )
        async with self.store.write() as s:
            s.add(row)
            await s.flush()
        await self._bump()
        return TurnRef(row.id, row.key, session_id)

    async def wait_stored(self, session_id: str, n: int) -> None:
        """Until the session has at least `n` turns stored (for tests and benchmarks, which bound the
        wait with asyncio.timeout)."""
        while True:
            seen = self._version
            async with self.store.read() as s:
                count = await s.scalar(select(func.count()).where(WebTurn.session_id == session_id))
            if int(count or 0) >= n:
                return
            await self._wait_change(seen)

    def start(self, turn: TurnRef) -> asyncio.Task[None]:
        """Drive a turn we hold in the background: it goes on if the request that asked for it ends."""
        task = asyncio.create_task(self._drive(turn), name=f"web-turn-{turn.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- reading --------------------------------------------------------------------------------------
    async def find(self, key: str) -> WebTurn | None:
        async with self.store.read() as s:
            return (await s.scalars(select(WebTurn).where(WebTurn.key == key))).one_or_none()

    async def events(self, turn_id: int, *, after: int = 0) -> list[Stored]:
        async with self.store.read() as s:
            rows = await s.scalars(
                select(WebTurnEvent)
                .where(WebTurnEvent.turn_id == turn_id, WebTurnEvent.seq > after)
                .order_by(WebTurnEvent.seq)
            )
            return [Stored(r.seq, r.kind, r.data) for r in rows]

    async def follow(self, turn_id: int, *, after: int, keepalive_s: float = 15.0) -> AsyncIterator[Stored | None]:
        """The turn's stored events after `after`, then each new one as it is stored, up to `done`.
        Yields None when nothing happened for `keepalive_s` (for a keep-alive comment)."""
        quiet = 0.0
        while not self.closing:
            seen = self._version
            async with self.store.read() as s:
                turn = await s.get(WebTurn, turn_id)  # read first: once finished, all its events are stored
            for event in await self.events(turn_id, after=after):
                quiet, after = 0.0, event.seq
                yield event
                if event.kind == "done":
                    return
            if turn is None or turn.status not in UNFINISHED:
                return
            if turn.lease_expires_at and turn.lease_expires_at < self.clock.now():
                await self._take_over(turn.id)
            if quiet >= keepalive_s:
                quiet = 0.0
                yield None
            started = asyncio.get_running_loop().time()
            await self._wait_change(seen)
            quiet += asyncio.get_running_loop().time() - started

    # --- running --------------------------------------------------------------------------------------
    async def _drive(self, turn: TurnRef) -> None:
        keeper = asyncio.create_task(self._keep_lease(turn.id))
        try:
            while True:
                seen = self._version
                ready = await self._ready(turn)
                if ready is None:
                    return  # finished or taken over elsewhere
                if ready and (row := await self._claim(turn)) is not None:
                    break
                await self._wait_change(seen)
            await self._run(row)
        except Exception:  # the store failed while waiting: the lease runs out, and a reader takes it over
            log.exception("web turn %s could not be driven", turn.key)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            await self._bump()

    async def _claim(self, turn: TurnRef) -> WebTurn | None:
        now = self.clock.now()
        earlier = aliased(WebTurn)
        blocked = exists().where(
            earlier.session_id == turn.session_id, earlier.id < turn.id, earlier.status.in_(UNFINISHED)
        )
        stmt = (
            update(WebTurn)
            .where(WebTurn.id == turn.id, WebTurn.status == "queued", WebTurn.lease_owner == self.owner, ~blocked)
            .values(status="running", started_at=now, lease_expires_at=now + self.lease)
            .returning(WebTurn)
            .execution_options(synchronize_session=False)
        )
        try:
            async with self.store.write() as s:
                return (await s.scalars(stmt)).one_or_none()
        except IntegrityError:  # a later turn of the session, committed first, is running: wait for it
            return None

    async def _ready(self, turn: TurnRef) -> bool | None:
        """A read before the claim's write (idle waiting never takes SQLite's write lock): whether our
        queued turn looks claimable, or None when it is no longer ours. Takes over, on the way, the
        session's unfinished turns whose replica died."""
        async with self.store.read() as s:
            rows = list(
                await s.scalars(
                    select(WebTurn).where(WebTurn.session_id == turn.session_id, WebTurn.status.in_(UNFINISHED))
                )
            )
        mine = next((r for r in rows if r.id == turn.id), None)
        if mine is None or mine.lease_owner != self.owner or mine.status != "queued":
            return None
        now = self.clock.now()
        others = [r for r in rows if r.id < turn.id or r.status == "running"]
        for r in others:
            if r.id != turn.id and r.lease_expires_at is not None and r.lease_expires_at < now:
                await self._take_over(r.id)
        return not others

    async def _take_over(self, turn_id: int) -> None:
        now = self.clock.now()
        stmt = (
            update(WebTurn)
            .where(WebTurn.id == turn_id, WebTurn.status.in_(UNFINISHED), WebTurn.lease_expires_at < now)
            .values(lease_owner=self.owner, lease_expires_at=now + self.lease)
            .returning(WebTurn)
            .execution_options(synchronize_session=False)
        )
        async with self.store.write() as s:
            row = (await s.scalars(stmt)).one_or_none()
        if row is None:
            return  # finished meanwhile, or another replica took it
        log.warning("web turn %s: its replica's lease expired; taken over (%s)", row.key, row.status)
        if row.status == "queued":
            self.start(TurnRef(row.id, row.key, row.session_id))
        else:
            async with self.store.read() as s:
                last = await s.scalar(select(func.max(WebTurnEvent.seq)).where(WebTurnEvent.turn_id == row.id))
            await self._fail(row, _Writer(self, row.id, int(last or 0)))

    async def _keep_lease(self, turn_id: int) -> None:
        every = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(every)  # a heartbeat interval, not synchronization
            try:
                async with self.store.write() as s:
                    res = await s.execute(
                        update(WebTurn)
                        .where(WebTurn.id == turn_id, WebTurn.lease_owner == self.owner, WebTurn.status.in_(UNFINISHED))
                        .values(lease_expires_at=self.clock.now() + self.lease)
                    )
            except Exception:
                log.warning("could not renew the lease on web turn %d", turn_id, exc_info=True)
                continue
            if not res.rowcount:  # type: ignore[attr-defined]
                return

    async def _run(self, turn: WebTurn) -> None:
        out = _Writer(self, turn.id)
        try:
            ctx = await load_context(self.deps, turn.session_id)
            assert ctx is not None
            convo = Conversation(self.agent, ctx)
            if turn.kind == "message":
                async for event in convo.say(turn.text):
                    for kind, data in shown(event):
                        await out.add(kind, data)
            else:
                async with self.store.read() as s:
                    refund = await s.get(Refund, turn.refund_id or "")
                yes = turn.kind == "confirm"
                text = await convo.answer(refund, yes) if refund is not None else wording.for_code(Code.NOT_FOUND)
                for kind, data in shown(Reply(text)):
                    await out.add(kind, data)
            await out.add("done", DoneData(state=await session_state(self.store, turn.session_id)), finish="done")
        except LeaseLost:
            log.warning("web turn %s: lease lost to another replica; stopped", turn.key)
        except Exception:
            log.exception("web turn %s failed", turn.key)
            await self._fail(turn, out)

    async def _fail(self, turn: WebTurn, out: _Writer) -> None:
        """Finish a turn that broke (or whose replica died mid-turn): an apology, and a ticket so a
        person follows up as the apology says."""
        try:
            async with self.store.write() as s:
                await open_or_update(
                    s,
                    self.deps,
                    session_id=turn.session_id,
                    priority="P2",
                    reason="dead_letter",
                    summary=f"A website chat message could not be answered (turn {turn.key}).",
                )
            await out.add("error", TextData(text=wording.GENERIC_FALLBACK))
            state = await session_state(self.store, turn.session_id)
            await out.add("done", DoneData(state=state), finish="failed")
        except LeaseLost:
            log.warning("web turn %s: lease lost while failing it", turn.key)
        except Exception:  # the store is down: the lease expires, and the turn is failed again later
            log.exception("web turn %s: could not record its failure", turn.key)


class _Writer:
    """Appends a turn's events, each in one transaction that first proves we still hold the lease."""

    def __init__(self, log_: TurnLog, turn_id: int, seq: int = 0) -> None:
        self.log = log_
        self.turn_id = turn_id
        self.seq = seq

    async def add(self, kind: str, data: BaseModel, *, finish: str | None = None) -> None:
        tl, now = self.log, self.log.clock.now()
        values: dict[str, Any] = {"lease_expires_at": now + tl.lease}
        if finish:
            values = {"status": finish, "finished_at": now, "lease_expires_at": None}
        async with tl.store.write() as s:
            fenced = await s.execute(
                update(WebTurn)
                .where(WebTurn.id == self.turn_id, WebTurn.lease_owner == tl.owner, WebTurn.status == "running")
                .values(**values)
            )
            if not fenced.rowcount:  # type: ignore[attr-defined]
                raise LeaseLost(self.turn_id)
            s.add(
                WebTurnEvent(
                    turn_id=self.turn_id, seq=self.seq + 1, kind=kind, data=data.model_dump(mode="json"), created_at=now
                )
            )
        self.seq += 1
        await tl._bump()


# --- rate limiting ----------------------------------------------------------------------------------
async def hit(store: Store, *, subject: str, now: datetime, limit: int, window_s: int) -> float:
    """Count a request in the identity's fixed window (one atomic upsert, shared by every replica).
    Returns 0 when allowed, else the seconds until the window ends."""
    epoch = now.timestamp()
    start = datetime.fromtimestamp(epoch - epoch % window_s, tz=now.tzinfo)
    insert = postgresql.insert if store.dialect == "postgresql" else sqlite.insert
    stmt = insert(WebRateLimit).values(subject=subject, window_start=start, count=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=["subject"],
        set_={
            "count": case((WebRateLimit.window_start == stmt.excluded.window_start, WebRateLimit.count + 1), else_=1),
            "window_start": stmt.excluded.window_start,
        },
    ).returning(WebRateLimit.count)
    async with store.write() as s:
        count = (await s.execute(stmt)).scalar_one()
    if count <= limit:
        return 0.0
    return max((start + timedelta(seconds=window_s) - now).total_seconds(), 1.0)
