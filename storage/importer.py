"""Loading a company's catalogue, customers and orders: `supportbot db import FILE.json` and `db seed`.

The whole file is validated before anything is written (storage.import_schema); every problem
names its record and field. The write is one transaction of batched upserts, so a bad file
imports nothing and importing the same file twice changes nothing. A customer or order the
shop's tools have changed since (a refund, an order change) is not overwritten: the import
refuses and names it. FORMAT (below) is the file format as `db import --help` shows it;
storage.tau2 reads τ2-bench's retail store into the same records.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.engine import Store
from storage.import_schema import Document, ImportError_, OrderIn, parse
from storage.models import (
    Customer,
    Fulfilment,
    Order,
    OrderChange,
    OrderItem,
    OrderPayment,
    PaymentMethod,
    Product,
    Refund,
    Variant,
)
from storage.order_formats import record_shapes
from storage.states import COMMITTED_REFUNDS, OrderChangeStatus
from storage.types import Clock, to_cents

__all__ = ["FORMAT", "Document", "ImportError_", "import_records", "load_file", "parse", "seed", "seed_document"]

FORMAT = """\
The file is one JSON object with any of a "products", a "customers" and an "orders" list:

  {"products": [{"id": "P-BLND", "name": "Blender",
                 "variants": [{"item_id": "BLND-500", "options": {"colour": "red"}, "price": "89.99",
                               "available": true}]}],
   "customers": [{"id": "CUST-1", "name": "Ada Lee", "email": "ada@example.com",
                  "address": {"address1": "1 Main St", "address2": "", "city": "Springfield",
                              "state": "IL", "country": "USA", "zip": "62701"},
                  "payment_methods": [{"id": "card-1", "kind": "credit_card", "brand": "visa",
                                       "last_four": "4242"},
                                      {"id": "gift-1", "kind": "gift_card", "balance": "25.00"}]}],
   "orders": [{"id": "ORD-1", "customer_id": "CUST-1", "status": "delivered",
               "total": "94.99", "currency": "USD",
               "placed_at": "2026-11-01T10:00:00Z", "delivered_at": "2026-11-03T15:00:00Z",
               "shipping": "5.00", "discount": "0.00", "address": {...as above...},
               "items": [{"item_id": "BLND-500", "quantity": 1, "unit_price": "89.99"}],
               "payments": [{"kind": "payment", "amount": "94.99", "method": "card-1"}],
               "fulfilments": [{"tracking_ids": ["1Z999"], "item_ids": ["BLND-500"]}]}]}

- amounts are decimals with at most two places (strings or numbers), never negative;
- a product has one or more variants; an item_id is unique across products; options are names
  and values (colour, size…); available defaults to true;
- a payment method's kind is credit_card (brand, last_four), paypal, or gift_card (balance);
- an order line names its variant by item_id (or sku), in this file or the database; a line whose
  variant is in neither needs a "name" and becomes a product of its own with that one variant;
  product_id and options, if given, must match the variant; quantity defaults to 1;
- total must equal the items' sum (quantity x unit_price) + shipping - discount; shipping and
  discount are optional and default to 0 (they explain a total, they are not stored);
- payments is the order's history of "payment" and "refund" entries, each with the customer's
  payment method (or null: not recorded); refunds never exceed payments; without it, the total
  was paid (and, for a cancelled order, refunded);
- status is pending, processed, shipped, delivered, cancelled, items_modified, return_requested or
  exchange_requested; delivered_at is required when delivered (or a return or exchange was
  requested), null otherwise; times are ISO-8601 with a time zone; currency is a 3-letter code;
- an order's customer_id is a customer in this file or already in the database;
- ids are unique in the file, emails unique across customers.

