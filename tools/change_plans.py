"""What an order change will do, worked out from the store as it is: a `Plan` (exactly what will
change and the money, signed: refunds to and charges from which method), or the refusal.

Planning is pure: `load_state` reads what a kind of change needs, `make_plan` decides. A change
is planned when its tool prepares it and planned again, on the locked order, when it is
confirmed or approved; it is applied only if the two plans are the same. The rules are τ2-bench's
retail policy's (see each planner), with the shop's return window on returns and exchanges.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Order, OrderItem, OrderPayment, PaymentMethod, Variant
from storage.states import PENDING_ORDERS, OrderStatus
from tools import ledger
from tools.codes import Code, ToolResult
from tools.wording import method_label

Plan = dict[str, Any]  # JSON: stored with the change and shown to the customer
CANCEL_REASONS = ("no longer needed", "ordered by mistake")
ADDRESS_FIELDS = ("address1", "address2", "city", "state", "country", "zip")
NEEDS_ORDER = ("cancel", "modify_items", "modify_address", "modify_payment", "return", "exchange")


@dataclass
class State:
    """What planning reads: the order (locked, when confirming) with its lines, payment history and
    lines given back, the customer's payment methods, and the variants the change names."""

    now: datetime
    window_days: int
    customer_id: str
    order: Order | None = None
    lines: list[OrderItem] = field(default_factory=list)
    history: list[OrderPayment] = field(default_factory=list)
    returned: set[int] = field(default_factory=set)
    methods: dict[str, PaymentMethod] = field(default_factory=dict)
    variants: dict[str, Variant] = field(default_factory=dict)


async def load_state(
    s: AsyncSession,
    kind: str,
    args: dict[str, Any],
    *,
    order: Order | None,
    customer_id: str,
    now: datetime,
    window_days: int,
) -> State:
    state = State(now=now, window_days=window_days, customer_id=customer_id, order=order)
    if order is not None:
        state.lines = list(
            await s.scalars(select(OrderItem).where(OrderItem.order_id == order.id).order_by(OrderItem.line_no))
        )
        state.history = await ledger.history(s, order.id)
        state.returned = await ledger.returned_lines(s, order.id) if kind in ("return", "exchange") else set()
    if kind in ("cancel", "modify_items", "modify_payment", "return", "exchange"):
        state.methods = {
            m.id: m for m in await s.scalars(select(PaymentMethod).where(PaymentMethod.customer_id == customer_id))
        }
    wanted = set(args.get("new_item_ids") or ())
    if wanted:
        state.variants = {v.item_id: v for v in await s.scalars(select(Variant).where(Variant.item_id.in_(wanted)))}
    return state


def refuse(code: Code, note: str, **data: Any) -> ToolResult:
    return ToolResult(code, note, data)


def make_plan(kind: str, args: dict[str, Any], state: State) -> Plan | ToolResult:
    plan = PLANNERS[kind](args, state)
    if isinstance(plan, ToolResult):
        return plan
    refunds = sum(m["amount_cents"] for m in plan["money"] if m["kind"] == "refund")
    charges = sum(m["amount_cents"] for m in plan["money"] if m["kind"] == "payment")
    plan["refund_cents"], plan["charge_cents"] = max(0, refunds - charges), max(0, charges - refunds)
    order = state.order
    return {
        "kind": kind,
        "order_id": order.id if order else None,
        "currency": order.currency if order else None,
        **plan,
    }


def _money(kind: str, cents: int, method: PaymentMethod | None, *, when: str = "now") -> dict[str, Any]:
    return {
        "kind": kind,
        "amount_cents": cents,
        "method_id": method.id if method else None,
        "method": method_label(method),
        "gift_card": bool(method and method.kind == "gift_card"),
        "when": when,  # now: entered in the payment history on confirmation; on_return: when the items arrive
    }


def _line(line: OrderItem, new: Variant | None = None) -> dict[str, Any]:
    out = {
        "line_no": line.line_no,
        "item_id": line.item_id,
        "name": line.name,
        "options": line.options,
        "quantity": line.quantity,
        "price_cents": line.unit_price_cents,
    }
    if new is not None:
        out.update(new_item_id=new.item_id, new_options=new.options, new_price_cents=new.price_cents)
    return out


def _status_is(state: State, allowed: tuple[str, ...]) -> ToolResult | None:
    assert state.order is not None
    if state.order.status in allowed:
        return None
    may = " or ".join(str(a) for a in allowed)
    return refuse(
        Code.NOT_ELIGIBLE,
        f"Only an order that is {may} can have this change; this one is {state.order.status}.",
        status=state.order.status,
    )


