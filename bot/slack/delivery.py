"""Everything supportbot posts to Slack, and the outgoing log's rows posted exactly once.

Rows (see `tools.outbox`) are posted in two ways: a turn's rows by the worker that holds the turn's
work item, fenced by that item's lease; every other row of a Slack address (a staff reply, a
notice, a relay or alert in the staff channel, a dead letter's apology) by `deliver_loose`, under
the row's own delivery lease, on any replica.

The fence: before every HTTP attempt, one conditional UPDATE moves the row to `posting` (and
counts the attempt), and is refused unless the poster still holds its lease with more time left
than an HTTP call can take. Refused means another worker owns the row now: we stop, never post.
Posting calls use a client without slack_sdk's retry handlers, so a 429 (Slack did not post) or
a dropped connection (it may have) is retried here, each attempt fenced again. Each post carries
metadata naming its row; only a row an earlier attempt may have posted (a crash, a timeout) is
looked for in the thread (conversations.replies, rate limited hard) before posting again.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient
from sqlalchemy import and_, bindparam, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.queue import UNFINISHED, Claimed, Queue
from bot.slack.blocks import row_message
from bot.slack.client import HTTP_TIMEOUT_S, post_timeout
from bot.slack.limits import LIMITS
from storage.engine import ALONE, Store
from storage.models import ChatSession, InboxItem, OutboxMessage, Ticket
from storage.settings import Settings
from storage.types import Clock

log = logging.getLogger(__name__)
REPLY_EVENT = "supportbot_reply"
POST_ATTEMPTS = 6


class LeaseLost(Exception):
    """The fence refused a post: another worker holds the lease now. Nothing was posted."""


def crash_point(settings: Settings, name: str) -> None:
    """Fault injection for the crash tests: die here, hard, when FAULT_CRASH_AT names this point."""
    if settings.fault_crash_at == name:
        log.warning("FAULT_CRASH_AT=%s: killing the process", name)
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class SlackTimer:
    """Time spent awaiting Slack (pacing included) within one turn, for the overhead metric."""

    seconds: float = 0.0
    calls: int = 0


TURN_TIMER: contextvars.ContextVar[SlackTimer | None] = contextvars.ContextVar("slack_timer", default=None)


# one token bucket row per key, on the database's clock (replicas' clocks may differ): a reservation
# takes a token, and a negative balance is the wait before the call may go
_SHARED_RESERVE = text(
    "INSERT INTO slack_pace (key, tokens, at) VALUES (:key, :burst - 1, clock_timestamp()) "
    "ON CONFLICT (key) DO UPDATE SET tokens = LEAST(:burst, slack_pace.tokens + "
    "EXTRACT(EPOCH FROM clock_timestamp() - slack_pace.at) * :rate) - 1, at = clock_timestamp() "
    "RETURNING tokens"
)


class SlackPacer:
    """Paces our Web API calls to Slack's published limits (`bot.slack.limits`), so bursts queue
    here instead of collecting 429s. Each caller reserves the next free slot of its bucket.

    With a PostgreSQL `store` the buckets are rows every replica draws on (one statement a call),
    so that two replicas together stay under the limit instead of each using all of it; if the
    database cannot be reached, this process paces on its own until it can."""

    def __init__(self, *, enabled: bool = True, store: Store | None = None) -> None:
        self.enabled = enabled  # off: SLACK_PACE=false, against a Slack without limits (the benchmark)
        self.store = store if store is not None and store.dialect == "postgresql" else None
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # key -> (tokens, when)

    def reserve(self, method: str, channel: str | None) -> float:
        """Seconds to wait before this call may go (0 for methods without a known limit), in this process."""
        limit = LIMITS.get(method)
        if limit is None or not self.enabled:
            return 0.0
        rate, burst, per_channel = limit
        key = (method, (channel or "") if per_channel else "")
        now = time.monotonic()
        tokens, when = self._buckets.get(key, (burst, now))
        tokens = min(burst, tokens + (now - when) * rate) - 1
        self._buckets[key] = (tokens, now)
        return 0.0 if tokens >= 0 else -tokens / rate

    async def reserve_shared(self, method: str, channel: str | None) -> float:
        """The same reservation from the bucket all replicas share (this process's when the store fails)."""
        limit = LIMITS.get(method)
        if limit is None or not self.enabled or self.store is None:
            return self.reserve(method, channel)
        rate, burst, per_channel = limit
        key = f"{method}:{channel or ''}" if per_channel else method
        try:
            async with self.store.write() as s:
                tokens = float(
                    (await s.execute(_SHARED_RESERVE, {"key": key, "burst": burst, "rate": rate})).scalar_one()
                )
        except Exception as exc:
            log.warning("shared Slack pacing unavailable (%s); pacing this process alone", type(exc).__name__)
            return self.reserve(method, channel)
        return 0.0 if tokens >= 0 else -tokens / rate

    async def wait(self, method: str, channel: str | None) -> None:
        delay = await self.reserve_shared(method, channel)
        if delay > 0:
            await asyncio.sleep(delay)  # pacing to Slack's limit, not synchronization


@dataclass
class SlackOut:
    client: AsyncWebClient  # with slack_sdk's retry handlers
    poster: AsyncWebClient  # without: posting retries here, fenced
    store: Store
    clock: Clock
    settings: Settings
    owner: str
    pacer: SlackPacer = field(default_factory=SlackPacer)

    @property
    def margin(self) -> timedelta:
        """What a lease must still have left when a post starts: more than the post can take."""
        return timedelta(seconds=post_timeout(self.settings) + 0.5)

    @property
    def row_lease(self) -> timedelta:
        return timedelta(seconds=self.settings.inbox_lease_seconds)

    async def call(
        self, method: str, *, http_verb: str = "POST", client: AsyncWebClient | None = None, **kwargs: Any
    ) -> Any:
        """One Web API call: paced per channel, timed for the turn."""
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        started = time.perf_counter()
        try:
            await self.pacer.wait(method, kwargs.get("channel"))
            api = client or self.client
            if http_verb == "GET":
                return await api.api_call(method, http_verb="GET", params=kwargs)
            return await api.api_call(method, json=kwargs)
        finally:
            timer = TURN_TIMER.get()
            if timer is not None:
                timer.seconds += time.perf_counter() - started
                timer.calls += 1

    # --- a turn's rows, fenced by its work item's lease ------------------------------------------------
    async def rows_of(self, item_id: int) -> list[OutboxMessage]:
        async with self.store.read() as s:
            return await item_rows(s, item_id)

    async def deliver_item(self, item: Claimed, queue: Queue, rows: list[OutboxMessage] | None = None) -> int:
        """Post every unposted row of a work item (`rows` when the caller has just read them), in order,
        while holding its lease."""
        posted = 0
        for row in rows if rows is not None else await self.rows_of(item.id):
            if row.status in ("posted", "skipped") or row.channel is None:
                continue
            fence = queue.holds(item.id, item.attempts, margin=self.margin)
            await self._post(row, fence=fence, takes_lease=False)
            posted += 1
        return posted

    async def skip_unposted(self, item_id: int) -> None:
        """The conversation was handed to a person before these replies went out: never post them."""
        async with self.store.write() as s:
            await s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.inbox_id == item_id, OutboxMessage.status == "pending")
                .values(status="skipped", posted_at=self.clock.now()),
                execution_options=ALONE,
            )

    # --- every other row, under its own delivery lease ---------------------------------------------
    async def deliver_loose(self, limit: int = 50) -> int:
        """Post rows written outside a running turn (staff replies, notices, relays, alerts, dead
        letters' apologies), on any replica: each under its own lease, so exactly one replica posts it."""
        now = self.clock.now()
        async with self.store.read() as s:
            rows = list(
                (
                    await s.scalars(
                        select(OutboxMessage)
                        .outerjoin(InboxItem, InboxItem.id == OutboxMessage.inbox_id)
                        .where(
                            OutboxMessage.status.in_(("pending", "posting")),
                            OutboxMessage.channel.is_not(None),
                            or_(OutboxMessage.inbox_id.is_(None), InboxItem.status.not_in(UNFINISHED)),
                            or_(OutboxMessage.lease_expires_at.is_(None), OutboxMessage.lease_expires_at < now),
                        )
                        .order_by(OutboxMessage.id)
                        .limit(limit)
                    )
                ).all()
            )
        posted = 0
        for row in rows:
            try:
                if await self._ready(row):
                    await self._post(row, fence=None, takes_lease=True)
                    posted += 1
            except LeaseLost:
                continue  # another replica took this row
            except Exception:
                log.exception("could not post outgoing message %d (tried again later)", row.id)
        return posted

    async def _ready(self, row: OutboxMessage) -> bool:
        """Relays go into their ticket's thread in the staff channel and wait until it is posted;
        alerts go there too when it is, else straight to the channel."""
        if row.kind not in ("relay", "alert") or row.thread_ts:
            return True
        ticket_id = (row.data or {}).get("ticket_id")
        async with self.store.read() as s:
            ticket = await s.get(Ticket, int(ticket_id)) if ticket_id else None
        shown = ticket is not None and ticket.slack_ts not in (None, "", "posting")
        if shown and ticket is not None:
            row.thread_ts = ticket.slack_ts
        return shown or ticket is None or row.kind == "alert"

    # --- one row --------------------------------------------------------------------------------------
    async def _fence(self, row: OutboxMessage, fence: Any, takes_lease: bool) -> None:
        now = self.clock.now()
        values: dict[str, Any] = {"status": "posting", "attempt": OutboxMessage.attempt + 1, "thread_ts": row.thread_ts}
        conds: list[Any] = [OutboxMessage.id == row.id, OutboxMessage.status.in_(("pending", "posting"))]
        if takes_lease:
            conds.append(
                or_(
                    OutboxMessage.lease_expires_at.is_(None),
                    OutboxMessage.lease_expires_at < now,
                    and_(OutboxMessage.lease_owner == self.owner, OutboxMessage.lease_expires_at > now + self.margin),
                )
            )
            values |= {"lease_owner": self.owner, "lease_expires_at": now + self.row_lease}
        else:
            conds.append(fence)
        async with self.store.write() as s:
            res = await s.execute(update(OutboxMessage).where(*conds).values(**values), execution_options=ALONE)
        if not res.rowcount:  # type: ignore[attr-defined]
            raise LeaseLost(row.id)

    async def _post(self, row: OutboxMessage, *, fence: Any, takes_lease: bool) -> None:
        """Post one row exactly once: fenced before each attempt; the thread looked at first only
        when an earlier attempt may have reached Slack."""
        maybe_posted = row.status == "posting"
        for attempt in range(1, POST_ATTEMPTS + 1):
            if maybe_posted and row.ephemeral_user is None:
                found = await self._already_posted(row)
                if found:
                    await self._mark_posted(row, found)
                    return
            await self._fence(row, fence, takes_lease)
            try:
                ts = await self._send(row)
            except SlackApiError as exc:
                status = exc.response.status_code
                if status == 429 and attempt < POST_ATTEMPTS:
                    await asyncio.sleep(_retry_after(exc))  # Slack's own pace, not synchronization
                    continue
                maybe_posted = status >= 500
                if not maybe_posted or attempt == POST_ATTEMPTS:
                    raise
                continue
            except (aiohttp.ClientError, TimeoutError):
                if attempt == POST_ATTEMPTS:
                    raise
                maybe_posted = True
                continue
            crash_point(self.settings, "after_post")
            await self._mark_posted(row, ts)
            return

    async def _send(self, row: OutboxMessage) -> str | None:
        text, blocks = row_message(row.kind, row.text, row.data, row.author)
        if row.ephemeral_user:
            resp = await self.call(
                "chat.postEphemeral",
                client=self.poster,
                channel=row.channel,
                user=row.ephemeral_user,
                thread_ts=row.thread_ts,
                text=text,
                blocks=blocks,
            )
            return resp.get("message_ts")
        resp = await self.call(
            "chat.postMessage",
            client=self.poster,
            channel=row.channel,
            thread_ts=row.thread_ts,
            text=text,
            blocks=blocks,
            metadata={"event_type": REPLY_EVENT, "event_payload": {"row": row.id}},
            unfurl_links=False,
            unfurl_media=False,
        )
        return resp.get("ts")

    async def _mark_posted(self, row: OutboxMessage, ts: str | None) -> None:
        async with self.store.write() as s:
            await s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row.id, OutboxMessage.status != "posted")
                .values(status="posted", slack_ts=ts, posted_at=self.clock.now(), lease_expires_at=None),
                execution_options=ALONE,
            )

    async def _already_posted(self, row: OutboxMessage) -> str | None:
        if not row.channel:
            return None
        cursor = None
        while True:
            resp = await self.call(
                "conversations.replies",
                channel=row.channel,
                ts=row.thread_ts,
                include_all_metadata=True,
                limit=200,
                cursor=cursor,
            )
            for m in resp.get("messages") or []:
                meta = m.get("metadata") or {}
                if meta.get("event_type") == REPLY_EVENT and _names(meta.get("event_payload") or {}, row):
                    return str(m.get("ts"))
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None

    # --- other posts ------------------------------------------------------------------------------
    async def respond(self, response_url: str, *, text: str, blocks: list[dict[str, Any]] | None) -> None:
        """Replace the message a button was pressed on, through the click's response_url."""
        started = time.perf_counter()
        try:
            resp = await AsyncWebhookClient(response_url, timeout=int(HTTP_TIMEOUT_S)).send(
                text=text, blocks=blocks, replace_original=True
            )
        finally:
            timer = TURN_TIMER.get()
            if timer is not None:
                timer.seconds += time.perf_counter() - started
        if resp.status_code >= 400:
            raise RuntimeError(f"response_url answered {resp.status_code}")

    async def status(self, channel: str, thread_ts: str, text: str) -> None:
        """The 'is looking into it…' line while the agent works (best effort: it is only a hint)."""
        try:
            await self.call("assistant.threads.setStatus", channel_id=channel, thread_ts=thread_ts, status=text)
        except SlackApiError as exc:
            log.debug("setStatus refused: %s", exc.response.get("error"))

    async def say(
        self, channel: str, text: str, *, thread_ts: str | None = None, blocks: list[dict[str, Any]] | None = None
    ) -> str | None:
        kwargs: dict[str, Any] = {"channel": channel, "text": text, "unfurl_links": False}
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        if blocks:
            kwargs["blocks"] = blocks
        resp = await self.call("chat.postMessage", **kwargs)
        return resp.get("ts")


