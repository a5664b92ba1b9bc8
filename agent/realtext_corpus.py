"""The τ2-bench texts the realtext eval reads, from the folder beside the checkout (never copied).

`load(path)` reads `conversations/airline_*.json.gz` (each a list of conversations: source,
task_id, customer_id, messages of role, content, tool_calls), the airline customers those
conversations authenticate (already in our import format) and τ2's retail store, converted here to
our import format so a session can be bound to a customer who has orders. τ2's retail orders have
no dates, so each gets a fixed one derived from its id (the eval's clock is fixed too).

Work is bounded: a file is read up to MAX_BYTES decompressed, a message up to MAX_CHARS.

    CorpusError          the folder cannot be used (the message says what is missing or wrong)
     └── CorpusMissing   no τ2 folder at the path
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from agent.errors import CorpusError, CorpusMissing

MAX_BYTES = 64 * 1024 * 1024
MAX_CHARS = 20_000
DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tau2"
TODAY = datetime(2024, 5, 15, 15, 0, tzinfo=UTC)  # τ2 airline's "current time"
# a write action: replies before a conversation's first one are true by its own tool results
WRITES = re.compile(r"^(?:book_reservation|cancel_reservation|update_reservation_\w+|send_certificate)$")
MARKER = re.compile(r"###[A-Z_]{1,20}###")  # the user simulator's stop and transfer signals, not words
_STATUS = {"processed": "shipped", "return requested": "delivered", "exchange requested": "delivered"}


@dataclass(frozen=True, slots=True)
class Message:
    index: int
    role: str  # user | assistant | tool
    content: str
    tools: tuple[str, ...] = ()  # the tools an assistant message called
    args: tuple[str, ...] = ()  # their arguments, as JSON


@dataclass(frozen=True, slots=True)
class Conversation:
    file: str  # the file's name without .json.gz, e.g. airline_button-opus46
    task_id: str
    customer_id: str | None  # None: the conversation never authenticated its customer
    messages: tuple[Message, ...]

    def first_write(self) -> int:
        """The index of the first message that calls a write action (or past the end)."""
        for m in self.messages:
            if any(WRITES.match(t) for t in m.tools):
                return m.index
        return len(self.messages)


@dataclass
class Corpus:
    conversations: list[Conversation]
    import_document: dict[str, Any]  # airline customers and the retail store, in our import format
    tool_names: set[str] = field(default_factory=set)


def digest(text: str) -> str:
    """The short hash a label carries, so a changed message is noticed (its text is never stored)."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()[:10]


def customer_text(text: str) -> str:
    """A simulated customer's message as a person would have written it (the simulator's markers out)."""
    return MARKER.sub(" ", text).strip()


def _read(path: Path) -> Any:
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except (OSError, EOFError) as exc:
        raise CorpusError(f"{path}: cannot be read ({exc})") from None
    if len(raw) > MAX_BYTES:
        raise CorpusError(f"{path}: larger than {MAX_BYTES} bytes decompressed")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CorpusError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None


def _conversation(file: str, raw: Any, n: int) -> Conversation:
    if not isinstance(raw, dict) or not isinstance(raw.get("messages"), list):
        raise CorpusError(f"{file}[{n}]: not a conversation (an object with a messages list)")
    messages = []
    for i, m in enumerate(raw["messages"]):
        calls = [c for c in (m.get("tool_calls") or []) if isinstance(c, dict)]
        messages.append(
            Message(
                index=i,
                role=str(m.get("role")),
                content=str(m.get("content") or "")[:MAX_CHARS],
                tools=tuple(str(c.get("name")) for c in calls),
                args=tuple(json.dumps(c.get("arguments"))[:2000] for c in calls),
            )
        )
    customer = raw.get("customer_id")
    return Conversation(file, str(raw.get("task_id")), str(customer) if customer else None, tuple(messages))


def load(path: Path) -> Corpus:
    folder = path / "conversations"
    files = sorted(p for p in folder.glob("airline_*.json.gz") if p.name != "airline_customers.json.gz")
    if not files:
        raise CorpusMissing(path)
    conversations = []
    for p in files:
        data = _read(p)
        if not isinstance(data, list):
            raise CorpusError(f"{p}: not a list of conversations")
        name = p.name.removesuffix(".json.gz")
        conversations += [_conversation(name, c, n) for n, c in enumerate(data)]
    customers = _read(folder / "airline_customers.json.gz") if (folder / "airline_customers.json.gz").exists() else {}
    document = {"customers": list(customers.get("customers") or []), "orders": list(customers.get("orders") or [])}
    retail = path / "retail_db.json.gz"
    if retail.exists():
        extra = retail_document(_read(retail))
        known = {c["id"] for c in document["customers"]}
        document["customers"] += [c for c in extra["customers"] if c["id"] not in known]
        document["orders"] += extra["orders"]
    names = {t for c in conversations for m in c.messages for t in m.tools}
    return Corpus(conversations, document, names)


def _placed(order_id: str) -> datetime:
    days = int(hashlib.sha256(order_id.encode()).hexdigest()[:6], 16) % 60 + 8
    return TODAY - timedelta(days=days, hours=3)


def retail_document(db: Any) -> dict[str, Any]:
    """τ2's retail store (users, orders) as our import document: each item its own line, the total
    their sum, τ2's statuses mapped onto ours, dates derived from the order id."""
    if not isinstance(db, dict) or not isinstance(db.get("users"), dict) or not isinstance(db.get("orders"), dict):
        raise CorpusError("retail_db.json.gz: not τ2's retail store (users and orders)")
    customers = [
        {"id": uid, "name": f"{u['name']['first_name']} {u['name']['last_name']}", "email": u["email"]}
        for uid, u in db["users"].items()
    ]
    orders = []
    for oid, o in db["orders"].items():
        status = _STATUS.get(o["status"], "pending" if o["status"].startswith("pending") else o["status"])
        placed = _placed(oid)
        items = [
            {"sku": str(i["item_id"]), "name": str(i["name"]), "quantity": 1, "unit_price": str(i["price"])}
            for i in o["items"]
        ]
        total = sum((Decimal(str(i["price"])) for i in o["items"]), Decimal(0))
        orders.append(
            {
                "id": oid,
                "customer_id": o["user_id"],
                "status": status,
                "total": str(total),
                "currency": "USD",
                "placed_at": placed.isoformat(),
                "delivered_at": (placed + timedelta(days=4)).isoformat() if status == "delivered" else None,
                "items": items,
            }
        )
    return {"customers": customers, "orders": orders}
