"""The Slack face's work: a message or a Confirm/Cancel click from the queue → the desk → posted once.

Routing decides, in order: who wrote it (customer, staff, colleague); which session the thread
is (a top-level customer message starts one); whether the thread belongs to this customer
(another customer gets an ephemeral note and nothing else). A person writing in a customer's
thread takes it over (the desk's `take_over`). Everything else goes to `Desk.say`, which stays
quiet in a thread a person has; the handoff is checked again just before posting.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from agent.events import Done, Escalation
from bot.host import Host
from bot.queue import Claimed
from bot.slack.blocks import as_dicts, result_blocks, slack_text
from bot.slack.board import StaffBoard
from bot.slack.delivery import TURN_TIMER, SlackOut, SlackTimer, crash_point, item_rows, rows_and_handoff
from bot.slack.people import People, subject
from bot.slack.routing import clean_text, mentions, session_key
from storage import metrics
from storage.models import ChatSession, OutboxMessage, Refund
from tools import outbox, tickets, wording
from tools.codes import Code
from tools.context import Actor, CallContext
from tools.sessions import context_of, open_session

log = logging.getLogger(__name__)
RESPONSE_URL_TTL = timedelta(minutes=25)  # Slack honours a response_url for 30 minutes (five uses)


@dataclass
class Turns:
    host: Host
    people: People
    out: SlackOut
    board: StaffBoard
    bot_user: str | None = None

    async def session(self, key: str) -> ChatSession | None:
        async with self.host.store.read() as s:
            return await _session(s, key)

    async def handle(self, item: Claimed) -> None:
        timer = SlackTimer()
        token = TURN_TIMER.set(timer)
        try:
            thread = _thread(item)
            async with self.host.store.read() as s:  # the thread's session, and whether a crash left rows
                if thread is None:
                    session, answered = None, bool(await item_rows(s, item.id))
                else:
                    session, answered = await _session_and_rows(s, thread, item.id)
            if answered:  # answered before a crash: only posting is left
                await self._deliver(item)
            elif item.kind in ("confirm", "cancel"):
                await self._decision(item)
            else:
                await self._message(item, session, timer, time.perf_counter())
        finally:
            TURN_TIMER.reset(token)

    # --- a message ---------------------------------------------------------------------------------
    async def _message(self, item: Claimed, session: ChatSession | None, timer: SlackTimer, started: float) -> None:
        assert item.user_id and item.channel and item.thread_ts
        kind = await self.people.classify(
            user=item.user_id, user_team=item.user_team, installing_team=item.installing_team
        )
        if kind != "customer":
            if session is not None:
                person = Actor.staff(item.user_id) if kind == "staff" else Actor.colleague(item.user_id)
                ticket = await self.host.desk.take_over(self.host.deps, session_id=session.id, person=person)
                if ticket is not None:
                    self.board.publish_soon(ticket.id)
            return
        ctx = await self._context(item, session)
        if ctx is not None:
            await self._turn(item, ctx, session, timer, started)

    async def _context(self, item: Claimed, session: ChatSession | None) -> CallContext | None:
        """The session this message belongs to (a new one for a customer's top-level message), or None
        when the bot has nothing to say here."""
        assert item.user_id and item.channel and item.thread_ts
        if session is None:
            if item.ts != item.thread_ts:
                return None  # a reply in a thread we never answered (started by staff, or before we joined)
            if (
                self.host.settings.support_mention_only
                and not mentions(item.text, self.bot_user)
                and item.payload.get("type") != "app_mention"
            ):
                return None
            actor = await self.people.actor_for(user=item.user_id, team=item.user_team)
            key = session_key(item.channel, item.thread_ts)
            ctx = await open_session(self.host.deps, channel="slack", actor=actor, external_key=key)
            if actor.kind == "unverified":
                await self._identity_ticket(ctx)
            return ctx
        if session.subject != subject(item.user_team, item.user_id):
            await self._ephemeral(item, wording.NOT_YOUR_THREAD)
            return None
        return context_of(session)

    async def _turn(
        self, item: Claimed, ctx: CallContext, session: ChatSession | None, timer: SlackTimer, started: float
    ) -> None:
        crash_point(self.host.settings, "before_model_call")
        await self.out.status(str(item.channel), str(item.thread_ts), "is looking into it…")
        text = clean_text(item.text)
        files = [str(f.get("name") or f.get("title") or "a file") for f in item.payload.get("files") or []]
        if files:
            text += "\n[The customer attached: " + ", ".join(files) + "]"
        escalated: set[int] = set()
        done: Done | None = None
        said = self.host.desk.say(ctx, text or "(an empty message)", inbox_id=item.id, session=session)
        async for event in said:
            if isinstance(event, Escalation):
                escalated.add(event.ticket_id)
            elif isinstance(event, Done):
                done = event
        await self._deliver(item)  # Slack clears the status line itself when we reply
        handled = time.perf_counter() - started
        for ticket_id in sorted(escalated):  # in the background: the staff channel has its own pace
            self.board.publish_soon(ticket_id)
        if done is not None:
            metrics.SLACK_SECONDS.observe(timer.seconds)
            metrics.OVERHEAD_SECONDS.observe(max(handled - done.model_s - timer.seconds, 0.0))

    async def _deliver(self, item: Claimed) -> None:
        async with self.host.store.read() as s:  # the rows to post, and whether a person took over meanwhile
            rows, handed_off = await rows_and_handoff(s, item.id)
        if handed_off and _thread(item) is not None:
            await self.out.skip_unposted(item.id)  # the bot stays quiet in a thread a person has
            return
        await self.out.deliver_item(item, self.host.queue, rows)

    async def _ephemeral(self, item: Claimed, text: str) -> None:
        """A note only the author sees (another customer's thread, someone else's button)."""
        async with self.host.store.write() as s:
            outbox.add(
                s,
                self.host.deps,
                session=None,
                kind="ephemeral",
                text=text,
                inbox_id=item.id,
                channel=item.channel,
                thread_ts=item.thread_ts,
                ephemeral_user=item.user_id,
            )
        await self.out.deliver_item(item, self.host.queue)

    async def _identity_ticket(self, ctx: CallContext) -> None:
        async with self.host.store.write() as s:
            ticket, created = await tickets.open_or_update(
                s,
                self.host.deps,
                session_id=ctx.session_id,
                priority="P3",
                reason="identity",
                summary="A customer whose Slack profile email is hidden or unknown started a conversation. "
                "Link them to their customer record.",
            )
        if created:
            await self.board.publish(ticket.id)

    # --- a Confirm or Cancel click ----------------------------------------------------------------
    async def _decision(self, item: Claimed) -> None:
        """The click was stored before Slack got its ack; the desk decides, as for a typed yes/no."""
        p = item.payload
        refund_id, user, team = str(p.get("refund_id") or ""), str(item.user_id), item.user_team
        async with self.host.store.read() as s:
            refund = await s.get(Refund, refund_id)
            session = await s.get(ChatSession, refund.session_id) if refund and refund.session_id else None
        if refund is None or session is None or session.subject != subject(team, user):
            await self._ephemeral(item, wording.ONLY_THE_CUSTOMER)
            return
        actor = await self.people.actor_for(user=user, team=team)
        ctx = CallContext(session.id, actor, channel="slack", locale=session.locale)
        result, text, _ = await self.host.desk.decide_refund(
            ctx, refund_id, yes=item.kind == "confirm", inbox_id=item.id
        )
        if result.code in (Code.NOT_ALLOWED, Code.INVALID_STATE, Code.NOT_FOUND):
            await self._ephemeral(item, wording.ONLY_THE_CUSTOMER if result.code is Code.NOT_ALLOWED else text)
            return
        await self._replace_buttons(item, text)
        await self._deliver(item)
        if result.code is Code.PAYMENT_FAILED:
            await self.board.sweep()

    async def _replace_buttons(self, item: Claimed, text: str) -> None:
        """The prompt's buttons become the answer: through the click's response_url while Slack still
        honours it (it does not spend chat.update's workspace quota), else by chat.update."""
        p, blocks = item.payload, as_dicts(result_blocks(text))
        fresh = self.host.clock.now() - item.received_at < RESPONSE_URL_TTL
        try:
            if p.get("response_url") and fresh:
                await self.out.respond(str(p["response_url"]), text=slack_text(text), blocks=blocks)
            elif item.channel and p.get("message_ts"):
                await self.out.call(
                    "chat.update", channel=item.channel, ts=p["message_ts"], text=slack_text(text), blocks=blocks
                )
        except Exception:  # the answer is in the thread either way; a stale button is refused when pressed
            log.warning("could not replace the buttons of refund %s", p.get("refund_id"), exc_info=True)

    # --- given up on ------------------------------------------------------------------------------
    async def dead_letter(self, item: Claimed) -> None:
        """The desk's one failure policy: an apology in the thread, an alert and a P2 ticket for staff."""
        metrics.DEAD_LETTERS.labels("slack").inc()
        session = await self.session(session_key(item.channel, item.thread_ts)) if item.thread_ts else None
        ticket = await self.host.desk.dead_letter(
            self.host.deps,
            session_id=session.id if session else None,
            item_id=item.id,
            attempts=item.attempts,
            channel=None if session else item.channel,
            thread_ts=None if session else item.thread_ts,
        )
        await self.board.publish(ticket.id)
        await self.out.deliver_loose()


def _thread(item: Claimed) -> str | None:
    """The session key of a message's thread (clicks carry their refund instead)."""
    if item.kind != "message" or not item.channel or not item.thread_ts:
        return None
    return session_key(item.channel, item.thread_ts)


async def _session(s: AsyncSession, key: str) -> ChatSession | None:
    return (await s.scalars(_BY_KEY, {"key": key})).one_or_none()


async def _session_and_rows(s: AsyncSession, key: str, item_id: int) -> tuple[ChatSession | None, bool]:
    """A thread's session and whether the work item has outgoing rows, in one statement (a message
    item's rows are its thread's: no session, no rows)."""
    row = (await s.execute(_BY_KEY_WITH_ROWS, {"key": key, "item": item_id})).one_or_none()
    return (row[0], bool(row[1])) if row is not None else (None, False)


# built once: a statement's cache key is computed once per object, not at each call
_BY_KEY = select(ChatSession).where(ChatSession.external_key == bindparam("key"))
_BY_KEY_WITH_ROWS = select(
    ChatSession, select(OutboxMessage.id).where(OutboxMessage.inbox_id == bindparam("item")).exists()
).where(ChatSession.external_key == bindparam("key"))
