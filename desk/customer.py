"""The customer's acts: say something, confirm or cancel what waits for them, ask a refund's status.

`say` is the one conversation entry for every face (Slack, the website, the shell, the eval):

    answered already (a crash) ─▶ the stored answer, not run again
    handed off to a person?    ─▶ remembered, relayed to the ticket's staff thread (not Slack: staff
                                  read a Slack thread themselves); the bot says nothing
    /refund-status [ORDER]     ─▶ the customer's refunds, worded by code
    yes / no to a waiting refund ─▶ `decide_refund`, exactly as the Confirm button does
    anything else              ─▶ the agent's turn: its inputs read in one transaction, the loop
                                  run, its result written in one more

Whatever is said is written to the outgoing log (`desk.outbox`) with the turn's work item, so each
face delivers it exactly once; metrics are counted here for every channel alike.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from agent import citations, policy
from agent.confirmations import refund_prompt
from agent.events import Confirmation, Done, Error, Event, Reply, Usage
from agent.loop import Agent, TurnInput, TurnResult, asks_the_help_center
from agent.prompts import session_note
from desk import outbox
from desk.sessions import settle, text_message
from storage import metrics
from storage.engine import insert_all
from storage.models import ChatSession, Customer, Message, OutboxMessage, Refund, Ticket
from storage.states import RefundStatus
from storage.types import format_cents
from tools import refunds, wording
from tools.codes import Code, TicketQuotaExceeded, ToolResult
from tools.context import Actor, CallContext, Deps
from tools.get_customer import customer_context
from tools.get_refund_status import refund_status as refund_status_tool
from tools.lookup_order import mark_looked_up
from tools.tickets import open_or_update, visible_open

ANSWERED = "answered"  # Done's outcome for a work item whose answer was stored before a crash
# answers that are not part of the conversation: someone else's click, a replayed or stale one
NOT_SAID = (Code.NOT_ALLOWED, Code.INVALID_STATE, Code.NOT_FOUND)
# Money moves only on an unambiguous yes: "ok", "sure" or "thanks" while a refund waits asks again.
YES = {"yes", "y", "yep", "yeah", "yup", "yes please", "confirm", "go ahead", "please do", "do it", "send it"}
YES |= {"sí", "si", "ja", "jawohl", "oui"}  # Spanish, German, French
NO = {"no", "n", "nope", "cancel", "don't", "do not", "never mind", "nevermind", "stop", "nein", "no gracias", "non"}
MAYBE = {"ok", "okay", "k", "kk", "sure", "fine", "cool", "alright", "thanks", "great", "vale", "claro", "gerne"}
FILLER = re.compile(r"\b(please|thanks|thank you|go ahead|do it)\b")


def _words(text: str) -> tuple[str, str]:
    words = re.sub(r"[^\w\s']", " ", text[:200].lower()).strip()
    words = re.sub(r"\s+", " ", words)
    return words, re.sub(r"\s+", " ", FILLER.sub(" ", words)).strip()


def yes_or_no(text: str) -> bool | None:
    """A bare yes or no (with at most a please/thanks), as an answer to "Shall I go ahead?"."""
    for candidate in _words(text):
        if candidate in YES:
            return True
        if candidate in NO:
            return False
    return None


def unclear_answer(text: str) -> bool:
    """ "ok", "sure", "ok thanks": agreeable, but not a clear yes to moving money."""
    words, core = _words(text)
    return yes_or_no(text) is None and (words in MAYBE or core in MAYBE or (bool(core) and set(core.split()) <= MAYBE))


@dataclass
class _Read:
    """What `say` reads up front, in one transaction."""

    session: ChatSession | None
    answered: list[OutboxMessage]
    pending: Refund | None = None
    inputs: TurnInput | None = None


async def say(
    deps: Deps,
    agent: Agent | None,
    ctx: CallContext,
    text: str,
    *,
    inbox_id: int | None = None,
    session: ChatSession | None = None,
) -> AsyncIterator[Event]:
    """`session`: the session's row as the face read it for this message, if it did (not read again)."""
    started = time.perf_counter()
    text = text.replace("\x00", "")
    stripped = text.strip()
    if session is not None and session.id != ctx.session_id:
        raise ValueError("the session row given is not the context's session")
    answer = yes_or_no(stripped)
    unclear = answer is None and unclear_answer(stripped)
    command = stripped.startswith("/refund-status") or answer is not None
    read = await _read(deps, ctx, text, session, inbox_id, runs=agent is not None and not command, answer=answer)
    asks = read.pending is not None and unclear
    if read.answered:
        yield _answered(read.answered, started)
    elif read.session is not None and read.session.handed_off_by:
        yield await _relay(deps, ctx, read.session, text)
    elif stripped.startswith("/refund-status"):
        arg = stripped.removeprefix("/refund-status").split()
        reply = await refund_status(deps, ctx, arg[0] if arg else None)
        yield Reply(reply)
        yield await _said(deps, ctx, [Reply(reply)], inbox_id, started)
    elif asks and read.pending is not None:
        reply = wording.confirm_again(
            order_id=read.pending.order_id, amount=format_cents(read.pending.amount_cents, read.pending.currency)
        )
        yield Reply(reply)
        yield await _said(deps, ctx, [Reply(reply)], inbox_id, started)
    elif read.pending is not None and answer is not None:
        _, reply, row = await decide_refund(deps, ctx, read.pending.id, yes=answer, typed=stripped, inbox_id=inbox_id)
        yield Reply(reply)
        yield await _said(deps, ctx, [], None, started, extra=row)
    else:
        assert read.inputs is not None and agent is not None, "a turn needs a desk with an agent"
        async for event in _turn(deps, agent, read.inputs, inbox_id, read.session):
            yield event