Everything is checked first: a bad file imports nothing, and every problem names its record
(orders[3] (ORD-4)) and field. Importing the same file again changes nothing (upserts by id).
A customer or order that refunds or order changes have changed since is left alone: the import
refuses and names it."""

BATCH = 2000
Progress = Callable[[int, int], None]


def load_file(path: Path) -> Document:
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


def _chunks(rows: list[Any], size: int = BATCH) -> Iterable[list[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _insert(session: AsyncSession, model: type[Any]) -> Any:
    # the table, not the mapped class: a plain executemany, without the ORM's bulk bookkeeping
    return (postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert)(model.__table__)


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
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_=updates) if updates else stmt.on_conflict_do_nothing()
    for chunk in _chunks(rows):
        await session.execute(stmt, chunk)
        tick(len(chunk))


async def _existing(session: AsyncSession, column: Any, ids: Iterable[str], *extra: Any) -> list[Any]:
    """Rows of (column, *extra) whose column is one of `ids`, fetched in batches."""
    wanted = sorted(set(ids))
    out: list[Any] = []
    for part in _chunks(wanted):
        out += (await session.execute(select(column, *extra).where(column.in_(part)))).all()
    return out


async def _check_against_store(session: AsyncSession, doc: Document) -> list[str]:
    problems: list[str] = []
    emails = {c.email: c.id for c in doc.customers}
    for email, cid in await _existing(session, Customer.email, emails, Customer.id):
        if emails[email] != cid:
            problems.append(f"customers ({emails[email]}): email: {email} already belongs to {cid}")
    file_ids = {c.id for c in doc.customers}
    known = {r[0] for r in await _existing(session, Customer.id, {o.customer_id for o in doc.orders} - file_ids)}
    for i, o in enumerate(doc.orders):
        if o.customer_id not in file_ids and o.customer_id not in known:
            problems.append(f"orders[{i}] ({o.id}): customer_id: unknown customer {o.customer_id}")
    problems += await _check_methods(session, doc)
    problems += await _check_unchanged(session, doc)
    return problems


@dataclass
class Catalogue:
    """Every variant the file's lines name: (product id, product name, options) by item id, and the
    single-variant products made for lines whose variant is nowhere (product id = item id)."""

    variants: dict[str, tuple[str, str, dict[str, str]]] = field(default_factory=dict)
    made: dict[str, tuple[str, int]] = field(default_factory=dict)  # item id: (name, price in cents)


async def _catalogue(session: AsyncSession, doc: Document) -> tuple[list[str], Catalogue]:
    problems: list[str] = []
    cat = Catalogue({v.item_id: (p.id, p.name, v.options) for p in doc.products for v in p.variants})
    index = {p.id: i for i, p in enumerate(doc.products)}
    stored = await _existing(session, Variant.item_id, cat.variants, Variant.product_id)
    for item_id, product_id in stored:
        mine = cat.variants[item_id][0]
        if product_id != mine:
            problems.append(
                f"products[{index[mine]}] ({mine}): variants: {item_id} belongs to product {product_id} in the database"
            )
    named = {it.item_id for o in doc.orders for it in o.items} - set(cat.variants)
    for part in _chunks(sorted(named)):
        found = await session.execute(
            select(Variant.item_id, Variant.product_id, Product.name, Variant.options)
            .join(Product, Product.id == Variant.product_id)
            .where(Variant.item_id.in_(part))
        )
        cat.variants.update({item: (pid, name, options) for item, pid, name, options in found})
    taken = {p.id for p in doc.products}
    taken |= {r[0] for r in await _existing(session, Product.id, named - set(cat.variants))}
    for i, o in enumerate(doc.orders):
        for j, it in enumerate(o.items):
            where = f"orders[{i}] ({o.id}): items.{j}"
            known = cat.variants.get(it.item_id)
            if known is not None:
                if it.product_id is not None and it.product_id != known[0]:
                    problems.append(f"{where}.product_id: {it.item_id} is a variant of product {known[0]}")
            elif it.name is None:
                problems.append(
                    f"{where}.item_id: {it.item_id} is not a variant in this file or the database; "
                    "list it under products, or give the line a name to make it a product of its own"
                )
            elif it.item_id in taken:
                problems.append(f"{where}.item_id: a product {it.item_id} exists without this variant")
            elif it.product_id not in (None, it.item_id):
                problems.append(f"{where}.product_id: {it.item_id} is not a variant of {it.product_id}")
            else:
                cat.made.setdefault(it.item_id, (it.name, to_cents(it.unit_price)))
    return problems, cat


async def _check_methods(session: AsyncSession, doc: Document) -> list[str]:
    """A payment method belongs to one customer; an order pays with its own customer's methods."""
    problems: list[str] = []
    owner = {m.id: c.id for c in doc.customers for m in c.payment_methods}
    index = {c.id: i for i, c in enumerate(doc.customers)}
    for method_id, stored_owner in sorted(await _existing(session, PaymentMethod.id, owner, PaymentMethod.customer_id)):
        if stored_owner != owner[method_id]:
            mine = owner[method_id]
            problems.append(
                f"customers[{index[mine]}] ({mine}): payment_methods: {method_id} belongs to {stored_owner}"
            )
    used = {p.method for o in doc.orders for p in o.history() if p.method} - set(owner)
    owner.update(dict(await _existing(session, PaymentMethod.id, used, PaymentMethod.customer_id)))
    for i, o in enumerate(doc.orders):
        for j, p in enumerate(o.history()):
            if p.method is not None and owner.get(p.method) != o.customer_id:
                problems.append(
                    f"orders[{i}] ({o.id}): payments.{j}.method: {p.method} is not a payment method "
                    f"of customer {o.customer_id}"
                )
    return problems


