"""Who may see and do what: customers, staff and colleagues; confirmation buttons; the staff queue;
handoff; /refund-status; SLA. Signed requests against the real app and a fake Slack Web API."""

from __future__ import annotations

import asyncio
import copy
import json
import urllib.parse
from datetime import timedelta
from typing import Any

from sqlalchemy import text as sql

from bot.server import housekeeping_once
from storage.engine import Store
from storage.settings import Settings
from storage.types import FrozenClock
from tests.bot.conftest import (
    AGENT_ANA,
    COLLEAGUE,
    CUSTOMER_TEAM,
    HIDDEN,
    JAMES,
    SARAH,
    STAFF_CHANNEL,
    Bot,
    bot_settings,
    sign,
    start_bot,
    stop_bot,
)
from tests.fakes.slack_api import HOME_TEAM, FakeSlack


async def rows(bot: Bot, query: str) -> list[tuple[Any, ...]]:
    async with bot.rt.store.read() as s:
        return [tuple(r) for r in (await s.execute(sql(query))).all()]


def buttons(message: dict[str, Any]) -> dict[str, str]:
    """action_id -> value for a posted message's buttons."""
    out = {}
    for b in message.get("blocks") or []:
        for e in b.get("elements", []) if b.get("type") == "actions" else []:
            out[e["action_id"]] = e["value"]
    return out


def with_button(posts: list[dict[str, Any]], action_id: str) -> dict[str, Any] | None:
    """The latest message with that button, as it was then (a later chat.update does not change it)."""
    found = [m for m in posts if action_id in buttons(m)]
    return copy.deepcopy(found[-1]) if found else None


async def refund_prompt(bot: Bot, text: str = "My blender ORD-8842 arrived broken, refund please") -> tuple[dict, dict]:
    event = await bot.say(text)
    prompt = await bot.slack.wait_for(lambda: with_button(bot.replies(event), "refund_confirm"))
    return event, prompt


async def click(bot: Bot, action: str, message: dict[str, Any], *, user: str, team: str) -> int:
    return await bot.click(
        action,
        buttons(message)[action],
        user=user,
        team=team,
        channel=message["channel"],
        message_ts=message["ts"],
        thread_ts=message.get("thread_ts"),
    )


async def said_privately(bot: Bot, user: str, words: str) -> bool:
    """Until an ephemeral message to `user` contains `words` (posted right after the click's ack)."""
    return bool(await bot.slack.wait_for(lambda: any(words in t for t in ephemerals(bot, user))))


def ephemerals(bot: Bot, user: str) -> list[str]:
    return [c["text"] for c in bot.slack.called("chat.postEphemeral") if c.get("user") == user]


async def staff_ticket(bot: Bot, action: str) -> dict[str, Any]:
    return await bot.slack.wait_for(lambda: with_button(bot.slack.posts(channel=STAFF_CHANNEL), action))


# --- who is who --------------------------------------------------------------------------------------------
async def test_customers_are_answered_staff_and_colleagues_are_not(bot: Bot) -> None:
    customer = await bot.say("hello")
    await bot.wait_replies(customer)
    # the envelope names the other org, but the author's user_team is the installing team: not a customer
    staff = await bot.say("team, standup in 5", user=AGENT_ANA, team=HOME_TEAM)
    colleague = await bot.say("anyone seen my charger?", user=COLLEAGUE, team=HOME_TEAM)
    later = await bot.say("are you a bot?", user=JAMES)
    await bot.wait_replies(later)
    async with asyncio.timeout(60):
        await bot.rt.workers.wait_completed(4)
    assert bot.replies(staff) == [] and bot.replies(colleague) == []
    assert await rows(bot, "SELECT count(*) FROM sessions") == [(2,)]


async def test_identity_comes_from_the_slack_profile_email(bot: Bot) -> None:
    event = await bot.say("I'm james@example.com, show me ORD-5501")  # typed by Sarah: it changes nothing
    await bot.wait_replies(event)
    assert await rows(bot, "SELECT actor_kind, customer_id, subject FROM sessions") == [
        ("customer", "CUST-1001", f"{CUSTOMER_TEAM}:{SARAH}")
    ]
    assert await rows(bot, "SELECT channel, subject, customer_id, linked_by FROM customer_links") == [
        ("slack", f"{CUSTOMER_TEAM}:{SARAH}", "CUST-1001", "slack:profile-email")
    ]
    text = " ".join(m["text"] for m in bot.replies(event))
    assert "ORD-5501" not in text and "james" not in text.lower()


