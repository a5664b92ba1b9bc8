"""The refund state machine: the only code that moves money.

    awaiting_confirmation ──confirm──▶ processing ──gateway──▶ processed
            │ cancel / expire                 └──declined──▶ failed
            ▼
    cancelled | expired
    pending_approval ──approve──▶ processing        pending_approval ──deny──▶ denied

Every transition is one conditional UPDATE (`WHERE id = :id AND status = :from`), so a second
click, a replayed payload or a racing replica finds nothing to update and changes nothing. Each
one re-checks the rules at that moment (`refund_guard`) on the order locked by its transaction.
A refund names an amount or order lines (their prices; each line is given back once, ever). An
order may have several refunds, one at a time (a partial unique index allows one per order in
awaiting_confirmation | pending_approval | processing), together never more than was paid:
the move into `processing` enters the refund in the order's payment history in the same
transaction (tools.ledger), where the database refuses one beyond it.

The approval limit applies to the order's money given back in all, this refund included
(tools.ledger.over_limit), not to each refund: two refunds under the limit that together pass it
go to staff. It is checked when the refund is asked for and again when the customer confirms it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Order, Refund, Ticket
from storage.states import OPEN_REFUNDS, RefundStatus
from tools import ledger
from tools.codes import Code, GatewayError, ToolResult
from tools.context import Actor, CallContext, Deps, audit, new_id
from tools.ledger import remaining
from tools.tickets import open_or_update

log = logging.getLogger(__name__)
R = RefundStatus


@dataclass(frozen=True, slots=True)
class Eligibility:
    eligible: bool
    reason: str  # in_window | not_delivered | window_closed
    deadline: datetime | None = None


def eligibility(order: Order, *, now: datetime, window_days: int) -> Eligibility:
    if order.status != "delivered" or order.delivered_at is None:
        return Eligibility(False, "not_delivered")
    deadline = order.delivered_at + timedelta(days=window_days)
    if now > deadline:
        return Eligibility(False, "window_closed", deadline)
    return Eligibility(True, "in_window", deadline)


def refund_guard(order: Order | None, *, owner_customer_id: str | None, amount_cents: int, deps: Deps) -> Code | None:
    """Ownership, eligibility now, and 0 < amount <= what remains to be refunded: the rules every
    money step re-checks."""
    if order is None:
        return Code.ORDER_NOT_FOUND
    if owner_customer_id is None or order.customer_id != owner_customer_id:
        return Code.OWNERSHIP_MISMATCH
    if not eligibility(order, now=deps.clock.now(), window_days=deps.settings.return_window_days).eligible:
        return Code.NOT_ELIGIBLE
    if not 0 < amount_cents <= remaining(order):
        return Code.INVALID_AMOUNT
    return None


async def _commit_guard(
    s: AsyncSession, deps: Deps, refund: Refund, order: Order | None, owner: str | None
) -> Code | None:
    """The rules again, on the locked order, as the refund's money is committed: and its lines
    not given back since."""
    code = refund_guard(order, owner_customer_id=owner, amount_cents=refund.amount_cents, deps=deps)
    if code is None and refund.line_nos and set(refund.line_nos) & await ledger.returned_lines(s, refund.order_id):
        return Code.ALREADY_RETURNED
    return code


async def _record(s: AsyncSession, deps: Deps, refund: Refund, order: Order) -> None:
    """The refund enters the order's payment history (to its original method) and its lines are
    given back, in the transaction that moved it to `processing`."""
    now = deps.clock.now()
    await ledger.append(s, order, [("refund", refund.amount_cents, ledger.ORIGINAL)], at=now, refund_id=refund.id)
    if refund.line_nos:
        await ledger.give_back(s, order.id, refund.line_nos, kind="refund", at=now, refund_id=refund.id)


def describe(refund: Refund) -> dict[str, object]:
    out: dict[str, object] = {
        "refund_id": refund.id,
        "order_id": refund.order_id,
        "amount_cents": refund.amount_cents,
        "currency": refund.currency,
        "status": refund.status,
    }
    if refund.line_nos:
        out["lines"] = refund.line_nos
    return out


def _owner(refund: Refund) -> str | None:
    kind, _, ident = refund.actor.partition(":")
    return ident if kind == "customer" else None


async def _move(s: AsyncSession, deps: Deps, refund_id: str, frm: str, to: str, **values: object) -> Refund | None:
    row = await s.scalars(
        update(Refund)
        .where(Refund.id == refund_id, Refund.status == frm)
        .values(status=to, updated_at=deps.clock.now(), **values)
        .returning(Refund)
        .execution_options(synchronize_session=False, populate_existing=True)  # fresh, not the loaded row
    )
    return row.one_or_none()


async def create(
    deps: Deps, ctx: CallContext, *, order: Order, amount_cents: int, reason: str, line_nos: list[int] | None = None
) -> ToolResult:
    """Create the order's refund (or return its open one). Guards have been checked by the caller."""
    refund = _new_refund(deps, ctx, order=order, amount_cents=amount_cents, reason=reason)
    refund.line_nos = line_nos or None
    try:
        stored = await _store_refund(deps, ctx, refund, order=order, reason=reason)
    except IntegrityError:
        # another request created this order's open refund between our check and our insert
        async with deps.store.read() as s:
            existing = await _open_refund(s, order.id)
        if existing is None:
            raise
        return _existing(existing)
    if isinstance(stored, ToolResult):
        return stored
    ticket_ref, ticket_created = stored
    if refund.status == R.PENDING_APPROVAL:
        return ToolResult(
            Code.LIMIT_EXCEEDED,
            "This refund needs a supervisor's approval. A ticket was opened; tell the customer a person will review "
            "it and follow up. Do not promise an outcome.",
            {**describe(refund), "ticket": ticket_ref, "ticket_created": ticket_created},
        )
    if refund.status == R.AWAITING_CONFIRMATION:
        return ToolResult(
            Code.AWAITING_CONFIRMATION,
            "The refund is prepared but not sent. The customer must confirm it with the Confirm button; tell them "
            "so briefly. Do not say it has been refunded.",
            describe(refund),
        )
    return await pay(deps, refund.id)


