"""One desk under every face: the same act done from Slack, the staff shell and MCP has the same
effect in the store, on the customer's Slack thread and in a web visitor's session, and the same
refusals. Real faces throughout: signed Slack requests, the shell's command handler, the MCP SDK's
client against our server (in memory), the web API over HTTP."""

from __future__ import annotations

import io
import json
import urllib.parse
from typing import Any

import pytest
from mcp.client.client import Client
from sqlalchemy import text as sql

from agent.scripted import ScriptedModel, reply, text, tool_use
from bot.mcp.server import build_server
from bot.server import housekeeping_once
from bot.shell import Printer, staff_command
from desk import staff as desk
from desk.sessions import open_session
from storage import metrics
from storage.engine import Store
from storage.settings import Settings
from tests.bot.conftest import (
    AGENT_ANA,
    COLLEAGUE,
    STAFF_CHANNEL,
    Bot,
    bot_settings,
    sign,
    start_bot,
    stop_bot,
)
from tests.bot.mcp.test_server import Person
from tests.fakes.slack_api import HOME_TEAM, FakeSlack
from tools import wording
from tools.context import Actor
from tools.toolbox import make_deps

BEN = "U_BEN"
FACES = ("slack", "shell", "mcp")
BUTTONS = {
    "claim": "ticket_claim",
    "release": "ticket_release",
    "resolve": "ticket_resolve",
    "approve": "refund_approve",
    "deny": "refund_deny",
}
MCP_TOOLS = {
    "claim": "claim_ticket",
    "release": "release_ticket",
    "resolve": "resolve_ticket",
    "approve": "approve_refund",
    "deny": "deny_refund",
    "reply": "reply_to_customer",
}


async def rows(bot: Bot, query: str, **params: Any) -> list[tuple[Any, ...]]:
    async with bot.rt.store.read() as s:
        return [tuple(r) for r in (await s.execute(sql(query), params)).all()]


async def last_outcome(bot: Bot, user: str) -> str:
    (outcome,) = await rows(
        bot, "SELECT outcome FROM audit_log WHERE actor = :a ORDER BY id DESC LIMIT 1", a=f"staff:{user}"
    )
    return str(outcome[0])


async def staff_message(bot: Bot) -> dict[str, Any]:
    found = await bot.slack.wait_for(lambda: [m for m in bot.slack.posts(channel=STAFF_CHANNEL) if not m["thread_ts"]])
    return found[0]


async def act(bot: Bot, face: str, action: str, ticket_id: int, *, user: str, words: str = "") -> str:
    """Do a staff act from one face; returns the outcome the desk recorded."""
    if face == "slack":
        await slack_act(bot, action, ticket_id, user=user, words=words)
    elif face == "shell":
        args = [str(ticket_id), *words.split()]
        await staff_command(bot.rt.deps, Actor.staff(user), action, args, Printer(io.StringIO()))
    else:
        ctx = await open_session(bot.rt.deps, channel="mcp", actor=Actor.staff(user))
        args: dict[str, Any] = {"ticket_id": ticket_id} | ({"text": words} if words else {})
        async with Client(build_server(bot.rt.deps, ctx), elicitation_callback=Person(["accept"])) as client:
            await client.call_tool(MCP_TOOLS[action], args)
    if face != "slack":
        await housekeeping_once(bot.rt)  # the Slack process posts what an act elsewhere said
    return await last_outcome(bot, user)


async def slack_act(bot: Bot, action: str, ticket_id: int, *, user: str, words: str) -> None:
    message = await staff_message(bot)
    if action != "reply":
        status = await bot.click(
            BUTTONS[action], str(ticket_id), user=user, team=HOME_TEAM, channel=STAFF_CHANNEL, message_ts=message["ts"]
        )
        assert status == 200
        return
    submission = {
        "type": "view_submission",
        "user": {"id": user, "team_id": HOME_TEAM},
        "team": {"id": HOME_TEAM},
        "api_app_id": "A_SUPPORTBOT",
        "token": "legacy",
        "trigger_id": "1.2",
        "view": {
            "id": "V1",
            "type": "modal",
            "callback_id": "reply_to_customer",
            "private_metadata": str(ticket_id),
            "state": {"values": {"input": {"value": {"type": "plain_text_input", "value": words}}}},
        },
    }
    body = "payload=" + urllib.parse.quote(json.dumps(submission))
    resp = await bot.post(body, {"Content-Type": "application/x-www-form-urlencoded", **sign(body)})
    assert resp.status == 200


async def said_once(bot: Bot, event: dict[str, Any], words: str) -> None:
    """`words` reached the customer's thread exactly once."""
    found = await bot.slack.wait_for(lambda: [m for m in bot.replies(event) if words in (m["text"] or "")])
    assert len(found) == 1, [m["text"] for m in bot.replies(event)]


