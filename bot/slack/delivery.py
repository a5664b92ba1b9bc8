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
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.faults import crash_point
from bot.slack.blocks import row_message
from bot.slack.client import HTTP_TIMEOUT_S, post_timeout
from bot.slack.limits import LIMITS
from desk import outbox
from desk.errors import LeaseLost
from desk.inbox import Claimed
from desk.outbox import Row
from storage.engine import Store
from storage.ratelimit import take_token
from storage.settings import Settings
from storage.states import OutboxStatus
from storage.types import Clock
from tools.context import Deps

DONE = (OutboxStatus.POSTED, OutboxStatus.SKIPPED)

log = logging.getLogger(__name__)
REPLY_EVENT = "supportbot_reply"
POST_ATTEMPTS = 6


@dataclass
class SlackTimer:
    """Time spent awaiting Slack (pacing included) within one turn, for the overhead metric."""

    seconds: float = 0.0
    calls: int = 0


TURN_TIMER: contextvars.ContextVar[SlackTimer | None] = contextvars.ContextVar("slack_timer", default=None)


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
            tokens = await take_token(self.store, key=key, burst=burst, rate=rate)
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
    deps: Deps
    owner: str
    pacer: SlackPacer = field(default_factory=SlackPacer)

    @property
    def settings(self) -> Settings:
        return self.deps.settings

    @property
    def clock(self) -> Clock:
        return self.deps.clock

    @property
    def margin(self) -> timedelta:
        """What a lease must still have left when a post starts: more than the post can take."""
        return timedelta(seconds=post_timeout(self.settings) + 0.5)

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
    async def deliver_item(self, item: Claimed, rows: list[Row] | None = None) -> int:
        """Post every unposted row of a work item (`rows` when the caller has just read them), in order,
        while holding its lease."""
        posted = 0
        for row in rows if rows is not None else (await outbox.item_rows(self.deps, item.id))[0]:
            if row.status in DONE or row.channel is None:
                continue
            await self._post(row, item=(item.id, item.attempts))
            posted += 1
        return posted

    # --- every other row, under its own delivery lease ---------------------------------------------
    async def deliver_loose(self, limit: int = 50) -> int:
        """Post rows written outside a running turn (staff replies, notices, relays, alerts, dead
        letters' apologies), on any replica: each under its own lease, so exactly one replica posts it."""
        rows = await outbox.loose_rows(self.deps, limit)
        posted = 0
        for row in rows:
            try:
                if await self._ready(row):
                    await self._post(row, item=None)
                    posted += 1
            except LeaseLost:
                continue  # another replica took this row
            except Exception:
                log.exception("could not post outgoing message %d (tried again later)", row.id)
        return posted

    async def _ready(self, row: Row) -> bool:
        """Relays go into their ticket's thread in the staff channel and wait until it is posted;
        alerts go there too when it is, else straight to the channel."""
        if row.kind not in ("relay", "alert") or row.thread_ts:
            return True
        ticket, thread = await outbox.staff_thread(self.deps, row)
        if thread is not None:
            row.thread_ts = thread
        return thread is not None or not ticket or row.kind == "alert"

    # --- one row --------------------------------------------------------------------------------------
    async def _post(self, row: Row, *, item: tuple[int, int] | None) -> None:
        """Post one row exactly once: fenced before each attempt; the thread looked at first only
        when an earlier attempt may have reached Slack."""
        maybe_posted = row.status == OutboxStatus.POSTING
        for attempt in range(1, POST_ATTEMPTS + 1):
            if maybe_posted and row.ephemeral_user is None:
                found = await self._already_posted(row)
                if found:
                    await outbox.mark_posted(self.deps, row.id, found)
                    return
            await outbox.fence(self.deps, row, owner=self.owner, margin=self.margin, item=item)
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
            crash_point("after_post")
            await outbox.mark_posted(self.deps, row.id, ts)
            return

    async def _send(self, row: Row) -> str | None:
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

    async def _already_posted(self, row: Row) -> str | None:
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


def _names(payload: dict[str, Any], row: Row) -> bool:
    """Metadata naming this row (older posts named their inbox item and sequence number)."""
    if "row" in payload:
        return payload.get("row") == row.id
    return payload.get("inbox_id") == row.inbox_id and payload.get("seq") == row.seq


def _retry_after(exc: SlackApiError) -> float:
    try:
        return min(max(float(exc.response.headers.get("Retry-After", "1")), 0.0), 120.0)
    except (TypeError, ValueError):
        return 1.0
