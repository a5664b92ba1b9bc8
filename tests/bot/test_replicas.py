"""Two real `supportbot run --http` replicas on one PostgreSQL: every single-process guarantee
holds across processes, through the database alone."""

from __future__ import annotations

import asyncio
import copy
import json
import signal
import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text

from storage.engine import Store
from storage.importer import seed
from storage.kb_import import seed_help_center
from storage.settings import Settings
from storage.types import SystemClock
from tests.bot.conftest import (
    AGENT_ANA,
    CUSTOMER_TEAM,
    SARAH,
    STAFF_CHANNEL,
    SUPPORT,
    envelope,
    message_event,
    sign,
)
from tests.bot.procs import Proc, start
from tests.fakes.slack_api import HOME_TEAM, FakeSlack


@pytest.fixture
async def pg(pg_database_url: str) -> AsyncIterator[Store]:
    store = Store.from_settings(Settings(_env_file=None), url=pg_database_url)  # type: ignore[call-arg]
    await seed(store, SystemClock())
    await seed_help_center(store, SystemClock(), base_url="https://help.example.com", return_window_days=30)
    yield store
    await store.dispose()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def replicas(pg_database_url: str, pg: Store, slack: FakeSlack) -> AsyncIterator[list[Proc]]:
    procs = [await start(pg_database_url, slack), await start(pg_database_url, slack)]
    yield procs
    for p in procs:
        await p.stop()


async def post(http: aiohttp.ClientSession, url: str, body: str, content_type: str) -> int:
    async with http.post(
        f"{url}/slack/events", data=body.encode(), headers={"Content-Type": content_type, **sign(body)}
    ) as resp:
        return resp.status


async def send(http: aiohttp.ClientSession, url: str, event: dict[str, Any], event_id: str | None = None) -> int:
    return await post(http, url, json.dumps(envelope(event, event_id=event_id)), "application/json")