async def _read(
    deps: Deps,
    ctx: CallContext,
    text: str,
    session: ChatSession | None,
    inbox_id: int | None,
    *,
    runs: bool,
    answer: bool | None,
) -> _Read:
    async with deps.store.read() as s:
        session = session or await s.get(ChatSession, ctx.session_id)
        answered = list((await s.scalars(_ANSWERED, {"item": inbox_id})).all()) if inbox_id is not None else []
        read = _Read(session, answered)
        if answered or (session is not None and session.handed_off_by):
            return read
        if answer is not None or unclear_answer(text):
            read.pending = await _pending_refund(s, ctx)
        if (runs and not (read.pending and unclear_answer(text))) or (answer is not None and read.pending is None):
            read.inputs = await turn_input(s, deps, ctx, session, text)
    return read


async def turn_input(
    s: AsyncSession, deps: Deps, ctx: CallContext, session: ChatSession | None, text: str
) -> TurnInput:
    """Everything a turn reads before its first model call: the history and who the customer is."""
    rows = list((await s.scalars(_HISTORY, {"sid": ctx.session_id})).all())
    account, known = None, ()
    if ctx.actor.kind == "staff":
        note = session_note(verified_name=None, verified_email=None, staff_id=ctx.actor.staff_id)
    elif ctx.actor.customer_id is not None and not asks_the_help_center(text):  # a general question needs none
        account = await customer_context(s, deps, ctx.actor.customer_id, orders=deps.settings.context_orders)
        known = tuple(str(o["order_id"]) for o in (account or {}).get("recent_orders", []))
        name, email = (account["name"], account["email"]) if account else (None, None)
        note = session_note(verified_name=name, verified_email=email, account=account)
    elif ctx.actor.customer_id is not None:
        cust = await s.get(Customer, ctx.actor.customer_id)
        note = session_note(verified_name=cust.name if cust else None, verified_email=cust.email if cust else None)
    else:
        note = session_note(verified_name=None, verified_email=None)
    return TurnInput(
        ctx=ctx,
        text=text,
        history=rows,
        note=note,
        tokens_before=session.tokens_used if session else 0,
        failed_before=session.failed_rounds if session else 0,
        known_orders=known,
    )


