"""Loading a company's customers and orders: `supportbot db import FILE.json` and `db seed`.

The whole file is validated before anything is written; every problem names its record and
field. The write is one transaction of batched upserts, so a bad file imports nothing and
importing the same file twice changes nothing. FORMAT (below) is the file format as `db import
--help` shows it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import and_, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.engine import Store
from storage.models import Customer, Order, OrderItem
from storage.order_formats import record_shapes
from storage.types import Clock, to_cents

FORMAT = """\
The file is one JSON object with a "customers" list, an "orders" list, or both:

  {"customers": [{"id": "CUST-1", "name": "Ada Lee", "email": "ada@example.com"}],
   "orders": [{"id": "ORD-1", "customer_id": "CUST-1", "status": "delivered",
               "total": "94.99", "currency": "USD",
               "placed_at": "2026-11-01T10:00:00Z", "delivered_at": "2026-11-03T15:00:00Z",
               "shipping": "5.00", "discount": "0.00",
               "items": [{"sku": "BLND-500", "name": "Blender", "quantity": 1, "unit_price": "89.99"}]}]}

- amounts are decimals with at most two places (strings or numbers), never negative;
- total must equal the items' sum (quantity x unit_price) + shipping - discount; shipping and
  discount are optional and default to 0 (they explain a total, they are not stored);
- status is pending, shipped, delivered or cancelled; delivered_at is required when delivered,
  null otherwise; times are ISO-8601 with a time zone; currency is a 3-letter code (USD);
- an order's customer_id is a customer in this file or already in the database;
- ids are unique in the file, emails unique across customers.

Everything is checked first: a bad file imports nothing, and every problem names its record
(orders[3] (ORD-4)) and field. Importing the same file again changes nothing (upserts by id)."""

BATCH = 2000
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
Progress = Callable[[int, int], None]


class ImportError_(Exception):
    """A file that cannot be imported; `problems` lists every record and field at fault."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        shown = "\n".join(f"  - {p}" for p in problems[:20])
        more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{len(problems)} problem(s) in the import file:\n{shown}{more}")


def _cents(value: Decimal) -> int:
    if value < 0:
        raise ValueError("must not be negative")
    return to_cents(value)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("needs a time zone (e.g. 2026-11-01T10:00:00Z)")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ItemIn(_Strict):
    sku: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1)
    quantity: int = Field(gt=0)
    unit_price: Decimal

    @field_validator("unit_price")
    @classmethod
    def _money(cls, v: Decimal) -> Decimal:
        _cents(v)
        return v


class CustomerIn(_Strict):
    id: str = Field(min_length=1, max_length=32)
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(max_length=320)

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        if not EMAIL.fullmatch(v):
            raise ValueError("not a valid email address")
        return v.lower()


class OrderIn(_Strict):
    id: str = Field(min_length=1, max_length=32)
    customer_id: str = Field(min_length=1, max_length=32)
    status: Literal["pending", "shipped", "delivered", "cancelled"]
    total: Decimal
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    placed_at: datetime
    delivered_at: datetime | None = None
    shipping: Decimal = Decimal(0)  # with discount, what explains a total other than the items' sum
    discount: Decimal = Decimal(0)
    items: list[ItemIn] = Field(default_factory=list)

    @field_validator("total", "shipping", "discount")
    @classmethod
    def _money(cls, v: Decimal) -> Decimal:
        _cents(v)
        return v

    @field_validator("placed_at", "delivered_at")
    @classmethod
    def _tz(cls, v: datetime | None) -> datetime | None:
        return _aware(v)

    @model_validator(mode="after")
    def _delivered(self) -> OrderIn:
        if self.status == "delivered" and self.delivered_at is None:
            raise ValueError("delivered_at: required when status is delivered")
        if self.status != "delivered" and self.delivered_at is not None:
            raise ValueError("delivered_at: must be null unless status is delivered")
        items = sum((to_cents(it.unit_price) * it.quantity for it in self.items), 0)
        expected = items + to_cents(self.shipping) - to_cents(self.discount)
        if to_cents(self.total) != expected:
            raise ValueError(
                f"total: {self.total} is not the items' sum {_money(items)} + shipping {self.shipping} "
                f"- discount {self.discount} = {_money(expected)}; fix the total, or add the shipping or "
                "discount that explains it"
            )
        return self


