"""The one function every customer-bound text goes through.

`sanitize` removes internal codes, replaces any text that looks like an exception or stack
trace with a plain apology, and withholds every email address, order id, customer id and refund
id that does not belong to the session's customer. Ownership is checked against the store, not
a word list; an id that merely looks like an order number and belongs to nobody is withheld too,
so an unknown order and another customer's order read exactly the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import func, select

from storage.engine import Store
from storage.models import Customer, Order, Refund
from tools.wording import GENERIC_FALLBACK

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# identifiers such as ORD-8842, CUST-1001, RF-3F2A9C: letters, a dash, then something with a digit
ID_TOKEN = re.compile(r"(?<![\w-])[A-Za-z][A-Za-z0-9]{0,9}-(?=[A-Za-z0-9-]*\d)[A-Za-z0-9-]+(?![\w-])")
ORDER_SHAPE = re.compile(r"^[A-Z]{2,6}-\d{2,}$")
INTERNAL_CODE = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")
EXCEPTION_TEXT = re.compile(
    r"Traceback \(most recent call last\)|File \"[^\"]*\", line \d+|\b[A-Z]\w*(?:Error|Exception)\b[:(]"
    r"|\b(?:sqlalchemy|asyncpg|aiosqlite|psycopg2?|slack_sdk|slack_bolt|anthropic|pydantic)\.\w"
    r"|\bstack ?trace\b",
    re.IGNORECASE,
)

WITHHELD = {"order": "that order", "customer": "that account", "refund": "that refund", "email": "that email address"}


@dataclass(frozen=True, slots=True)
class Sanitized:
    text: str
    withheld: list[str] = field(default_factory=list)
    replaced: bool = False  # the whole text was unsafe and became the generic apology

    @property
    def changed(self) -> bool:
        return self.replaced or bool(self.withheld)


async def _foreign(store: Store, customer_id: str | None, emails: set[str], tokens: set[str]) -> dict[str, str]:
    """Which of these emails and id tokens are not the customer's own: {token: kind}."""
    upper = {t.upper() for t in tokens}
    owners: dict[str, tuple[str, str]] = {}  # token -> (kind, owning customer)
    own_email = None
    async with store.read() as s:
        if customer_id:
            own_email = await s.scalar(select(Customer.email).where(Customer.id == customer_id))
        if upper:
            for oid, owner in await s.execute(
                select(Order.id, Order.customer_id).where(func.upper(Order.id).in_(upper))
            ):
                owners[oid.upper()] = ("order", owner)
            for cid in await s.scalars(select(Customer.id).where(func.upper(Customer.id).in_(upper))):
                owners[cid.upper()] = ("customer", cid)
            refund_rows = await s.execute(
                select(Refund.id, Order.customer_id)
                .join(Order, Order.id == Refund.order_id)
                .where(func.upper(Refund.id).in_(upper))
            )
            for rid, owner in refund_rows:
                owners[rid.upper()] = ("refund", owner)
    foreign: dict[str, str] = {}
    for t in upper:
        if t in owners:
            kind, owner = owners[t]
            if owner != customer_id:
                foreign[t] = kind
        elif ORDER_SHAPE.match(t):
            foreign[t] = "order"  # shaped like an order number but nobody's: withheld the same way
    for e in emails:
        if own_email is None or e.lower() != own_email.lower():
            foreign[e.lower()] = "email"
    return foreign


async def sanitize(text: str, *, store: Store, customer_id: str | None) -> Sanitized:
    if EXCEPTION_TEXT.search(text):
        return Sanitized(GENERIC_FALLBACK, replaced=True)
    emails = set(EMAIL.findall(text))
    tokens = {m.group(0) for m in ID_TOKEN.finditer(EMAIL.sub(" ", text))}
    foreign = await _foreign(store, customer_id, emails, tokens) if emails or tokens else {}
    withheld: list[str] = []

    def swap_email(m: re.Match[str]) -> str:
        kind = foreign.get(m.group(0).lower())
        if kind:
            withheld.append(m.group(0))
            return WITHHELD[kind]
        return m.group(0)

    def swap_id(m: re.Match[str]) -> str:
        kind = foreign.get(m.group(0).upper())
        if kind:
            withheld.append(m.group(0))
            return WITHHELD[kind]
        return m.group(0)

    out = EMAIL.sub(swap_email, text)
    out = ID_TOKEN.sub(swap_id, out)
    codes = INTERNAL_CODE.findall(out)
    if codes:
        withheld.extend(codes)
        out = INTERNAL_CODE.sub("", out)
        out = re.sub(r"\(\s*\)|\[\s*\]", "", out)
        out = re.sub(r"[ \t]{2,}", " ", out)
        out = re.sub(r"\s+([.,;:!?])", r"\1", out)
        out = re.sub(r"(^|\n)\s*[:\-–]\s*", r"\1", out).strip()
    if not out.strip():
        return Sanitized(GENERIC_FALLBACK, withheld, replaced=True)
    return Sanitized(out, withheld)
