"""τ2-bench's retail store (`data/tau2/domains/retail/db.json`, gzipped or not) as import records:
`supportbot db import --format tau2 PATH`.

The store is taken whole: products and their variants, users with their default address and
payment methods (gift cards with their balance), orders with their address, items, fulfilments and
payment history. τ2 keeps no dates, so every order is placed (and a delivered one delivered) at
`as_of`: the return window counts from the import. Its order statuses map to ours
(`pending (item modified)` is items_modified, `return requested` return_requested…); the
records of τ2's own changes on an order (`cancel_reason`, `exchange_*`, `return_*`) are not
carried over. The file is read from where it is and never copied.
"""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from storage.import_schema import Document, ImportError_, parse
from storage.states import DELIVERED_ORDERS, OrderStatus

# τ2's order statuses, and ours for them (its four basic ones are ours too)
STATUSES: dict[str, OrderStatus] = {
    **{str(s): s for s in (OrderStatus.PENDING, OrderStatus.PROCESSED, OrderStatus.DELIVERED, OrderStatus.CANCELLED)},
    "pending (item modified)": OrderStatus.ITEMS_MODIFIED,
    "return requested": OrderStatus.RETURN_REQUESTED,
    "exchange requested": OrderStatus.EXCHANGE_REQUESTED,
}
DELIVERED = {theirs for theirs, ours in STATUSES.items() if ours in DELIVERED_ORDERS}
MAX_BYTES = 512 * 1024 * 1024  # what a decompressed store may grow to before we stop reading it


def load_tau2(path: Path, *, as_of: datetime) -> Document:
    """Read and validate a τ2 retail store; raise ImportError_ naming every record at fault."""
    data = _read(path)
    if not isinstance(data, dict) or not all(isinstance(data.get(k), dict) for k in ("products", "users", "orders")):
        raise ImportError_([f"{path}: not a τ2 retail store (an object of products, users and orders)"])
    problems: list[str] = []
    doc = {
        "products": _each(data["products"], "products", _product, problems),
        "customers": _each(data["users"], "users", _user, problems),
        "orders": _each(data["orders"], "orders", lambda o: _order(o, as_of), problems),
    }
    if problems:
        raise ImportError_(problems)
    return parse(doc)


def _read(path: Path) -> Any:
    try:
        with path.open("rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
        opener: Any = gzip.open if gz else open
        with opener(path, "rb") as f:
            blob = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ImportError_([f"{path}: cannot be read ({exc.strerror or exc})"]) from exc
    if len(blob) > MAX_BYTES:
        raise ImportError_([f"{path}: larger than {MAX_BYTES // 2**20} MiB"])
    try:
        return json.loads(blob.decode("utf-8"), parse_float=Decimal)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImportError_([f"{path}: not valid JSON ({exc})"]) from exc


def _each(records: dict[str, Any], key: str, convert: Any, problems: list[str]) -> list[dict[str, Any]]:
    out = []
    for ident, rec in records.items():
        try:
            out.append(convert(rec))
        except (KeyError, TypeError, AttributeError) as exc:
            problems.append(f"{key} ({ident}): not a τ2 record: {type(exc).__name__} {exc}")
    return out


def _product(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": p["product_id"],
        "name": p["name"],
        "variants": [
            {"item_id": v["item_id"], "options": v["options"], "price": v["price"], "available": v["available"]}
            for v in p["variants"].values()
        ],
    }


def _user(u: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": u["user_id"],
        "name": f"{u['name']['first_name']} {u['name']['last_name']}".strip(),
        "email": u["email"],
        "address": u["address"],
        "payment_methods": [_method(m) for m in u["payment_methods"].values()],
    }


def _method(m: dict[str, Any]) -> dict[str, Any]:
    out = {"id": m["id"], "kind": m["source"]}
    out.update({k: m[k] for k in ("brand", "last_four", "balance") if k in m})
    return out


def _order(o: dict[str, Any], as_of: datetime) -> dict[str, Any]:
    items = o["items"]
    return {
        "id": o["order_id"],
        "customer_id": o["user_id"],
        "status": str(STATUSES.get(o["status"], o["status"])),
        "total": sum((Decimal(str(i["price"])) for i in items), Decimal(0)),
        "currency": "USD",
        "placed_at": as_of.isoformat(),
        "delivered_at": as_of.isoformat() if o["status"] in DELIVERED else None,
        "address": o["address"],
        "items": [
            {
                "item_id": i["item_id"],
                "product_id": i["product_id"],
                "name": i["name"],
                "options": i["options"],
                "unit_price": i["price"],
            }
            for i in items
        ],
        "payments": [
            {"kind": p["transaction_type"], "amount": p["amount"], "method": p["payment_method_id"]}
            for p in o["payment_history"]
        ],
        "fulfilments": [{"tracking_ids": f["tracking_id"], "item_ids": f["item_ids"]} for f in o["fulfillments"]],
    }
