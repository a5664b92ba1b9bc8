"""The order change state machine: cancel, modify items, address or payment, return, exchange,
and a customer's own default address.

    prepare ─▶ awaiting_confirmation ─confirm─▶ applied
                      │                └─over the limit─▶ pending_approval ─approve─▶ applied
                      │                                          └─deny─▶ denied
                      └─cancel / expire / a newer one of its kind─▶ cancelled | expired
    confirm when the rules no longer allow it ─▶ refused

A tool only prepares a change: a row with exactly what will change and the money
(tools.change_plans), awaiting its customer's confirmation until it expires. `confirm` plans it
again on the order locked by its transaction and applies it only if nothing moved meanwhile; every
transition is one conditional UPDATE of the change's status, so a second click, a replayed payload
or a racing replica finds nothing to move and changes nothing. A change's refund that takes the
order's money given back over the limit waits for staff (tools.ledger.over_limit).

Identity is the caller's actor, never an argument: another customer's order reads exactly like an
unknown one, and only the change's own customer confirms or cancels it.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, Field
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from storage.models import Customer, Order, OrderChange, OrderItem, PaymentMethod, SessionOrder
from storage.states import OPEN_CHANGES, ORDER_CHANGES, ORDERS, OrderChangeStatus
from tools import change_plans, ledger
from tools.change_plans import ADDRESS_FIELDS, NEEDS_ORDER, Plan
from tools.codes import ChangeRefused, Code, ToolResult
from tools.context import Actor, CallContext, Deps, audit, new_id
from tools.lookup_order import visible_order
from tools.tickets import open_or_update

log = logging.getLogger(__name__)
C = OrderChangeStatus


# The change tools' arguments, described once.
OrderId = Annotated[str, Field(description="The order number, as looked up.", min_length=1, max_length=40)]
ItemIds = Annotated[
    list[str],
    Field(
        description="The item_ids from lookup_order (an item twice for two of its lines).", min_length=1, max_length=50
    ),
]
NewItemIds = Annotated[
    list[str],
    Field(
        description="For each item in item_ids, in the same place, the item_id of the variant it becomes.",
        min_length=1,
        max_length=50,
    ),
]
MethodId = Annotated[
    str,
    Field(
        description="The customer's payment method (from get_customer) that pays or receives the difference.",
        min_length=1,
        max_length=64,
    ),
]


class AddressInput(BaseModel):
    """An address as the change tools take it (τ2's six fields)."""

    address1: str = Field(description="First line, e.g. '123 Main St'.", min_length=1, max_length=200)
    address2: str = Field(default="", description="Second line, e.g. 'Apt 1', or empty.", max_length=200)
    city: str = Field(description="City.", min_length=1, max_length=100)
    state: str = Field(default="", description="State or province, e.g. 'CA'.", max_length=100)
    country: str = Field(description="Country, e.g. 'USA'.", min_length=1, max_length=100)
    zip: str = Field(default="", description="Postal code.", max_length=20)

    def address(self) -> dict[str, str]:
        return {f: str(getattr(self, f)).strip() for f in ADDRESS_FIELDS}


def describe(change: OrderChange) -> dict[str, Any]:
    """A change as its tool, confirm and cancel return it (and the desk renders its Confirm step)."""
    plan = change.plan
    out: dict[str, Any] = {
        "change_id": change.id,
        "kind": change.kind,
        "status": change.status,
        "order_id": change.order_id,
        "money": plan.get("money", []),
        "refund_cents": change.refund_cents,
        "charge_cents": change.charge_cents,
        "expires_at": change.expires_at.isoformat() if change.expires_at else None,
    }
    for key in ("lines", "address", "reason", "diff_cents", "new_status", "currency"):
        if plan.get(key) is not None:
            out[key] = plan[key]
    return out


# --- prepare ------------------------------------------------------------------------------------------------------


async def prepare(deps: Deps, ctx: CallContext, kind: str, args: dict[str, Any]) -> ToolResult:
    """What a change tool does: check who asks and for which order, plan, and store the change
    awaiting the customer's confirmation (or return the same one already waiting)."""
    actor = ctx.actor
    if actor.kind == "staff":
        return ToolResult(Code.NOT_ALLOWED, "Staff change orders through tickets, not through this tool.")
    if actor.kind != "customer" or actor.customer_id is None:
        return ToolResult(Code.IDENTITY_UNVERIFIED, "No verified customer: orders cannot be changed.")
    async with deps.store.read() as s:
        order: Order | None = None
        if kind in NEEDS_ORDER:
            found = await _own_order(s, deps, ctx, str(args["order_id"]))
            if isinstance(found, ToolResult):
                return found
            order = found
            args = {**args, "order_id": order.id}
        state = await change_plans.load_state(
            s,
            kind,
            args,
            order=order,
            customer_id=actor.customer_id,
            now=deps.clock.now(),
            window_days=deps.settings.return_window_days,
        )
    plan = change_plans.make_plan(kind, args, state)
    if isinstance(plan, ToolResult):
        return plan
    return await _store(deps, ctx, kind, args, plan)


async def _own_order(s: AsyncSession, deps: Deps, ctx: CallContext, typed: str) -> Order | ToolResult:
    """The customer's order, looked up in this session: the same path and answers as lookup_order."""
    order = await visible_order(s, deps, ctx.actor, typed)
    if isinstance(order, ToolResult):
        return order
    looked_up = await s.scalar(
        select(SessionOrder.order_id).where(
            SessionOrder.session_id == ctx.session_id, SessionOrder.order_id == order.id
        )
    )
    if looked_up is None:
        return ToolResult(Code.ORDER_NOT_LOOKED_UP, "Look the order up with lookup_order first.")
    return order


def _target(kind: str, args: dict[str, Any], customer_id: str) -> str:
    return str(args["order_id"]) if kind in NEEDS_ORDER else f"customer:{customer_id}"


async def _store(deps: Deps, ctx: CallContext, kind: str, args: dict[str, Any], plan: Plan) -> ToolResult:
    assert ctx.actor.customer_id is not None
    now = deps.clock.now()
    target = _target(kind, args, ctx.actor.customer_id)
    args, plan = json.loads(json.dumps(args)), json.loads(json.dumps(plan))  # as the store gives them back
    change = OrderChange(
        id=new_id("OC"),
        kind=kind,
        status=C.AWAITING_CONFIRMATION,
        customer_id=ctx.actor.customer_id,
        order_id=args.get("order_id") if kind in NEEDS_ORDER else None,
        target=target,
        args=args,
        plan=plan,
        refund_cents=plan["refund_cents"],
        charge_cents=plan["charge_cents"],
        actor=ctx.actor.ref,
        session_id=ctx.session_id,
        expires_at=now + timedelta(minutes=deps.settings.refund_confirmation_ttl_minutes),
        created_at=now,
        updated_at=now,
    )
    try:
        async with deps.store.write() as s:
            current = await _open_change(s, target, kind)
            if current is not None and (current.args == args or current.status != C.AWAITING_CONFIRMATION):
                return _pending(current)  # the same one waiting, or one that waits for staff
            if current is not None:  # a newer version replaces it
                await _move(s, deps, current.id, (C.AWAITING_CONFIRMATION,), C.CANCELLED, decided_by="superseded")
            s.add(change)
            await s.flush()
    except IntegrityError:  # a racing request stored this kind's change first: answer with it
        async with deps.store.read() as s:
            current = await _open_change(s, target, kind)
        if current is None:
            raise
        return _pending(current)
    return _pending(change)


async def _open_change(s: AsyncSession, target: str, kind: str) -> OrderChange | None:
    stmt = select(OrderChange).where(
        OrderChange.target == target, OrderChange.kind == kind, OrderChange.status.in_(OPEN_CHANGES)
    )
    return (await s.scalars(stmt)).one_or_none()


def _pending(change: OrderChange) -> ToolResult:
    if change.status == C.PENDING_APPROVAL:
        return ToolResult(
            Code.LIMIT_EXCEEDED,
            "A change like this to the order is already waiting for a supervisor's approval; a person will follow "
            "up. Do not promise an outcome.",
            describe(change),
        )
    return ToolResult(
        Code.AWAITING_CONFIRMATION,
        "The change is prepared but not made. The customer must confirm it (the Confirm button, or yes); tell them "
        "briefly what will change and the money. Do not say it has been done.",
        describe(change),
    )


# --- transitions --------------------------------------------------------------------------------------------------


async def _move(
    s: AsyncSession, deps: Deps, change_id: str, frm: tuple[str, ...], to: str, **values: Any
) -> OrderChange | None:
    for source in frm:
        ORDER_CHANGES.check(source, to)
    row = await s.scalars(
        update(OrderChange)
        .where(OrderChange.id == change_id, OrderChange.status.in_(frm))
        .values(status=to, updated_at=deps.clock.now(), **values)
        .returning(OrderChange)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return row.one_or_none()


async def _locked(s: AsyncSession, change_id: str) -> OrderChange | None:
    """The change, locked for the transaction: a racing decision waits, then reads what the first
    one left."""
    stmt = select(OrderChange).where(OrderChange.id == change_id).with_for_update()
    return (await s.scalars(stmt.execution_options(populate_existing=True))).one_or_none()


def _checks(change: OrderChange | None, actor: Actor) -> ToolResult | None:
    if change is None:
        return ToolResult(Code.NOT_FOUND, "No such change.")
    if actor.kind != "customer" or change.customer_id != actor.customer_id:
        return ToolResult(Code.NOT_ALLOWED, "Only the customer who asked for this change can confirm or cancel it.")
    if change.status == C.EXPIRED:
        return ToolResult(Code.EXPIRED, "The confirmation expired.", describe(change))
    return None


async def confirm(deps: Deps, *, change_id: str, actor: Actor, session_id: str | None = None) -> ToolResult:
    """The customer confirmed: apply the change once (or send it to staff, over the limit)."""
    try:
        async with deps.store.write() as s:
            change = await _locked(s, change_id)
            result = _checks(change, actor)
            if result is None and change is not None:
                result = await _confirm_in(s, deps, change, actor)
            audit(
                s,
                deps,
                actor=actor,
                action="confirm_order_change",
                input={"change_id": change_id},
                outcome=result.code,
                session_id=session_id,
            )
            return result
    except ChangeRefused as refused:
        return await _refused(deps, change_id, refused.result, actor=actor, session_id=session_id)


async def _confirm_in(s: AsyncSession, deps: Deps, change: OrderChange, actor: Actor) -> ToolResult:
    if change.status != C.AWAITING_CONFIRMATION:
        return ToolResult(Code.INVALID_STATE, "This change is no longer awaiting confirmation.", describe(change))
    if change.expires_at is not None and deps.clock.now() > change.expires_at:
        moved = await _move(s, deps, change.id, (C.AWAITING_CONFIRMATION,), C.EXPIRED)
        return ToolResult(Code.EXPIRED, "The confirmation expired.", describe(moved or change))
    order, replanned = await _replan(s, deps, change)
    if isinstance(replanned, ToolResult):
        moved = await _move(s, deps, change.id, (C.AWAITING_CONFIRMATION,), C.REFUSED, decided_by=actor.ref)
        return ToolResult(replanned.code, replanned.note, {**replanned.data, **describe(moved or change)})
    if (
        order is not None
        and change.refund_cents
        and await ledger.over_limit(
            s, order, change.refund_cents, deps.settings.change_approval_limit_cents, by_changes=True
        )
    ):
        return await _to_approval(s, deps, change, order, actor)
    moved = await _move(s, deps, change.id, (C.AWAITING_CONFIRMATION,), C.APPLIED, decided_by=actor.ref)
    if moved is None:  # someone else moved it first
        return ToolResult(Code.INVALID_STATE, "Already handled.", describe(change))
    await apply(s, deps, moved, order)
    return ToolResult(Code.CHANGE_APPLIED, "The change has been made.", describe(moved))


async def _replan(s: AsyncSession, deps: Deps, change: OrderChange) -> tuple[Order | None, Plan | ToolResult]:
    """The change planned again on the order as it is now, locked: the stored plan, or why not."""
    order = await ledger.lock_order(s, change.order_id) if change.order_id else None
    if change.order_id and (order is None or order.customer_id != change.customer_id):
        return order, ToolResult(Code.ORDER_NOT_FOUND, "The order is gone.")
    state = await change_plans.load_state(
        s,
        change.kind,
        change.args,
        order=order,
        customer_id=change.customer_id,
        now=deps.clock.now(),
        window_days=deps.settings.return_window_days,
    )
    plan = change_plans.make_plan(change.kind, change.args, state)
    if isinstance(plan, ToolResult):
        return order, plan
    if json.loads(json.dumps(plan)) != change.plan:
        return order, ToolResult(Code.INVALID_STATE, "The order changed since this was prepared; prepare it again.")
    return order, plan


async def _to_approval(s: AsyncSession, deps: Deps, change: OrderChange, order: Order, actor: Actor) -> ToolResult:
    moved = await _move(
        s, deps, change.id, (C.AWAITING_CONFIRMATION,), C.PENDING_APPROVAL, decided_by=actor.ref, expires_at=None
    )
    if moved is None:
        return ToolResult(Code.INVALID_STATE, "Already handled.", describe(change))
    ticket, created = await open_or_update(
        s,
        deps,
        session_id=change.session_id,
        priority="P2",
        reason="change_approval",
        summary=f"Order change {change.kind} on order {order.id} takes its refunds over the autonomous limit",
        customer_id=order.customer_id,
        order_id=order.id,
        change_id=change.id,
    )
    return ToolResult(
        Code.LIMIT_EXCEEDED,
        "With the order's refunds this change passes the limit: a supervisor must approve it. A ticket was opened; "
        "tell the customer a person will review it and follow up. Do not promise an outcome.",
        {**describe(moved), "ticket": ticket.public_ref, "ticket_created": created},
    )


async def _refused(
    deps: Deps, change_id: str, result: ToolResult, *, actor: Actor, session_id: str | None
) -> ToolResult:
    async with deps.store.write() as s:
        moved = await _move(
            s, deps, change_id, (C.AWAITING_CONFIRMATION, C.PENDING_APPROVAL), C.REFUSED, decided_by=actor.ref
        )
        audit(
            s,
            deps,
            actor=actor,
            action="confirm_order_change",
            input={"change_id": change_id},
            outcome=result.code,
            session_id=session_id,
        )
    return ToolResult(result.code, result.note, {**result.data, **(describe(moved) if moved else {})})


async def cancel(deps: Deps, *, change_id: str, actor: Actor, session_id: str | None = None) -> ToolResult:
    """The customer said no: a change awaiting them (or staff) is withdrawn, and nothing changes."""
    async with deps.store.write() as s:
        change = await _locked(s, change_id)
        result = _checks(change, actor)
        if result is None and change is not None:
            moved = await _move(s, deps, change.id, OPEN_CHANGES, C.CANCELLED, decided_by=actor.ref)
            result = (
                ToolResult(Code.OK, "Cancelled: nothing was changed.", describe(moved))
                if moved
                else ToolResult(Code.INVALID_STATE, "Already handled.", describe(change))
            )
        assert result is not None
        audit(
            s,
            deps,
            actor=actor,
            action="cancel_order_change",
            input={"change_id": change_id},
            outcome=result.code,
            session_id=session_id,
        )
    return result


async def approve_in(s: AsyncSession, deps: Deps, *, change_id: str, staff: Actor) -> ToolResult:
    """In the caller's transaction: staff approve a change over the limit; its rules (not the
    limit) re-checked now. Raises Refused when the store refuses a write (the caller rolls back)."""
    change = await _locked(s, change_id)
    result = _staff_checks(change, staff)
    if result is None and change is not None:
        order, replanned = await _replan(s, deps, change)
        if isinstance(replanned, ToolResult):
            result = replanned
        elif (moved := await _move(s, deps, change.id, (C.PENDING_APPROVAL,), C.APPLIED, decided_by=staff.ref)) is None:
            result = ToolResult(Code.INVALID_STATE, "Already handled.", describe(change))
        else:
            await apply(s, deps, moved, order)
            result = ToolResult(Code.CHANGE_APPLIED, "The change has been made.", describe(moved))
    audit(s, deps, actor=staff, action="approve_order_change", input={"change_id": change_id}, outcome=result.code)
    return result


async def deny_in(s: AsyncSession, deps: Deps, *, change_id: str, staff: Actor) -> ToolResult:
    change = await _locked(s, change_id)
    result = _staff_checks(change, staff)
    if result is None and change is not None:
        moved = await _move(s, deps, change.id, (C.PENDING_APPROVAL,), C.DENIED, decided_by=staff.ref)
        result = (
            ToolResult(Code.OK, "Denied: nothing was changed.", describe(moved))
            if moved
            else ToolResult(Code.INVALID_STATE, "Already handled.", describe(change))
        )
    assert result is not None
    audit(s, deps, actor=staff, action="deny_order_change", input={"change_id": change_id}, outcome=result.code)
    return result


async def approve(deps: Deps, *, change_id: str, staff: Actor) -> ToolResult:
    try:
        async with deps.store.write() as s:
            return await approve_in(s, deps, change_id=change_id, staff=staff)
    except ChangeRefused as refused:
        return await _refused(deps, change_id, refused.result, actor=staff, session_id=None)


async def deny(deps: Deps, *, change_id: str, staff: Actor) -> ToolResult:
    async with deps.store.write() as s:
        return await deny_in(s, deps, change_id=change_id, staff=staff)


def _staff_checks(change: OrderChange | None, staff: Actor) -> ToolResult | None:
    if staff.kind != "staff":
        return ToolResult(Code.NOT_ALLOWED, "Only staff can decide on changes awaiting approval.")
    if change is None:
        return ToolResult(Code.NOT_FOUND, "No such change.")
    if change.status != C.PENDING_APPROVAL:
        return ToolResult(Code.INVALID_STATE, "This change is not awaiting approval.", describe(change))
    return None


async def expire_due(deps: Deps) -> list[OrderChange]:
    """Confirmations past their time become `expired`; returns the changes that just expired."""
    async with deps.store.write() as s:
        rows = await s.scalars(
            update(OrderChange)
            .where(OrderChange.status == C.AWAITING_CONFIRMATION, OrderChange.expires_at < deps.clock.now())
            .values(status=C.EXPIRED, updated_at=deps.clock.now())
            .returning(OrderChange)
            .execution_options(synchronize_session=False)
        )
        return list(rows.all())


# --- applying -----------------------------------------------------------------------------------------------------


async def apply(s: AsyncSession, deps: Deps, change: OrderChange, order: Order | None) -> None:
    """Make the planned change, in the transaction that moved it to `applied`."""
    plan, now = change.plan, deps.clock.now()
    if change.kind == "user_address":
        await s.execute(
            update(Customer)
            .where(Customer.id == change.customer_id)
            .values(address=plan["address"])
            .execution_options(synchronize_session=False)
        )
        return
    assert order is not None
    if change.kind == "modify_address":
        order.address = plan["address"]
    if change.kind == "modify_items":
        await _swap_items(s, order, plan["lines"])
    if change.kind in ("return", "exchange"):
        lines = [line["line_no"] for line in plan["lines"]]
        await ledger.give_back(s, order.id, lines, kind=change.kind, at=now, change_id=change.id)
    now_money = [(m["kind"], m["amount_cents"], m["method_id"]) for m in plan["money"] if m["when"] == "now"]
    if now_money:
        await ledger.append(s, order, now_money, at=now, change_id=change.id)
    promised = sum(m["amount_cents"] for m in plan["money"] if m["when"] == "on_return" and m["kind"] == "refund")
    await ledger.move_totals(s, order, promised=promised)
    for m in plan["money"]:
        if m["gift_card"] and m["when"] == "now":
            await _gift_card(s, m["method_id"], m["amount_cents"] if m["kind"] == "refund" else -m["amount_cents"])
    if plan.get("new_status"):
        await _order_status(s, order, plan["new_status"])
    await s.flush()


async def _swap_items(s: AsyncSession, order: Order, lines: list[dict[str, Any]]) -> None:
    """Each line to its new variant (its own options and price: τ2 gives every line the last
    variant's, a bug its tasks' intended results correct)."""
    diff = 0
    for line in lines:
        await s.execute(
            update(OrderItem)
            .where(
                OrderItem.order_id == order.id,
                OrderItem.line_no == line["line_no"],
                OrderItem.item_id == line["item_id"],
            )
            .values(item_id=line["new_item_id"], options=line["new_options"], unit_price_cents=line["new_price_cents"])
            .execution_options(synchronize_session=False)
        )
        diff += (line["new_price_cents"] - line["price_cents"]) * line["quantity"]
    order.total_cents += diff


async def _gift_card(s: AsyncSession, method_id: str, cents: int) -> None:
    """Credit (cents > 0) or spend from a gift card; spending more than its balance is refused."""
    stmt = update(PaymentMethod).where(PaymentMethod.id == method_id, PaymentMethod.kind == "gift_card")
    if cents < 0:
        stmt = stmt.where(PaymentMethod.balance_cents >= -cents)
    done = await s.execute(
        stmt.values(balance_cents=PaymentMethod.balance_cents + cents).execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise ChangeRefused(
            ToolResult(Code.INSUFFICIENT_BALANCE, "The gift card's balance no longer covers the amount.")
        )


async def _order_status(s: AsyncSession, order: Order, to: str) -> None:
    """One conditional UPDATE from the states the order machine allows; the order is locked, so
    finding it moved means a bug, and the change is refused rather than applied halfway."""
    done = await s.execute(
        update(Order)
        .where(Order.id == order.id, Order.status.in_(ORDERS.sources(to)))
        .values(status=to)
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise ChangeRefused(ToolResult(Code.INVALID_STATE, "The order moved on meanwhile."))
    set_committed_value(order, "status", to)
