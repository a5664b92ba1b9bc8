"""Answering one inbox item: route → run the agent → render → post exactly once.

Routing decides, in order: who wrote it (customer, staff, colleague); which session the thread
is (a top-level customer message starts one); whether the thread belongs to this customer
(another customer gets an ephemeral note and nothing else); whether a person has taken the
thread over (then the bot stays quiet). The handoff state is checked again just before posting.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy import select, update

from agent.chat import Conversation
from agent.events import Confirmation, Done, Escalation, Reply
from agent.loop import Agent
from bot import metrics
from bot.slack.blocks import as_dicts, confirmation_blocks, reply_blocks, slack_text
from bot.slack.board import StaffBoard, thread_of
from bot.slack.delivery import TURN_TIMER, Intent, SlackOut, SlackTimer, crash_point
from bot.slack.inbox import Claimed
from bot.slack.people import People, subject
from bot.slack.routing import clean_text, mentions, session_key
from storage.models import ChatSession, Ticket
from tools import tickets, wording
from tools.context import Actor, CallContext, Deps
from tools.sessions import load_context, open_session

log = logging.getLogger(__name__)


@dataclass
class Turns:
    deps: Deps
    agent: Agent
    people: People
    out: SlackOut
    board: StaffBoard
    bot_user: str | None = None

    async def session(self, key: str) -> ChatSession | None:
        async with self.deps.store.read() as s:
            return (await s.scalars(select(ChatSession).where(ChatSession.external_key == key))).one_or_none()

    async def handle(self, item: Claimed) -> None:
        timer = SlackTimer()
        token = TURN_TIMER.set(timer)
        try:
            await self._handle(item, timer, time.perf_counter())
        finally:
            TURN_TIMER.reset(token)

    async def _handle(self, item: Claimed, timer: SlackTimer, started: float) -> None:
        if await self.out.outbox(item.id):  # the turn ran before a crash: only posting is left
            await self._deliver(item)
            return
        kind = await self.people.classify(
            user=item.user_id, user_team=item.user_team, installing_team=item.installing_team
        )
        key = session_key(item.channel, item.thread_ts)
        session = await self.session(key)
        who = subject(item.user_team, item.user_id)
        if kind != "customer":
            if session is not None and session.actor_kind != "staff" and not session.handed_off_by:
                await self.hand_off(session, person=item.user_id)
            return
        if session is None:
            if item.ts != item.thread_ts:
                return  # a reply in a thread we never answered (started by staff, or before we joined)
            if (
                self.deps.settings.support_mention_only
                and not mentions(item.text, self.bot_user)
                and item.payload.get("type") != "app_mention"
            ):
                return
            actor = await self.people.actor_for(user=item.user_id, team=item.user_team)
            ctx = await open_session(self.deps, channel="slack", actor=actor, external_key=key)
            if actor.kind == "unverified":
                await self._identity_ticket(ctx)
        else:
            if session.subject != who:
                await self.out.record(
                    item.id,
                    item.channel,
                    item.thread_ts,
                    [Intent(text=wording.NOT_YOUR_THREAD, ephemeral_user=item.user_id)],
                )
                await self._deliver(item, check_handoff=False)
                return
            if session.handed_off_by:
                return
            loaded = await load_context(self.deps, session.id)
            assert loaded is not None
            ctx = loaded
        await self._turn(item, ctx, timer, started)

    async def _turn(self, item: Claimed, ctx: CallContext, timer: SlackTimer, started: float) -> None:
        crash_point(self.deps.settings, "before_model_call")
        await self.out.status(item.channel, item.thread_ts, "is looking into it…")
        text = clean_text(item.text)
        files = [str(f.get("name") or f.get("title") or "a file") for f in item.payload.get("files") or []]
        if files:
            text += "\n[The customer attached: " + ", ".join(files) + "]"
        replies: list[Reply] = []
        confirmations: list[Confirmation] = []
        escalated: set[int] = set()
        done: Done | None = None
        async for event in Conversation(self.agent, ctx).say(text or "(an empty message)"):
            if isinstance(event, Reply):
                replies.append(event)
            elif isinstance(event, Confirmation):
                confirmations.append(event)
            elif isinstance(event, Escalation):
                escalated.add(event.ticket_id)
                metrics.ESCALATIONS.labels(event.priority).inc()
            elif isinstance(event, Done):
                done = event
        intents = [
            Intent(text=slack_text(r.text), blocks=as_dicts(reply_blocks(r.text, r.citations)) if r.citations else None)
            for r in replies
        ]
        for n, conf in enumerate(confirmations):  # the first prompt rides on the last reply: one post, not two
            lead = intents.pop().text if n == 0 and intents else None
            blocks = confirmation_blocks(
                refund_id=conf.refund_id, text=conf.text, lead=replies[-1].text if lead is not None else None
            )
            intents.append(Intent(text=lead or slack_text(conf.text), blocks=as_dicts(blocks)))
        await self.out.record(item.id, item.channel, item.thread_ts, intents)
        await self._deliver(item)  # Slack clears the status line itself when we reply
        handled = time.perf_counter() - started
        for ticket_id in sorted(escalated):  # in the background: the staff channel has its own pace
            self.board.publish_soon(ticket_id)
        if done is not None:
            total = (self.deps.clock.now() - item.received_at).total_seconds()
            metrics.TURNS.labels(done.outcome).inc()
            metrics.TURN_SECONDS.observe(max(total, 0.0))
            metrics.MODEL_SECONDS.observe(done.model_s)
            metrics.SLACK_SECONDS.observe(timer.seconds)
            metrics.OVERHEAD_SECONDS.observe(max(handled - done.model_s - timer.seconds, 0.0))
            for code, n in done.tools.items():
                metrics.TOOL_OUTCOMES.labels(code).inc(n)

    async def _deliver(self, item: Claimed, *, check_handoff: bool = True) -> None:
        if check_handoff:
            session = await self.session(session_key(item.channel, item.thread_ts))
            if session is not None and session.handed_off_by:
                await self.out.skip_unposted(item.id)  # a person took over meanwhile: the bot stays quiet
                return
        await self.out.deliver(item.id)

    async def _identity_ticket(self, ctx: CallContext) -> None:
        async with self.deps.store.write() as s:
            ticket, created = await tickets.open_or_update(
                s,
                self.deps,
                session_id=ctx.session_id,
                priority="P3",
                reason="identity",
                summary="A customer whose Slack profile email is hidden or unknown started a conversation. "
                "Link them to their customer record.",
            )
        if created:
            await self.board.publish(ticket.id)

    async def hand_off(self, session: ChatSession, *, person: str) -> None:
        """A person wrote in a customer's thread: the bot goes quiet there; a ticket, claimed by that
        person, always exists to resolve (resolving it gives the thread back)."""
        now = self.deps.clock.now()
        async with self.deps.store.write() as s:
            await s.execute(
                update(ChatSession).where(ChatSession.id == session.id).values(handed_off_by=person, updated_at=now)
            )
            ticket, _ = await tickets.open_or_update(
                s,
                self.deps,
                session_id=session.id,
                priority="P3",
                reason="handoff",
                summary=f"<@{person}> took over the conversation.",
                customer_id=session.customer_id,
            )
        if ticket.status == "open":
            await tickets.claim(self.deps, ticket_id=ticket.id, staff=Actor.staff(person))
        await self.board.publish(ticket.id)

    async def dead_letter(self, item: Claimed) -> None:
        """Given up on: the customer gets an apology, the staff channel an alert; nothing else stops."""
        metrics.DEAD_LETTERS.inc()
        await self.out.say(item.channel, slack_text(wording.DEAD_LETTER), thread_ts=item.thread_ts)
        channel = self.deps.settings.support_staff_channel
        if channel:
            link = ""
            try:
                link = (await self.out.call("chat.getPermalink", channel=item.channel, message_ts=item.ts)).get(
                    "permalink", ""
                )
            except Exception:
                link = ""
            await self.out.say(
                channel,
                slack_text(
                    f"⚠️ A customer message could not be answered after {item.attempts} attempts (inbox item "
                    f"{item.id}). Replay it with `supportbot inbox retry {item.id}` once the cause is fixed."
                )
                + (f" <{link}|Open the thread>" if link else ""),
            )


async def give_back(deps: Deps, out: SlackOut, ticket: Ticket) -> None:
    """A resolved ticket returns its thread to the bot, and says so in the thread."""
    async with deps.store.write() as s:
        session = await s.get(ChatSession, ticket.session_id) if ticket.session_id else None
        if session is None or not session.handed_off_by:
            return
        session.handed_off_by = None
        session.updated_at = deps.clock.now()
    where = thread_of(session)
    if where is not None:
        await out.say(where[0], slack_text(wording.HANDED_BACK), thread_ts=where[1])


async def take_over(deps: Deps, out: SlackOut, ticket: Ticket, *, person: str) -> None:
    """A claimed ticket takes its thread from the bot; the customer is told a person joined."""
    async with deps.store.write() as s:
        session = await s.get(ChatSession, ticket.session_id) if ticket.session_id else None
        if session is None:
            return
        session.handed_off_by = person
        session.updated_at = deps.clock.now()
    where = thread_of(session)
    if where is not None:
        await out.say(where[0], slack_text(wording.STAFF_JOINED), thread_ts=where[1])