def _names(payload: dict[str, Any], row: OutboxMessage) -> bool:
    """Metadata naming this row (older posts named their inbox item and sequence number)."""
    if "row" in payload:
        return payload.get("row") == row.id
    return payload.get("inbox_id") == row.inbox_id and payload.get("seq") == row.seq


def _retry_after(exc: SlackApiError) -> float:
    try:
        return min(max(float(exc.response.headers.get("Retry-After", "1")), 0.0), 120.0)
    except (TypeError, ValueError):
        return 1.0


async def rows_and_handoff(s: AsyncSession, item_id: int) -> tuple[list[OutboxMessage], bool]:
    """A work item's outgoing rows, in order, and whether a person has taken over their session
    (one statement, in the caller's transaction)."""
    found = (await s.execute(_ROWS_AND_HANDOFF, {"item": item_id})).all()
    return [row for row, _ in found], any(by for _, by in found)


async def item_rows(s: AsyncSession, item_id: int) -> list[OutboxMessage]:
    """A work item's outgoing rows, in order, read in the caller's transaction."""
    return list((await s.scalars(_ITEM_ROWS, {"item": item_id})).all())


# built once: a statement's cache key is computed once per object, not at each call
_ITEM_ROWS = select(OutboxMessage).where(OutboxMessage.inbox_id == bindparam("item")).order_by(OutboxMessage.seq)
_ROWS_AND_HANDOFF = (
    select(OutboxMessage, ChatSession.handed_off_by)
    .outerjoin(ChatSession, ChatSession.id == OutboxMessage.session_id)
    .where(OutboxMessage.inbox_id == bindparam("item"))
    .order_by(OutboxMessage.seq)
)
