"""Everything supportbot posts to Slack, with exactly-once replies.

A turn's replies are recorded in `outbox` before anything is posted; each is posted with message
`metadata` carrying its inbox item and sequence number, and marked `posting` just before the
call. A worker resuming an item after a crash finds `posting` rows and looks in the thread
(conversations.replies with metadata) before posting again, so a reply that reached Slack is
never posted twice.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select, update

from storage.engine import Store
from storage.models import OutboxMessage
from storage.settings import Settings
from storage.types import Clock

log = logging.getLogger(__name__)
REPLY_EVENT = "supportbot_reply"


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


class SlackPacer:
    """Paces our Web API calls to Slack's published limits, so bursts queue here instead of
    collecting 429s: chat.postMessage about one per second per channel (short bursts allowed);
    tiered methods per workspace (Tier 3 ~50/min, Tier 4 ~100/min). Each caller reserves the next
    free slot of its bucket; the 429 retry handler still covers what other replicas send."""

    LIMITS: dict[str, tuple[float, float, bool]] = {  # method -> (calls per second, burst, per channel?)
        "chat.postMessage": (1.0, 3.0, True),
        "chat.postEphemeral": (1.0, 3.0, True),
        "chat.update": (50 / 60, 10.0, False),
        "users.info": (100 / 60, 20.0, False),
        "conversations.members": (100 / 60, 20.0, False),
        "conversations.replies": (50 / 60, 10.0, False),
        "chat.getPermalink": (100 / 60, 20.0, False),
    }

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # key -> (tokens, when)

    def reserve(self, method: str, channel: str | None) -> float:
        """Seconds to wait before this call may go (0 for methods without a known limit)."""
        limit = self.LIMITS.get(method)
        if limit is None:
            return 0.0
        rate, burst, per_channel = limit
        key = (method, (channel or "") if per_channel else "")
        now = time.monotonic()
        tokens, when = self._buckets.get(key, (burst, now))
        tokens = min(burst, tokens + (now - when) * rate) - 1
        self._buckets[key] = (tokens, now)
        return 0.0 if tokens >= 0 else -tokens / rate

    async def wait(self, method: str, channel: str | None) -> None:
        delay = self.reserve(method, channel)
        if delay > 0:
            await asyncio.sleep(delay)  # pacing to Slack's limit, not synchronization


@dataclass(frozen=True, slots=True)
class Intent:
    text: str
    blocks: list[dict[str, Any]] | None = None
    ephemeral_user: str | None = None


@dataclass
class SlackOut:
    client: AsyncWebClient
    store: Store
    clock: Clock
    settings: Settings
    pacer: SlackPacer = field(default_factory=SlackPacer)

    async def call(self, method: str, *, http_verb: str = "POST", **kwargs: Any) -> Any:
        """One Web API call: paced per channel, retried on 429 by the client, timed for the turn."""
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        started = time.perf_counter()
        try:
            await self.pacer.wait(method, kwargs.get("channel"))
            if http_verb == "GET":
                return await self.client.api_call(method, http_verb="GET", params=kwargs)
            return await self.client.api_call(method, json=kwargs)
        finally:
            timer = TURN_TIMER.get()
            if timer is not None:
                timer.seconds += time.perf_counter() - started
                timer.calls += 1

    # --- outbox -----------------------------------------------------------------------------------
    async def outbox(self, item_id: int) -> list[OutboxMessage]:
        async with self.store.read() as s:
            rows = await s.scalars(
                select(OutboxMessage).where(OutboxMessage.inbox_id == item_id).order_by(OutboxMessage.seq)
            )
            return list(rows.all())

    async def record(self, item_id: int, channel: str, thread_ts: str, intents: list[Intent]) -> None:
        now = self.clock.now()
        async with self.store.write() as s:
            for seq, intent in enumerate(intents):
                s.add(
                    OutboxMessage(
                        inbox_id=item_id,
                        seq=seq,
                        channel=channel,
                        thread_ts=thread_ts,
                        text=intent.text,
                        blocks=intent.blocks,
                        ephemeral_user=intent.ephemeral_user,
                        status="pending",
                        created_at=now,
                    )
                )

    async def _mark(self, row_id: int, **values: Any) -> None:
        async with self.store.write() as s:
            await s.execute(update(OutboxMessage).where(OutboxMessage.id == row_id).values(**values))

    async def deliver(self, item_id: int) -> int:
        """Post every unposted reply of an item, in order. Returns how many were posted now."""
        posted = 0
        for row in await self.outbox(item_id):
            if row.status == "posted":
                continue
            if row.status == "posting" and row.ephemeral_user is None:
                found = await self._already_posted(row)
                if found:
                    await self._mark(row.id, status="posted", slack_ts=found, posted_at=self.clock.now())
                    continue
            await self._mark(row.id, status="posting")
            if row.ephemeral_user:
                resp = await self.call(
                    "chat.postEphemeral",
                    channel=row.channel,
                    user=row.ephemeral_user,
                    thread_ts=row.thread_ts,
                    text=row.text,
                    blocks=row.blocks,
                )
                ts = resp.get("message_ts")
            else:
                payload: dict[str, Any] = {
                    "channel": row.channel,
                    "thread_ts": row.thread_ts,
                    "text": row.text,
                    "metadata": {"event_type": REPLY_EVENT, "event_payload": {"inbox_id": item_id, "seq": row.seq}},
                    "unfurl_links": False,
                    "unfurl_media": False,
                }
                if row.blocks:
                    payload["blocks"] = row.blocks
                resp = await self.call("chat.postMessage", **payload)
                ts = resp.get("ts")
            crash_point(self.settings, "after_post")
            await self._mark(row.id, status="posted", slack_ts=ts, posted_at=self.clock.now())
            posted += 1
        return posted

    async def _already_posted(self, row: OutboxMessage) -> str | None:
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
                p = meta.get("event_payload") or {}
                if (
                    meta.get("event_type") == REPLY_EVENT
                    and p.get("inbox_id") == row.inbox_id
                    and p.get("seq") == row.seq
                ):
                    return str(m.get("ts"))
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None

    async def skip_unposted(self, item_id: int) -> None:
        """The thread was handed to a person before these replies went out: never post them."""
        async with self.store.write() as s:
            await s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.inbox_id == item_id, OutboxMessage.status == "pending")
                .values(status="posted", slack_ts=None, posted_at=self.clock.now())
            )

    # --- other posts ------------------------------------------------------------------------------
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

    async def ephemeral(self, channel: str, user: str, text: str, *, thread_ts: str | None = None) -> None:
        kwargs: dict[str, Any] = {"channel": channel, "user": user, "text": text}
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        await self.call("chat.postEphemeral", **kwargs)
