"""The import file's records as typed models, and the checks a file must pass on its own.

`parse` validates a decoded document and returns a `Document`, or raises ImportError_ listing
every problem with its record and field (`orders[3] (ORD-4): items.0.unit_price: …`). What needs
the store (unknown customers, a variant of another product) is checked by storage.importer.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from storage.errors import ImportError_
from storage.states import DELIVERED_ORDERS, OrderStatus
from storage.types import to_cents

EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
SECTIONS = ("products", "customers", "orders")
MAX_OPTIONS = 20


def money(value: Decimal) -> Decimal:
    """An amount of at most two decimal places, never negative (raises ValueError otherwise)."""
    if value < 0:
        raise ValueError("must not be negative")
    to_cents(value)
    return value


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("needs a time zone (e.g. 2026-11-01T10:00:00Z)")
    return value


def _text_map(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_OPTIONS:
        raise ValueError(f"at most {MAX_OPTIONS} options")
    for k, v in value.items():
        if not k.strip() or len(k) > 64 or len(v) > 200:
            raise ValueError("option names are 1-64 characters, values at most 200")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class AddressIn(_Strict):
    address1: str = Field(min_length=1, max_length=200)
    address2: str = Field(default="", max_length=200)
    city: str = Field(min_length=1, max_length=100)
    state: str = Field(default="", max_length=100)
    country: str = Field(min_length=1, max_length=100)
    zip: str = Field(default="", max_length=20)


class VariantIn(_Strict):
    item_id: str = Field(min_length=1, max_length=64)
    options: dict[str, str] = Field(default_factory=dict)
    price: Decimal
    available: bool = True

    _money = field_validator("price")(money)
    _options = field_validator("options")(_text_map)


class ProductIn(_Strict):
    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=300)
    variants: list[VariantIn] = Field(min_length=1)


class PaymentMethodIn(_Strict):
    id: str = Field(min_length=1, max_length=64)
    kind: Literal["credit_card", "paypal", "gift_card"]
    brand: str | None = Field(default=None, max_length=32)
    last_four: str | None = Field(default=None, pattern=r"^\d{4}$")
    balance: Decimal | None = None

    @field_validator("balance")
    @classmethod
    def _balance(cls, v: Decimal | None) -> Decimal | None:
        return None if v is None else money(v)

    @model_validator(mode="after")
    def _kind(self) -> PaymentMethodIn:
        if (self.kind == "gift_card") != (self.balance is not None):
            raise ValueError("balance: a gift card has a balance, and only a gift card")
        if self.kind != "credit_card" and (self.brand or self.last_four):
            raise ValueError("brand and last_four: only for a credit card")
        return self


class CustomerIn(_Strict):
    id: str = Field(min_length=1, max_length=32)
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(max_length=320)
    address: AddressIn | None = None
    payment_methods: list[PaymentMethodIn] = Field(default_factory=list)

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        if not EMAIL.fullmatch(v):
            raise ValueError("not a valid email address")
        return v.lower()


class ItemIn(_Strict):
    """An order line: its variant by `item_id` (`sku` in older files), as many units as `quantity`,
    each at `unit_price`. A variant not in the catalogue needs `name`: it becomes a product of its
    own with that one variant."""

    item_id: str = Field(min_length=1, max_length=64, validation_alias=AliasChoices("item_id", "sku"))
    name: str | None = Field(default=None, min_length=1)
    product_id: str | None = Field(default=None, min_length=1, max_length=64)
    options: dict[str, str] | None = None
    quantity: int = Field(default=1, gt=0)
    unit_price: Decimal

    _money = field_validator("unit_price")(money)

    @field_validator("options")
    @classmethod
    def _options(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        return None if v is None else _text_map(v)


class PaymentIn(_Strict):
    kind: Literal["payment", "refund"]
    amount: Decimal
    method: str | None = Field(default=None, min_length=1, max_length=64)

    _money = field_validator("amount")(money)


class FulfilmentIn(_Strict):
    tracking_ids: list[str] = Field(default_factory=list, max_length=50)
    item_ids: list[str] = Field(default_factory=list, max_length=500)


class OrderIn(_Strict):
    id: str = Field(min_length=1, max_length=32)
    customer_id: str = Field(min_length=1, max_length=32)
    status: OrderStatus
    total: Decimal
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    placed_at: datetime
    delivered_at: datetime | None = None
    shipping: Decimal = Decimal(0)  # with discount, what explains a total other than the items' sum
    discount: Decimal = Decimal(0)
    address: AddressIn | None = None
    items: list[ItemIn] = Field(default_factory=list)
    payments: list[PaymentIn] | None = None
    fulfilments: list[FulfilmentIn] = Field(default_factory=list)

    _money = field_validator("total", "shipping", "discount")(money)

    @field_validator("placed_at", "delivered_at")
    @classmethod
    def _tz(cls, v: datetime | None) -> datetime | None:
        return _aware(v)

    @model_validator(mode="after")
    def _consistent(self) -> OrderIn:
        delivered = self.status in DELIVERED_ORDERS
        if delivered and self.delivered_at is None:
            raise ValueError(f"delivered_at: required when status is {self.status}")
        if not delivered and self.delivered_at is not None:
            raise ValueError(f"delivered_at: must be null when status is {self.status}")
        items = sum((to_cents(it.unit_price) * it.quantity for it in self.items), 0)
        expected = items + to_cents(self.shipping) - to_cents(self.discount)
        if to_cents(self.total) != expected:
            raise ValueError(
                f"total: {self.total} is not the items' sum {_money(items)} + shipping {self.shipping} "
                f"- discount {self.discount} = {_money(expected)}; fix the total, or add the shipping or "
                "discount that explains it"
            )
        paid, refunded = self.money()
        if refunded > paid:
            raise ValueError(f"payments: the refunds ({_money(refunded)}) exceed the payments ({_money(paid)})")
        return self

    def history(self) -> list[PaymentIn]:
        """The payment history: as given, or else the total charged (and refunded, if cancelled)."""
        if self.payments is not None:
            return self.payments
        charged = [PaymentIn(kind="payment", amount=self.total)]
        if self.status == OrderStatus.CANCELLED and self.total > 0:
            charged.append(PaymentIn(kind="refund", amount=self.total))
        return charged

    def money(self) -> tuple[int, int]:
        """(paid, refunded) in cents, from the payment history."""
        paid = sum(to_cents(p.amount) for p in self.history() if p.kind == "payment")
        return paid, sum(to_cents(p.amount) for p in self.history() if p.kind == "refund")


def _money(cents: int) -> str:
    return f"{Decimal(cents) / 100:.2f}"


@dataclass(frozen=True)
class Document:
    """A validated import file."""

    products: list[ProductIn] = field(default_factory=list)
    customers: list[CustomerIn] = field(default_factory=list)
    orders: list[OrderIn] = field(default_factory=list)

    def variants(self) -> dict[str, tuple[ProductIn, VariantIn]]:
        return {v.item_id: (p, v) for p in self.products for v in p.variants}


def _describe(err: ValidationError) -> Iterator[str]:
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        yield f"{loc}: {msg}" if loc else msg


def _records(data: dict[str, Any], key: str, model: type[_Strict], problems: list[str]) -> list[Any]:
    raw = data.get(key, [])
    if not isinstance(raw, list):
        problems.append(f"{key}: must be a list")
        return []
    out = []
    for i, rec in enumerate(raw):
        label = f"{key}[{i}]"
        if isinstance(rec, dict) and isinstance(rec.get("id"), str):
            label += f" ({rec['id']})"
        try:
            out.append(model.model_validate(rec))
        except ValidationError as err:
            problems.extend(f"{label}: {d}" for d in _describe(err))
    return out


def parse(data: Any) -> Document:
    """Validate a decoded import document; raise ImportError_ listing every problem."""
    if not isinstance(data, dict):
        raise ImportError_(["top level: must be an object with 'products', 'customers' and 'orders'"])
    problems: list[str] = [f"top level: unknown key {k!r}" for k in data if k not in SECTIONS]
    if not problems and all(data.get(key) in (None, []) for key in SECTIONS):
        raise ImportError_(["top level: nothing to import: the file has no products, no customers and no orders"])
    doc = Document(
        products=_records(data, "products", ProductIn, problems),
        customers=_records(data, "customers", CustomerIn, problems),
        orders=_records(data, "orders", OrderIn, problems),
    )
    problems += _within_file(doc)
    if problems:
        raise ImportError_(problems)
    return doc


def _within_file(doc: Document) -> list[str]:
    problems: list[str] = []
    seen: dict[str, str] = {}
    for i, c in enumerate(doc.customers):
        if c.email in seen and seen[c.email] != c.id:
            problems.append(f"customers[{i}] ({c.id}): email: {c.email} is also used by {seen[c.email]}")
        seen.setdefault(c.email, c.id)
    problems += _duplicates("products", [p.id for p in doc.products])
    problems += _duplicates("customers", [c.id for c in doc.customers])
    problems += _duplicates("orders", [o.id for o in doc.orders])
    for key, records, ids in (
        ("products", doc.products, lambda p: [v.item_id for v in p.variants]),
        ("customers", doc.customers, lambda c: [m.id for m in c.payment_methods]),
    ):
        counts = Counter(i for rec in records for i in ids(rec))
        for n, rec in enumerate(records):
            for ident in sorted({i for i in ids(rec) if counts[i] > 1}):
                problems.append(f"{key}[{n}] ({rec.id}): {ident} appears more than once in the file")
    return problems


def _duplicates(key: str, ids: list[str]) -> list[str]:
    seen: set[str] = set()
    problems = []
    for i, ident in enumerate(ids):
        if ident in seen:
            problems.append(f"{key}[{i}] ({ident}): id: appears more than once in the file")
        seen.add(ident)
    return problems
