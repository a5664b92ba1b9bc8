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

from agent.events import Done, Escalation
from bot.faults import crash_point
from bot.host import Host
from bot.slack.blocks import as_dicts, result_blocks, slack_text
from bot.slack.board import StaffBoard
from bot.slack.delivery import TURN_TIMER, SlackOut, SlackTimer
from bot.slack.people import People, subject
from bot.slack.routing import clean_text, is_external, mentions, session_key
from desk import outbox, sessions
from desk.inbox import Claimed
from desk.sessions import Session
from storage import metrics
from tools import wording
from tools.codes import Code
from tools.context import Actor, CallContext

log = logging.getLogger(__name__)
RESPONSE_URL_TTL = timedelta(minutes=25)  # Slack honours a response_url for 30 minutes (five uses)


@dataclass
class Turns:
    host: Host
    people: People
    out: SlackOut
    board: StaffBoard
    bot_user: str | None = None

    async def session(self, key: str) -> Session | None:
        return await sessions.by_key(self.host.deps, key)

    async def handle(self, item: Claimed) -> None:
        timer = SlackTimer()
        token = TURN_TIMER.set(timer)
        try:
            thread = _thread(item)
            more = False
            if thread is None:  # a click: whether a crash left its answer
                session, answered = None, bool((await outbox.item_rows(self.host.deps, item.id))[0])
            else:  # the thread's session, whether a crash left rows, and whether more messages wait
                session, answered, more = await sessions.with_answer(self.host.deps, thread, item.id)
            if answered:  # answered before a crash: only posting is left
                await self._deliver(item)
            elif item.kind in ("confirm", "cancel"):
                with self.host.store.waited_on():  # a person is watching the button
                    await self._decision(item)
            else:  # the author's messages still waiting right behind this one are read with it
                if more:
                    item = await self.host.queue.absorb(item, within_s=self.host.settings.coalesce_seconds)
                await self._message(item, session, timer, time.perf_counter())
        finally:
            TURN_TIMER.reset(token)

    # --- a message ---------------------------------------------------------------------------------
    async def _message(self, item: Claimed, session: Session | None, timer: SlackTimer, started: float) -> None:
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
            await self._quiet(item)
            return
        ctx = await self._context(item, session)
        if ctx is not None:
            await self._turn(item, ctx, session, timer, started)
        else:
            await self._quiet(item)

    async def _quiet(self, item: Claimed) -> None:
        """The bot says nothing here: the status line set when the message was stored goes away."""
        if self.host.settings.treat_internal_users_as_customers or is_external(item.user_team, item.installing_team):
            await self.out.status(str(item.channel), str(item.thread_ts), "")

    async def _context(self, item: Claimed, session: Session | None) -> CallContext | None:
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
            ctx = await sessions.open_session(self.host.deps, channel="slack", actor=actor, external_key=key)
            if actor.kind == "unverified" and (ticket := await self.host.desk.ask_who(ctx)) is not None:
                await self.board.publish(ticket.id)
            return ctx
        if session.subject != subject(item.user_team, item.user_id):
            await self._ephemeral(item, wording.NOT_YOUR_THREAD)
            return None
        return sessions.context_of(session)

    async def _turn(
        self, item: Claimed, ctx: CallContext, session: Session | None, timer: SlackTimer, started: float
    ) -> None:
        crash_point("before_model_call")
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
        rows, handed_off = await outbox.item_rows(self.host.deps, item.id)  # and whether a person took over
        if handed_off and _thread(item) is not None:
            await outbox.skip_unposted(self.host.deps, item.id)  # the bot stays quiet in a thread a person has
            return
        await self.out.deliver_item(item, rows)

    async def _ephemeral(self, item: Claimed, text: str) -> None:
        """A note only the author sees (another customer's thread, someone else's button)."""
        await outbox.note_for(
            self.host.deps,
            inbox_id=item.id,
            channel=item.channel,
            thread_ts=item.thread_ts,
            user=item.user_id,
            text=text,
        )
        await self.out.deliver_item(item)

    # --- a Confirm or Cancel click ----------------------------------------------------------------
    async def _decision(self, item: Claimed) -> None:
        """The click was stored before Slack got its ack; the desk decides, as for a typed yes/no."""
        refund_id = str(item.payload.get("refund_id") or "")
        actor = await self.people.actor_for(user=str(item.user_id), team=item.user_team)
        result, text, _ = await self.host.desk.decide_click(
            actor=actor, refund_id=refund_id, yes=item.kind == "confirm", inbox_id=item.id
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
