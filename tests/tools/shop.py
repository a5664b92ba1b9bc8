"""A small shop with a catalogue, payment methods and orders in every state, imported through the
import format, for the order-change tests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import text

from storage.engine import Store
from storage.importer import import_records, parse
from storage.types import Clock

ADA, BO = "C-ADA", "C-BO"
HOME = {"address1": "1 Main St", "address2": "", "city": "Springfield", "state": "IL", "country": "USA", "zip": "1"}


def document(clock: Clock, *, pending: int = 1) -> dict[str, Any]:
    now = clock.now().replace(microsecond=0)

    def at(days: float) -> str:
        return (now - timedelta(days=days)).isoformat()

    def order(oid: str, who: str, status: str, lines: list[tuple[str, str]], paid_with: str, **kw: Any) -> dict:
        total = sum(float(p) for _, p in lines)
        return {
            "id": oid,
            "customer_id": who,
            "status": status,
            "total": f"{total:.2f}",
            "currency": "USD",
            "placed_at": at(kw.get("placed", 10)),
            "delivered_at": at(kw["delivered"]) if "delivered" in kw else None,
            "address": HOME,
            "items": [{"item_id": i, "unit_price": p} for i, p in lines],
            "payments": [{"kind": "payment", "amount": f"{total:.2f}", "method": paid_with}],
        }

    orders = [
        order(
            "O-DELV",
            ADA,
            "delivered",
            [("TEE-BM", "20.00"), ("TEE-BM", "20.00"), ("MUG-W", "10.00")],
            "card-1",
            delivered=5,
        ),
        order("O-OLD", ADA, "delivered", [("MUG-W", "10.00")], "card-1", placed=90, delivered=60),
        order("O-BIG", ADA, "pending", [("LAMP-1", "200.00")], "card-1"),
        order("O-GIFT", ADA, "pending", [("MUG-B", "12.00")], "gift-1"),
        order("O-BO", BO, "pending", [("MUG-W", "10.00")], "gift-9"),
    ]
    orders += [
        order(f"O-PEND{n}" if n else "O-PEND", ADA, "pending", [("TEE-BM", "20.00"), ("MUG-W", "10.00")], "card-1")
        for n in range(pending)
    ]
    return {
        "products": [
            {
                "id": "P-TEE",
                "name": "T-Shirt",
                "variants": [
                    {"item_id": "TEE-BM", "options": {"colour": "blue", "size": "M"}, "price": "20.00"},
                    {"item_id": "TEE-RL", "options": {"colour": "red", "size": "L"}, "price": "22.50"},
                    {
                        "item_id": "TEE-GS",
                        "options": {"colour": "green", "size": "S"},
                        "price": "18.00",
                        "available": False,
                    },
                    {"item_id": "TEE-YS", "options": {"colour": "yellow", "size": "S"}, "price": "15.00"},
                ],
            },
            {
                "id": "P-MUG",
                "name": "Mug",
                "variants": [
                    {"item_id": "MUG-W", "options": {"colour": "white"}, "price": "10.00"},
                    {"item_id": "MUG-B", "options": {"colour": "black"}, "price": "12.00"},
                ],
            },
            {
                "id": "P-LAMP",
                "name": "Lamp",
                "variants": [
                    {"item_id": "LAMP-1", "options": {}, "price": "200.00"},
                ],
            },
        ],
        "customers": [
            {
                "id": ADA,
                "name": "Ada",
                "email": "ada@example.com",
                "address": HOME,
                "payment_methods": [
                    {"id": "card-1", "kind": "credit_card", "brand": "visa", "last_four": "4242"},
                    {"id": "gift-1", "kind": "gift_card", "balance": "30.00"},
                    {"id": "pp-1", "kind": "paypal"},
                ],
            },
            {
                "id": BO,
                "name": "Bo",
                "email": "bo@example.com",
                "payment_methods": [
                    {"id": "gift-9", "kind": "gift_card", "balance": "500.00"},
                ],
            },
        ],
        "orders": orders,
    }


async def open_shop(store: Store, clock: Clock, *, pending: int = 1) -> None:
    await import_records(store, parse(document(clock, pending=pending)))


async def rows(store: Store, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    async with store.read() as s:
        return [tuple(r) for r in (await s.execute(text(sql), params)).all()]


async def money(store: Store, order_id: str) -> dict[str, Any]:
    """An order's status, totals and payment history, read with raw SQL."""
    ((status, paid, refunded, promised, total),) = await rows(
        store,
        "SELECT status, paid_cents, refunded_cents, promised_cents, total_cents FROM orders WHERE id = :o",
        o=order_id,
    )
    history = await rows(
        store, "SELECT kind, amount_cents, method_id FROM order_payments WHERE order_id = :o ORDER BY seq", o=order_id
    )
    return {
        "status": status,
        "paid": paid,
        "refunded": refunded,
        "promised": promised,
        "total": total,
        "history": history,
    }


async def balance(store: Store, method_id: str) -> int:
    return (await rows(store, "SELECT balance_cents FROM payment_methods WHERE id = :m", m=method_id))[0][0]
