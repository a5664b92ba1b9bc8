"""Events: a global middleware stores every customer-shaped message in the work queue before Bolt
acknowledges the request; the listeners only acknowledge. Workers answer from the queue."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.slack import routing
from storage import metrics

if TYPE_CHECKING:
    from bot.slack.runtime import Runtime

log = logging.getLogger(__name__)
EVENTS = ("message", "app_mention")


def store_before_ack(rt: Runtime) -> Callable[..., Awaitable[None]]:
    settings = rt.settings

    async def inbox_middleware(body: dict[str, Any], next: Callable[[], Awaitable[None]]) -> None:
        if body.get("type") == "event_callback":
            event = body.get("event") or {}
            metrics.EVENTS.labels(str(event.get("type"))).inc()
            msg = routing.parse(body)
            if msg is not None and routing.served(
                msg.channel, allowlist=settings.support_channels, staff_channel=settings.support_staff_channel
            ):
                # if this raises (store unreachable) Bolt answers 500 and Slack retries: nothing is lost
                stored = await rt.host.queue.put(
                    face="slack",
                    conversation=msg.session_key,
                    text=msg.text,
                    payload=event,
                    event_id=msg.event_id,
                    channel=msg.channel,
                    ts=msg.ts,
                    thread_ts=msg.thread_ts,
                    user_id=msg.user,
                    user_team=msg.user_team,
                    installing_team=msg.installing_team,
                )
                if stored is None:
                    metrics.DEDUPED.inc()
                else:
                    rt.workers.wake()
                    if settings.treat_internal_users_as_customers or routing.is_external(
                        msg.user_team, msg.installing_team
                    ):
                        rt.status_soon(msg.channel, msg.thread_ts or msg.ts)  # within a beat of the ack
        await next()

    return inbox_middleware


async def acknowledge(ack: AsyncAck) -> None:
    await ack()


def register(app: AsyncApp, rt: Runtime) -> None:
    app.middleware(store_before_ack(rt))
    for name in EVENTS:
        app.event(name)(acknowledge)
