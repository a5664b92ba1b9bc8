"""A generated shop in the import format, for measuring `supportbot db import` at scale:
`python -m bot.bench.catalogue OUT.json --products 1000 --variants 12 --customers 2000 --orders 5000`.

Deterministic (a seeded generator): every product has its variants (colour x size options), every
customer a card, PayPal and a gift card with a balance, every order two or three lines of
variants with their payment. Measure the import from outside (farm-bench or /usr/bin/time), so
its time and peak memory are the whole process's.
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from storage.states import OrderStatus

COLOURS = ["black", "white", "red", "blue", "green", "grey", "navy", "yellow"]
SIZES = ["XS", "S", "M", "L", "XL", "XXL"]
PLACED = datetime(2026, 11, 1, tzinfo=UTC)


def generate(*, products: int, variants: int, customers: int, orders: int, seed: int = 30) -> dict[str, Any]:
    rng = random.Random(seed)
    catalogue = []
    for p in range(products):
        base = rng.randint(500, 50_000)
        catalogue.append(
            {
                "id": f"P{p:06d}",
                "name": f"Product {p}",
                "variants": [
                    {
                        "item_id": f"V{p:06d}{v:03d}",
                        "options": {
                            "colour": COLOURS[v % len(COLOURS)],
                            "size": SIZES[v // len(COLOURS) % len(SIZES)],
                            "edition": str(v),
                        },
                        "price": f"{(base + rng.randint(-300, 300)) / 100:.2f}",
                        "available": rng.random() > 0.1,
                    }
                    for v in range(variants)
                ],
            }
        )
    people = [
        {
            "id": f"C{c:06d}",
            "name": f"Customer {c}",
            "email": f"c{c}@bench.example",
            "address": {
                "address1": f"{c} Main St",
                "address2": "",
                "city": "Springfield",
                "state": "IL",
                "country": "USA",
                "zip": f"{10000 + c % 89999}",
            },
            "payment_methods": [
                {"id": f"card-C{c:06d}", "kind": "credit_card", "brand": "visa", "last_four": f"{c % 10000:04d}"},
                {"id": f"pp-C{c:06d}", "kind": "paypal"},
                {"id": f"gift-C{c:06d}", "kind": "gift_card", "balance": f"{rng.randint(0, 20_000) / 100:.2f}"},
            ],
        }
        for c in range(customers)
    ]
    return {
        "products": catalogue,
        "customers": people,
        "orders": [_order(rng, n, catalogue, people) for n in range(orders)],
    }


def _order(rng: random.Random, n: int, catalogue: list[dict[str, Any]], people: list[dict[str, Any]]) -> dict:
    who = people[rng.randrange(len(people))]
    lines = [rng.choice(rng.choice(catalogue)["variants"]) for _ in range(rng.randint(2, 3))]
    total = sum(round(float(v["price"]) * 100) for v in lines)
    delivered = rng.random() < 0.5
    placed = PLACED + timedelta(minutes=n)
    return {
        "id": f"ORD-{n:07d}",
        "customer_id": who["id"],
        "status": OrderStatus.DELIVERED if delivered else OrderStatus.PENDING,
        "total": f"{total / 100:.2f}",
        "currency": "USD",
        "placed_at": placed.isoformat(),
        "delivered_at": (placed + timedelta(days=3)).isoformat() if delivered else None,
        "address": who["address"],
        "items": [{"item_id": v["item_id"], "unit_price": v["price"]} for v in lines],
        "payments": [{"kind": "payment", "amount": f"{total / 100:.2f}", "method": f"card-{who['id']}"}],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.bench.catalogue", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--variants", type=int, default=12, help="variants per product")
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--orders", type=int, default=5000)
    args = parser.parse_args(argv)
    doc = generate(products=args.products, variants=args.variants, customers=args.customers, orders=args.orders)
    args.out.write_text(json.dumps(doc))
    print(
        f"{args.out}: {args.products} products, {args.products * args.variants} variants, "
        f"{args.customers} customers, {args.orders} orders"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