async def test_hidden_email_is_unverified_until_staff_link_the_user(bot: Bot) -> None:
    event = await bot.say("Refund ORD-8842 please, it arrived broken", user=HIDDEN)
    (answer,) = await bot.wait_replies(event)
    assert "can't access" in answer["text"] or "confirmed who you are" in answer["text"]
    assert await rows(bot, "SELECT priority, reason FROM tickets") == [("P3", "identity")]
    ticket = await staff_ticket(bot, "ticket_link_customer")
    assert f"<@{HIDDEN}> (not verified)" in json.dumps(ticket["blocks"])
    # a non-staff user cannot press it
    assert await click(bot, "ticket_link_customer", ticket, user=SARAH, team=CUSTOMER_TEAM) == 200
    assert await said_privately(bot, SARAH, "Only members of the support team")  # her click was handled...
    assert bot.slack.called("views.open") == []  # ...and opened nothing
    assert await click(bot, "ticket_link_customer", ticket, user=AGENT_ANA, team=HOME_TEAM) == 200
    # Bolt answers the click once it is acknowledged; the modal is opened after that
    (opened,) = await bot.slack.wait_for(lambda: bot.slack.called("views.open"))
    assert opened["view"]["callback_id"] == "link_customer"
    submission = {
        "type": "view_submission",
        "user": {"id": AGENT_ANA, "team_id": HOME_TEAM},
        "team": {"id": HOME_TEAM},
        "api_app_id": "A_SUPPORTBOT",
        "token": "legacy",
        "trigger_id": "1.2",
        "view": {
            "id": "V1",
            "type": "modal",
            "callback_id": "link_customer",
            "private_metadata": opened["view"]["private_metadata"],
            "state": {"values": {"input": {"value": {"type": "plain_text_input", "value": "sarah@example.com"}}}},
        },
    }
    body = "payload=" + urllib.parse.quote(json.dumps(submission))
    resp = await bot.post(body, {"Content-Type": "application/x-www-form-urlencoded", **sign(body)})
    assert resp.status == 200
    assert await rows(bot, "SELECT actor_kind, customer_id FROM sessions") == [("customer", "CUST-1001")]
    await bot.say("Refund ORD-8842 please, it arrived broken", user=HIDDEN, thread_ts=event["ts"])
    assert await bot.slack.wait_for(lambda: with_button(bot.replies(event), "refund_confirm"))


async def test_another_customer_in_someone_elses_thread_gets_only_a_note(bot: Bot) -> None:
    event, _ = await refund_prompt(bot)
    before = len(bot.replies(event))
    await bot.say("what about my order?", user=JAMES, thread_ts=event["ts"])
    note = await bot.slack.wait_for(lambda: ephemerals(bot, JAMES))
    assert "belongs to another customer's conversation" in note[0]
    assert len(bot.replies(event)) == before
    assert await rows(bot, "SELECT count(*) FROM sessions") == [(1,)]


# --- refund confirmation -------------------------------------------------------------------------------------
async def test_confirm_click_moves_money_once_and_a_second_click_changes_nothing(bot: Bot) -> None:
    event, prompt = await refund_prompt(bot)
    assert "Press Confirm refund below to send it" in json.dumps(prompt["blocks"])  # Slack's own words: buttons
    assert "Reply yes to send it" not in json.dumps(prompt)
    assert await click(bot, "refund_confirm", prompt, user=SARAH, team=CUSTOMER_TEAM) == 200
    # stored before the ack, in the thread's order; a worker decides it through the desk
    assert ("confirm",) in await rows(bot, "SELECT kind FROM inbox")
    done = await bot.slack.wait_for(lambda: [m for m in bot.replies(event) if m["text"].startswith("Done")])
    assert await rows(bot, "SELECT status FROM refunds") == [("processed",)]
    assert "$89.99" in done[0]["text"] and "ORD-8842" in done[0]["text"]
    replaced = [r for r in bot.slack.responses if r.get("replace_original")]  # via the click's response_url
    assert replaced and "refund_confirm" not in json.dumps(replaced[-1]["blocks"])  # the buttons are gone
    assert await click(bot, "refund_confirm", prompt, user=SARAH, team=CUSTOMER_TEAM) == 200  # replayed payload
    assert await rows(bot, "SELECT count(*) FROM payouts") == [(1,)]
    assert await said_privately(bot, SARAH, "already been handled")
    assert await rows(bot, "SELECT outcome FROM sessions") == [("auto_resolved",)]