def _new_refund(deps: Deps, ctx: CallContext, *, order: Order, amount_cents: int, reason: str) -> Refund:
    """The refund row, waiting for the customer's Confirm (when confirmation is on), else sent at
    once; `_store_refund` sends it to approval instead when the order's refunds pass the limit."""
    now = deps.clock.now()
    status = R.AWAITING_CONFIRMATION if deps.settings.refund_confirmation else R.PROCESSING
    ttl = timedelta(minutes=deps.settings.refund_confirmation_ttl_minutes)
    return Refund(
        id=new_id("RF"),
        order_id=order.id,
        amount_cents=amount_cents,
        currency=order.currency,
        status=status,
        reason=reason[:2000],
        actor=ctx.actor.ref,
        session_id=ctx.session_id,
        expires_at=now + ttl if status == R.AWAITING_CONFIRMATION else None,
        created_at=now,
        updated_at=now,
    )


async def _store_refund(
    deps: Deps, ctx: CallContext, refund: Refund, *, order: Order, reason: str
) -> ToolResult | tuple[str | None, bool]:
    """Insert the refund unless the order has an open one (its result then); an approval ticket
    with it in the same transaction, or, sent at once, its money committed. Returns (ticket ref,
    whether the ticket is new)."""
    async with deps.store.write() as s:
        existing = await _open_refund(s, order.id)
        if existing is not None:
            return _existing(existing)
        if refund.status == R.PROCESSING:  # no confirmation: the money is committed now
            order = await ledger.lock_order(s, order.id) or order
        if await ledger.over_limit(s, order, refund.amount_cents, deps.settings.refund_limit_cents):
            refund.status, refund.expires_at = R.PENDING_APPROVAL, None
        if refund.status == R.PROCESSING:
            code = await _commit_guard(s, deps, refund, order, ctx.actor.customer_id)
            if code is not None:
                return ToolResult(code, "The order can no longer be refunded this way.")
        s.add(refund)
        await s.flush()
        if refund.status == R.PROCESSING:
            await _record(s, deps, refund, order)
        if refund.status != R.PENDING_APPROVAL:
            return None, False
        ticket, created = await _approval_ticket(
            s, deps, refund, order, f"Refund request over the autonomous limit for order {order.id}: {reason[:300]}"
        )
        return ticket.public_ref, created


