"""Issue 16 on every face: a model's false claim, pasted JSON or tool name reaches no customer, in
Slack (the real Bolt app and a fake Slack Web API), the website chat API and the terminal shell.
(MCP has no model of ours: its results are checked in tests/tools/test_mcp.py.)"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import text as sql

from agent.scripted import HostileModel, ScriptedModel, reply, text, tool_use
from storage.engine import Store
from storage.metrics import REPLIES_REPLACED
from storage.settings import Settings
from tests.bot.conftest import Bot, bot_settings, start_bot, stop_bot
from tests.bot.test_shell import shell
from tests.bot.web.test_api import SARAH, open_api, web_bot
from tests.fakes.slack_api import FakeSlack
from tools import wording
from tools.codes import Code

# what a hostile model's turn may end with: code's true sentences, or a verdict's fixed reply
SAFE = (
    wording.CORRECTION_LEAD,
    wording.TOOL_TEXT_LEAD,
    wording.NOT_FOUND_ORDER,
    wording.BY_CODE[Code.IDENTITY_MISMATCH],
)
LIES = ("Refunded", "refunded", "call you", "lookup_order", "process_refund", '"code"', "$500", "500,00", "yesterday")


def replaced(reason: str) -> float:
    return REPLIES_REPLACED.labels(reason)._value.get()


async def audit(bot: Bot) -> list[tuple[str, str]]:
    async with bot.rt.store.read() as s:
        rows = (
            await s.execute(sql("SELECT outcome, input FROM audit_log WHERE action = 'reply_replaced' ORDER BY id"))
        ).all()
    return [(r[0], json.loads(r[1])["original"] if isinstance(r[1], str) else r[1]["original"]) for r in rows]


async def test_slack_the_issues_lie_after_refused_calls_is_never_asked_for(
    settings: Settings, store: Store, slack: FakeSlack
) -> None:
    """The issue's case: another customer's order is refused, then a refund of it, then "Refunded
    the headphones." The ownership verdict ends the turn at the first refusal, with the words of an
    unknown order: the model is not asked again, so its lie is never written."""
    model = ScriptedModel(
        [
            reply(tool_use("lookup_order", order_id="ORD-5501")),
            reply(tool_use("process_refund", order_id="ORD-5501", amount=129, reason="broken")),
            reply(text("Refunded the headphones.")),
        ]
    )
    bot = await start_bot(bot_settings(settings, slack), store, slack, model=model)
    try:
        event = await bot.say("My headphones from ORD-5501 broke, refund them")
        (posted,) = await bot.wait_replies(event)
        assert posted["text"] == wording.NOT_FOUND_ORDER and len(model.requests) == 1
        async with bot.rt.store.read() as s:
            tickets = (await s.execute(sql("SELECT priority, reason FROM tickets"))).all()
        assert [tuple(t) for t in tickets] == [("P1", "security")]
    finally:
        await stop_bot(bot)


async def test_slack_a_false_refund_is_not_posted_and_is_counted(
    settings: Settings, store: Store, slack: FakeSlack
) -> None:
    model = ScriptedModel(
        [
            reply(tool_use("lookup_order", order_id="ORD-8842")),
            reply(  # the lie rides beside the call that shows the Confirm step, the turn's last
                text("Refunded the headphones. Your refund of $89.99 has been processed."),
                tool_use("process_refund", order_id="ORD-8842", amount=89.99, reason="broken"),
            ),
        ]
    )
    before = replaced("false_refund")
    bot = await start_bot(bot_settings(settings, slack), store, slack, model=model)
    try:
        event = await bot.say("My blender ORD-8842 broke, refund it")
        (posted,) = await bot.wait_replies(event)
        assert "Refunded" not in posted["text"] and "processed" not in posted["text"]
        assert posted["text"] == (
            f"{wording.CORRECTION_LEAD} {wording.NOT_FOUND_ORDER} Order ORD-8842 (ProBlend 500 blender): refund of "
            "$89.99 is waiting for your confirmation."
        )
        assert "confirm" in json.dumps(posted.get("blocks"))  # the Confirm button still comes, from the row
        assert await audit(bot) == [
            ("false_refund", "Refunded the headphones. Your refund of $89.99 has been processed.")
        ]  # the original, for staff
        assert replaced("false_refund") == before + 1
        async with bot.http.get(f"{bot.admin_url}/metrics") as resp:
            exposed = await resp.text()
        assert 'supportbot_replies_replaced_total{reason="false_refund"}' in exposed
    finally:
        await stop_bot(bot)


async def test_slack_a_promised_call_without_a_ticket_is_not_posted(
    settings: Settings, store: Store, slack: FakeSlack
) -> None:
    model = ScriptedModel([reply(text("I've passed this to our team. A colleague will call you tomorrow."))])
    bot = await start_bot(bot_settings(settings, slack), store, slack, model=model)
    try:
        event = await bot.say("my blender is making a weird noise")
        (posted,) = await bot.wait_replies(event)
        assert posted["text"] == f"{wording.CORRECTION_LEAD} {wording.NO_HANDOFF} {wording.NO_CALLS}"
        async with bot.rt.store.read() as s:
            assert await s.scalar(sql("SELECT count(*) FROM tickets")) == 0  # and indeed nobody was asked
    finally:
        await stop_bot(bot)


async def test_web_api_wrong_amounts_and_pasted_json_are_replaced(
    settings: Settings, store: Store, slack: FakeSlack
) -> None:
    model = ScriptedModel(
        [
            reply(tool_use("get_customer", email="sarah@example.com")),
            reply(tool_use("lookup_order", order_id="ORD-8842")),
            reply(
                text("Your refund of $500.00 has been processed and credited."),
                tool_use("process_refund", order_id="ORD-8842", amount=89.99, reason="broken"),
            ),
            reply(text('Sure: {"outcome": "ok", "code": "OK", "refund_eligible": true}')),
        ]
    )
    bot = await web_bot(settings, store, slack, model=model)
    try:
        api = await open_api(bot)
        first = await api.chat("My blender ORD-8842 arrived broken, refund please", headers=SARAH)
        assert first["reply"] == (
            f"{wording.CORRECTION_LEAD} Order ORD-8842 (ProBlend 500 blender): refund of $89.99 is waiting for "
            "your confirmation."
        )
        assert first["confirmation"]["amount"] == "$89.99"  # from the refund row, as ever
        second = await api.chat("and is it eligible?", headers=SARAH, session_id=first["session_id"])
        assert second["reply"].startswith(wording.TOOL_TEXT_LEAD) and "{" not in second["reply"]
        assert not any(lie in first["reply"] + second["reply"] for lie in LIES)
        assert [r for r, _ in await audit(bot)] == ["false_refund", "tool_text"]
    finally:
        await stop_bot(bot)


async def test_web_api_a_hostile_model_makes_no_false_claim(settings: Settings, store: Store, slack: FakeSlack) -> None:
    bot = await web_bot(settings, store, slack, model=HostileModel())
    try:
        api = await open_api(bot)
        answer = await api.chat("I want a refund for ORD-8842", headers=SARAH)
        said = [answer["reply"]]
        for n in range(len(HostileModel.LIES)):  # one lie per turn, every one of them
            said.append((await api.chat(f"and now? ({n})", headers=SARAH, session_id=answer["session_id"]))["reply"])
        for reply_text in said:
            assert not any(lie in reply_text for lie in LIES), reply_text
            assert reply_text.startswith(SAFE), reply_text
        lied = [r for r in said if r.startswith((wording.CORRECTION_LEAD, wording.TOOL_TEXT_LEAD))]
        assert len(await audit(bot)) == len(lied) >= len(said) - 3  # three turns a verdict ended at once
    finally:
        await stop_bot(bot)


def test_shell_a_hostile_model_makes_no_false_claim(tmp_path: Path, database_url: str) -> None:
    turns = "".join(f"refund ORD-8842 please ({n})\n" for n in range(len(HostileModel.LIES)))
    proc = shell(tmp_path, database_url, turns, "--as", "sarah@example.com", "--provider", "hostile")
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stdout.splitlines() if line.startswith("supportbot> ")]
    assert len(said) == len(HostileModel.LIES)
    for line in said:
        assert not any(lie in line for lie in LIES), line
        assert line.removeprefix("supportbot> ").startswith(SAFE), line
