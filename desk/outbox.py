"""The outgoing message log: what the desk has to say, written as rows before anyone delivers it.

Every act that speaks writes here, in its own transaction: a turn's replies and refund prompts, a
staff reply, approve/deny notices, a person joining or handing back, a dead letter's apology, and
(for staff) relays of a handed-off customer's words and alerts. Each face delivers the rows of its
own sessions exactly once: Slack posts them into the thread, the website streams them, the shell
prints them. The row, not the face, is the record of what was said.

Delivery's bookkeeping is here too, so a face only sends. A row goes `pending → posting → posted`
(or `skipped`, see storage.states.OUTBOX): `fence` moves it to `posting` before every attempt and
is refused unless the poster still holds its lease (a turn's rows: the work item's; any other row:
the row's own delivery lease) with more time left than an attempt can take.

    LeaseLost      the fence refused: another worker owns the row (or the work item) now; nothing
                   was posted, and the caller must not post
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from desk.board import POSTING
from desk.errors import LeaseLost
from desk.inbox import held
from desk.sessions import slack_thread
from storage.engine import UNSYNCED
from storage.models import ChatSession, InboxItem, OutboxMessage, Ticket
from storage.states import UNDELIVERED_OUTBOX, UNFINISHED_INBOX, OutboxStatus
from tools.context import Deps

Row = OutboxMessage  # what faces hold of a row: they read it, the desk writes it
# what a customer may receive; relays and alerts are for staff only
CUSTOMER_KINDS = ("reply", "confirmation", "notice", "staff_reply", "apology")


def add(
    s: AsyncSession,
    deps: Deps,
    *,
    session: ChatSession | None,
    kind: str,
    text: str,
    author: str = "bot",
    data: dict[str, Any] | None = None,
    inbox_id: int | None = None,
    seq: int = 0,
    channel: str | None = None,
    thread_ts: str | None = None,
    ephemeral_user: str | None = None,
) -> OutboxMessage:
    """A row in the caller's transaction. A Slack session's rows carry its thread as their address;
    `channel`/`thread_ts` override it (an alert for the staff channel, a dead letter with no session)."""
    where = slack_thread(session) if session is not None else None
    row = OutboxMessage(
        session_id=session.id if session is not None else None,
        inbox_id=inbox_id,
        seq=seq,
        kind=kind,
        author=author,
        text=text,
        data=data,
        channel=channel or (where[0] if where else None),
        thread_ts=thread_ts or (where[1] if where and not channel else None),
        ephemeral_user=ephemeral_user,
        status=OutboxStatus.PENDING,
        created_at=deps.clock.now(),
    )
    s.add(row)
    return row


async def note_for(
    deps: Deps, *, inbox_id: int | None, channel: str | None, thread_ts: str | None, user: str | None, text: str
) -> None:
    """A note only `user` sees, in a thread of no session of theirs (another customer's thread,
    someone else's button), written in a transaction of its own."""
    async with deps.store.write() as s:
        add(
            s,
            deps,
            session=None,
            kind="ephemeral",
            text=text,
            inbox_id=inbox_id,
            channel=channel,
            thread_ts=thread_ts,
            ephemeral_user=user,
        )


async def for_session(
    deps: Deps, session_id: str, *, after: int = 0, undelivered: bool = False, limit: int = 200
) -> list[OutboxMessage]:
    """A session's customer-facing rows after id `after` (for streams and printers), oldest first."""
    query = select(OutboxMessage).where(
        OutboxMessage.session_id == session_id,
        OutboxMessage.id > after,
        OutboxMessage.kind.in_(CUSTOMER_KINDS),
        OutboxMessage.ephemeral_user.is_(None),
    )
    if undelivered:
        query = query.where(OutboxMessage.status == OutboxStatus.PENDING)
    async with deps.store.read() as s:
        return list((await s.scalars(query.order_by(OutboxMessage.id).limit(limit))).all())


async def delivered(deps: Deps, ids: Sequence[int]) -> int:
    """Rows a face has shown (a web response, a shell print): never shown again as new."""
    if not ids:
        return 0
    async with deps.store.write() as s:
        res = await s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(list(ids)), OutboxMessage.status == OutboxStatus.PENDING)
            .values(status=OutboxStatus.POSTED, posted_at=deps.clock.now())
        )
        return int(res.rowcount or 0)  # type: ignore[attr-defined]