async def _open_refund(s: AsyncSession, order_id: str) -> Refund | None:
    return (
        await s.scalars(select(Refund).where(Refund.order_id == order_id, Refund.status.in_(OPEN_REFUNDS)))
    ).one_or_none()


def _existing(refund: Refund) -> ToolResult:
    return ToolResult(
        Code.REFUND_EXISTS,
        "This order already has a refund in progress; no new refund was created. Tell the customer its status.",
        describe(refund),
    )


async def pay(deps: Deps, refund_id: str) -> ToolResult:
    """Send a `processing` refund through the gateway (idempotency key = refund id) and record it:
    in transactions of its own, after what the caller's unit of work holds is committed."""
    async with deps.store.alone():
        return await _pay(deps, refund_id)


async def _pay(deps: Deps, refund_id: str) -> ToolResult:
    async with deps.store.read() as s:
        refund = await s.get(Refund, refund_id)
        order = await s.get(Order, refund.order_id) if refund else None
    if refund is None or order is None or refund.status != R.PROCESSING:
        return ToolResult(Code.INVALID_STATE, "Nothing to pay.", describe(refund) if refund else {})
    try:
        payout = await deps.gateway.refund(order, refund.amount_cents, refund.id)
    except GatewayError as exc:
        async with deps.store.write() as s:
            failed = await _move(s, deps, refund.id, R.PROCESSING, R.FAILED)
            audit(
                s,
                deps,
                actor=Actor.staff("gateway"),
                action="refund_failed",
                outcome=Code.PAYMENT_FAILED,
                input={"refund_id": refund.id},
                session_id=refund.session_id,
            )
            await open_or_update(
                s,
                deps,
                session_id=refund.session_id,
                priority="P2",
                reason="payment_failed",
                summary=f"The payment gateway declined refund {refund.id}: {exc.detail[:200]}",
                customer_id=order.customer_id,
                order_id=order.id,
                refund_id=refund.id,
            )
        return ToolResult(
            Code.PAYMENT_FAILED,
            "The payment gateway declined the refund; a ticket was opened.",
            describe(failed or refund),
        )
    except Exception:  # outcome unknown: stays `processing`, resent with the same key on recovery
        log.exception("payment gateway call for refund %s did not complete", refund.id)
        return ToolResult(Code.OK, "The refund is being processed.", describe(refund))
    async with deps.store.write() as s:
        done = await _move(s, deps, refund.id, R.PROCESSING, R.PROCESSED, gateway_ref=payout.reference)
        current = done or await s.get(Refund, refund.id)
    return ToolResult(Code.REFUND_PROCESSED, "The refund has been issued.", describe(current or refund))


async def _load(s: AsyncSession, refund_id: str) -> tuple[Refund | None, Order | None]:
    """The refund and its order, locked for the transaction (a racing decision waits, then reads
    what the first one left): what a decision on it reads."""
    refund = (
        await s.scalars(
            select(Refund).where(Refund.id == refund_id).with_for_update().execution_options(populate_existing=True)
        )
    ).one_or_none()
    order = await ledger.lock_order(s, refund.order_id) if refund else None
    return refund, order


async def confirm(deps: Deps, *, refund_id: str, actor: Actor, session_id: str | None = None) -> ToolResult:
    """The customer pressed Confirm. Only the refund's own verified customer may; rules re-checked now."""
    async with deps.store.write() as s:
        refund, order = await _load(s, refund_id)
        result = _confirm_checks(deps, refund, order, actor)
        if result is None and refund is not None:
            if refund.expires_at is not None and deps.clock.now() > refund.expires_at:
                moved = await _move(s, deps, refund.id, R.AWAITING_CONFIRMATION, R.EXPIRED)
                result = ToolResult(Code.EXPIRED, "The confirmation expired.", describe(moved or refund))
            elif (code := await _commit_guard(s, deps, refund, order, actor.customer_id)) is not None:
                moved = await _move(s, deps, refund.id, R.AWAITING_CONFIRMATION, R.EXPIRED)
                result = ToolResult(code, "The order can no longer be refunded.", describe(moved or refund))
            else:
                result = await _confirm_in(s, deps, refund, order, actor)
        audit(
            s,
            deps,
            actor=actor,
            action="confirm_refund",
            input={"refund_id": refund_id},
            outcome=result.code if result else R.PROCESSING,
            session_id=session_id,
        )
    if result is not None:
        return result
    return await pay(deps, refund_id)