def _answered(rows: list[OutboxMessage], started: float) -> Done:
    """A work item answered before a crash: its stored answer stands; only delivering is left."""
    return Done(ANSWERED, None, 0, Usage(), time.perf_counter() - started, 0.0, said=tuple(r.id for r in rows))


# --- the agent's turn -------------------------------------------------------------------------------
async def _turn(
    deps: Deps, agent: Agent, inp: TurnInput, inbox_id: int | None, session: ChatSession | None
) -> AsyncIterator[Event]:
    shown: list[Confirmation] = []
    result: TurnResult | None = None
    async for event in agent.run_turn(inp):
        if isinstance(event, TurnResult):
            result = event
        else:
            if isinstance(event, Confirmation):
                shown.append(event)
            yield event
    assert result is not None
    async for event in _write_turn(deps, inp.ctx, result, shown, inbox_id, session):
        yield event


async def _write_turn(
    deps: Deps,
    ctx: CallContext,
    result: TurnResult,
    shown: list[Confirmation],
    inbox_id: int | None,
    session: ChatSession | None,
) -> AsyncIterator[Event]:
    """The turn's last transaction: its records, the tickets its verdicts call for, its help answer,
    the session's outcome and what it said, as outgoing rows."""
    events: list[Event] = []
    reply = result.reply
    async with deps.store.write() as s:
        await insert_all(s, result.records)
        await mark_looked_up(s, deps, ctx.session_id, list(result.known_orders))  # what the turn was shown
        for n, (verdict, summary) in enumerate(result.verdicts):
            try:
                escalation = await policy.apply_in(s, deps, ctx, verdict, summary)
            except TicketQuotaExceeded:
                events.append(Error("ticket_limit"))
                if n == 0 and result.replaces_reply:  # no ticket: never promise a person
                    reply = wording.TICKET_LIMIT
                continue
            if escalation is not None:
                events.append(escalation)
        await citations.record(s, session_id=ctx.session_id, sources=result.sources, cited=result.citations)
        counts = {"failed_rounds": result.failed_rounds, "tokens_used": ChatSession.tokens_used + result.tokens}
        outcome, priority = await settle(s, deps, ctx.session_id, last_reply=reply, count_turn=True, also=counts)
        said: list[Reply | Confirmation] = [*shown, *([Reply(reply, result.citations)] if reply else [])]
        missing = await _unprompted(s, ctx, said, outcome, result.offered)
        said += [missing] if missing is not None else []
        written = await write_said(s, deps, ctx, said, inbox_id, session)
    for event in events:
        yield event
    if reply:  # empty when the Confirm step was the whole message
        yield Reply(reply, result.citations)
    if missing is not None:
        yield missing
    done = Done(
        outcome=outcome,
        priority=priority,
        model_calls=result.calls,
        usage=result.usage,
        turn_s=time.perf_counter() - result.started,
        model_s=result.model_s,
        tools=_tally(result.codes),
        said=tuple(written),
    )
    count(ctx.channel, done)
    yield done


