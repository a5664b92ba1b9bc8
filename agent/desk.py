"""The desk every face calls: the customer's acts (say, confirm, cancel) and, passed through from
`tools.desk`, every act of staff (claim, release, resolve, approve, deny, reply, link, take over,
dead letter). A face parses its input, calls the act with the actor it verified, and renders what
comes back; the rules and the transactions are here and below.

`say` is the one conversation entry for every face (Slack, the website, the shell, the eval):

    handed off to a person? ─▶ remembered, relayed to the ticket's staff thread (not Slack: staff
                               read a Slack thread themselves); the bot says nothing
    /refund-status [ORDER]  ─▶ the customer's refunds, worded by code
    yes / no to a waiting refund ─▶ `confirm` / `cancel`, exactly as the Confirm button does
    anything else           ─▶ the agent loop

Whatever is said is written to the outgoing log (`tools.outbox`) with the turn's work item, so
each face delivers it exactly once; metrics are counted here for every channel alike.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agent import policy
from agent.events import Confirmation, Done, Event, Reply, Usage
from agent.loop import Agent, Start
from storage import metrics
from storage.models import ChatSession, OutboxMessage, Refund, Ticket
from storage.types import format_cents
from tools import articles, outbox, refunds, tickets, wording
from tools import desk as staff_desk
from tools.codes import Code, ToolResult
from tools.context import CallContext, Deps
from tools.get_refund_status import refund_status
from tools.sessions import settle, text_message
from tools.toolbox import Toolbox

# answers that are not part of the conversation: someone else's click, a replayed or stale one
NOT_SAID = (Code.NOT_ALLOWED, Code.INVALID_STATE, Code.NOT_FOUND)
YES = {"yes", "y", "yep", "yeah", "yup", "confirm", "ok", "okay", "sure", "go ahead", "please do", "do it"}
YES |= {"sí", "si", "claro", "vale", "ja", "gerne", "jawohl"}  # Spanish and German
NO = {"no", "n", "nope", "cancel", "don't", "do not", "never mind", "nevermind", "stop", "nein", "no gracias"}
FILLER = re.compile(r"\b(please|thanks|thank you|go ahead|do it)\b")


def yes_or_no(text: str) -> bool | None:
    """A bare yes or no (with at most a please/thanks), as an answer to "Shall I go ahead?"."""
    words = re.sub(r"[^\w\s']", " ", text[:200].lower()).strip()
    core = re.sub(r"\s+", " ", FILLER.sub(" ", words)).strip()
    for candidate in (words, core):
        if candidate in YES:
            return True
        if candidate in NO:
            return False
    return None


class Desk:
    """`agent` runs the customer's turns; a face that has no model of its own (MCP: the client's
    model is the loop) builds the desk on a toolbox alone."""

    def __init__(self, agent: Agent | None = None, *, toolbox: Toolbox | None = None) -> None:
        self._agent = agent
        self.toolbox = toolbox or (agent.toolbox if agent else None)
        assert self.toolbox is not None, "a desk needs an agent or a toolbox"
        self.deps = self.toolbox.deps

    @property
    def agent(self) -> Agent:
        assert self._agent is not None, "this desk has no agent (MCP): customers' turns run elsewhere"
        return self._agent

    # --- the customer's acts ---------------------------------------------------------------------
    async def say(
        self, ctx: CallContext, text: str, *, inbox_id: int | None = None, session: ChatSession | None = None
    ) -> AsyncIterator[Event]:
        """`session`: the session's row as the face read it for this message, if it did (not read again)."""
        started = time.perf_counter()
        text = text.replace("\x00", "")
        stripped = text.strip()
        command = stripped.startswith("/refund-status") or yes_or_no(stripped) is not None
        start = None
        if session is not None and session.id != ctx.session_id:
            raise ValueError("the session row given is not the context's session")
        runs = self._agent is not None and not command
        if session is None or (runs and not session.handed_off_by):
            async with self.deps.store.read() as s:  # the turn's reads up front, with the session's
                session = session or await s.get(ChatSession, ctx.session_id)
                if runs and not (session and session.handed_off_by):
                    start = await self.agent.start(s, ctx, session)
        if session is not None and session.handed_off_by:
            yield await self._relay(ctx, session, text)
            return
        if stripped.startswith("/refund-status"):
            arg = stripped.removeprefix("/refund-status").split()
            reply = await self.refund_status(ctx, arg[0] if arg else None)
            yield Reply(reply)
            yield await self._said(ctx, [Reply(reply)], inbox_id, started)
            return
        answer = yes_or_no(stripped)
        pending = await self.pending_refund(ctx) if answer is not None else None
        if pending is not None and answer is not None:
            _, reply, row = await self.decide_refund(ctx, pending.id, yes=answer, typed=stripped, inbox_id=inbox_id)
            yield Reply(reply)
            yield await self._said(ctx, [], None, started, extra=row)
            return
        async for event in self._turn(ctx, text, inbox_id, started, start, session):
            yield event

    async def _turn(
        self,
        ctx: CallContext,
        text: str,
        inbox_id: int | None,
        started: float,
        start: Start | None,
        session: ChatSession | None,
    ) -> AsyncIterator[Event]:
        """The agent's turn; what it said goes to the outgoing log in the turn's last write."""
        said: list[Reply | Confirmation] = []
        written: list[int] = []
        missing: list[Confirmation] = []

        async def finish(s: AsyncSession, outcome: str) -> None:
            conf = await self._unprompted(s, ctx, said, outcome)
            if conf is not None:
                said.append(conf)
                missing.append(conf)
            written.extend(await _write_said(s, self.deps, ctx, said, inbox_id, session))

        async for event in self.agent.run_turn(ctx, text, on_finish=finish, start=start):
            if isinstance(event, Reply | Confirmation):
                said.append(event)
            if isinstance(event, Done):
                for conf in missing:
                    yield conf
                event = dataclasses.replace(event, said=tuple(written))
                count(ctx.channel, event)
            yield event

    async def _unprompted(
        self, s: AsyncSession, ctx: CallContext, said: list[Reply | Confirmation], outcome: str
    ) -> Confirmation | None:
        """The Confirm step of a refund waiting in this session that no message has offered yet (a
        turn run again after a crash finds the refund its first run prepared and only talks about
        it): the customer is never left with a refund and no way to send it."""
        if outcome != "awaiting_customer" or any(isinstance(e, Confirmation) for e in said):
            return None
        pending = await _pending_refund(s, ctx)
        if pending is None:
            return None
        offered = (
            await s.scalars(
                select(OutboxMessage.data).where(
                    OutboxMessage.session_id == ctx.session_id, OutboxMessage.kind == "confirmation"
                )
            )
        ).all()
        if any((d or {}).get("refund_id") == pending.id for d in offered):
            return None
        return await self.agent.confirmation(pending.id, s)

    async def _said(
        self,
        ctx: CallContext,
        said: list[Reply | Confirmation],
        inbox_id: int | None,
        started: float,
        *,
        extra: int | None = None,
    ) -> Done:
        """An answer without the agent (/refund-status, a typed yes or no): its outgoing rows and the
        session's outcome in one write; the turn counted, and its Done with the row ids."""
        async with self.deps.store.write() as s:
            ids = tuple(await _write_said(s, self.deps, ctx, said, inbox_id))
            outcome, priority = await settle(s, self.deps, ctx.session_id)
        ids += (extra,) if extra is not None else ()
        done = Done(outcome, priority, 0, Usage(), time.perf_counter() - started, 0.0, said=ids)
        count(ctx.channel, done)
        return done

    async def _relay(self, ctx: CallContext, session: ChatSession, text: str) -> Done:
        """A person has this conversation: remember the message, and unless staff read the thread in
        Slack themselves, relay it into the ticket's staff thread. The bot says nothing."""
        async with self.deps.store.write() as s:
            s.add(text_message(self.deps, session_id=session.id, role="user", text=text, customer_text=True))
            if session.channel != "slack" and self.deps.settings.support_staff_channel:
                ticket = await s.scalar(
                    select(Ticket.id).where(Ticket.session_id == session.id, Ticket.status != "resolved")
                )
                outbox.add(
                    s,
                    self.deps,
                    session=session,
                    kind="relay",
                    text=wording.relay(text[:3000]),
                    author="customer",
                    data={"ticket_id": ticket},
                    channel=self.deps.settings.support_staff_channel,
                )
            outcome, priority = await settle(s, self.deps, session.id)
        return Done(outcome, priority, 0, Usage(), 0.0, 0.0)

    async def pending_refund(self, ctx: CallContext) -> Refund | None:
        async with self.deps.store.read() as s:
            return await _pending_refund(s, ctx)

    async def refund_status(self, ctx: CallContext, order_id: str | None) -> str:
        result = await refund_status(self.deps, ctx, order_id or None)
        return wording.refund_status_text(result.code, list(result.data.get("refunds", [])))

    async def decide_refund(
        self, ctx: CallContext, refund_id: str, *, yes: bool, typed: str | None = None, inbox_id: int | None = None
    ) -> tuple[ToolResult, str, int | None]:
        """The customer's Confirm or Cancel (a button, a typed yes/no, an MCP answer): the state
        machine decides, and the answer is worded from the refund row. Both go into the history, so
        the model sees the same conversation whichever way the customer answered."""
        actor, session_id = ctx.actor, ctx.session_id
        if yes:
            result = await refunds.confirm(self.deps, refund_id=refund_id, actor=actor, session_id=session_id)
        else:
            result = await refunds.cancel(self.deps, refund_id=refund_id, actor=actor, session_id=session_id)
        row = None
        async with self.deps.store.write() as s:
            refund = await s.get(Refund, refund_id)
            text = _after_decision(result, refund, yes=yes)
            if result.code not in NOT_SAID:
                session = await s.get(ChatSession, session_id)
                said = typed or ("yes" if yes else "no")
                s.add(text_message(self.deps, session_id=session_id, role="user", text=said, customer_text=True))
                s.add(text_message(self.deps, session_id=session_id, role="assistant", text=text))
                row = outbox.add(s, self.deps, session=session, kind="reply", text=text, inbox_id=inbox_id)
                await settle(s, self.deps, session_id, last_reply=text)
                await s.flush()
        return result, text, row.id if row is not None else None

    async def call_tool(self, ctx: CallContext, name: str, args: Any) -> ToolResult:
        """A tool called by another agent runtime (MCP): the same toolbox, and the same verdicts the
        loop applies (another customer's order opens the same grouped, hidden P1)."""
        assert self.toolbox is not None
        result = await self.toolbox.call(name, args, ctx)
        verdict = policy.for_tool(result.code)
        if verdict is not None and not verdict.already_ticketed:
            await policy.apply(self.deps, ctx, verdict, f"Over MCP, {name} was refused ({result.code.value}).")
        return result

    # --- staff and people: one implementation in tools.desk ---------------------------------------
    claim = staticmethod(staff_desk.claim)
    release = staticmethod(staff_desk.release)
    resolve = staticmethod(staff_desk.resolve)
    decide = staticmethod(staff_desk.decide)
    reply = staticmethod(staff_desk.reply)
    link = staticmethod(staff_desk.link)
    take_over = staticmethod(staff_desk.take_over)
    dead_letter = staticmethod(staff_desk.dead_letter)
    details = staticmethod(tickets.details)
    save_article = staticmethod(articles.draft_from_ticket)  # a resolved ticket's answer, as a draft


