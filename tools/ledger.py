"""An order's money, as every money step uses it inside its writing transaction.

An order's payment history (`order_payments`) and its totals beside it (`paid_cents`,
`refunded_cents`, `promised_cents`) change together, only here: a step locks the order row
(`lock_order`, a no-op on SQLite, whose writers are one at a time), re-checks what remains to be
refunded, and appends. The database refuses refunds beyond what was paid whatever the code does
(`ck_orders_refunds_within_paid`), and an order line given back twice (`returned_items`).

Two approval limits, each counted over an order's money in all, so splitting a refund in parts
never passes under one (`given_back`):
- REFUND_LIMIT: refunds of goods the customer keeps (process_refund), sent or awaiting approval;
- CHANGE_APPROVAL_LIMIT (off by default): order changes' refunds, each net of what the same change
  charged. A change gives money back only for goods that never shipped or come back (a
  cancellation, a return, an exchange) or for a cheaper variant, so a shop need not set it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import String, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.orm.attributes import set_committed_value

from storage.models import Order, OrderChange, OrderItem, OrderPayment, Refund, ReturnedItem
from storage.states import COMMITTED_REFUNDS, OrderChangeStatus, RefundStatus

COUNTED_CHANGES = (OrderChangeStatus.APPLIED, OrderChangeStatus.PENDING_APPROVAL)
COUNTED_REFUNDS = (*COMMITTED_REFUNDS, RefundStatus.PENDING_APPROVAL)


def remaining(order: Order) -> int:
    """What can still be refunded on the order, in cents."""
    return max(0, order.paid_cents - order.refunded_cents - order.promised_cents)


async def lock_order(s: AsyncSession, order_id: str) -> Order | None:
    """The order, fresh and locked until the transaction ends (PostgreSQL: FOR UPDATE)."""
    return (
        await s.scalars(
            select(Order).where(Order.id == order_id).with_for_update().execution_options(populate_existing=True)
        )
    ).one_or_none()


async def given_back(
    s: AsyncSession, order: Order, *, by_changes: bool = False, ignore_refund: str | None = None
) -> int:
    """The order's money given back in all, in cents: by its refunds, or by its order changes (see
    the module's docstring). Read only when the totals alone could pass the limit: they never count
    less than this."""
    if by_changes:
        query = select(func.coalesce(func.sum(OrderChange.refund_cents), 0)).where(
            OrderChange.order_id == order.id, OrderChange.status.in_(COUNTED_CHANGES)
        )
    else:
        query = select(func.coalesce(func.sum(Refund.amount_cents), 0)).where(
            Refund.order_id == order.id, Refund.status.in_(COUNTED_REFUNDS), Refund.id != (ignore_refund or "")
        )
    return int(await s.scalar(query) or 0)


async def over_limit(
    s: AsyncSession, order: Order, amount_cents: int, limit_cents: int | None, **kw: str | bool | None
) -> bool:
    """Whether giving back `amount_cents` more takes the order's money given back over the limit
    (None: no limit)."""
    if limit_cents is None or order.refunded_cents + order.promised_cents + amount_cents <= limit_cents:
        return False  # what the totals count is never less than what was given back
    return await given_back(s, order, **kw) + amount_cents > limit_cents  # type: ignore[arg-type]


async def append(
    s: AsyncSession,
    order: Order,
    entries: Sequence[tuple[str, int, str | None]],
    *,
    at: object,
    change_id: str | None = None,
    refund_id: str | None = None,
) -> None:
    """Append (kind, cents, method) entries to the order's payment history and its totals: one
    INSERT … SELECT per entry (numbered after the last) and one UPDATE of the totals. The method
    ORIGINAL is the order's first payment's."""
    for kind, cents, method_id in entries:
        method = _original(order.id) if method_id == ORIGINAL else literal(method_id, type_=String())
        nxt = select(
            literal(order.id),
            func.coalesce(func.max(OrderPayment.seq), 0) + 1,
            literal(kind),
            literal(cents),
            method,
            literal(change_id),
            literal(refund_id),
            literal(at, type_=OrderPayment.__table__.c.created_at.type),
        ).where(OrderPayment.order_id == order.id)
        await s.execute(
            insert(OrderPayment).from_select(
                ["order_id", "seq", "kind", "amount_cents", "method_id", "change_id", "refund_id", "created_at"], nxt
            )
        )
    paid = sum(c for k, c, _ in entries if k == "payment")
    refunded = sum(c for k, c, _ in entries if k == "refund")
    await move_totals(s, order, paid=paid, refunded=refunded)


ORIGINAL = "<original>"


def _original(order_id: str) -> Any:
    first = aliased(OrderPayment)
    return select(first.method_id).where(first.order_id == order_id).order_by(first.seq).limit(1).scalar_subquery()


async def move_totals(s: AsyncSession, order: Order, *, paid: int = 0, refunded: int = 0, promised: int = 0) -> None:
    if not (paid or refunded or promised):
        return
    await s.execute(
        update(Order)
        .where(Order.id == order.id)
        .values(
            paid_cents=Order.paid_cents + paid,
            refunded_cents=Order.refunded_cents + refunded,
            promised_cents=Order.promised_cents + promised,
        )
        .execution_options(synchronize_session=False)
    )
    # the loaded row follows, without a second write of its own
    set_committed_value(order, "paid_cents", order.paid_cents + paid)
    set_committed_value(order, "refunded_cents", order.refunded_cents + refunded)
    set_committed_value(order, "promised_cents", order.promised_cents + promised)


async def history(s: AsyncSession, order_id: str) -> list[OrderPayment]:
    return list(
        await s.scalars(select(OrderPayment).where(OrderPayment.order_id == order_id).order_by(OrderPayment.seq))
    )


async def returned_lines(s: AsyncSession, order_id: str) -> set[int]:
    rows = await s.scalars(select(ReturnedItem.line_no).where(ReturnedItem.order_id == order_id))
    return set(rows)


async def give_back(
    s: AsyncSession,
    order_id: str,
    line_nos: Iterable[int],
    *,
    kind: str,
    at: object,
    change_id: str | None = None,
    refund_id: str | None = None,
) -> None:
    """Record order lines as given back; a line given back before makes the database refuse."""
    s.add_all(
        ReturnedItem(order_id=order_id, line_no=n, kind=kind, change_id=change_id, refund_id=refund_id, created_at=at)
        for n in line_nos
    )
    await s.flush()


def pick_lines(
    lines: Sequence[OrderItem], item_ids: Sequence[str], *, skip: Iterable[int] = ()
) -> list[OrderItem] | None:
    """The order lines `item_ids` name, in their order, leaving out the lines in `skip` (given back
    already): an id named twice is two lines with that item. None if there are fewer such lines
    than named."""
    taken = set(skip)
    free = [line for line in lines if line.line_no not in taken]
    if any(n > sum(1 for line in free if line.item_id == item) for item, n in Counter(item_ids).items()):
        return None
    out = []
    for item in item_ids:
        line = next(line for line in free if line.item_id == item and line.line_no not in taken)
        taken.add(line.line_no)
        out.append(line)
    return out


def line_cents(lines: Iterable[OrderItem]) -> int:
    return sum(line.unit_price_cents * line.quantity for line in lines)