async def test_another_users_click_is_refused(bot: Bot) -> None:
    _, prompt = await refund_prompt(bot)
    for user, team in ((JAMES, CUSTOMER_TEAM), (AGENT_ANA, HOME_TEAM)):
        assert await click(bot, "refund_confirm", prompt, user=user, team=team) == 200
        assert await said_privately(bot, user, "Only the customer who asked")
    assert await rows(bot, "SELECT status FROM refunds") == [("awaiting_confirmation",)]


async def test_confirm_after_cancel_changes_nothing(bot: Bot) -> None:
    event, prompt = await refund_prompt(bot)
    assert await click(bot, "refund_cancel", prompt, user=SARAH, team=CUSTOMER_TEAM) == 200
    await bot.slack.wait_for(lambda: [m for m in bot.replies(event) if "haven't refunded" in m["text"]])
    assert await click(bot, "refund_confirm", prompt, user=SARAH, team=CUSTOMER_TEAM) == 200
    assert await rows(bot, "SELECT status FROM refunds") == [("cancelled",)]
    assert await rows(bot, "SELECT count(*) FROM payouts") == [(0,)]


async def test_yes_typed_in_the_thread_confirms_too(bot: Bot) -> None:
    event, _ = await refund_prompt(bot)
    await bot.say("yes please", thread_ts=event["ts"])
    await bot.slack.wait_for(lambda: [m for m in bot.replies(event) if m["text"].startswith("Done")])
    assert await rows(bot, "SELECT status FROM refunds") == [("processed",)]


# --- the staff queue -----------------------------------------------------------------------------------------
async def over_limit(bot: Bot) -> tuple[dict[str, Any], dict[str, Any]]:
    event = await bot.say("My espresso machine ORD-8901 leaks, I want a full refund")
    await bot.wait_replies(event)
    return event, await staff_ticket(bot, "refund_approve")


async def test_claim_race_has_one_owner_and_the_customer_is_told(bot: Bot) -> None:
    event, ticket = await over_limit(bot)
    statuses = await asyncio.gather(
        click(bot, "ticket_claim", ticket, user=AGENT_ANA, team=HOME_TEAM),
        click(bot, "ticket_claim", ticket, user="U_BEN", team=HOME_TEAM),
    )
    assert statuses == [200, 200]
    (owner,) = [r[0] for r in await rows(bot, "SELECT claimed_by FROM tickets")]
    loser = "U_BEN" if owner == AGENT_ANA else AGENT_ANA
    assert await said_privately(bot, loser, f"Already claimed by <@{owner}>")
    joined = await bot.slack.wait_for(lambda: [m for m in bot.replies(event) if "has joined" in m["text"]])
    assert len(joined) == 1 and "P2" not in joined[0]["text"] and "#" not in joined[0]["text"]
    await housekeeping_once(bot.rt)  # re-renders any ticket whose first post was still in flight at the click
    updated = [c for c in bot.slack.called("chat.update") if c["ts"] == ticket["ts"]][-1]
    assert f"Claimed by <@{owner}>" in json.dumps(updated["blocks"]) and "ticket_resolve" in json.dumps(
        updated["blocks"]
    )


async def test_non_staff_cannot_press_staff_buttons(bot: Bot) -> None:
    _, ticket = await over_limit(bot)
    for user, team in ((SARAH, CUSTOMER_TEAM), (COLLEAGUE, HOME_TEAM)):
        for action in ("ticket_claim", "refund_approve"):
            assert await click(bot, action, ticket, user=user, team=team) == 200
        assert await said_privately(bot, user, "Only members of the support team")
    assert await rows(bot, "SELECT status, claimed_by FROM tickets") == [("open", None)]
    assert await rows(bot, "SELECT status FROM refunds") == [("pending_approval",)]


