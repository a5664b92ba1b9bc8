"""The app manifest matches what the app registers; Block Kit rendering is pure."""

from __future__ import annotations

from pathlib import Path

import yaml

from agent.events import Citation
from bot.slack import blocks, listeners, routing
from bot.slack.blocks import TicketView, confirmation_blocks, slack_text, ticket_blocks

MANIFEST = yaml.safe_load((Path(__file__).resolve().parents[3] / "app_manifest.yml").read_text())
EVENT_OF_SUBSCRIPTION = {"app_mention": "app_mention", "message.channels": "message", "message.groups": "message"}


def test_every_registered_event_and_command_is_in_the_manifest_and_back() -> None:
    subscribed = {EVENT_OF_SUBSCRIPTION[e] for e in MANIFEST["settings"]["event_subscriptions"]["bot_events"]}
    assert subscribed == set(listeners.EVENTS)
    commands = {c["command"] for c in MANIFEST["features"]["slash_commands"]}
    assert commands == set(listeners.COMMANDS)
    assert MANIFEST["settings"]["interactivity"]["is_enabled"] is True
    assert MANIFEST["settings"]["socket_mode_enabled"] is True
    assert set(MANIFEST["oauth_config"]["scopes"]["bot"]) >= {
        "app_mentions:read",
        "channels:history",
        "groups:history",
        "channels:read",
        "groups:read",
        "chat:write",
        "commands",
        "users:read",
        "users:read.email",
    }
    assert set(listeners.ACTIONS) == {
        "refund_confirm",
        "refund_cancel",
        "ticket_claim",
        "ticket_release",
        "ticket_resolve",
        "refund_approve",
        "ticket_reply",
        "refund_deny",
        "ticket_link_customer",
        "ticket_save_article",
    }


def view(**kw: object) -> TicketView:
    base: dict[str, object] = {
        "id": 7,
        "priority": "P2",
        "reason": "refund_approval",
        "status": "open",
        "summary": "Over <limit>",
        "customer": "Sarah Chen (CUST-1001)",
        "order_id": "ORD-8901",
        "claimed_by": None,
        "permalink": "https://x/p1",
        "refund_pending": "$349.00",
        "unverified_user": None,
    }
    base.update(kw)
    return TicketView(**base)  # type: ignore[arg-type]


def action_ids(bs: list[object]) -> list[str]:
    out = []
    for b in bs:
        d = b.to_dict()  # type: ignore[attr-defined]
        out += [e["action_id"] for e in d.get("elements", []) if "action_id" in e]
    return out


def test_ticket_blocks_show_the_right_buttons_for_each_state() -> None:
    assert action_ids(ticket_blocks(view())) == [blocks.CLAIM, blocks.APPROVE, blocks.DENY]
    assert action_ids(ticket_blocks(view(status="claimed", claimed_by="U_ANA"))) == [
        blocks.RELEASE,
        blocks.RESOLVE,
        blocks.APPROVE,
        blocks.DENY,
    ]
    assert action_ids(ticket_blocks(view(status="resolved"))) == [blocks.SAVE_ARTICLE]
    assert action_ids(ticket_blocks(view(refund_pending=None, customer=None, unverified_user="U_X"))) == [
        blocks.CLAIM,
        blocks.LINK,
    ]
    rendered = [b.to_dict() for b in ticket_blocks(view(status="claimed", claimed_by="U_ANA"))]
    assert rendered[0] == {
        "type": "header",
        "block_id": "ticket_7_header",
        "text": {"type": "plain_text", "text": "🟠 P2 · #7 · Refund over the autonomous limit needs approval"},
    }
    fields = [f["text"] for f in rendered[1]["fields"]]
    assert fields == [
        "*Customer*\nSarah Chen (CUST-1001)",
        "*Order*\nORD-8901",
        "*Status*\nClaimed by <@U_ANA>",
        "*Thread*\n<https://x/p1|open the conversation>",
    ]
    assert rendered[2]["text"]["text"] == "Over &lt;limit&gt;"
    values = {e["value"] for b in rendered if b["type"] == "actions" for e in b["elements"]}
    assert values == {"7"}


def test_reply_blocks_link_each_cited_article_by_its_title() -> None:
    cites = (
        Citation(3, "Shipping <times> | costs", "https://help.example.com/shipping-times#delivery-times"),
        Citation(4, "Bad", "javascript:alert(1)"),
    )
    rendered = [b.to_dict() for b in blocks.reply_blocks("It takes 3 to 5 days <!channel>.", cites)]
    assert rendered[0]["text"]["text"] == "It takes 3 to 5 days &lt;!channel&gt;."
    assert rendered[1] == {
        "type": "context",
        "block_id": "reply_sources",
        "elements": [
            {
                "type": "mrkdwn",
                "text": "📄 <https://help.example.com/shipping-times#delivery-times|Shipping &lt;times&gt; ¦ costs>",
            }
        ],
    }
    assert [b["block_id"] for b in (x.to_dict() for x in blocks.reply_blocks("Hi", ()))] == ["reply"]


def test_confirmation_blocks_carry_the_refund_id() -> None:
    d = [b.to_dict() for b in confirmation_blocks(refund_id="RF-1", text="Refund $5 for <order>?")]
    assert d[0]["text"]["text"] == "Refund $5 for &lt;order&gt;?"
    assert [(e["action_id"], e["value"]) for e in d[1]["elements"]] == [
        ("refund_confirm", "RF-1"),
        ("refund_cancel", "RF-1"),
    ]


def test_slack_text_escapes_markup_and_hides_emails() -> None:
    assert slack_text("<!here> <@U1> a&b me@x.io") == "&lt;!here&gt; &lt;@U1&gt; a&amp;b (email hidden)"


SHAPES = Path(__file__).resolve().parents[2] / "fixtures" / "slack-payloads"  # copied from ../shared


def test_routing_on_slacks_own_payload_shapes() -> None:
    import json

    connect = json.loads((SHAPES / "02_app_mention_slack_connect_envelope_team_is_other_side.json").read_text())
    connect["event"] |= {"ts": "1.0", "text": "hi"}
    msg = routing.parse(connect)
    assert msg is not None and msg.installing_team == "T03E94MJU" and msg.user_team == "T03E94MJU"
    assert not routing.is_external(msg.user_team, msg.installing_team)  # a member of the installing org
    grid = json.loads((SHAPES / "03_app_mention_slack_connect_external_grid_user.json").read_text())
    grid["event"] |= {"ts": "1.0", "text": "hi"}
    gmsg = routing.parse(grid)
    assert gmsg is not None and routing.is_external(gmsg.user_team, gmsg.installing_team)  # E… id: external
    reply = json.loads((SHAPES / "01_message_thread_reply_channel_user_team_vs_source_team.json").read_text())
    rmsg = routing.parse(reply)
    assert rmsg is not None and rmsg.thread_ts == "1726133698.626339" and not rmsg.is_top_level
    assert rmsg.user_team == "T111"  # user_team, not source_team
    broadcast = json.loads((SHAPES / "07_message_thread_broadcast.json").read_text())
    assert routing.parse(broadcast) is not None
    no_user_team = json.loads((SHAPES / "02b_message_slack_connect_context_team_differs.json").read_text())
    no_user_team["event"] |= {"ts": "2.0", "text": "hi"}
    assert routing.parse(no_user_team).user_team == "T03E94MJU"  # type: ignore[union-attr]
    own = dict(reply, event=dict(reply["event"], user="W111"))  # authorizations' bot user
    assert routing.parse(own) is None
