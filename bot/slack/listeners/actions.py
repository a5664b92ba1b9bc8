"""Buttons: refund confirmation for customers, the ticket queue for staff.

A click's effect is committed before it is acknowledged (Slack does not retry clicks). Every
value is re-validated server-side: the refund and ticket ids in button values are only hints of
what was pressed; who may do it is decided by the tools' rules with the clicker as actor. A
second click, a replayed payload or a stale button changes nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.models.blocks import InputBlock, PlainTextInputElement
from slack_sdk.models.views import View

from bot.slack import blocks
from bot.slack.blocks import as_dicts, result_blocks, slack_text
from bot.slack.board import thread_of
from bot.slack.people import subject
from bot.slack.turns import give_back, take_over
from storage.models import ChatSession, Refund, Ticket
from storage.types import format_cents
from tools import articles, refunds, tickets, wording
from tools.codes import Code
from tools.context import Actor, CallContext

if TYPE_CHECKING:
    from bot.slack.runtime import Runtime

log = logging.getLogger(__name__)
LINK_VIEW = "link_customer"
ACTIONS = blocks.ACTION_IDS
NOT_STAFF = "Only members of the support team can do that."


def _clicker(body: dict[str, Any]) -> tuple[str, str | None]:
    user = body.get("user") or {}
    return str(user.get("id")), user.get("team_id")


def _value(body: dict[str, Any]) -> str:
    return str(((body.get("actions") or [{}])[0]).get("value") or "")


def register(app: AsyncApp, rt: Runtime) -> None:
    async def ephemeral(body: dict[str, Any], text: str) -> None:
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        thread = ((body.get("message") or {}).get("thread_ts")) or (body.get("container") or {}).get("message_ts")
        if channel:
            await rt.out.ephemeral(channel, _clicker(body)[0], text, thread_ts=thread)  # our own words

    # --- refund confirmation (customers) ----------------------------------------------------------
    async def on_refund(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, yes: bool) -> None:
        user, team = _clicker(body)
        refund_id = _value(body)
        async with rt.deps.store.read() as s:
            refund = await s.get(Refund, refund_id)
            session = await s.get(ChatSession, refund.session_id) if refund and refund.session_id else None
        if refund is None or session is None or session.subject != subject(team, user):
            await ack()  # nothing to commit: not this user's refund (or no such refund)
            await ephemeral(body, "Only the customer who asked for this refund can confirm or cancel it.")
            return
        actor = await rt.people.actor_for(user=user, team=team)
        ctx = CallContext(session.id, actor)
        if yes:
            result = await refunds.confirm(rt.deps, refund_id=refund_id, actor=actor, session_id=session.id)
        else:
            result = await refunds.cancel(rt.deps, refund_id=refund_id, actor=actor, session_id=session.id)
        await ack()  # the effect is committed; now tell Slack
        if result.code is Code.NOT_ALLOWED:
            await ephemeral(body, "Only the customer who asked for this refund can confirm or cancel it.")
            return
        if result.code is Code.INVALID_STATE:
            await ephemeral(body, wording.after_confirmation(Code.INVALID_STATE, order_id="", amount=""))
            return
        amount = format_cents(refund.amount_cents, refund.currency)
        text = (
            wording.after_confirmation(result.code, order_id=refund.order_id, amount=amount)
            if yes
            else wording.after_cancel(result.code, order_id=refund.order_id)
        )
        await rt.agent.settle(ctx, last_reply=text)
        container = body.get("container") or {}
        channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
        # the buttons are replaced through the click's response_url: it does not spend chat.update's
        # workspace-wide quota (about 50 a minute), which a busy day of confirmations would exhaust
        if body.get("response_url"):
            await respond(text=slack_text(text), blocks=as_dicts(result_blocks(text)), replace_original=True)
        elif channel and container.get("message_ts"):
            await rt.out.call(
                "chat.update",
                channel=channel,
                ts=container["message_ts"],
                text=slack_text(text),
                blocks=as_dicts(result_blocks(text)),
            )
        thread = (body.get("message") or {}).get("thread_ts") or container.get("thread_ts")
        if channel and thread:
            await rt.out.say(channel, slack_text(text), thread_ts=thread)
        if result.code is Code.PAYMENT_FAILED:
            await rt.board.sweep()

    async def on_confirm(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await on_refund(ack, body, respond, True)

    async def on_cancel(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await on_refund(ack, body, respond, False)

    # --- the staff queue ----------------------------------------------------------------------------
    async def staff_only(ack: AsyncAck, body: dict[str, Any]) -> Actor | None:
        user, _ = _clicker(body)
        if not await rt.people.is_staff(user):
            await ack()
            await ephemeral(body, NOT_STAFF)
            return None
        return Actor.staff(user)

    async def ticket_of(body: dict[str, Any]) -> Ticket | None:
        try:
            ticket_id = int(_value(body))
        except ValueError:
            return None
        async with rt.deps.store.read() as s:
            return await s.get(Ticket, ticket_id)

    async def on_ticket(ack: AsyncAck, body: dict[str, Any], action: str) -> None:
        staff = await staff_only(ack, body)
        if staff is None:
            return
        ticket = await ticket_of(body)
        if ticket is None:
            await ack()
            await ephemeral(body, "That ticket no longer exists.")
            return
        fn = {blocks.CLAIM: tickets.claim, blocks.RELEASE: tickets.release, blocks.RESOLVE: tickets.resolve}[action]
        result = await fn(rt.deps, ticket_id=ticket.id, staff=staff)
        await ack()
        if result.code is Code.ALREADY_CLAIMED:
            await ephemeral(body, f"Already claimed by <@{result.data.get('claimed_by')}>.")
        elif result.code is not Code.OK:
            await ephemeral(body, f"Nothing changed: the ticket is {result.data.get('status', 'gone')}.")
        elif action == blocks.CLAIM:
            await take_over(rt.deps, rt.out, ticket, person=str(staff.staff_id))
        elif action in (blocks.RESOLVE, blocks.RELEASE):
            await give_back(rt.deps, rt.out, ticket)
        await rt.board.publish(ticket.id)

    async def on_claim(ack: AsyncAck, body: dict[str, Any]) -> None:
        await on_ticket(ack, body, blocks.CLAIM)

    async def on_release(ack: AsyncAck, body: dict[str, Any]) -> None:
        await on_ticket(ack, body, blocks.RELEASE)

    async def on_resolve(ack: AsyncAck, body: dict[str, Any]) -> None:
        await on_ticket(ack, body, blocks.RESOLVE)

    async def on_decide(ack: AsyncAck, body: dict[str, Any], approve: bool) -> None:
        staff = await staff_only(ack, body)
        if staff is None:
            return
        ticket = await ticket_of(body)
        if ticket is None:
            await ack()
            await ephemeral(body, "That ticket no longer exists.")
            return
        result = await refunds.decide_for_ticket(rt.deps, ticket_id=ticket.id, staff=staff, approve=approve)
        await ack()
        if result.code not in (Code.OK, Code.REFUND_PROCESSED):
            await ephemeral(body, f"Nothing changed ({result.note})")
        else:
            async with rt.deps.store.read() as s:
                refund = await s.get(Refund, ticket.refund_id) if ticket.refund_id else None
                session = await s.get(ChatSession, ticket.session_id) if ticket.session_id else None
            where = thread_of(session)
            if refund is not None and where is not None:
                amount = format_cents(refund.amount_cents, refund.currency)
                text = (
                    wording.refund_done(order_id=refund.order_id, amount=amount)
                    if approve
                    else wording.refund_denied(order_id=refund.order_id)
                )
                await rt.out.say(where[0], slack_text(text), thread_ts=where[1])
            if session is not None:
                await rt.agent.settle(CallContext(session.id, Actor.staff(str(staff.staff_id))))
        await rt.board.publish(ticket.id)

    async def on_approve(ack: AsyncAck, body: dict[str, Any]) -> None:
        await on_decide(ack, body, True)

    async def on_deny(ack: AsyncAck, body: dict[str, Any]) -> None:
        await on_decide(ack, body, False)

    async def on_link(ack: AsyncAck, body: dict[str, Any]) -> None:
        staff = await staff_only(ack, body)
        if staff is None:
            return
        ticket = await ticket_of(body)
        await ack()
        if ticket is None:
            return
        view = View(
            type="modal",
            callback_id=LINK_VIEW,
            private_metadata=str(ticket.id),
            title="Link to a customer",
            submit="Link",
            close="Cancel",
            blocks=[
                InputBlock(
                    block_id="customer",
                    label="Customer email or id",
                    element=PlainTextInputElement(action_id="value", placeholder="sarah@example.com"),
                )
            ],
        )
        await rt.out.call("views.open", trigger_id=body.get("trigger_id"), view=view.to_dict())

    async def on_link_submit(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = str((body.get("user") or {}).get("id"))
        if not await rt.people.is_staff(user):
            await ack(response_action="errors", errors={"customer": NOT_STAFF})
            return
        value = str(view["state"]["values"]["customer"]["value"].get("value") or "").strip()
        try:
            ticket_id = int(view.get("private_metadata") or "")
        except ValueError:
            await ack(response_action="errors", errors={"customer": "This form is stale; press the button again."})
            return
        async with rt.deps.store.read() as s:
            ticket = await s.get(Ticket, ticket_id)
            session = await s.get(ChatSession, ticket.session_id) if ticket and ticket.session_id else None
        if session is None or not session.subject:
            await ack(response_action="errors", errors={"customer": "That ticket has no Slack user to link."})
            return
        result = await tickets.link_customer(
            rt.deps,
            staff=Actor.staff(user),
            channel=session.channel,
            subject=session.subject,
            customer=value,
            ticket_id=ticket_id,
        )
        if result.code is not Code.OK:
            await ack(response_action="errors", errors={"customer": "No customer has that email or id."})
            return
        await ack()
        await rt.board.publish(ticket_id)

    async def on_save_article(ack: AsyncAck, body: dict[str, Any]) -> None:
        staff = await staff_only(ack, body)
        if staff is None:
            return
        ticket = await ticket_of(body)
        if ticket is None:
            await ack()
            await ephemeral(body, "That ticket no longer exists.")
            return
        result = await articles.draft_from_ticket(rt.deps, ticket_id=ticket.id, staff=staff)
        await ack()
        if result.ok:
            ident = result.data["article_id"]
            await ephemeral(
                body,
                f"{result.note} Customers find it once it is published: `supportbot kb show {ident}`, "
                f"then `supportbot kb publish {ident}`.",
            )
        else:
            await ephemeral(body, f"Nothing saved: {result.note}")

    for action_id, handler in (
        (blocks.SAVE_ARTICLE, on_save_article),
        (blocks.CONFIRM, on_confirm),
        (blocks.CANCEL, on_cancel),
        (blocks.CLAIM, on_claim),
        (blocks.RELEASE, on_release),
        (blocks.RESOLVE, on_resolve),
        (blocks.APPROVE, on_approve),
        (blocks.DENY, on_deny),
        (blocks.LINK, on_link),
    ):
        app.action(action_id)(handler)
    app.view(LINK_VIEW)(on_link_submit)