async def test_approve_over_limit_refund(bot: Bot) -> None:
    event, ticket = await over_limit(bot)
    assert await click(bot, "refund_approve", ticket, user=AGENT_ANA, team=HOME_TEAM) == 200
    assert await rows(bot, "SELECT status, decided_by FROM refunds") == [("processed", f"staff:{AGENT_ANA}")]
    done = await bot.slack.wait_for(lambda: [m for m in bot.replies(event) if m["text"].startswith("Done")])
    assert "$349.00" in done[0]["text"]
    assert ("staff:U_ANA", "approve_refund") in await rows(bot, "SELECT actor, action FROM audit_log")


async def test_deny_over_limit_refund(bot: Bot) -> None:
    event, ticket = await over_limit(bot)
    assert await click(bot, "refund_deny", ticket, user=AGENT_ANA, team=HOME_TEAM) == 200
    assert await rows(bot, "SELECT status FROM refunds") == [("denied",)]
    await bot.slack.wait_for(lambda: [m for m in bot.replies(event) if "wasn't able to approve" in m["text"]])
    assert await rows(bot, "SELECT count(*) FROM payouts") == [(0,)]


async def test_staff_reply_hands_off_then_resolve_gives_the_thread_back(bot: Bot) -> None:
    event = await bot.say("hello")
    await bot.wait_replies(event)
    await bot.say("Hi Sarah, Ana here, I'll take it from here.", user=AGENT_ANA, team=HOME_TEAM, thread_ts=event["ts"])
    ticket = await staff_ticket(bot, "ticket_resolve")
    assert await rows(bot, "SELECT reason, status, claimed_by FROM tickets") == [("handoff", "claimed", AGENT_ANA)]
    quiet = await bot.say("what are your support hours?", thread_ts=event["ts"])
    async with asyncio.timeout(60):
        await bot.rt.workers.wait_completed(3)
    assert not any("9:00" in m["text"] for m in bot.replies(event)) and quiet
    assert await click(bot, "ticket_resolve", ticket, user=AGENT_ANA, team=HOME_TEAM) == 200
    await bot.slack.wait_for(lambda: [m for m in bot.replies(event) if "I'm back" in m["text"]])
    await bot.say("what are your support hours?", thread_ts=event["ts"])
    await bot.slack.wait_for(lambda: [m for m in bot.replies(event) if "9:00" in m["text"]])


async def test_staff_save_a_resolved_answer_as_a_draft_article(bot: Bot) -> None:
    event = await bot.say("Do you engrave kettles?")
    await bot.wait_replies(event)
    await bot.say(
        "Yes, engraving is free on kettles: add the text at checkout.",
        user=AGENT_ANA,
        team=HOME_TEAM,
        thread_ts=event["ts"],
    )
    ticket = await staff_ticket(bot, "ticket_resolve")
    assert await click(bot, "ticket_resolve", ticket, user=AGENT_ANA, team=HOME_TEAM) == 200
    resolved = await staff_ticket(bot, "ticket_save_article")
    assert await click(bot, "ticket_save_article", resolved, user=SARAH, team=CUSTOMER_TEAM) == 200
    assert await said_privately(bot, SARAH, "Only members of the support team")
    assert await click(bot, "ticket_save_article", resolved, user=AGENT_ANA, team=HOME_TEAM) == 200
    assert await said_privately(bot, AGENT_ANA, "Saved as draft article")
    assert await rows(bot, "SELECT status, source FROM kb_articles WHERE source = 'ticket'") == [("draft", "ticket")]
    (body,) = [r[0] for r in await rows(bot, "SELECT body FROM kb_articles WHERE source = 'ticket'")]
    assert "Do you engrave kettles?" in body and "engraving is free on kettles" in body
    assert await click(bot, "ticket_save_article", resolved, user=AGENT_ANA, team=HOME_TEAM) == 200
    assert await said_privately(bot, AGENT_ANA, "Already saved as article")


async def test_a_colleague_writing_in_the_thread_hands_it_off_too(bot: Bot) -> None:
    event = await bot.say("hello")
    await bot.wait_replies(event)
    await bot.say("Looping in billing.", user=COLLEAGUE, team=HOME_TEAM, thread_ts=event["ts"])
    await staff_ticket(bot, "ticket_resolve")
    assert await rows(bot, "SELECT handed_off_by FROM sessions") == [(COLLEAGUE,)]