# --- delivery ---------------------------------------------------------------------------------------
async def item_rows(deps: Deps, item_id: int) -> tuple[list[Row], bool]:
    """A work item's outgoing rows, in order, and whether a person has taken over their session."""
    async with deps.store.read() as s:
        found = (await s.execute(_ROWS_AND_HANDOFF, {"item": item_id})).all()
    return [row for row, _ in found], any(by for _, by in found)


async def skip_unposted(deps: Deps, item_id: int) -> None:
    """The conversation was handed to a person before these replies went out: never post them."""
    async with deps.store.write() as s:
        await s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.inbox_id == item_id, OutboxMessage.status == OutboxStatus.PENDING)
            .values(status=OutboxStatus.SKIPPED, posted_at=deps.clock.now()),
            execution_options=UNSYNCED,
        )


async def loose_rows(deps: Deps, limit: int = 50) -> list[Row]:
    """Rows with a Slack address written outside a running turn (staff replies, notices, relays,
    alerts, dead letters' apologies) whose delivery lease is free, oldest first."""
    now = deps.clock.now()
    async with deps.store.read() as s:
        rows = await s.scalars(
            select(OutboxMessage)
            .outerjoin(InboxItem, InboxItem.id == OutboxMessage.inbox_id)
            .where(
                OutboxMessage.status.in_(UNDELIVERED_OUTBOX),
                OutboxMessage.channel.is_not(None),
                or_(OutboxMessage.inbox_id.is_(None), InboxItem.status.not_in(UNFINISHED_INBOX)),
                or_(OutboxMessage.lease_expires_at.is_(None), OutboxMessage.lease_expires_at < now),
            )
            .order_by(OutboxMessage.id)
            .limit(limit)
        )
        return list(rows.all())


async def staff_thread(deps: Deps, row: Row) -> tuple[bool, str | None]:
    """Whether a relay or an alert belongs to a ticket, and that ticket's thread in the staff channel
    once it is posted."""
    ticket_id = (row.data or {}).get("ticket_id")
    if not ticket_id:
        return False, None
    async with deps.store.read() as s:
        found = (await s.execute(select(Ticket.slack_ts).where(Ticket.id == int(ticket_id)))).one_or_none()
    if found is None:
        return False, None
    return True, found[0] if found[0] not in (None, "", POSTING) else None


async def fence(deps: Deps, row: Row, *, owner: str, margin: timedelta, item: tuple[int, int] | None = None) -> None:
    """Move the row to `posting` (counting the attempt) if its poster may post now: `item` (id,
    attempt) when the row is a turn's and its work item's lease fences it, else the row's own
    delivery lease, taken by `owner`. Raises LeaseLost when refused."""
    now = deps.clock.now()
    values: dict[str, object] = {
        "status": OutboxStatus.POSTING,
        "attempt": OutboxMessage.attempt + 1,
        "thread_ts": row.thread_ts,
    }
    conds: list[object] = [OutboxMessage.id == row.id, OutboxMessage.status.in_(UNDELIVERED_OUTBOX)]
    if item is None:
        conds.append(
            or_(
                OutboxMessage.lease_expires_at.is_(None),
                OutboxMessage.lease_expires_at < now,
                and_(OutboxMessage.lease_owner == owner, OutboxMessage.lease_expires_at > now + margin),
            )
        )
        lease = timedelta(seconds=deps.settings.inbox_lease_seconds)
        values |= {"lease_owner": owner, "lease_expires_at": now + lease}
    else:
        conds.append(held(item[0], item[1], owner=owner, until=now + margin))
    async with deps.store.write() as s:
        res = await s.execute(update(OutboxMessage).where(*conds).values(**values), execution_options=UNSYNCED)
    if not res.rowcount:  # type: ignore[attr-defined]
        raise LeaseLost(row.id)


async def mark_posted(deps: Deps, row_id: int, ts: str | None) -> None:
    async with deps.store.write() as s:
        await s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == row_id, OutboxMessage.status != OutboxStatus.POSTED)
            .values(status=OutboxStatus.POSTED, slack_ts=ts, posted_at=deps.clock.now(), lease_expires_at=None),
            execution_options=UNSYNCED,
        )


# built once: a statement's cache key is computed once per object, not at each call
_ROWS_AND_HANDOFF = (
    select(OutboxMessage, ChatSession.handed_off_by)
    .outerjoin(ChatSession, ChatSession.id == OutboxMessage.session_id)
    .where(OutboxMessage.inbox_id == bindparam("item"))
    .order_by(OutboxMessage.seq)
)