async def _check_unchanged(session: AsyncSession, doc: Document) -> list[str]:
    """Customers and orders changed by refunds or order changes since they were imported."""
    live = (OrderChangeStatus.APPLIED, OrderChangeStatus.PENDING_APPROVAL)
    order_ids = [o.id for o in doc.orders]
    changed = {
        r[0] for r in await _existing(session, OrderChange.order_id, order_ids, OrderChange.status) if r[1] in live
    }
    changed |= {
        r[0] for r in await _existing(session, Refund.order_id, order_ids, Refund.status) if r[1] in MONEY_MOVED
    }
    customers = {
        r[0]
        for r in await _existing(session, OrderChange.customer_id, [c.id for c in doc.customers], OrderChange.status)
        if r[1] in live
    }
    since = "changed by a refund or an order change since it was imported; importing it again would undo that"
    return [f"customers[{i}] ({c.id}): {since}" for i, c in enumerate(doc.customers) if c.id in customers] + [
        f"orders[{i}] ({o.id}): {since}" for i, o in enumerate(doc.orders) if o.id in changed
    ]


MONEY_MOVED = (*COMMITTED_REFUNDS, "pending_approval")


def _rows(doc: Document, cat: Catalogue) -> dict[type[Any], list[dict[str, Any]]]:
    """The rows to upsert, by table, in the order they are written."""
    products = [{"id": p.id, "name": p.name} for p in doc.products]
    products += [{"id": item, "name": name} for item, (name, _) in cat.made.items()]
    variants = [
        {
            "item_id": v.item_id,
            "product_id": p.id,
            "options": v.options,
            "price_cents": to_cents(v.price),
            "available": v.available,
        }
        for p in doc.products
        for v in p.variants
    ]
    variants += [
        {"item_id": item, "product_id": item, "options": {}, "price_cents": price, "available": True}
        for item, (_, price) in cat.made.items()
    ]
    customers = [
        {"id": c.id, "name": c.name, "email": c.email, "address": c.address.model_dump() if c.address else None}
        for c in doc.customers
    ]
    methods = [
        {
            "id": m.id,
            "customer_id": c.id,
            "kind": m.kind,
            "brand": m.brand,
            "last_four": m.last_four,
            "balance_cents": to_cents(m.balance) if m.balance is not None else None,
        }
        for c in doc.customers
        for m in c.payment_methods
    ]
    return {
        Product: products,
        Variant: variants,
        Customer: customers,
        PaymentMethod: methods,
        Order: [_order_row(o) for o in doc.orders],
        OrderItem: [_line(o, n, it, cat) for o in doc.orders for n, it in enumerate(o.items, start=1)],
        OrderPayment: _payments(doc),
        Fulfilment: [
            {"order_id": o.id, "seq": n, "tracking_ids": f.tracking_ids, "item_ids": f.item_ids}
            for o in doc.orders
            for n, f in enumerate(o.fulfilments, start=1)
        ],
    }