async def _confirm_in(
    s: AsyncSession, deps: Deps, refund: Refund, order: Order | None, actor: Actor
) -> ToolResult | None:
    """Confirmed: to staff if the order's refunds now pass the limit, else committed (None)."""
    assert order is not None
    limit = deps.settings.refund_limit_cents
    if await ledger.over_limit(s, order, refund.amount_cents, limit, ignore_refund=refund.id):
        moved = await _move(s, deps, refund.id, R.AWAITING_CONFIRMATION, R.PENDING_APPROVAL, expires_at=None)
        if moved is None:
            return ToolResult(Code.INVALID_STATE, "Already handled.", describe(refund))
        ticket, created = await _approval_ticket(
            s, deps, refund, order, f"Refunds on order {order.id} over the autonomous limit: {refund.reason[:300]}"
        )
        return ToolResult(
            Code.LIMIT_EXCEEDED,
            "With the order's earlier refunds this one passes the limit: a supervisor must approve it.",
            {**describe(moved), "ticket": ticket.public_ref, "ticket_created": created},
        )
    moved = await _move(s, deps, refund.id, R.AWAITING_CONFIRMATION, R.PROCESSING, decided_by=actor.ref)
    if moved is None:  # someone else moved it first: nothing to do
        return ToolResult(Code.INVALID_STATE, "Already handled.", describe(refund))
    await _record(s, deps, moved, order)
    return None


async def _approval_ticket(
    s: AsyncSession, deps: Deps, refund: Refund, order: Order, summary: str
) -> tuple[Ticket, bool]:
    """The P2 ticket staff approve the refund from (the session's, opened or updated)."""
    return await open_or_update(
        s,
        deps,
        session_id=refund.session_id,
        priority="P2",
        reason="refund_approval",
        summary=summary,
        customer_id=order.customer_id,
        order_id=order.id,
        refund_id=refund.id,
    )


def _confirm_checks(deps: Deps, refund: Refund | None, order: Order | None, actor: Actor) -> ToolResult | None:
    if refund is None or order is None:
        return ToolResult(Code.NOT_FOUND, "No such refund.")
    if actor.kind != "customer" or _owner(refund) != actor.customer_id or order.customer_id != actor.customer_id:
        return ToolResult(Code.NOT_ALLOWED, "Only the customer who asked for this refund can confirm it.")
    if refund.status == R.EXPIRED:  # the housekeeper got there first: still R.EXPIRED, not "handled"
        return ToolResult(Code.EXPIRED, "The confirmation expired.", describe(refund))
    if refund.status != R.AWAITING_CONFIRMATION:
        return ToolResult(Code.INVALID_STATE, "This refund is no longer awaiting confirmation.", describe(refund))
    return None


async def cancel(deps: Deps, *, refund_id: str, actor: Actor, session_id: str | None = None) -> ToolResult:
    async with deps.store.write() as s:
        refund, order = await _load(s, refund_id)
        result = _confirm_checks(deps, refund, order, actor)
        if result is None and refund is not None:
            moved = await _move(s, deps, refund.id, R.AWAITING_CONFIRMATION, R.CANCELLED, decided_by=actor.ref)
            result = (
                ToolResult(Code.OK, "Cancelled.", describe(moved))
                if moved
                else ToolResult(Code.INVALID_STATE, "Already handled.", describe(refund))
            )
        assert result is not None
        audit(
            s,
            deps,
            actor=actor,
            action="cancel_refund",
            input={"refund_id": refund_id},
            outcome=result.code,
            session_id=session_id,
        )
    return result


