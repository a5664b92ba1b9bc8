"""Events: a global middleware stores every customer-shaped message in the inbox before Bolt
acknowledges the request; the listeners only acknowledge. Workers answer from the inbox."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot import metrics
from bot.slack import routing

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
                stored = await rt.inbox.put(msg, event)
                if stored is None:
                    metrics.DEDUPED.inc()
                else:
                    rt.workers.nudge()
        await next()

    return inbox_middleware


async def acknowledge(ack: AsyncAck) -> None:
    await ack()


def register(app: AsyncApp, rt: Runtime) -> None:
    app.middleware(store_before_ack(rt))
    for name in EVENTS:
        app.event(name)(acknowledge)