def _returnable(state: State) -> ToolResult | None:
    """Delivered, and inside the return window: what a return or an exchange needs."""
    order = state.order
    assert order is not None
    if (refused := _status_is(state, (OrderStatus.DELIVERED,))) is not None:
        return refused
    if order.delivered_at is not None and state.now <= order.delivered_at + timedelta(days=state.window_days):
        return None
    return refuse(
        Code.NOT_ELIGIBLE,
        f"The order was delivered over {state.window_days} days ago: outside the return window.",
        status=order.status,
    )


def _method(state: State, method_id: str | None) -> PaymentMethod | ToolResult:
    method = state.methods.get(method_id or "")
    if method is None:  # another customer's method reads exactly like an unknown one
        return refuse(
            Code.PAYMENT_METHOD_NOT_FOUND, "The customer has no payment method with that id; get_customer lists theirs."
        )
    return method


def _covers(method: PaymentMethod, cents: int) -> ToolResult | None:
    if method.kind == "gift_card" and cents > 0 and (method.balance_cents or 0) < cents:
        return refuse(
            Code.INSUFFICIENT_BALANCE,
            "The gift card's balance does not cover the amount.",
            balance_cents=method.balance_cents,
            needed_cents=cents,
        )
    return None


def _pairs(args: dict[str, Any], state: State, *, skip: set[int]) -> list[tuple[OrderItem, Variant]] | ToolResult:
    """The lines named and the variants they change to: of the same product, available."""
    item_ids, new_ids = list(args["item_ids"]), list(args["new_item_ids"])
    if not item_ids or len(item_ids) != len(new_ids):
        return refuse(
            Code.INVALID_INPUT,
            "Name each item to change once in item_ids and its new item in the same place of new_item_ids.",
        )
    lines = ledger.pick_lines(state.lines, item_ids, skip=skip)
    if lines is None:
        if skip and ledger.pick_lines(state.lines, item_ids) is not None:
            return refuse(Code.ALREADY_RETURNED, "Some of those items were already returned, exchanged or refunded.")
        return refuse(Code.ITEM_NOT_IN_ORDER, "Some of those items are not in this order.")
    out = []
    for line, new_id in zip(lines, new_ids, strict=True):
        variant = state.variants.get(new_id)
        if variant is None or variant.product_id != line.product_id or not variant.available:
            return refuse(
                Code.VARIANT_UNAVAILABLE,
                f"{new_id} is not an available variant of the product of "
                f"{line.item_id}; get_product_details lists them.",
                item_id=new_id,
            )
        out.append((line, variant))
    return out


def _priced(
    args: dict[str, Any], state: State, *, skip: set[int], same_allowed: bool
) -> tuple[list[tuple[OrderItem, Variant]], PaymentMethod, int] | ToolResult:
    """The lines to change with their new variants, the method for the difference, and the
    difference (new minus old), which a gift card must cover when it is to be paid."""
    pairs = _pairs(args, state, skip=skip)
    if isinstance(pairs, ToolResult):
        return pairs
    if not same_allowed and any(line.item_id == v.item_id for line, v in pairs):
        return refuse(Code.INVALID_INPUT, "Each new item must differ from the item it replaces.")
    method = _method(state, args["payment_method_id"])
    if isinstance(method, ToolResult):
        return method
    diff = sum((v.price_cents - line.unit_price_cents) * line.quantity for line, v in pairs)
    if (refused := _covers(method, diff)) is not None:
        return refused
    return pairs, method, diff


def _cancel(args: dict[str, Any], state: State) -> Plan | ToolResult:
    """τ2: only an exactly pending order, for one of the reasons; each method that paid is refunded
    what it paid, net of refunds (a gift card at once, others in 5-7 business days)."""
    if (refused := _status_is(state, (OrderStatus.PENDING,))) is not None:
        return refused
    if args["reason"] not in CANCEL_REASONS:
        return refuse(Code.INVALID_INPUT, f"The reason must be one of: {', '.join(CANCEL_REASONS)}.")
    net: OrderedDict[str | None, int] = OrderedDict()
    for entry in state.history:
        net[entry.method_id] = net.get(entry.method_id, 0) + (
            entry.amount_cents if entry.kind == "payment" else -entry.amount_cents
        )
    money = [_money("refund", c, state.methods.get(m or "")) for m, c in net.items() if c > 0]
    return {"reason": args["reason"], "money": money, "new_status": OrderStatus.CANCELLED.value}


def _modify_items(args: dict[str, Any], state: State) -> Plan | ToolResult:
    """τ2: an exactly pending order, once (then it is locked); each item to another available
    variant of its product; the difference paid from or refunded to the method named (a gift card
    must cover it; a difference of nothing is a refund of nothing)."""
    if (refused := _status_is(state, (OrderStatus.PENDING,))) is not None:
        return refused
    priced = _priced(args, state, skip=set(), same_allowed=False)
    if isinstance(priced, ToolResult):
        return priced
    pairs, method, diff = priced
    money = [_money("payment" if diff > 0 else "refund", abs(diff), method)]
    lines = [_line(line, v) for line, v in pairs]
    return {"lines": lines, "diff_cents": diff, "money": money, "new_status": OrderStatus.ITEMS_MODIFIED.value}


