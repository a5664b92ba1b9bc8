"""The outgoing message log: what the desk has to say, written as rows before anyone delivers it.

Every act that speaks writes here, in its own transaction: a turn's replies and refund prompts, a
staff reply, approve/deny notices, a person joining or handing back, a dead letter's apology, and
(for staff) relays of a handed-off customer's words and alerts. Each face delivers the rows of its
own sessions exactly once: Slack posts them into the thread, the website streams them, the shell
prints them. The row, not the face, is the record of what was said.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ChatSession, OutboxMessage
from storage.states import OutboxStatus
from tools.context import Deps
from tools.sessions import slack_thread

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
