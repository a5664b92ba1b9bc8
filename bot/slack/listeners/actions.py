"""Buttons and modals: a customer's refund Confirm/Cancel, and the staff queue's ticket actions.

A Confirm/Cancel click is stored in the work queue before it is acknowledged (Slack does not
retry clicks) and decided by a worker through the desk, exactly as a typed "yes" is. A staff
action is a desk act, committed before the ack. Every value is re-validated below the face: the
refund and ticket ids in button values are only hints of what was pressed; who may do it is
decided by the desk's rules with the clicker as actor. A second click, a replayed payload or a
stale button changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.models.blocks import InputBlock, PlainTextInputElement
from slack_sdk.models.views import View

from bot.slack import blocks
from bot.slack.routing import session_key
from tools import wording
from tools.codes import Code, ToolResult
from tools.context import Actor

if TYPE_CHECKING:
    from bot.slack.runtime import Runtime

log = logging.getLogger(__name__)
LINK_VIEW, REPLY_VIEW = "link_customer", "reply_to_customer"
ACTIONS = blocks.ACTION_IDS
VIEWS = (LINK_VIEW, REPLY_VIEW)
TicketAct = Callable[..., Awaitable[ToolResult]]


def _clicker(body: dict[str, Any]) -> tuple[str, str | None]:
    user = body.get("user") or {}
    return str(user.get("id")), user.get("team_id")


def _value(body: dict[str, Any]) -> str:
    return str(((body.get("actions") or [{}])[0]).get("value") or "")


def _ticket_id(raw: str) -> int | None:
    return int(raw) if raw.isdigit() and len(raw) < 12 else None


def _where(body: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(channel, thread root, message ts) of the message whose button was pressed."""
    container, message = body.get("container") or {}, body.get("message") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    message_ts = container.get("message_ts") or message.get("ts")
    thread = message.get("thread_ts") or container.get("thread_ts") or message_ts
    return channel, thread, message_ts


def _modal(callback_id: str, ticket_id: int, title: str, submit: str, label: str, *, multiline: bool) -> View:
    element = PlainTextInputElement(action_id="value", multiline=multiline, max_length=3000)
    return View(
        type="modal",
        callback_id=callback_id,
        private_metadata=str(ticket_id),
        title=title,
        submit=submit,
        close="Cancel",
        blocks=[InputBlock(block_id="input", label=label, element=element)],
    )