def _money(cents: int) -> str:
    return f"{Decimal(cents) / 100:.2f}"


def _describe(err: ValidationError) -> Iterator[str]:
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        yield f"{loc}: {msg}" if loc else msg


def _records(data: Any, key: str, model: type[_Strict], problems: list[str]) -> list[Any]:
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


def parse(data: Any) -> tuple[list[CustomerIn], list[OrderIn]]:
    """Validate a decoded import document; raise ImportError_ listing every problem."""
    if not isinstance(data, dict):
        raise ImportError_(["top level: must be an object with 'customers' and 'orders'"])
    problems: list[str] = [f"top level: unknown key {k!r}" for k in data if k not in {"customers", "orders"}]
    if not problems and all(data.get(key) in (None, []) for key in ("customers", "orders")):
        raise ImportError_(["top level: nothing to import: the file has no customers and no orders"])
    customers = _records(data, "customers", CustomerIn, problems)
    orders = _records(data, "orders", OrderIn, problems)
    seen: dict[str, str] = {}
    for i, c in enumerate(customers):
        if c.email in seen and seen[c.email] != c.id:
            problems.append(f"customers[{i}] ({c.id}): email: {c.email} is also used by {seen[c.email]}")
        seen.setdefault(c.email, c.id)
    _duplicates(problems, "customers", [c.id for c in customers])
    _duplicates(problems, "orders", [o.id for o in orders])
    if problems:
        raise ImportError_(problems)
    return customers, orders