def click_body(action: str, message: dict[str, Any], *, user: str, team: str) -> str:
    value = next(
        e["value"]
        for b in message["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == action
    )
    payload = {
        "type": "block_actions",
        "user": {"id": user, "team_id": team},
        "api_app_id": "A_SUPPORTBOT",
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": message["channel"]},
        "channel": {"id": message["channel"]},
        "message": {"ts": message["ts"], "thread_ts": message.get("thread_ts")},
        "trigger_id": "1.2",
        "team": {"id": team},
        "token": "legacy",
        "actions": [{"action_id": action, "value": value, "type": "button", "block_id": "b", "action_ts": "1"}],
    }
    return "payload=" + urllib.parse.quote(json.dumps(payload))


def button_message(slack: FakeSlack, action: str, channel: str) -> dict[str, Any] | None:
    for m in reversed(slack.posts(channel=channel)):
        if any(
            e.get("action_id") == action
            for b in m.get("blocks") or []
            if b.get("type") == "actions"
            for e in b["elements"]
        ):
            return copy.deepcopy(m)
    return None


async def q(store: Store, sql: str) -> list[tuple[Any, ...]]:
    async with store.read() as s:
        return [tuple(r) for r in (await s.execute(text(sql))).all()]


def texts(slack: FakeSlack, thread: str) -> list[str]:
    return [m["text"] for m in slack.posts(channel=SUPPORT, thread_ts=thread)]


async def test_a_retry_landing_on_the_other_replica_gives_one_reply(
    replicas: list[Proc], slack: FakeSlack, http: aiohttp.ClientSession, pg: Store
) -> None:
    event = message_event("hello")
    statuses = await asyncio.gather(*(send(http, r.url, event, event_id="Ev-RETRIED") for r in replicas))
    assert statuses == [200, 200]
    await send(http, replicas[1].url, message_event("what are your support hours?", thread_ts=event["ts"]))
    await slack.wait_for(lambda: any("9:00" in t for t in texts(slack, event["ts"])))
    assert len(texts(slack, event["ts"])) == 2
    assert await q(pg, "SELECT count(*) FROM inbox") == [(2,)]


async def test_one_thread_split_across_replicas_is_answered_in_order_one_at_a_time(
    replicas: list[Proc], slack: FakeSlack, http: aiohttp.ClientSession, pg: Store
) -> None:
    first = message_event("hello")
    questions = [
        "what are your support hours?",
        "how long is your return window?",
        "who are you?",
        "how long does shipping take?",
        "what are your support hours?",
    ]
    assert await send(http, replicas[0].url, first) == 200
    for i, question in enumerate(questions):
        assert await send(http, replicas[(i + 1) % 2].url, message_event(question, thread_ts=first["ts"])) == 200
    await slack.wait_for(lambda: len(texts(slack, first["ts"])) >= 6)
    said = texts(slack, first["ts"])
    assert "Hi!" in said[0] and "9:00" in said[1] and "30 days" in said[2] and "stand-in" in said[3]
    assert "3 to 5" in said[4] and "9:00" in said[5]
    assert await q(pg, "SELECT count(*), count(DISTINCT lease_owner) > 0 FROM inbox") == [(6, True)]
    # each message's status line is set when it is stored, before any worker gets to it
    statuses = [
        c
        for c in slack.calls
        if c.method == "assistant.threads.setStatus" and c.args.get("thread_ts") == first["ts"] and c.args.get("status")
    ]
    assert len(statuses) == 6


async def test_two_claim_clicks_on_different_replicas_make_one_owner(
    replicas: list[Proc], slack: FakeSlack, http: aiohttp.ClientSession, pg: Store
) -> None:
    event = message_event("My espresso machine ORD-8901 leaks, I want a full refund")
    await send(http, replicas[0].url, event)
    ticket = await slack.wait_for(lambda: button_message(slack, "ticket_claim", STAFF_CHANNEL))
    bodies = [click_body("ticket_claim", ticket, user=user, team=HOME_TEAM) for user in (AGENT_ANA, "U_BEN")]
    statuses = await asyncio.gather(
        *(post(http, r.url, b, "application/x-www-form-urlencoded") for r, b in zip(replicas, bodies, strict=True))
    )
    assert statuses == [200, 200]
    (owner,) = [r[0] for r in await q(pg, "SELECT claimed_by FROM tickets")]
    assert owner in (AGENT_ANA, "U_BEN")

    def refused() -> list[dict[str, Any]]:
        return [c for c in slack.called("chat.postEphemeral") if "Already claimed" in (c.get("text") or "")]

    await slack.wait_for(refused)  # the loser is told after its click was acknowledged
    await slack.wait_for(lambda: slack.called("chat.update"))  # the winner's re-render, after its acknowledgement
    assert len(refused()) == 1


async def test_two_confirm_clicks_on_different_replicas_pay_once(
    replicas: list[Proc], slack: FakeSlack, http: aiohttp.ClientSession, pg: Store
) -> None:
    event = message_event("My blender ORD-8842 arrived broken, refund please", user=SARAH, team=CUSTOMER_TEAM)
    await send(http, replicas[1].url, event)
    prompt = await slack.wait_for(lambda: button_message(slack, "refund_confirm", SUPPORT))
    body = click_body("refund_confirm", prompt, user=SARAH, team=CUSTOMER_TEAM)
    statuses = await asyncio.gather(*(post(http, r.url, body, "application/x-www-form-urlencoded") for r in replicas))
    assert statuses == [200, 200]  # both clicks stored; workers on either replica decide them, in order
    posted_done = await slack.wait_for(
        lambda: [
            c
            for c in slack.calls
            if c.method == "chat.postMessage"
            and c.args.get("thread_ts") == event["ts"]
            and str(c.args.get("text", "")).startswith("Done")
        ]
    )
    assert posted_done
    assert await q(pg, "SELECT status FROM refunds") == [("processed",)]
    assert await q(pg, "SELECT count(*) FROM payouts") == [(1,)]

    def told() -> list[str]:
        return [
            c.args["text"]
            for c in slack.calls
            if c.method == "chat.postMessage"
            and c.args.get("thread_ts") == event["ts"]
            and c.args["text"].startswith("Done")
        ]

    # wait for the post itself: the prompt is updated to the same words by chat.update, which may come first
    await slack.wait_for(told)
    await slack.wait_for(lambda: [c for c in slack.called("chat.postEphemeral") if "already" in (c.get("text") or "")])
    assert len(told()) == 1  # the result is told once, after both clicks were handled


async def test_a_replica_killed_mid_turn_is_taken_over_by_the_other(
    pg_database_url: str, pg: Store, slack: FakeSlack, http: aiohttp.ClientSession
) -> None:
    # the doomed replica claims the message alone and dies; the survivor starts after (a running one
    # would be woken by the database's notification and could win the claim), and must wait out the
    # dead replica's lease before it takes the message over
    doomed = await start(pg_database_url, slack, FAULT_CRASH_AT="before_model_call")
    survivor = None
    try:
        event = message_event("hello")
        started = time.monotonic()
        assert await send(http, doomed.url, event) == 200
        async with asyncio.timeout(60):
            assert await doomed.proc.wait() == -signal.SIGKILL
        survivor = await start(pg_database_url, slack)
        await slack.wait_for(lambda: texts(slack, event["ts"]), limit=60)
        assert time.monotonic() - started >= 1.0  # only after the dead replica's lease expired
        await send(http, survivor.url, message_event("what are your support hours?", thread_ts=event["ts"]))
        await slack.wait_for(lambda: any("9:00" in t for t in texts(slack, event["ts"])), limit=60)
        assert len(texts(slack, event["ts"])) == 2
        owners = await q(pg, "SELECT status, attempts, lease_owner FROM inbox ORDER BY id")
        assert owners[0][:2] == ("done", 2)
    finally:
        if survivor is not None:
            await survivor.stop()
        await doomed.kill()
