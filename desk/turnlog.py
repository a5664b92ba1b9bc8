"""The turn log of streaming faces (the website): each request is a turn row with its work item, and
what the turn says is stored as numbered events, so a reader can re-read from any event and any
replica can serve any reader.

    create ─▶ a turn row and its work item, in one transaction ─▶ a worker (any replica) claims
    the item ─▶ `start` ─▶ `append` each event, fenced by the item's lease ─▶ the last one finishes it

Who may see what: a session, its turns and its refunds answer only to the identity (`subject`)
that created the session; to anyone else they do not exist.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from desk.errors import LeaseLost
from desk.inbox import held
from storage.models import ChatSession, InboxItem, Refund, Ticket, WebTurn, WebTurnEvent
from storage.states import UNFINISHED_WEB_TURNS, InboxStatus, RefundStatus, WebTurnStatus
from storage.types import format_cents
from tools.context import Deps
from tools.tickets import visible_open

Turn = WebTurn  # what faces hold of a turn: they read it, the desk writes it


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


@dataclass(frozen=True, slots=True)
class Pending:
    refund_id: str
    order_id: str
    amount: str
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """A session as its visitor may see it."""

    ticket_ref: str | None  # the open ticket's public reference, once the visitor was told of it
    ticket_status: str | None
    pending: Pending | None  # the refund waiting for their Confirm
    with_person: bool  # a member of the support team has the conversation; the bot is quiet


# --- creating and finding ---------------------------------------------------------------------------
async def create(
    deps: Deps, session_id: str, *, kind: str, text: str, refund_id: str | None = None, client: str | None = None
) -> TurnRef:
    """The turn and its work item in one transaction: a turn is never stored without its work.
    `client` (an anonymous visitor's hashed address) sets its new-ticket quota, stored with it so
    that whichever replica runs the turn applies it."""
    now = deps.clock.now()
    key = f"turn_{secrets.token_hex(12)}"
    async with deps.store.write(ack=True) as s:  # the visitor waits for its 202
        item = InboxItem(
            face="web",
            kind=kind,
            conversation=f"web:{session_id}",
            session_id=session_id,
            text=text,
            payload={"turn": key},
            status=InboxStatus.PENDING,
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
            status=WebTurnStatus.QUEUED,
            created_at=now,
        )
        s.add(row)
        await s.flush()
    return TurnRef(row.id, key, session_id)


async def count(deps: Deps, session_id: str) -> int:
    async with deps.store.read() as s:
        return int(await s.scalar(select(func.count()).where(WebTurn.session_id == session_id)) or 0)


async def owned_session(deps: Deps, session_id: str, *, subject: str, channel: str) -> str | None:
    """The session's id if `subject` opened it on `channel`; None for anyone else's or none."""
    async with deps.store.read() as s:
        row = await s.get(ChatSession, session_id)
    return row.id if row is not None and row.channel == channel and row.subject == subject else None


async def owned_turn(deps: Deps, key: str, *, subject: str) -> Turn | None:
    async with deps.store.read() as s:
        turn = (await s.scalars(select(WebTurn).where(WebTurn.key == key))).one_or_none()
        session = await s.get(ChatSession, turn.session_id) if turn else None
    return turn if session is not None and session.subject == subject else None


async def owned_refund(deps: Deps, refund_id: str, *, subject: str, channel: str) -> tuple[str, str] | None:
    """(refund id, session id) if the refund was prepared in a session `subject` opened on `channel`."""
    async with deps.store.read() as s:
        refund = await s.get(Refund, refund_id)
        session = await s.get(ChatSession, refund.session_id) if refund and refund.session_id else None
    if refund is None or session is None or session.channel != channel or session.subject != subject:
        return None
    return refund.id, session.id


async def of_item(deps: Deps, item_id: int) -> Turn | None:
    async with deps.store.read() as s:
        return (await s.scalars(select(WebTurn).where(WebTurn.inbox_id == item_id))).one_or_none()


# --- reading ----------------------------------------------------------------------------------------
async def events(deps: Deps, turn_id: int, *, after: int = 0) -> list[Stored]:
    async with deps.store.read() as s:
        return await _events(s, turn_id, after)


async def events_and_finished(deps: Deps, turn_id: int, *, after: int) -> tuple[list[Stored], bool]:
    """The turn's events after `after`, and whether it is finished (its status read first: once
    finished, all its events are stored)."""
    async with deps.store.read() as s:
        status = await s.scalar(select(WebTurn.status).where(WebTurn.id == turn_id))
        new = await _events(s, turn_id, after)
    return new, status not in UNFINISHED_WEB_TURNS or any(e.kind == "done" for e in new)


async def last_seq(deps: Deps, turn_id: int) -> int:
    async with deps.store.read() as s:
        return int(await s.scalar(select(func.max(WebTurnEvent.seq)).where(WebTurnEvent.turn_id == turn_id)) or 0)


async def _events(s: Any, turn_id: int, after: int) -> list[Stored]:
    rows = await s.scalars(
        select(WebTurnEvent).where(WebTurnEvent.turn_id == turn_id, WebTurnEvent.seq > after).order_by(WebTurnEvent.seq)
    )
    return [Stored(r.seq, r.kind, r.data) for r in rows]


# --- running ----------------------------------------------------------------------------------------
async def start(deps: Deps, turn_id: int) -> None:
    async with deps.store.write() as s:
        await s.execute(
            update(WebTurn)
            .where(WebTurn.id == turn_id, WebTurn.status == WebTurnStatus.QUEUED)
            .values(status=WebTurnStatus.RUNNING, started_at=deps.clock.now())
        )


async def append(
    deps: Deps,
    turn_id: int,
    *,
    seq: int,
    kind: str,
    data: dict[str, Any],
    lease: tuple[int, int, str] | None,
    finish: WebTurnStatus | None = None,
) -> None:
    """One event, in one transaction that first proves the worker still holds the turn's work item
    (`lease`: item id, attempt, owner); a dead letter's last words need none. Raises LeaseLost."""
    now = deps.clock.now()
    conds: list[Any] = [WebTurn.id == turn_id]
    if lease is not None:
        conds.append(held(lease[0], lease[1], owner=lease[2], until=now))
    values: dict[str, Any] = {"status": finish, "finished_at": now} if finish else {"status": WebTurnStatus.RUNNING}
    async with deps.store.write() as s:
        fenced = await s.execute(update(WebTurn).where(*conds).values(**values))
        if not fenced.rowcount:  # type: ignore[attr-defined]
            raise LeaseLost(turn_id)
        s.add(WebTurnEvent(turn_id=turn_id, seq=seq, kind=kind, data=data, created_at=now))


# --- the session, as its visitor may see it ---------------------------------------------------------
async def session_facts(deps: Deps, session_id: str) -> SessionFacts:
    """A ticket shows once they were told of an escalation into it, so a hidden one (another
    customer's order) stays hidden until, say, they ask for a person."""
    async with deps.store.read() as s:
        session = await s.get(ChatSession, session_id)
        ticket = (await s.scalars(select(Ticket).where(visible_open(session_id)))).one_or_none()
        refund = (
            await s.scalars(
                select(Refund)
                .where(Refund.session_id == session_id, Refund.status == RefundStatus.AWAITING_CONFIRMATION)
                .order_by(Refund.created_at.desc())
                .limit(1)
            )
        ).one_or_none()
        told = ticket is not None  # a hidden ticket is its own, never the session's visible one
    visible = ticket if told else None
    pending = None
    if refund is not None:
        amount = format_cents(refund.amount_cents, refund.currency)
        pending = Pending(refund.id, refund.order_id, amount, refund.expires_at)
    return SessionFacts(
        ticket_ref=str(visible.public_ref) if visible else None,
        ticket_status=visible.status if visible else None,
        pending=pending,
        with_person=bool(session and session.handed_off_by),
    )