def _tally(codes: tuple[Code, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in codes:
        out[c.value] = out.get(c.value, 0) + 1
    return out


async def _unprompted(
    s: AsyncSession, ctx: CallContext, said: list[Reply | Confirmation], outcome: str, offered: frozenset[str]
) -> Confirmation | None:
    """The Confirm step of a refund waiting in this session that no message has offered yet (a
    turn run again after a crash finds the refund its first run prepared and only talks about
    it): the customer is never left with a refund and no way to send it."""
    if outcome != "awaiting_customer" or any(isinstance(e, Confirmation) for e in said):
        return None
    pending = await _pending_refund(s, ctx)
    if pending is None or pending.id in offered:
        return None
    rows = await s.scalars(
        select(OutboxMessage.data).where(
            OutboxMessage.session_id == ctx.session_id, OutboxMessage.kind == "confirmation"
        )
    )
    if any((d or {}).get("refund_id") == pending.id for d in rows.all()):
        return None
    return await refund_prompt(s, pending.id)


async def _said(
    deps: Deps,
    ctx: CallContext,
    said: list[Reply | Confirmation],
    inbox_id: int | None,
    started: float,
    *,
    extra: int | None = None,
) -> Done:
    """An answer without the agent (/refund-status, a typed yes or no): its outgoing rows and the
    session's outcome in one write; the turn counted, and its Done with the row ids."""
    async with deps.store.write() as s:
        ids = tuple(await write_said(s, deps, ctx, said, inbox_id))
        outcome, priority = await settle(s, deps, ctx.session_id)
    ids += (extra,) if extra is not None else ()
    done = Done(outcome, priority, 0, Usage(), time.perf_counter() - started, 0.0, said=ids)
    count(ctx.channel, done)
    return done


async def _relay(deps: Deps, ctx: CallContext, session: ChatSession, text: str) -> Done:
    """A person has this conversation: remember the message, and unless staff read the thread in
    Slack themselves, relay it into the ticket's staff thread. The bot says nothing."""
    async with deps.store.write() as s:
        s.add(text_message(deps, session_id=session.id, role="user", text=text, customer_text=True))
        if session.channel != "slack" and deps.settings.support_staff_channel:
            ticket = await s.scalar(select(Ticket.id).where(visible_open(session.id)))
            outbox.add(
                s,
                deps,
                session=session,
                kind="relay",
                text=wording.relay(text[:3000]),
                author="customer",
                data={"ticket_id": ticket},
                channel=deps.settings.support_staff_channel,
            )
        outcome, priority = await settle(s, deps, session.id)
    return Done(outcome, priority, 0, Usage(), 0.0, 0.0)


# --- what waits for the customer --------------------------------------------------------------------
async def expire_lapsed(deps: Deps) -> list[Refund]:
    """Refunds whose confirmation lapsed are expired (a lapsed one never blocks a new refund)."""
    return await refunds.expire_due(deps)


async def finish_interrupted(deps: Deps) -> list[ToolResult]:
    """Refunds a crash left `processing` are sent through the gateway again (idempotently)."""
    return await refunds.recover(deps)


async def pending_refund(deps: Deps, ctx: CallContext) -> Refund | None:
    async with deps.store.read() as s:
        return await _pending_refund(s, ctx)


async def refund_status(deps: Deps, ctx: CallContext, order_id: str | None) -> str:
    """The refunds of an order (or of all the customer's orders), worded by code. A customer sees
    only their own orders' (another's reads exactly like an unknown one); staff any order's."""
    result = await refund_status_tool(deps, ctx, order_id or None)
    refunds = list(result.data.get("refunds", []))
    if ctx.actor.kind == "staff":  # staff may look up any order: an unknown one is just unknown
        return wording.staff_refund_status_text(result.code, refunds, order_id=order_id)
    return wording.refund_status_text(result.code, refunds)


async def decide_refund(
    deps: Deps,
    ctx: CallContext,
    refund_id: str,
    *,
    yes: bool,
    typed: str | None = None,
    inbox_id: int | None = None,
) -> tuple[ToolResult, str, int | None]:
    """The customer's Confirm or Cancel (a button, a typed yes/no, an MCP answer): the state
    machine decides, and the answer is worded from the refund row. Both go into the history, so
    the model sees the same conversation whichever way the customer answered."""
    actor, session_id = ctx.actor, ctx.session_id
    if yes:
        result = await refunds.confirm(deps, refund_id=refund_id, actor=actor, session_id=session_id)
    else:
        result = await refunds.cancel(deps, refund_id=refund_id, actor=actor, session_id=session_id)
    row = None
    async with deps.store.write() as s:
        refund = await s.get(Refund, refund_id)
        text = _after_decision(result, refund, yes=yes)
        if result.code not in NOT_SAID:
            session = await s.get(ChatSession, session_id)
            said = typed or ("yes" if yes else "no")
            s.add(text_message(deps, session_id=session_id, role="user", text=said, customer_text=True))
            s.add(text_message(deps, session_id=session_id, role="assistant", text=text))
            row = outbox.add(s, deps, session=session, kind="reply", text=text, inbox_id=inbox_id)
            await settle(s, deps, session_id, last_reply=text)
            await s.flush()
    return result, text, row.id if row is not None else None


async def refund_state(deps: Deps, refund_id: str) -> dict[str, object]:
    """A refund as `tools.refunds.describe` puts it (empty when there is none)."""
    async with deps.store.read() as s:
        refund = await s.get(Refund, refund_id)
    return refunds.describe(refund) if refund is not None else {}


async def decide_click(
    deps: Deps, *, actor: Actor, refund_id: str, yes: bool, inbox_id: int | None = None
) -> tuple[ToolResult, str, int | None]:
    """A Confirm or Cancel button pressed by `actor`, as the channel verified them: only the person
    whose conversation the refund was prepared in may decide it (anyone else: NOT_ALLOWED)."""
    async with deps.store.read() as s:
        refund = await s.get(Refund, refund_id)
        session = await s.get(ChatSession, refund.session_id) if refund and refund.session_id else None
    if session is None or session.subject != actor.subject:
        return ToolResult(Code.NOT_ALLOWED, "Only the customer can answer this."), wording.ONLY_THE_CUSTOMER, None
    ctx = CallContext(session.id, actor, channel=session.channel, locale=session.locale)
    return await decide_refund(deps, ctx, refund_id, yes=yes, inbox_id=inbox_id)


async def ask_who(deps: Deps, ctx: CallContext) -> Ticket | None:
    """A customer the channel could not match to a record started a conversation: a P3 ticket
    asks staff to link them. Returns the ticket when it is new."""
    async with deps.store.write() as s:
        ticket, created = await open_or_update(
            s,
            deps,
            session_id=ctx.session_id,
            priority="P3",
            reason="identity",
            summary="A customer whose email the channel does not show, or shows but matches no customer, "
            "started a conversation. Link them to their customer record.",
        )
    return ticket if created else None


async def _pending_refund(s: AsyncSession, ctx: CallContext) -> Refund | None:
    return (await s.scalars(_PENDING, {"sid": ctx.session_id})).one_or_none()


def _after_decision(result: ToolResult, refund: Refund | None, *, yes: bool) -> str:
    if refund is None:
        return wording.for_code(result.code)
    amount = format_cents(refund.amount_cents, refund.currency)
    if yes:
        return wording.after_confirmation(result.code, order_id=refund.order_id, amount=amount)
    return wording.after_cancel(result.code, order_id=refund.order_id)


# --- what was said, as outgoing rows ----------------------------------------------------------------
async def write_said(
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


def count(channel: str, done: Done) -> None:
    """One customer turn answered, on any face."""
    metrics.TURNS.labels(channel, done.outcome).inc()
    metrics.TURN_SECONDS.labels(channel).observe(max(done.turn_s, 0.0))
    metrics.MODEL_SECONDS.labels(channel).observe(done.model_s)
    for code, n in done.tools.items():  # another customer's order is counted as the unknown order it reads like
        shown = Code.ORDER_NOT_FOUND.value if code == Code.OWNERSHIP_MISMATCH.value else code
        metrics.TOOL_OUTCOMES.labels(channel, shown).inc(n)


# built once: a statement's cache key is computed once per object, not at each call
_HISTORY = select(Message).where(Message.session_id == bindparam("sid")).order_by(Message.id)
_ANSWERED = select(OutboxMessage).where(OutboxMessage.inbox_id == bindparam("item")).order_by(OutboxMessage.seq)
_PENDING = (
    select(Refund)
    .where(Refund.session_id == bindparam("sid"), Refund.status == RefundStatus.AWAITING_CONFIRMATION)
    .order_by(Refund.created_at.desc())
    .limit(1)
)
