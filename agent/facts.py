"""The facts the claims check reads for one session (agent.claims): the customer's orders and
refunds, which refunds this conversation made or was told of, and whether its ticket is open; and
the turn's evidence: what this conversation's tool results showed and what the customer wrote.

Our tools read only the store, and only the verified customer's own rows, so what their results
showed is what the store held; an amount the customer wrote is theirs to repeat. `Grounds` reads
the evidence once, lazily, for the parts a reply needs: the amounts it holds, the refunds it reports
as paid (with the order or reservation each belongs to), its identifiers and its field names.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from typing import Any

from sqlalchemy import Integer, String, bindparam, cast, literal, null, select, type_coerce, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from storage.engine import Store, reading
from storage.models import Order, OrderFormat, OrderItem, Refund, SessionOrder, Ticket
from storage.order_formats import Formats, formats_from
from storage.types import UTCDateTime
from tools.tickets import visible_open


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
class Claim:
    """One thing a sentence asserts that the store can contradict (read by agent.claims)."""

    kind: str  # refund | handoff | call | order
    state: str
    sentence: str
    orders: tuple[str, ...] = ()  # the customer's orders the sentence names
    unknown: bool = False  # it names an order number the customer has no order of
    amounts: tuple[tuple[int, str | None], ...] = ()
    when: date | None = None
    names: tuple[str, ...] = ()  # the identifiers the sentence names (for a refund the tool results reported)


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
    """What the store says of this customer and session, in one statement (in `store`'s own read
    transaction, or in the caller's when given a session). The order formats it reads are kept for
    the rest of that transaction (the sanitizer reads them too)."""
    seen = set(seen_refunds)
    async with reading(store) as s:
        rows = (await s.execute(FACTS, {"sid": session_id, "cid": customer_id or ""})).all()
        formats = formats_from(s, [r.s1 for r in rows if r.kind == "shape"], order_pattern)
    orders: dict[str, list[Any]] = {}
    items: dict[str, list[Any]] = {}
    refunds: list[Any] = []
    ticket, looked = False, []
    for r in rows:
        if r.kind == "order":
            orders[r.s1] = r
        elif r.kind == "item":
            items.setdefault(r.s1, []).append(r)
        elif r.kind == "refund":
            refunds.append(r)
        elif r.kind == "ticket":
            ticket = True
        elif r.kind == "looked":
            looked.append(r.s1)
    return Facts(
        orders={oid: _order(o, sorted(items.get(oid, []), key=lambda i: i.n3)) for oid, o in orders.items()},
        refunds=tuple(
            RefundFact(r.s1, r.s2, r.n1, r.s4, r.s3, r.s5 == session_id or r.s1 in seen)
            for r in sorted(refunds, key=lambda r: (r.d1, r.s1))
        ),
        ticket_open=ticket,
        looked_up=tuple(looked),
        today=today,
        formats=formats,
    )


def _row(kind: str, *, s: tuple[Any, ...] = (), n: tuple[Any, ...] = (), d: tuple[Any, ...] = ()) -> Any:
    """One kind of row in the facts statement's common columns: kind, s1..s5, n1..n3, d1..d2."""
    strings = [*s, *[null()] * (5 - len(s))]
    numbers = [*n, *[null()] * (3 - len(n))]
    dates = [*d, *[null()] * (2 - len(d))]
    columns = [literal(kind, String).label("kind")]
    columns += [cast(v, String).label(f"s{i + 1}") for i, v in enumerate(strings)]
    columns += [cast(v, Integer).label(f"n{i + 1}") for i, v in enumerate(numbers)]
    columns += [type_coerce(v, UTCDateTime()).label(f"d{i + 1}") for i, v in enumerate(dates)]
    return select(*columns)


def _facts_statement() -> Any:
    """The customer's orders, their items and refunds, the session's open ticket and looked-up
    orders, and the shop's order shapes, as one UNION ALL."""
    cid, sid = bindparam("cid"), bindparam("sid")
    return union_all(
        _row(
            "order",
            s=(Order.id, Order.status, Order.currency),
            n=(Order.total_cents,),
            d=(Order.placed_at, Order.delivered_at),
        ).where(Order.customer_id == cid),
        _row(
            "item",
            s=(OrderItem.order_id, OrderItem.name),
            n=(OrderItem.unit_price_cents, OrderItem.quantity, OrderItem.line_no),
        )
        .join(Order, Order.id == OrderItem.order_id)
        .where(Order.customer_id == cid),
        _row(
            "refund",
            s=(Refund.id, Refund.order_id, Refund.status, Refund.currency, Refund.session_id),
            n=(Refund.amount_cents,),
            d=(Refund.created_at,),
        )
        .join(Order, Order.id == Refund.order_id)
        .where(Order.customer_id == cid),
        _row("ticket", s=(Ticket.id,)).where(visible_open(sid)),
        _row("looked", s=(SessionOrder.order_id,)).where(SessionOrder.session_id == sid),
        _row("shape", s=(OrderFormat.shape,)),
    )


FACTS = _facts_statement()  # built once


def _order(o: Any, items: list[Any]) -> OrderFact:
    return OrderFact(
        o.s1,
        o.s2,
        o.n1,
        o.s3,
        o.d1.date(),
        o.d2.date() if o.d2 else None,
        tuple((i.s2, i.n1, i.n2) for i in items),
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


def _walk(
    node: Any, owner: str | None = None, key: str = "", depth: int = 0
) -> Iterator[tuple[str, Any, str | None, dict]]:
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
        self._showed: dict[str, bool] = {}

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
        """Whether our tools showed this identifier or email in this conversation (they show only the
        customer's own)."""
        held = self._showed.get(token)
        if held is None:
            held = self._showed[token] = _held(token, self.evidence.tool_results)
        return held

    def shows(self, token: str) -> bool:
        """Whether the tool results or the customer's words hold this identifier."""
        return self.showed(token) or _held(token, self.evidence.customer)


def _held(token: str, texts: Iterable[str]) -> bool:
    word = token.strip("#.").lower()
    if len(word) < 3:
        return False
    if "@" in word:
        return any(word in t.lower() for t in texts)
    return any(word in identifiers(t) for t in texts)


_APART = str.maketrans(dict.fromkeys("\"',:;{}[]()#.!?/\\<>=*`|$€£&~^+\t\r\n", " "))


@functools.lru_cache(maxsize=2048)
def identifiers(text: str) -> frozenset[str]:
    """The words of one tool result or message, lower-cased, split at JSON punctuation and spaces
    (identifiers keep their hyphens and underscores); computed once per text."""
    return frozenset(text[:MAX_EVIDENCE].lower().translate(_APART).split())


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