def _modify_address(args: dict[str, Any], state: State) -> Plan | ToolResult:
    """τ2: any pending order, modified or not; the status stays."""
    if (refused := _status_is(state, PENDING_ORDERS)) is not None:
        return refused
    assert state.order is not None
    return {"address": args["address"], "old_address": state.order.address, "money": [], "new_status": None}


def _modify_payment(args: dict[str, Any], state: State) -> Plan | ToolResult:
    """τ2: a pending order paid once and never refunded, to another method of the customer (a gift
    card must cover the amount): the new method pays, then the old one is refunded."""
    if (refused := _status_is(state, PENDING_ORDERS)) is not None:
        return refused
    if len(state.history) != 1 or state.history[0].kind != "payment":
        return refuse(Code.NOT_ELIGIBLE, "The order's payment can change only while it has exactly one payment.")
    paid = state.history[0]
    method = _method(state, args["payment_method_id"])
    if isinstance(method, ToolResult):
        return method
    if method.id == paid.method_id:
        return refuse(Code.INVALID_INPUT, "That is the order's payment method already.")
    if (refused := _covers(method, paid.amount_cents)) is not None:
        return refused
    old = state.methods.get(paid.method_id or "")
    money = [_money("payment", paid.amount_cents, method), _money("refund", paid.amount_cents, old)]
    return {"money": money, "new_status": None}


def _return(args: dict[str, Any], state: State) -> Plan | ToolResult:
    """τ2: a delivered order (here: inside the return window); the items' prices refunded when they
    arrive, to the original method or one of the customer's gift cards; each item once, ever."""
    if (refused := _returnable(state)) is not None:
        return refused
    original = state.history[0].method_id if state.history else None
    method: PaymentMethod | None = None
    if args.get("payment_method_id") not in (None, original):
        found = _method(state, args["payment_method_id"])
        if isinstance(found, ToolResult):
            return found
        if found.kind != "gift_card":
            return refuse(
                Code.METHOD_NOT_ALLOWED,
                "A return is refunded to the original payment method or to one of the customer's gift cards.",
            )
        method = found
    else:
        method = state.methods.get(original or "")
    lines = ledger.pick_lines(state.lines, args["item_ids"], skip=state.returned)
    if lines is None or not lines:
        known = ledger.pick_lines(state.lines, args["item_ids"])
        if known:
            return refuse(Code.ALREADY_RETURNED, "Some of those items were already returned, exchanged or refunded.")
        return refuse(Code.ITEM_NOT_IN_ORDER, "Some of those items are not in this order.")
    cents = ledger.line_cents(lines)
    if state.order is not None and cents > ledger.remaining(state.order):
        return refuse(Code.INVALID_AMOUNT, "More than what remains to be refunded on this order.")
    money = [_money("refund", cents, method, when="on_return")]
    if method is None:
        money[0]["method_id"] = original
    return {"lines": [_line(line) for line in lines], "money": money, "new_status": OrderStatus.RETURN_REQUESTED.value}


def _exchange(args: dict[str, Any], state: State) -> Plan | ToolResult:
    """τ2: a delivered order (here: inside the return window); each item for an available variant of
    its product; the difference settled with the method named when the items are exchanged (a gift
    card must cover a difference to pay)."""
    if (refused := _returnable(state)) is not None:
        return refused
    priced = _priced(args, state, skip=state.returned, same_allowed=True)
    if isinstance(priced, ToolResult):
        return priced
    pairs, method, diff = priced
    if state.order is not None and -diff > ledger.remaining(state.order):
        return refuse(Code.INVALID_AMOUNT, "More than what remains to be refunded on this order.")
    money = [_money("payment" if diff > 0 else "refund", abs(diff), method, when="on_return")] if diff else []
    lines = [_line(line, v) for line, v in pairs]
    return {
        "lines": lines,
        "diff_cents": diff,
        "payment_method_id": method.id,
        "money": money,
        "new_status": OrderStatus.EXCHANGE_REQUESTED.value,
    }


def _user_address(args: dict[str, Any], state: State) -> Plan | ToolResult:
    return {"address": args["address"], "money": [], "new_status": None}


PLANNERS: dict[str, Callable[[dict[str, Any], State], Plan | ToolResult]] = {
    "cancel": _cancel,
    "modify_items": _modify_items,
    "modify_address": _modify_address,
    "modify_payment": _modify_payment,
    "return": _return,
    "exchange": _exchange,
    "user_address": _user_address,
}