@pytest.mark.parametrize("face", FACES)
async def test_every_staff_act_is_the_same_on_every_face(bot: Bot, face: str) -> None:
    event = await bot.say("My espresso machine ORD-8901 leaks, I want a full refund")
    await bot.wait_replies(event)
    await staff_message(bot)
    ticket_id = 1
    assert await act(bot, face, "claim", ticket_id, user=BEN) == "OK"
    assert await rows(bot, "SELECT status, claimed_by, claimed_kind FROM tickets") == [("claimed", BEN, "staff")]
    assert await rows(bot, "SELECT handed_off_by FROM sessions WHERE channel = 'slack'") == [(BEN,)]  # handed over
    await said_once(bot, event, wording.STAFF_JOINED)
    # another member of staff may not decide a ticket Ben claimed, on any face
    assert await act(bot, face, "approve", ticket_id, user=AGENT_ANA) == "ALREADY_CLAIMED"
    assert await act(bot, face, "release", ticket_id, user=AGENT_ANA) == "ALREADY_CLAIMED"
    assert await rows(bot, "SELECT status FROM refunds") == [("pending_approval",)]
    assert await act(bot, face, "reply", ticket_id, user=BEN, words="We are looking at your machine now.") == "OK"
    await said_once(bot, event, "We are looking at your machine now.")
    assert await act(bot, face, "approve", ticket_id, user=BEN) == "processing"  # then paid
    assert await rows(bot, "SELECT status, decided_by FROM refunds") == [("processed", f"staff:{BEN}")]
    assert await rows(bot, "SELECT count(*) FROM payouts") == [(1,)]
    await said_once(bot, event, "Done: your refund of $349.00")
    assert await act(bot, face, "resolve", ticket_id, user=BEN) == "OK"
    assert await rows(bot, "SELECT handed_off_by, outcome FROM sessions WHERE channel = 'slack'") == [
        (None, "auto_resolved")
    ]
    await said_once(bot, event, "I'm back")
    history = await rows(bot, "SELECT content FROM messages ORDER BY id")
    assert sum("We are looking at your machine now." in str(h) for h in history) == 1  # in the history once


async def test_a_colleagues_handoff_is_resolved_by_staff_and_the_bot_answers_again(bot: Bot) -> None:
    event = await bot.say("hello")
    await bot.wait_replies(event)
    await bot.say("Looping in billing.", user=COLLEAGUE, team=HOME_TEAM, thread_ts=event["ts"])
    await staff_message(bot)
    assert await rows(bot, "SELECT claimed_by, claimed_kind FROM tickets") == [(COLLEAGUE, "colleague")]
    # the colleague cannot press staff buttons; any member of staff may resolve their ticket
    message = await staff_message(bot)
    await bot.click(
        "ticket_resolve", "1", user=COLLEAGUE, team=HOME_TEAM, channel=STAFF_CHANNEL, message_ts=message["ts"]
    )
    assert await rows(bot, "SELECT status FROM tickets") == [("claimed",)]
    assert await act(bot, "slack", "resolve", 1, user=AGENT_ANA) == "OK"
    await said_once(bot, event, "I'm back")
    await bot.say("what are your support hours?", thread_ts=event["ts"])
    await bot.slack.wait_for(lambda: [m for m in bot.replies(event) if "9:00 to 18:00" in (m["text"] or "")])


async def test_staff_may_take_a_colleagues_conversation_over(bot: Bot) -> None:
    event = await bot.say("hello")
    await bot.wait_replies(event)
    await bot.say("Looping in billing.", user=COLLEAGUE, team=HOME_TEAM, thread_ts=event["ts"])
    await staff_message(bot)
    assert await act(bot, "shell", "claim", 1, user=BEN) == "OK"
    assert await rows(bot, "SELECT claimed_by, claimed_kind FROM tickets") == [(BEN, "staff")]
    assert await rows(bot, "SELECT handed_off_by FROM sessions") == [(BEN,)]


async def test_a_p1_mismatch_ends_the_turn_and_a_false_claim_never_reaches_the_thread(
    settings: Settings, store: Store, slack: FakeSlack
) -> None:
    model = ScriptedModel(
        [
            reply(tool_use("lookup_order", order_id="ORD-5501")),
            reply(tool_use("process_refund", order_id="ORD-5501", amount=129, reason="x")),
            reply(text("Refunded the headphones.")),
        ]
    )
    bot = await start_bot(bot_settings(settings, slack), store, slack, model=model)
    try:
        event = await bot.say("refund ORD-5501")
        (answer,) = await bot.wait_replies(event)
        assert answer["text"] == wording.NOT_FOUND_ORDER
        assert len(model.requests) == 1  # never called again after the mismatch
        assert await rows(bot, "SELECT action, outcome FROM audit_log") == [("lookup_order", "OWNERSHIP_MISMATCH")]
        assert await rows(bot, "SELECT priority, reason FROM tickets") == [("P1", "security")]
    finally:
        await stop_bot(bot)


def turns_counted(channel: str) -> float:
    total = 0.0
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            if sample.name == "supportbot_turns_total" and sample.labels.get("channel") == channel:
                total += sample.value
    return total


async def test_dead_letters_follow_one_policy_on_every_face(bot: Bot) -> None:
    """The desk's failure policy, called the way each face's dead-letter handler calls it."""
    before = await rows(bot, "SELECT count(*) FROM tickets")
    deps = make_deps(bot.rt.store, bot.rt.settings, bot.rt.clock)
    web = await open_session(deps, channel="web", actor=Actor.unverified("web:anon:x"))
    await desk.dead_letter(deps, session_id=web.session_id, item_id=99, attempts=3)
    assert await rows(bot, "SELECT kind, channel FROM outbox WHERE session_id = :s", s=web.session_id) == [
        ("apology", None)
    ]
    assert await rows(bot, "SELECT priority, reason FROM tickets WHERE session_id = :s", s=web.session_id) == [
        ("P2", "dead_letter")
    ]
    assert (await rows(bot, "SELECT count(*) FROM tickets"))[0][0] == before[0][0] + 1
    assert await rows(bot, "SELECT kind, channel FROM outbox WHERE kind = 'alert'") == [("alert", STAFF_CHANNEL)]


async def test_web_turns_count_in_the_same_metrics_as_slack_turns(bot: Bot) -> None:
    slack_before, web_before = turns_counted("slack"), turns_counted("web")
    event = await bot.say("hello")
    await bot.wait_replies(event)
    async with bot.http.post(f"{bot.url}/api/chat", json={"message": "what are your support hours?"}) as resp:
        assert resp.status == 200  # answered after the turn was counted
    assert turns_counted("slack") == slack_before + 1 and turns_counted("web") == web_before + 1