# --- /refund-status ------------------------------------------------------------------------------------------
async def test_refund_status_command(bot: Bot) -> None:
    event, prompt = await refund_prompt(bot)
    await click(bot, "refund_confirm", prompt, user=SARAH, team=CUSTOMER_TEAM)
    await bot.slack.wait_for(lambda: [m for m in bot.replies(event) if m["text"].startswith("Done")])
    cases = [
        ("ORD-8842", SARAH, CUSTOMER_TEAM, "Order ORD-8842 (ProBlend 500 blender): refund of $89.99 is issued."),
        ("", SARAH, CUSTOMER_TEAM, "Order ORD-8842 (ProBlend 500 blender): refund of $89.99 is issued."),
        ("ORD-8842", JAMES, CUSTOMER_TEAM, "I couldn't find that order on your account."),
        ("ORD-0404", JAMES, CUSTOMER_TEAM, "I couldn't find that order on your account."),
        ("", JAMES, CUSTOMER_TEAM, "I couldn't find any refunds on your account."),
        ("ORD-8842", AGENT_ANA, HOME_TEAM, "ORD-8842 (ProBlend 500 blender): $89.99, processed, refund RF-"),
        ("ORD-0404", AGENT_ANA, HOME_TEAM, "No such order: ORD-0404."),  # not "on this customer's account"
        ("ORD-8901", AGENT_ANA, HOME_TEAM, "No refunds for ORD-8901."),
    ]
    for i, (order, user, team, expected) in enumerate(cases):
        assert await bot.command(order, user=user, team=team, key=f"c{i}") == 200
        answer = await bot.slack.wait_for(lambda i=i: [r for r in bot.slack.responses if r["key"] == f"c{i}"])
        assert answer[0]["response_type"] == "ephemeral"
        assert answer[0]["text"].startswith(expected), (order, user, answer[0]["text"])


# --- SLA -------------------------------------------------------------------------------------------------------
async def test_unclaimed_p1_is_reannounced_once_per_interval(
    settings: Settings, store: Store, slack: FakeSlack
) -> None:
    clock = FrozenClock()
    bot = await start_bot(
        bot_settings(settings, slack, sla_p1_minutes=15, sla_reannounce_minutes=10), store, slack, clock=clock
    )
    try:
        event = await bot.say("I want to speak to a manager")
        await bot.wait_replies(event)
        await staff_ticket(bot, "ticket_claim")

        def alerts() -> list[dict[str, Any]]:
            return [m for m in slack.posts(channel=STAFF_CHANNEL) if "⏰" in (m["text"] or "")]

        await housekeeping_once(bot.rt)
        assert alerts() == []
        clock.advance(minutes=16)
        await housekeeping_once(bot.rt)
        assert len(alerts()) == 1 and "waited 16 minutes" in alerts()[0]["text"]
        clock.advance(minutes=5)
        await housekeeping_once(bot.rt)
        assert len(alerts()) == 1
        clock.advance(minutes=6)
        await housekeeping_once(bot.rt)
        assert len(alerts()) == 2
        assert "waiting past its SLA" in json.dumps(slack.called("chat.update")[-1]["blocks"])
        ticket = await staff_ticket(bot, "ticket_claim")
        await click(bot, "ticket_claim", ticket, user=AGENT_ANA, team=HOME_TEAM)
        clock.advance(minutes=30)
        await housekeeping_once(bot.rt)
        assert len(alerts()) == 2  # claimed: no more announcements
    finally:
        await stop_bot(bot)


async def test_a_click_decided_after_its_response_url_lapsed_replaces_the_buttons_by_chat_update(bot: Bot) -> None:
    event, prompt = await refund_prompt(bot)
    await bot.rt.workers.stop()  # the click waits in the queue, as behind a long backlog
    assert await click(bot, "refund_confirm", prompt, user=SARAH, team=CUSTOMER_TEAM) == 200
    async with bot.rt.store.write() as s:  # received 26 minutes ago: Slack honours a response_url for 30
        await s.execute(
            sql("UPDATE inbox SET received_at = :at WHERE kind = 'confirm'"),
            {"at": bot.rt.clock.now() - timedelta(minutes=26)},
        )
    bot.rt.workers.start()
    updated = await bot.slack.wait_for(
        lambda: [c for c in bot.slack.called("chat.update") if c.get("ts") == prompt["ts"]]
    )
    assert "refund_confirm" not in json.dumps(updated[-1].get("blocks"))  # the buttons are gone
    assert not [r for r in bot.slack.responses if r.get("replace_original")]  # the lapsed url was not used
    assert await rows(bot, "SELECT status FROM refunds") == [("processed",)]
