"""Staff write back to website visitors: a staff reply is a row of the session's message log, which
the visitor's session stream delivers exactly once, wherever the reply was made (another replica:
its own engine on the same database, no in-process wake-up). While a person has the conversation,
the visitor's words go to the ticket's thread in the staff channel, and the bot says nothing."""

from __future__ import annotations

from typing import Any

from desk import staff as desk
from storage.engine import Store
from storage.settings import Settings
from storage.types import SystemClock
from tests.bot.conftest import stop_bot
from tests.bot.web.test_api import SARAH, open_api, rows, web_bot
from tests.fakes.slack_api import FakeSlack
from tools import wording
from tools.context import Actor
from tools.toolbox import make_deps

ANA = Actor.staff("U_ANA")


async def test_a_staff_reply_made_on_another_replica_reaches_the_visitor_once(
    settings: Settings, store: Store, slack: FakeSlack
) -> None:
    bot = await web_bot(settings, store, slack)
    other = Store.from_settings(settings)  # another replica's engine on the same database
    try:
        api = await open_api(bot)
        human = await api.chat("I want to talk to a human", headers=SARAH)
        session = human["session_id"]
        assert human["state"]["escalated"] is True
        [(ticket_id,)] = await rows(api, "SELECT id FROM tickets")
        replica = make_deps(other, settings, SystemClock())
        result = await desk.reply(replica, staff=ANA, ticket_id=ticket_id, text="Hi Sarah, Ana here. How can I help?")
        assert result.ok
        log = await api.messages(session, headers=SARAH, n=3)
        assert [(m["event"], m["data"]["kind"], m["data"]["author"]) for m in log] == [
            ("message", "reply", "bot"),
            ("message", "notice", "bot"),
            ("message", "staff_reply", "support"),
        ]
        assert log[1]["data"]["text"] == wording.STAFF_JOINED  # replying claimed the ticket: a person joined
        assert log[2]["data"]["text"] == "Hi Sarah, Ana here. How can I help?"
        again = await api.messages(session, headers=SARAH, n=3, last=0)
        assert again == log  # the log replays; each entry has one id: delivered exactly once
        # the next answer carries what was not shown in a response yet, once
        later = await api.chat("thanks!", headers=SARAH, session_id=session)
        assert [m["kind"] for m in later["messages"]] == ["notice", "staff_reply"]
        assert later["reply"] == "" and later["state"]["with_person"] is True  # the bot is quiet now
        after = await api.chat("still there?", headers=SARAH, session_id=session)
        assert after["messages"] == []
    finally:
        await other.dispose()
        await stop_bot(bot)


async def test_a_handed_off_visitors_words_go_to_the_tickets_staff_thread(
    settings: Settings, store: Store, slack: FakeSlack
) -> None:
    bot = await web_bot(settings, store, slack)
    try:
        api = await open_api(bot)
        human = await api.chat("I want to talk to a human", headers=SARAH)
        [(ticket_id,)] = await rows(api, "SELECT id FROM tickets")
        await bot.rt.board.publish(ticket_id)
        assert (await desk.claim(bot.rt.deps, ticket_id=ticket_id, staff=ANA)).ok
        answer = await api.chat("My order never came, it was ORD-8842", headers=SARAH, session_id=human["session_id"])
        assert answer["reply"] == ""  # the bot stays quiet while a person has the conversation
        await bot.rt.out.deliver_loose()
        ticket_post = bot.slack.posts(channel="C_STAFF")[0]
        relayed: list[dict[str, Any]] = bot.slack.posts(channel="C_STAFF", thread_ts=ticket_post["ts"])
        assert [m["text"] for m in relayed if "customer wrote" in m["text"]] == [
            "💬 The customer wrote: My order never came, it was ORD-8842"
        ]
        history = await rows(api, "SELECT role FROM messages ORDER BY id")
        assert history[-1] == ("user",)  # remembered for the transcript, not answered
    finally:
        await stop_bot(bot)