async def approve_in(s: AsyncSession, deps: Deps, *, refund_id: str, staff: Actor) -> ToolResult | None:
    """In the caller's transaction: move an over-limit refund to `processing` (the rules, but not the
    limit, re-checked now). None: moved, and `pay` sends it after the commit; else the refusal."""
    refund, order = await _load(s, refund_id)
    result = _staff_checks(refund, order, staff)
    if result is None and refund is not None and order is not None:
        code = await _commit_guard(s, deps, refund, order, _owner(refund))
        if code is not None:
            result = ToolResult(code, "The refund breaks a rule now and cannot be approved.", describe(refund))
        elif (moved := await _move(s, deps, refund.id, R.PENDING_APPROVAL, R.PROCESSING, decided_by=staff.ref)) is None:
            result = ToolResult(Code.INVALID_STATE, "Already handled.", describe(refund))
        else:
            await _record(s, deps, moved, order)
    audit(
        s,
        deps,
        actor=staff,
        action="approve_refund",
        input={"refund_id": refund_id},
        outcome=result.code if result else R.PROCESSING,
        session_id=refund.session_id if refund else None,
    )
    return result


async def deny_in(s: AsyncSession, deps: Deps, *, refund_id: str, staff: Actor) -> ToolResult:
    """In the caller's transaction: deny an over-limit refund; no money moves."""
    refund, order = await _load(s, refund_id)
    result = _staff_checks(refund, order, staff)
    if result is None and refund is not None:
        moved = await _move(s, deps, refund.id, R.PENDING_APPROVAL, R.DENIED, decided_by=staff.ref)
        result = (
            ToolResult(Code.OK, "Denied.", describe(moved))
            if moved
            else ToolResult(Code.INVALID_STATE, "Already handled.", describe(refund))
        )
    assert result is not None
    audit(
        s,
        deps,
        actor=staff,
        action="deny_refund",
        input={"refund_id": refund_id},
        outcome=result.code,
        session_id=refund.session_id if refund else None,
    )
    return result


async def approve_refund(deps: Deps, *, refund_id: str, staff: Actor) -> ToolResult:
    """Approve an over-limit refund by id (the desk's `decide` adds the ticket rule on top)."""
    async with deps.store.write() as s:
        result = await approve_in(s, deps, refund_id=refund_id, staff=staff)
    return result if result is not None else await pay(deps, refund_id)


async def deny(deps: Deps, *, refund_id: str, staff: Actor) -> ToolResult:
    async with deps.store.write() as s:
        return await deny_in(s, deps, refund_id=refund_id, staff=staff)


def _staff_checks(refund: Refund | None, order: Order | None, staff: Actor) -> ToolResult | None:
    if staff.kind != "staff":
        return ToolResult(Code.NOT_ALLOWED, "Only staff can decide on refunds awaiting approval.")
    if refund is None or order is None:
        return ToolResult(Code.NOT_FOUND, "No such refund.")
    if refund.status != R.PENDING_APPROVAL:
        return ToolResult(Code.INVALID_STATE, "This refund is not awaiting approval.", describe(refund))
    return None


async def expire_due(deps: Deps) -> list[Refund]:
    """Confirmations past their time become `expired`; returns the refunds that just expired."""
    async with deps.store.write() as s:
        rows = await s.scalars(
            update(Refund)
            .where(Refund.status == R.AWAITING_CONFIRMATION, Refund.expires_at < deps.clock.now())
            .values(status=R.EXPIRED, updated_at=deps.clock.now())
            .returning(Refund)
            .execution_options(synchronize_session=False)
        )
        return list(rows.all())


async def recover(deps: Deps) -> list[ToolResult]:
    """At start: refunds left `processing` by a crash are sent again with the same idempotency key."""
    async with deps.store.read() as s:
        ids = list((await s.scalars(select(Refund.id).where(Refund.status == R.PROCESSING))).all())
    results = []
    for refund_id in ids:
        log.info("recovering refund %s left processing", refund_id)
        results.append(await pay(deps, refund_id))
    return results