def _duplicates(problems: list[str], key: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for i, ident in enumerate(ids):
        if ident in seen:
            problems.append(f"{key}[{i}] ({ident}): id: appears more than once in the file")
        seen.add(ident)


def load_file(path: Path) -> tuple[list[CustomerIn], list[OrderIn]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ImportError_([f"{path}: cannot be read ({exc.strerror})"]) from exc
    except UnicodeDecodeError as exc:
        raise ImportError_([f"{path}: is not UTF-8 text"]) from exc
    try:
        data = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise ImportError_([f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"]) from exc
    return parse(data)


def _chunks(rows: list[dict[str, Any]], size: int = BATCH) -> Iterable[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _insert(session: AsyncSession, model: type[Any]) -> Any:
    return (postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert)(model)


async def _upsert(
    session: AsyncSession,
    model: type[Any],
    rows: list[dict[str, Any]],
    keys: list[str],
    tick: Callable[[int], None],
) -> None:
    if not rows:
        return
    stmt = _insert(session, model)
    updates = {c: stmt.excluded[c] for c in rows[0] if c not in keys}
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_=updates)
    for chunk in _chunks(rows):
        await session.execute(stmt, chunk)
        tick(len(chunk))


async def _check_against_store(session: AsyncSession, customers: list[CustomerIn], orders: list[OrderIn]) -> None:
    problems: list[str] = []
    file_ids = {c.id for c in customers}
    emails = {c.email: c.id for c in customers}
    for chunk in _chunks([{"e": e} for e in emails]):
        found = await session.execute(
            select(Customer.email, Customer.id).where(Customer.email.in_([r["e"] for r in chunk]))
        )
        for email, cid in found:
            if emails[email] != cid:
                problems.append(f"customers ({emails[email]}): email: {email} already belongs to {cid}")
    missing = {o.customer_id for o in orders} - file_ids
    known: set[str] = set()
    ids = sorted(missing)
    for start in range(0, len(ids), BATCH):
        part = ids[start : start + BATCH]
        known |= set((await session.scalars(select(Customer.id).where(Customer.id.in_(part)))).all())
    for i, o in enumerate(orders):
        if o.customer_id in missing - known:
            problems.append(f"orders[{i}] ({o.id}): customer_id: unknown customer {o.customer_id}")
    if problems:
        raise ImportError_(problems)


async def import_records(
    store: Store, customers: list[CustomerIn], orders: list[OrderIn], *, progress: Progress | None = None
) -> dict[str, int]:
    """Upsert everything in one transaction; returns counts. Raises ImportError_ before writing."""
    total = len(customers) + len(orders) + sum(len(o.items) for o in orders)
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, total)

    cust_rows = [{"id": c.id, "name": c.name, "email": c.email} for c in customers]
    order_rows = [
        {
            "id": o.id,
            "customer_id": o.customer_id,
            "status": o.status,
            "total_cents": to_cents(o.total),
            "currency": o.currency,
            "placed_at": o.placed_at,
            "delivered_at": o.delivered_at,
        }
        for o in orders
    ]
    item_rows = [
        {
            "order_id": o.id,
            "line_no": n,
            "sku": it.sku,
            "name": it.name,
            "quantity": it.quantity,
            "unit_price_cents": to_cents(it.unit_price),
        }
        for o in orders
        for n, it in enumerate(o.items, start=1)
    ]
    async with store.write() as session:
        await _check_against_store(session, customers, orders)
        await _upsert(session, Customer, cust_rows, ["id"], tick)
        await _upsert(session, Order, order_rows, ["id"], tick)
        await _upsert(session, OrderItem, item_rows, ["order_id", "line_no"], tick)
        await record_shapes(session, (o.id for o in orders))
        # lines an earlier import had beyond this file's last line for the order are gone now
        counts = [(o.id, len(o.items)) for o in orders]
        for start in range(0, len(counts), 500):
            part = counts[start : start + 500]
            await session.execute(
                delete(OrderItem).where(
                    or_(*[and_(OrderItem.order_id == oid, OrderItem.line_no > n) for oid, n in part])
                )
            )
    return {"customers": len(cust_rows), "orders": len(order_rows), "items": len(item_rows)}


def seed_document(clock: Clock) -> dict[str, Any]:
    """The demo company: the seed's sarah@example.com and her blender, plus the edge cases."""
    now = clock.now().replace(microsecond=0)

    def at(days: float) -> str:
        return (now - timedelta(days=days)).isoformat()

    def order(
        oid: str,
        cust: str,
        status: str,
        items: list[tuple[str, str, int, str]],
        placed: float,
        delivered: float | None = None,
    ) -> dict[str, Any]:
        total = sum(Decimal(price) * qty for _, _, qty, price in items)
        return {
            "id": oid,
            "customer_id": cust,
            "status": status,
            "total": total,
            "currency": "USD",
            "placed_at": at(placed),
            "delivered_at": at(delivered) if delivered is not None else None,
            "items": [{"sku": s, "name": n, "quantity": q, "unit_price": Decimal(p)} for s, n, q, p in items],
        }

    return {
        "customers": [
            {"id": "CUST-1001", "name": "Sarah Chen", "email": "sarah@example.com"},
            {"id": "CUST-1002", "name": "James Okafor", "email": "james@example.com"},
            {"id": "CUST-1003", "name": "Priya Raman", "email": "priya@example.com"},
        ],
        "orders": [
            order("ORD-8842", "CUST-1001", "delivered", [("BLND-500", "ProBlend 500 blender", 1, "89.99")], 9, 5),
            order(
                "ORD-8901",
                "CUST-1001",
                "delivered",
                [("ESP-900", "Barista Pro espresso machine", 1, "349.00")],
                6,
                3,
            ),
            order("ORD-7710", "CUST-1001", "delivered", [("KTL-20", "Gooseneck kettle", 1, "45.00")], 50, 45),
            order("ORD-9120", "CUST-1001", "pending", [("MUG-4", "Stoneware mug set", 1, "32.50")], 1),
            order("ORD-5501", "CUST-1002", "delivered", [("HDP-7", "Studio headphones", 1, "129.00")], 12, 8),
            order("ORD-5502", "CUST-1002", "shipped", [("CBL-2", "USB-C cable", 2, "12.00")], 3),
            order(
                "ORD-6610",
                "CUST-1003",
                "delivered",
                [("LMP-3", "Desk lamp", 1, "59.00"), ("BLB-3", "LED bulb", 2, "4.50")],
                10,
                2,
            ),
        ],
    }


async def seed(store: Store, clock: Clock) -> dict[str, int]:
    customers, orders = parse(seed_document(clock))
    return await import_records(store, customers, orders)