async def _pending_refund(s: AsyncSession, ctx: CallContext) -> Refund | None:
    return (
        await s.scalars(
            select(Refund)
            .where(Refund.session_id == ctx.session_id, Refund.status == "awaiting_confirmation")
            .order_by(Refund.created_at.desc())
            .limit(1)
        )
    ).one_or_none()


async def _write_said(
    s: AsyncSession,
    deps: Deps,
    ctx: CallContext,
    said: list[Reply | Confirmation],
    inbox_id: int | None,
    session: ChatSession | None = None,
) -> list[int]:
    """What a turn said, as outgoing rows in the caller's transaction (a refund prompt rides on the
    reply it follows, so Slack posts them as one message); returns their ids. `session`: its row as
    read earlier in the turn (only its address is used, which never changes)."""
    session = session or await s.get(ChatSession, ctx.session_id)
    written = [
        outbox.add(s, deps, session=session, kind=kind, text=text, data=data, inbox_id=inbox_id, seq=seq)
        for seq, (kind, text, data) in enumerate(_rows(said))
    ]
    await s.flush()
    return [r.id for r in written]


def _rows(said: list[Reply | Confirmation]) -> list[tuple[str, str, dict[str, Any] | None]]:
    """A reply row carries the help-center articles it cites (`citations`), which each face shows."""
    rows: list[tuple[str, str, dict[str, Any] | None]] = []
    replies = [e for e in said if isinstance(e, Reply)]
    prompts = [e for e in said if isinstance(e, Confirmation)]
    for n, reply in enumerate(replies):
        if n == len(replies) - 1 and prompts:
            break
        rows.append(("reply", reply.text, _cited(reply)))
    for n, conf in enumerate(prompts):
        lead = replies[-1] if n == 0 and replies else None
        data = {"refund_id": conf.refund_id, "order_id": conf.order_id, "item": conf.item, "amount": conf.amount}
        data |= _cited(lead) or {}
        text = (lead.text if lead is not None else "") or conf.text
        rows.append(("confirmation", text, {**data, "prompt": conf.text, "lead": lead is not None}))
    return rows


def _cited(reply: Reply | None) -> dict[str, Any] | None:
    if reply is None or not reply.citations:
        return None
    return {"citations": [{"article_id": c.article_id, "title": c.title, "url": c.url} for c in reply.citations]}


def _after_decision(result: ToolResult, refund: Refund | None, *, yes: bool) -> str:
    if refund is None:
        return wording.for_code(result.code)
    amount = format_cents(refund.amount_cents, refund.currency)
    if yes:
        return wording.after_confirmation(result.code, order_id=refund.order_id, amount=amount)
    return wording.after_cancel(result.code, order_id=refund.order_id)


def count(channel: str, done: Done) -> None:
    """One customer turn answered, on any face."""
    metrics.TURNS.labels(channel, done.outcome).inc()
    metrics.TURN_SECONDS.labels(channel).observe(max(done.turn_s, 0.0))
    metrics.MODEL_SECONDS.labels(channel).observe(done.model_s)
    for code, n in done.tools.items():  # another customer's order is counted as the unknown order it reads like
        shown = Code.ORDER_NOT_FOUND.value if code == Code.OWNERSHIP_MISMATCH.value else code
        metrics.TOOL_OUTCOMES.labels(channel, shown).inc(n)
