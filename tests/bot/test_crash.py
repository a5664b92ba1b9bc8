"""`supportbot run` killed with SIGKILL at named points and restarted: every message answered once."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator

import aiohttp
import pytest
from sqlalchemy import text

from storage.engine import Store
from storage.importer import seed
from storage.kb_import import seed_help_center
from storage.types import SystemClock
from tests.bot.conftest import STAFF_CHANNEL, envelope, message_event, sign
from tests.bot.procs import start
from tests.fakes.slack_api import FakeSlack


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def send(http: aiohttp.ClientSession, url: str, event: dict[str, object]) -> int:
    body = json.dumps(envelope(event))
    async with http.post(
        f"{url}/slack/events", data=body.encode(), headers={"Content-Type": "application/json", **sign(body)}
    ) as resp:
        return resp.status


@pytest.mark.parametrize("point", ["before_model_call", "after_post"])
async def test_killed_at_a_named_point_then_restarted_answers_exactly_once(
    store: Store, database_url: str, slack: FakeSlack, http: aiohttp.ClientSession, point: str
) -> None:
    await seed(store, SystemClock())
    await seed_help_center(store, SystemClock(), base_url="https://help.example.com", return_window_days=30)
    first = await start(database_url, slack, FAULT_CRASH_AT=point)
    event = message_event("My blender ORD-8842 arrived broken, refund please")
    assert await send(http, first.url, event) == 200  # stored before the acknowledgement
    assert await first.proc.wait() == -signal.SIGKILL
    if point == "after_post":
        assert len(slack.posts(thread_ts=event["ts"])) >= 1  # it did reach Slack before dying
    second = await start(database_url, slack)
    try:
        follow_up = message_event("what are your support hours?", thread_ts=event["ts"])
        assert await send(http, second.url, follow_up) == 200
        # the follow-up is answered only after the first message is finished (thread order)
        await slack.wait_for(
            lambda: any("9:00 to 18:00" in (m["text"] or "") for m in slack.posts(thread_ts=event["ts"]))
        )
    finally:
        assert await second.stop() == 0
    posts = slack.posts(thread_ts=event["ts"])
    first_replies = [m for m in posts if "9:00 to 18:00" not in m["text"]]
    assert len(first_replies) == 1  # the reply with its buttons: once
    assert len({m["metadata"]["event_payload"]["row"] for m in posts}) == len(posts)  # each row posted once
    assert "refund_confirm" in json.dumps(first_replies[0]["blocks"])
    assert sum("9:00 to 18:00" in m["text"] for m in posts) == 1
    async with store.read() as s:
        rows = (await s.execute(text("SELECT status, attempts FROM inbox ORDER BY id"))).all()
        refunds = (await s.execute(text("SELECT status FROM refunds"))).all()
    # taken over after the crash (attempt 2, or later if a loaded machine let a lease run out: the
    # fence then stops the slow attempt before it posts)
    assert [r[0] for r in rows] == ["done", "done"] and rows[0][1] >= 2
    assert [tuple(r) for r in refunds] == [("awaiting_confirmation",)]
    if point == "after_post":
        assert slack.called("conversations.replies")  # it looked before posting again


def ticket_posts(slack: FakeSlack) -> list[dict[str, object]]:
    return [
        m
        for m in slack.posts(channel=STAFF_CHANNEL)
        if not m.get("thread_ts") and (m.get("metadata") or {}).get("event_type") == "supportbot_ticket"
    ]


async def test_killed_between_posting_a_ticket_and_recording_it_the_ticket_is_posted_once(
    store: Store, database_url: str, slack: FakeSlack, http: aiohttp.ClientSession
) -> None:
    await seed(store, SystemClock())
    first = await start(database_url, slack, FAULT_CRASH_AT="after_ticket_post")
    event = message_event("I want to talk to a human, this is unacceptable")
    assert await send(http, first.url, event) == 200
    try:
        async with asyncio.timeout(60):  # a hang guard: the log says why it did not die
            assert await first.proc.wait() == -signal.SIGKILL
    except TimeoutError:
        raise AssertionError("\n".join(first.log[-40:])) from None
    (posted,) = ticket_posts(slack)  # it reached the staff channel; its ts was never recorded
    async with store.read() as s:
        assert (await s.execute(text("SELECT slack_ts FROM tickets"))).scalars().all() == ["posting"]
    second = await start(database_url, slack)
    try:
        # the sweep finds the message in the channel's history, records it instead of posting again,
        # and renders the ticket's current state into it
        await slack.wait_for(lambda: [c for c in slack.called("chat.update") if c.get("ts") == posted["ts"]])
        assert len(slack.called("conversations.history")) == 1
    finally:
        assert await second.stop() == 0
    assert ticket_posts(slack) == [posted]
    async with store.read() as s:
        assert (await s.execute(text("SELECT slack_ts FROM tickets"))).scalars().all() == [posted["ts"]]