class Actions:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.desk = rt.host.desk

    async def ephemeral(self, body: dict[str, Any], text: str) -> None:
        channel, thread, _ = _where(body)
        if channel:
            kwargs = {"thread_ts": thread} if thread else {}
            await self.rt.out.call("chat.postEphemeral", channel=channel, user=_clicker(body)[0], text=text, **kwargs)

    # --- refund confirmation (customers) --------------------------------------------------------------
    async def _queue_decision(self, ack: AsyncAck, body: dict[str, Any], kind: str) -> None:
        user, team = _clicker(body)
        channel, thread, message_ts = _where(body)
        if not channel or not thread:
            await ack()
            return
        payload = {"refund_id": _value(body)[:64], "response_url": body.get("response_url"), "message_ts": message_ts}
        stored = await self.rt.host.queue.put(
            face="slack",
            kind=kind,
            conversation=session_key(channel, thread),
            text="",
            payload=payload,
            channel=channel,
            thread_ts=thread,
            user_id=user,
            user_team=team,
        )
        await ack()  # stored: decided now, or by a worker in the thread's order
        if stored is None or not await self.rt.workers.run_now(stored):
            self.rt.workers.wake()

    async def confirm(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await self._queue_decision(ack, body, "confirm")

    async def cancel(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await self._queue_decision(ack, body, "cancel")

    # --- the staff queue ------------------------------------------------------------------------------
    async def _staff(self, ack: AsyncAck, body: dict[str, Any]) -> Actor | None:
        user, _ = _clicker(body)
        if not await self.rt.people.is_staff(user):
            await ack()
            await self.ephemeral(body, wording.NOT_STAFF)
            return None
        return Actor.staff(user)

    async def _act(self, ack: AsyncAck, body: dict[str, Any], act: TicketAct, **kwargs: Any) -> None:
        staff = await self._staff(ack, body)
        if staff is None:
            return
        ticket_id = _ticket_id(_value(body))
        result = await act(self.rt.deps, staff=staff, ticket_id=ticket_id, **kwargs) if ticket_id else None
        await ack()
        if result is None or result.code is Code.NOT_FOUND:
            await self.ephemeral(body, wording.TICKET_GONE if result is None else result.note)
        elif result.code is Code.ALREADY_CLAIMED:
            await self.ephemeral(body, wording.already_claimed(f"<@{result.data.get('claimed_by')}>"))
        elif not result.ok and result.code is not Code.PAYMENT_FAILED:
            await self.ephemeral(body, wording.nothing_changed(str(result.data.get("status", result.note))))
        if ticket_id:
            await self.rt.board.publish(ticket_id)
        self.rt.deliver_soon()  # what the customer is told (a person joined, handed back, approved) goes out

    async def claim(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await self._act(ack, body, self.desk.claim)

    async def release(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await self._act(ack, body, self.desk.release)

    async def resolve(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await self._act(ack, body, self.desk.resolve)

    async def approve(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await self._act(ack, body, self.desk.decide, approve=True)

    async def deny(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await self._act(ack, body, self.desk.decide, approve=False)

    async def save_article(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        """A resolved ticket's answer, saved as a draft help-center article (published from the CLI)."""
        staff = await self._staff(ack, body)
        if staff is None:
            return
        ticket_id = _ticket_id(_value(body))
        result = await self.desk.save_article(self.rt.deps, staff=staff, ticket_id=ticket_id) if ticket_id else None
        await ack()
        if result is None or result.code is Code.NOT_FOUND:
            await self.ephemeral(body, wording.TICKET_GONE)
        elif result.ok:
            await self.ephemeral(body, wording.article_saved(result.note, article_id=int(result.data["article_id"])))
        else:
            await self.ephemeral(body, wording.nothing_saved(result.note))

    # --- modals: link a customer, reply to a customer -------------------------------------------------
    async def _open(self, ack: AsyncAck, body: dict[str, Any], view: Callable[[int], View]) -> None:
        staff = await self._staff(ack, body)
        if staff is None:
            return
        ticket_id = _ticket_id(_value(body))
        await ack()
        if ticket_id is not None:
            await self.rt.out.call("views.open", trigger_id=body.get("trigger_id"), view=view(ticket_id).to_dict())

    async def link(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await self._open(
            ack,
            body,
            lambda t: _modal(LINK_VIEW, t, "Link to a customer", "Link", "Customer email or id", multiline=False),
        )

    async def reply(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await self._open(
            ack,
            body,
            lambda t: _modal(REPLY_VIEW, t, "Reply to the customer", "Send", "Your reply", multiline=True),
        )

    async def _submitted(
        self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]
    ) -> tuple[Actor, int, str] | None:
        user = str((body.get("user") or {}).get("id"))
        if not await self.rt.people.is_staff(user):
            await ack(response_action="errors", errors={"input": wording.NOT_STAFF})
            return None
        ticket_id = _ticket_id(str(view.get("private_metadata") or ""))
        if ticket_id is None:
            await ack(response_action="errors", errors={"input": wording.STALE_FORM})
            return None
        value = str(
            (((view.get("state") or {}).get("values") or {}).get("input") or {}).get("value", {}).get("value") or ""
        )
        return Actor.staff(user), ticket_id, value.strip()

    async def link_submit(self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        form = await self._submitted(ack, body, view)
        if form is None:
            return
        staff, ticket_id, value = form
        result = await self.desk.link(self.rt.deps, staff=staff, ticket_id=ticket_id, customer=value)
        if result.code is not Code.OK:
            note = wording.NO_SUCH_CUSTOMER if result.note.startswith("No such customer") else result.note
            await ack(response_action="errors", errors={"input": note})
            return
        await ack()
        await self.rt.board.publish(ticket_id)

    async def reply_submit(self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        form = await self._submitted(ack, body, view)
        if form is None:
            return
        staff, ticket_id, text = form
        result = await self.desk.reply(self.rt.deps, staff=staff, ticket_id=ticket_id, text=text)
        if result.code is Code.ALREADY_CLAIMED:
            await ack(
                response_action="errors",
                errors={"input": wording.already_claimed(f"<@{result.data.get('claimed_by')}>")},
            )
            return
        if not result.ok:
            await ack(response_action="errors", errors={"input": result.note})
            return
        await ack()
        await self.rt.board.publish(ticket_id)
        self.rt.deliver_soon()


def register(app: AsyncApp, rt: Runtime) -> None:
    acts = Actions(rt)
    app.action(blocks.CONFIRM)(acts.confirm)
    app.action(blocks.CANCEL)(acts.cancel)
    app.action(blocks.CLAIM)(acts.claim)
    app.action(blocks.RELEASE)(acts.release)
    app.action(blocks.RESOLVE)(acts.resolve)
    app.action(blocks.APPROVE)(acts.approve)
    app.action(blocks.DENY)(acts.deny)
    app.action(blocks.LINK)(acts.link)
    app.action(blocks.REPLY)(acts.reply)
    app.action(blocks.SAVE_ARTICLE)(acts.save_article)
    app.view(LINK_VIEW)(acts.link_submit)
    app.view(REPLY_VIEW)(acts.reply_submit)
