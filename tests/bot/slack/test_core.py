"""The Slack core end to end: signed requests in, replies out, exactly once and in order."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from sqlalchemy import text as sql

from agent.scripted import ScriptedModel, reply, text
from bot.server import housekeeping_once
from storage.engine import Store
from storage.settings import Settings
from tests.bot.conftest import (
    CUSTOMER_TEAM,
    STAFF_CHANNEL,
    SUPPORT,
    Bot,
    bot_settings,
    envelope,
    message_event,
    sign,
    start_bot,
    stop_bot,
)
from tests.fakes.slack_api import FakeSlack
from tools import tickets


async def count(bot: Bot, query: str) -> int:
    async with bot.rt.store.read() as s:
        return int(await s.scalar(sql(query)) or 0)


async def test_new_thread_is_answered_in_its_thread(bot: Bot) -> None:
    event = await bot.say("hello there")
    (posted,) = await bot.wait_replies(event)
    assert posted["thread_ts"] == event["ts"]
    assert "offline assistant" in posted["text"]
    assert posted["metadata"]["event_type"] == "supportbot_reply"
    status = [c for c in bot.slack.called("assistant.threads.setStatus") if c["thread_ts"] == event["ts"]]
    assert [c["status"] for c in status] == ["is looking into it…"]
    async with bot.rt.store.read() as s:
        row = (await s.execute(sql("SELECT external_key, actor_kind, customer_id FROM sessions"))).one()
    assert tuple(row) == (f"slack:{SUPPORT}:{event['ts']}", "customer", "CUST-1001")  # verified by profile email


async def test_follow_ups_in_one_thread_are_answered_in_order(
    settings: Settings, store: Store, slack: FakeSlack
) -> None:
    bot = await start_bot(bot_settings(settings, slack, coalesce_seconds=0), store, slack)  # one turn a message
    try:
        await _follow_ups(bot)
    finally:
        await stop_bot(bot)


async def _follow_ups(bot: Bot) -> None:
    first = await bot.say("hello")
    questions = [
        "what are your support hours?",
        "how long is your return window?",
        "who are you?",
        "how long does shipping take?",
    ]
    for q in questions:
        await bot.say(q, thread_ts=first["ts"])
    posts = await bot.wait_replies(first, 1 + len(questions))
    texts = [p["text"] for p in posts]
    assert "Hi!" in texts[0]
    assert "9:00 to 18:00" in texts[1] and "30 days" in texts[2] and "stand-in" in texts[3] and "3 to 5" in texts[4]
    links = [p for p in posts if p.get("blocks") and p["blocks"][-1]["block_id"] == "reply_sources"]
    assert len(links) == 3  # the three help-center answers link their articles under the reply
    assert "<https://help.example.com/opening-hours" in links[0]["blocks"][-1]["elements"][0]["text"]
    rows = [p["metadata"]["event_payload"]["row"] for p in posts]  # each names its outgoing-log row
    assert rows == sorted(rows)


async def test_the_same_event_three_times_gives_one_reply(bot: Bot) -> None:
    event = message_event("hello")
    for retry in (None, 1, 2):
        status, _ = await bot.event(event, event_id="Ev-SAME", retry=retry)
        assert status == 200
    await bot.wait_replies(event)
    await bot.say("are you a bot?")  # a later message, answered after: everything before it is settled
    await bot.slack.wait_for(lambda: len(bot.slack.posts(channel=SUPPORT)) >= 2)
    assert len(bot.replies(event)) == 1
    assert await count(bot, "SELECT count(*) FROM inbox") == 2


async def test_message_and_app_mention_of_one_ts_are_one_turn(bot: Bot) -> None:
    event = message_event("<@U_BOT> hello")
    mention = dict(event, type="app_mention")
    assert (await bot.event(event))[0] == 200
    assert (await bot.event(mention))[0] == 200
    await bot.wait_replies(event)
    assert await count(bot, "SELECT count(*) FROM inbox") == 1
    assert await count(bot, "SELECT count(*) FROM model_calls") == 1


async def test_bad_or_stale_signatures_are_refused_and_nothing_is_stored(bot: Bot) -> None:
    body = json.dumps(envelope(message_event("hello")))
    wrong = await bot.post(body, {"Content-Type": "application/json", **sign(body, secret="not-the-secret")})
    stale = await bot.post(body, {"Content-Type": "application/json", **sign(body, timestamp=1_600_000_000)})
    missing = await bot.post(body, {"Content-Type": "application/json"})
    assert (wrong.status, stale.status, missing.status) == (401, 401, 401)
    assert await count(bot, "SELECT count(*) FROM inbox") == 0


async def test_slack_429_then_200_delivers_the_reply_once(bot: Bot) -> None:
    bot.slack.fail_next("chat.postMessage", 429, retry_after=0)
    event = await bot.say("hello")
    await bot.wait_replies(event)
    attempts = [c for c in bot.slack.called("chat.postMessage") if c.get("thread_ts") == event["ts"]]
    assert len(attempts) == 2 and len(bot.replies(event)) == 1


async def test_a_poison_message_is_dead_lettered_and_others_go_on(bot: Bot) -> None:
    bot.slack.add_user("U_POISON", team=CUSTOMER_TEAM, email="p@example.com")
    bot.slack.broken_users.add("U_POISON")
    poison = await bot.say("hello", user="U_POISON")
    ok = await bot.say("hello from another thread")
    (apology,) = await bot.wait_replies(poison)
    assert "something went wrong on our side" in apology["text"]
    assert await bot.wait_replies(ok)
    alerts = await bot.slack.wait_for(
        lambda: [m for m in bot.slack.posts(channel=STAFF_CHANNEL) if "after 3 attempts" in (m["text"] or "")]
    )
    assert "supportbot inbox retry" in alerts[0]["text"]
    ticket = [m for m in bot.slack.posts(channel=STAFF_CHANNEL) if not m["thread_ts"]][0]
    assert "P2 ticket" in ticket["text"] and alerts[0]["thread_ts"] == ticket["ts"]  # the alert, in the ticket's thread
    async with asyncio.timeout(60):
        await bot.rt.workers.wait_completed(4)  # three tries of the poison, one answer
    async with bot.rt.store.read() as s:
        assert (await s.execute(sql("SELECT status, attempts FROM inbox ORDER BY id"))).all() == [
            ("dead", 3),
            ("done", 1),
        ]
    # replayed once the cause is gone
    (dead,) = await bot.rt.inbox.dead_letters()
    bot.slack.broken_users.clear()
    assert await bot.rt.inbox.retry(dead.id)
    bot.rt.workers.wake()
    await bot.slack.wait_for(lambda: len(bot.replies(poison)) >= 2)


async def test_ignored_messages_are_not_stored(bot: Bot) -> None:
    for event in (
        message_event("edited", subtype="message_changed"),
        message_event("joined", subtype="channel_join"),
        message_event("a bot", bot_id="B_OTHER"),
        message_event("ourselves", user="U_BOT"),
        message_event("in the staff channel", channel=STAFF_CHANNEL),
    ):
        assert (await bot.event(event))[0] == 200
    assert await count(bot, "SELECT count(*) FROM inbox") == 0


async def test_file_share_and_thread_broadcast_are_customer_messages(bot: Bot) -> None:
    first = await bot.say("hi", subtype="file_share", files=[{"name": "photo-of-broken-blender.jpg"}])
    await bot.wait_replies(first)
    await bot.say("also this", thread_ts=first["ts"], subtype="thread_broadcast")
    await bot.wait_replies(first, 2)
    async with bot.rt.store.read() as s:
        contents = [c for (c,) in (await s.execute(sql("SELECT content FROM messages WHERE is_customer_text")))]
    assert "photo-of-broken-blender.jpg" in json.dumps(contents)


async def test_model_text_cannot_ping_the_channel(settings: Settings, store: Store, slack: FakeSlack) -> None:
    model = ScriptedModel([reply(text("<!channel> look <@U_JAMES> and <https://evil.example|click> or me@x.io"))])
    bot = await start_bot(bot_settings(settings, slack), store, slack, model=model)
    try:
        event = await bot.say("hello")
        (posted,) = await bot.wait_replies(event)
        assert "<!channel>" not in posted["text"] and "&lt;!channel&gt;" in posted["text"]
        assert "<@U_JAMES>" not in posted["text"] and "<https://" not in posted["text"]
        assert "me@x.io" not in posted["text"]
    finally:
        await stop_bot(bot)


async def test_healthz_and_metrics(bot: Bot) -> None:
    event = await bot.say("hello")
    await bot.wait_replies(event)
    async with bot.http.get(f"{bot.url}/healthz") as resp:
        assert resp.status == 200 and (await resp.json())["ok"] is True
    await housekeeping_once(bot.rt)
    async with bot.http.get(f"{bot.url}/metrics") as resp:
        assert resp.status == 404  # only on the operator listener
    async with bot.http.get(f"{bot.admin_url}/metrics") as resp:
        body = await resp.text()
    for name in (
        "supportbot_events_received_total",
        "supportbot_turns_total",
        "supportbot_turn_seconds_bucket",
        "supportbot_model_seconds",
        "supportbot_turn_overhead_seconds",
        "supportbot_inbox_depth",
        "supportbot_tool_outcomes_total",
        "supportbot_slack_retries_total",
    ):
        assert name in body, name


async def test_healthz_is_503_when_the_store_is_unreachable(settings: Settings, slack: FakeSlack) -> None:
    from aiohttp import ClientSession, web

    from agent.offline import OfflineModel
    from bot.server import web_app
    from bot.slack.runtime import Runtime

    broken = Store.from_settings(settings, url="postgresql+asyncpg://nobody@127.0.0.1:1/none")
    rt = Runtime.create(bot_settings(settings, slack), store=broken, model=OfflineModel())
    runner = web.AppRunner(web_app(rt), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as resp:
            assert resp.status == 503 and (await resp.json())["ok"] is False
    finally:
        await runner.cleanup()
        await broken.dispose()


async def test_a_429_on_a_ticket_post_is_a_warning_and_the_next_sweep_posts_it(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    """Slack's pace is not a fault: the refused post leaves the ticket unposted (nothing was posted),
    logs a warning with the Retry-After, and the next sweep posts it once."""
    async with bot.rt.store.write() as s:
        ticket, _ = await tickets.open_or_update(
            s, bot.rt.deps, session_id=None, priority="P2", reason="dead_letter", summary="a test ticket"
        )
    bot.slack.fail_next("chat.postMessage", 429, retry_after=7)
    with caplog.at_level(logging.WARNING, logger="bot.slack.board"):
        await bot.rt.board.sweep()
    assert [r.levelno for r in caplog.records if r.name == "bot.slack.board"] == [logging.WARNING]
    assert "wait 7 s" in caplog.records[-1].getMessage()
    assert await count(bot, f"SELECT count(*) FROM tickets WHERE id = {ticket.id} AND slack_ts IS NULL") == 1
    await bot.rt.board.sweep()
    staff = bot.slack.posts(channel=STAFF_CHANNEL)
    posted = [m for m in staff if (m.get("metadata") or {}).get("event_payload") == {"ticket": ticket.id}]
    assert len(posted) == 1
    assert await count(bot, f"SELECT count(*) FROM tickets WHERE slack_ts = '{posted[0]['ts']}'") == 1


async def test_a_burst_of_short_messages_gets_one_answer(settings: Settings, store: Store, slack: FakeSlack) -> None:
    bot = await start_bot(bot_settings(settings, slack), store, slack, workers=False)  # they queue up first
    try:
        first = await bot.say("hi")
        await bot.say("my blender ORD-8842", thread_ts=first["ts"])
        await bot.say("it arrived broken, refund please", thread_ts=first["ts"])
        bot.rt.workers.start()
        (answer,) = await bot.wait_replies(first)
        assert "ProBlend 500 blender" in answer["text"]  # the one turn read all three
        async with asyncio.timeout(10):
            await bot.rt.workers.wait_completed(1)
        assert await count(bot, "SELECT count(*) FROM inbox WHERE status = 'done'") == 3  # each recorded
        assert await count(bot, "SELECT count(*) FROM refunds WHERE order_id = 'ORD-8842'") == 1
        assert len(bot.replies(first)) == 1
    finally:
        await stop_bot(bot)
