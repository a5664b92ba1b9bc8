"""`/refund-status [ORDER_ID]`: acknowledged at once, answered ephemerally via response_url.

A customer sees only their own orders' refunds (another customer's order reads exactly like an
unknown one); staff may look up any order. Customers in another organization usually cannot run
our slash commands in a Slack Connect channel; asking in their thread gives the same answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot.slack.blocks import slack_text
from tools.context import Actor, CallContext

if TYPE_CHECKING:
    from bot.slack.runtime import Runtime

COMMANDS = ("/refund-status",)


def register(app: AsyncApp, rt: Runtime) -> None:
    async def on_refund_status(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        user, team = str(body.get("user_id")), body.get("team_id")
        order_id = (str(body.get("text") or "").split() or [None])[0]
        staff = await rt.people.is_staff(user)
        actor = Actor.staff(user) if staff else await rt.people.actor_for(user=user, team=team)
        text = await rt.host.desk.refund_status(CallContext(f"command:{user}", actor, channel="slack"), order_id)
        await respond(text=slack_text(text), response_type="ephemeral", replace_original=False)

    app.command(COMMANDS[0])(on_refund_status)
