"""The facts the claims check reads for one session (agent.claims): the customer's orders and
refunds, which refunds this conversation made or was told of, and whether its ticket is open; and
the turn's evidence: what this conversation's tool results showed and what the customer wrote.

Our tools read only the store, and only the verified customer's own rows, so what their results
showed is what the store held; an amount the customer wrote is theirs to repeat. `Grounds` reads
the evidence once, lazily, for the parts a reply needs: the amounts it holds, the refunds it reports
as paid (with the order or reservation each belongs to), its identifiers and its field names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from typing import Any

from sqlalchemy import String, cast, literal_column, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from storage.engine import Store, reading
from storage.models import Order, Refund, SessionOrder, Ticket
from storage.order_formats import Formats, load_formats


@dataclass(frozen=True, slots=True)
class OrderFact:
    id: str
    status: str
    total_cents: int
    currency: str
    placed_on: date
    delivered_on: date | None
    items: tuple[tuple[str, int, int], ...] = ()  # (name, unit price cents, quantity)

    @property
    def item(self) -> str:
        return self.items[0][0] if self.items else "your order"

    def amounts(self) -> set[int]:
        return {self.total_cents} | {p for _, p, _ in self.items} | {p * q for _, p, q in self.items}


@dataclass(frozen=True, slots=True)
class RefundFact:
    id: str
    order_id: str
    amount_cents: int
    currency: str
    status: str
    here: bool  # made in this conversation, or reported to it by a tool


@dataclass(frozen=True, slots=True)
class Facts:
    """What the store says for one session: the customer's orders and refunds, the session's ticket."""

    orders: dict[str, OrderFact]
    refunds: tuple[RefundFact, ...]
    ticket_open: bool
    looked_up: tuple[str, ...]
    today: date
    formats: Formats = field(default_factory=Formats)


async def load_facts(
    store: Store | AsyncSession,
    *,
    session_id: str,
    customer_id: str | None,
    today: date,
    seen_refunds: Iterable[str] = (),
    order_pattern: str | None = None,
) -> Facts:
    """What the store says of this customer and session (in `store`'s own read transaction, or in
    the caller's when given a session)."""
    seen = set(seen_refunds)
    async with reading(store) as s:
        formats = await load_formats(s, order_pattern)
        orders, refunds = await _customers(s, customer_id) if customer_id else ([], [])
        rows = (await s.execute(_session_rows(session_id))).all()
    ticket = next((v for k, v in rows if k == "ticket"), None)
    looked = [v for k, v in rows if k == "order"]
    return Facts(
        orders={o.id: _order(o) for o in orders},
        refunds=tuple(
            RefundFact(
                r.id, r.order_id, r.amount_cents, r.currency, r.status, r.session_id == session_id or r.id in seen
            )
            for r in refunds
        ),
        ticket_open=ticket is not None,
        looked_up=tuple(looked),
        today=today,
        formats=formats,
    )


async def _customers(s: AsyncSession, customer_id: str) -> tuple[list[Order], list[Refund]]:
    """The customer's orders (with their items) and refunds, oldest refund first."""
    orders = (
        (await s.scalars(select(Order).where(Order.customer_id == customer_id).options(joinedload(Order.items))))
        .unique()
        .all()
    )
    refunds = (
        await s.scalars(
            select(Refund)
            .join(Order, Order.id == Refund.order_id)
            .where(Order.customer_id == customer_id)
            .order_by(Refund.created_at)
        )
    ).all()
    return list(orders), list(refunds)


def _session_rows(session_id: str) -> Any:
    """("ticket", id) of the session's unresolved tickets and ("order", id) of the orders it looked
    up, in one statement."""
    ticket = literal_column("'ticket'", String).label("kind")
    order = literal_column("'order'", String).label("kind")
    return union_all(
        select(ticket, cast(Ticket.id, String)).where(Ticket.session_id == session_id, Ticket.status != "resolved"),
        select(order, SessionOrder.order_id).where(SessionOrder.session_id == session_id),
    )


def _order(o: Order) -> OrderFact:
    return OrderFact(
        o.id,
        o.status,
        o.total_cents,
        o.currency,
        o.placed_at.date(),
        o.delivered_at.date() if o.delivered_at else None,
        tuple((i.name, i.unit_price_cents, i.quantity) for i in o.items),
    )


# --- the turn's evidence ----------------------------------------------------------------------------------
MAX_EVIDENCE = 200_000  # characters of tool results read for grounds; a conversation holds far less
_MONEY_KEY = re.compile(
    r"price|amount|total|balance|cost|fee|paid|charge|refund|fare|value|credit|subtotal|sum", re.IGNORECASE
)
_MONEY_TEXT = re.compile(r"[$€£]\s?(\d[\d,]{0,12}(?:\.\d{1,2})?)|(\d[\d.,]{0,12})\s?(?:[$€£]|USD|EUR|GBP)\b")
_OWNER_KEYS = ("order_id", "reservation_id", "id")
_PAID_STATES = {"processed", "completed", "complete", "paid", "refunded", "succeeded", "done"}
_WORDS = re.compile(r"\w{2,60}")


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the conversation has shown the model so far: its successful tool results (as sent), the
    customer's own messages, and the names of the tools it has."""

    tool_results: tuple[str, ...] = ()
    customer: tuple[str, ...] = ()
    tools: frozenset[str] = frozenset()

    def grounds(self) -> Grounds:
        return Grounds(self)


def _cents(value: Any) -> int | None:
    raw = str(value).strip().strip("$€£").removesuffix("USD").removesuffix("EUR").strip().replace(",", "")
    try:
        cents = round(float(raw) * 100)
    except ValueError:
        return None
    return cents if 0 <= cents < 10**13 else None


def _walk(node: Any, owner: str | None = None, key: str = "", depth: int = 0) -> Iterator[tuple[str, Any, str | None, dict]]:
    """(key, value, the order or reservation it belongs to, the dict it is in) for every leaf."""
    if depth > 12:
        return
    if isinstance(node, dict):
        ident = next((str(node[k]) for k in _OWNER_KEYS if isinstance(node.get(k), str | int)), None)
        owner = ident or owner
        for k, v in node.items():
            if isinstance(v, dict | list):
                yield from _walk(v, owner, str(k), depth + 1)
            else:
                yield str(k), v, owner, node
    elif isinstance(node, list):
        for v in node[:500]:
            yield from _walk(v, owner, key, depth + 1)


class Grounds:
    """The parts of the evidence a reply's claims are checked against, each read once when first needed."""

    def __init__(self, evidence: Evidence) -> None:
        self.evidence = evidence

    @cached_property
    def blob(self) -> str:
        return "\n".join(self.evidence.tool_results)[:MAX_EVIDENCE]

    @cached_property
    def said(self) -> str:
        return "\n".join(self.evidence.customer)[-20_000:]

    @cached_property
    def _parsed(self) -> list[Any]:
        out = []
        for raw in self.evidence.tool_results:
            try:
                out.append(json.loads(raw[:MAX_EVIDENCE]))
            except (json.JSONDecodeError, RecursionError):
                continue
        return out

    @cached_property
    def _leaves(self) -> list[tuple[str, Any, str | None, dict]]:
        return [leaf for doc in self._parsed for leaf in _walk(doc)]

    @cached_property
    def amounts(self) -> set[int]:
        """Every amount the tool results showed (under a money key, or written as money) or the customer wrote."""
        out = {c for k, v, _, _ in self._leaves if _MONEY_KEY.search(k) and (c := _cents(v)) is not None}
        for text in (self.blob, self.said):
            for m in _MONEY_TEXT.finditer(text):
                if (c := _cents(m.group(1) or m.group(2))) is not None:
                    out.add(c)
        return out

    @cached_property
    def refunds(self) -> list[tuple[str | None, int]]:
        """(order or reservation, amount) of every refund the tool results report as paid."""
        out = []
        for k, v, owner, node in self._leaves:
            if not _MONEY_KEY.search(k) or isinstance(v, bool) or (cents := _cents(v)) is None:
                continue
            kind = str(node.get("transaction_type") or node.get("type") or "").lower()
            status = str(node.get("status") or "").lower()
            refund = "refund" in kind or (("refund_id" in node or "refund" in k.lower()) and status in _PAID_STATES)
            if refund:
                out.append((owner, abs(cents)))
        return out

    @cached_property
    def fields(self) -> set[str]:
        """The field names of the tool results (JSON keys)."""
        return {k for k, _, _, _ in self._leaves} | {k for doc in self._parsed for k in _keys(doc)}

    def showed(self, token: str) -> bool:
        """Whether our tools showed this identifier in this conversation (they show only the customer's own)."""
        return len(token) >= 3 and token in self.blob

    def shows(self, token: str) -> bool:
        """Whether the tool results or the customer's words hold this identifier."""
        return bool(token) and (token in self.blob or token in self.said)


def _keys(node: Any, depth: int = 0) -> Iterator[str]:
    if depth > 12:
        return
    if isinstance(node, dict):
        for k, v in node.items():
            yield str(k)
            yield from _keys(v, depth + 1)
    elif isinstance(node, list):
        for v in node[:500]:
            yield from _keys(v, depth + 1)