def _payments(doc: Document) -> list[dict[str, Any]]:
    """Each order's payment history, numbered from 1."""
    return [
        {
            "order_id": o.id,
            "seq": n,
            "kind": p.kind,
            "amount_cents": to_cents(p.amount),
            "method_id": p.method,
            "change_id": None,
            "refund_id": None,
            "created_at": o.placed_at,
        }
        for o in doc.orders
        for n, p in enumerate(o.history(), start=1)
    ]


def _order_row(o: OrderIn) -> dict[str, Any]:
    paid, refunded = o.money()
    return {
        "id": o.id,
        "customer_id": o.customer_id,
        "status": str(o.status),
        "total_cents": to_cents(o.total),
        "currency": o.currency,
        "placed_at": o.placed_at,
        "delivered_at": o.delivered_at,
        "address": o.address.model_dump() if o.address else None,
        "paid_cents": paid,
        "refunded_cents": refunded,
        "promised_cents": 0,
    }


def _line(o: OrderIn, n: int, it: Any, cat: Catalogue) -> dict[str, Any]:
    product_id, product_name, options = cat.variants.get(it.item_id) or (it.item_id, it.name, {})
    return {
        "order_id": o.id,
        "line_no": n,
        "item_id": it.item_id,
        "product_id": product_id,
        "name": it.name or product_name,
        "options": it.options if it.options is not None else options,
        "quantity": it.quantity,
        "unit_price_cents": to_cents(it.unit_price),
    }


KEYS: dict[type[Any], list[str]] = {
    Product: ["id"],
    Variant: ["item_id"],
    Customer: ["id"],
    PaymentMethod: ["id"],
    Order: ["id"],
    OrderItem: ["order_id", "line_no"],
    OrderPayment: ["order_id", "seq"],
    Fulfilment: ["order_id", "seq"],
}


async def import_records(store: Store, doc: Document, *, progress: Progress | None = None) -> dict[str, int]:
    """Upsert everything in one transaction; returns counts. Raises ImportError_ before writing."""
    done = 0

    async with store.write() as session:
        problems = await _check_against_store(session, doc)
        more, cat = await _catalogue(session, doc)
        if problems or more:
            raise ImportError_(problems + more)
        tables = _rows(doc, cat)
        total = sum(len(rows) for rows in tables.values())

        def tick(n: int) -> None:
            nonlocal done
            done += n
            if progress:
                progress(done, total)

        for model, rows in tables.items():
            await _upsert(session, model, rows, KEYS[model], tick)
        await record_shapes(session, (o.id for o in doc.orders))
        # what an earlier import had beyond this file's last line, payment or fulfilment is gone now
        for model, column, count in (
            (OrderItem, OrderItem.line_no, lambda o: len(o.items)),
            (OrderPayment, OrderPayment.seq, lambda o: len(o.history())),
            (Fulfilment, Fulfilment.seq, lambda o: len(o.fulfilments)),
        ):
            await _trim(session, model, column, [(o.id, count(o)) for o in doc.orders])
    return {
        "products": len(tables[Product]),
        "variants": len(tables[Variant]),
        "customers": len(tables[Customer]),
        "orders": len(tables[Order]),
        "items": len(tables[OrderItem]),
    }


async def _trim(session: AsyncSession, model: type[Any], column: Any, counts: list[tuple[str, int]]) -> None:
    """Delete what an order had beyond its count: only for the orders that have more (rarely any)."""
    wanted = dict(counts)
    longer: list[tuple[str, int]] = []
    for part in _chunks(sorted(wanted)):
        found = await session.execute(
            select(model.order_id, func.max(column)).where(model.order_id.in_(part)).group_by(model.order_id)
        )
        longer += [(oid, wanted[oid]) for oid, top in found if top > wanted[oid]]
    for part in _chunks(longer, 500):
        await session.execute(
            delete(model)
            .where(or_(*[and_(model.order_id == oid, column > n) for oid, n in part]))
            .execution_options(synchronize_session=False)
        )


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
    return await import_records(store, parse(seed_document(clock)))
