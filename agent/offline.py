"""A deterministic rules model behind the same `Model` interface as Claude, for trying supportbot
with no API key. It reads only the conversation it is sent (never scenario files or the store):
it reads the message as customers write it (agent.offline_text: order numbers in any format or
spelling, common typos, two questions at once, Spanish and German, anger), emits real `tool_use`
blocks for every fact (a list of recent orders included), and writes plain replies from the tool
results, in English (it says so politely to a Spanish or German writer). It says what it is and
plainly what it cannot do.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from agent import offline_kb
from agent.events import Usage
from agent.model import ModelReply, ModelRequest
from agent.offline_text import ENGLISH_ONLY, WHO, Task, angry, fix_typos, language, tasks
from agent.prompts import ACCOUNT_NOTE
from storage.states import OrderStatus, RefundStatus

EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,24}")
AMOUNT = re.compile(
    r"(?:[$€£]\s?(\d{1,7}(?:[.,]\d{1,2})?))|(\d{1,7}(?:[.,]\d{1,2})?)\s?(?:dollars|usd|euros?|eur|€)\b", re.IGNORECASE
)
HOURS = re.compile(r"\b(hours|open|opening|available|weekend)\b", re.IGNORECASE)
POLICY = re.compile(r"\b(policy|return window|how long .{0,40}return|how many days)\b", re.IGNORECASE)
SHIPPING = re.compile(
    r"\b(shipping|delivery time|how long .{0,40}(?:ship|deliver)|change (?:my )?address)\b", re.IGNORECASE
)
GREETING = re.compile(r"^\s*(hi|hello|hey|good (?:morning|afternoon|evening)|thanks|thank you|hola|hallo)\b", re.I)

INTRO = "I'm supportbot's offline assistant, a rules-based stand-in for Claude, so I keep to refunds and orders."
_ids = itertools.count(1)


@dataclass
class _Conversation:
    verified_email: str | None
    texts: list[str]  # the customer's messages, oldest first
    turn: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(default_factory=list)  # this turn's tool calls
    earlier: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    asked_for_order: bool = False  # our last reply asked which order
    known: list[dict[str, Any]] = field(default_factory=list)  # the customer's newest orders, from the note
    last_reply: str = ""
    window_days: int = 30  # read from the system prompt's policy

    @property
    def latest(self) -> str:
        return self.texts[-1] if self.texts else ""


def _parse(request: ModelRequest) -> _Conversation:
    verified = None
    known: list[dict[str, Any]] = []
    texts: list[str] = []
    calls: list[tuple[int, str, dict[str, Any], dict[str, Any]]] = []
    pending: dict[str, tuple[str, dict[str, Any]]] = {}
    last_customer = -1
    last_reply = ""
    for i, m in enumerate(request.messages):
        for b in m["content"]:
            kind = b.get("type")
            if kind == "text" and m["role"] == "user":
                t = str(b.get("text", ""))
                if t.startswith("[Session note]"):
                    found = re.search(r"<([^>]+)>", t)
                    verified = found.group(1) if found else None
                    known = _account(t)
                elif t.startswith("[Check]"):
                    continue  # the guard's note on our last reply: the same rules give the same answer
                else:
                    texts.append(t)
                    last_customer = i
            elif kind == "text" and m["role"] == "assistant":
                last_reply = str(b.get("text", ""))
            elif kind == "tool_use":
                pending[str(b["id"])] = (str(b["name"]), dict(b.get("input") or {}))
            elif kind == "tool_result" and b.get("tool_use_id") in pending:
                name, args = pending.pop(str(b["tool_use_id"]))
                try:
                    result = json.loads(str(b.get("content") or "{}"))
                except json.JSONDecodeError:
                    result = {"outcome": "error"}
                calls.append((i, name, args, result))
    conv = _Conversation(verified, texts, known=known)
    window = re.search(r"within (\d+) days", request.system)
    conv.window_days = int(window.group(1)) if window else 30
    conv.turn = [(n, a, r) for i, n, a, r in calls if i > last_customer]
    conv.earlier = [(n, a, r) for i, n, a, r in calls if i <= last_customer]
    conv.asked_for_order = "order number" in last_reply.lower() and "?" in last_reply
    conv.last_reply = last_reply
    return conv


def _account(note: str) -> list[dict[str, Any]]:
    """The newest orders the session note carries (as lookup_order describes them), if any."""
    start = note.find(ACCOUNT_NOTE)
    if start < 0:
        return []
    try:
        account = json.loads(note[start + len(ACCOUNT_NOTE) :])
    except json.JSONDecodeError:
        return []
    return [o for o in account.get("recent_orders") or [] if isinstance(o, dict)]


def _looked(conv: _Conversation, typed: str) -> dict[str, Any] | None:
    """An order as lookup_order described it: this turn's call, or the session note's copy."""
    done = _done(conv, "lookup_order", order_id=typed)
    if done is not None:
        return done
    digits = re.sub(r"\D", "", typed)
    for order in conv.known:
        oid = str(order.get("order_id", ""))
        if oid.upper() == typed.upper() or (digits and re.sub(r"\D", "", oid) == digits):
            return {"outcome": "ok", **order}
    return None


def _by_item(conv: _Conversation, text: str) -> list[str]:
    """The known orders whose items the customer named ("my blender"), newest first."""
    words = set(re.findall(r"[a-z]{4,}", text.lower()))
    found = []
    for order in conv.known:
        names = " ".join(str(i.get("name", "")) for i in order.get("items") or []).lower()
        if words & set(re.findall(r"[a-z]{4,}", names)):
            found.append(str(order["order_id"]))
    return found


def _which(conv: _Conversation, named: list[str]) -> str:
    """Several orders hold what the customer named: ask which (never guess); none: ask its number."""
    if len(named) < 2:
        return ASK_ORDER
    shown = [
        f"{o['order_id']} ({', '.join(str(i.get('name')) for i in o.get('items') or [])}, {o.get('total')})"
        for o in conv.known
        if o["order_id"] in named
    ]
    return f"I see {len(shown)} orders that could be it: {'; '.join(shown)}. Which one is it about (its order number)?"


def _amount(text: str) -> float | None:
    m = AMOUNT.search(text[:4000])
    if not m:
        return None
    try:
        return float(Decimal((m.group(1) or m.group(2)).replace(",", ".")))
    except InvalidOperation:
        return None


class OfflineModel:
    name = "offline-rules"

    async def complete(self, request: ModelRequest) -> ModelReply:
        conv = _parse(request)
        blocks = _decide(conv)
        stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        usage = Usage(
            input_tokens=len(json.dumps(request.messages)) // 4 + len(request.system) // 4,
            output_tokens=len(json.dumps(blocks)) // 4,
        )
        return ModelReply(content=blocks, stop_reason=stop, usage=usage, model=self.name)


def _use(name: str, **args: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_offline_{next(_ids):06d}", "name": name, "input": args}


def _say(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text}]


def _done(conv: _Conversation, name: str, **match: Any) -> dict[str, Any] | None:
    for n, a, r in conv.turn:
        if n == name and all(str(a.get(k, "")).upper() == str(v).upper() for k, v in match.items()):
            return r
    return None


ACCOUNT = ("refund", "status", "order")
EMPATHY = "I'm really sorry about this, and I understand how frustrating it is."
NOT_FOUND = "I couldn't find that order on your account. Could you double-check the order number?"
ASK_ORDER = "I can help with that. Which order is it about (the order number is in your confirmation email)?"
UNVERIFIED = (  # promises no person: whether one is coming depends on the face (Slack opens a ticket)
    "I can answer general questions, but I can't access orders until we've confirmed who you are. "
    "If you'd like a person to help with that, just ask."
)


def _carried(conv: _Conversation) -> str | None:
    """What the customer wanted when we asked "which order?" (their earlier messages, newest first)."""
    for earlier in reversed(conv.texts[:-1]):
        for t in tasks(fix_typos(earlier), carried=None, answering=False):
            if t.intent in ACCOUNT:
                return t.intent
    return None


def _decide(conv: _Conversation) -> list[dict[str, Any]]:
    text = fix_typos(conv.latest)
    typed = [e.lower() for e in EMAIL.findall(text)]
    if typed and conv.verified_email and typed[0] != conv.verified_email.lower():
        if _done(conv, "get_customer") is None:
            return [_use("get_customer", email=typed[0])]
        return _say(
            "That email address doesn't match the account you're signed in with, so I can't use it. "
            "I've asked a member of our team to help."
        )
    todo = tasks(text, carried=_carried(conv) if conv.asked_for_order else None, answering=conv.asked_for_order)
    kinds = {t.intent for t in todo}
    general = offline_kb.is_general_question(text) and not any(t.orders for t in todo)
    if kinds <= {"chat", "cant"} or general:
        # the help center answers general questions (after what the bot cannot do, if it says so);
        # small talk gets the offline model's own lines
        kb = offline_kb.step(
            conv.texts,
            conv.turn,
            last_reply=conv.last_reply,
            window_days=conv.window_days,
            asked=offline_kb.questions(text),
            lead=[t.text for t in todo if t.intent == "cant"],
        )
        if kb is not None:
            return kb
    lead = [ENGLISH_ONLY[lang]] if (lang := language(text)) else []
    if angry(conv.latest):
        lead.append(EMPATHY)
    if not any(t.intent in ACCOUNT for t in todo):
        return _say(" ".join([*lead, *(_other(conv, t) for t in todo)]))
    if conv.verified_email is None:
        return _say(" ".join([*lead, UNVERIFIED]))
    identified = bool(conv.known) or any(
        n == "get_customer" and r.get("outcome") == "ok" for n, _, r in conv.earlier + conv.turn
    )
    if not identified:
        return [_use("get_customer", email=conv.verified_email)]
    asked_the_impossible = any(t.intent == "cant" for t in todo)
    for t in todo:  # "my blender": the one order of the note that holds one
        resolvable = t.intent in ("refund", "order") and not t.orders and not asked_the_impossible
        if resolvable and len(named := _by_item(conv, t.text or conv.latest)) == 1:
            t.orders = named
    calls = _lookups(conv, todo)
    if calls:
        return calls
    refunds = _refunds(conv, todo, conv.latest)
    if refunds:  # the Confirm step ends the turn: what we say comes with the call, as Claude writes it
        return [*_say(" ".join([*lead, _sorry(conv, refunds)])), *refunds]
    return _say(" ".join([*lead, *(_answer(conv, t) for t in todo)]))


def _sorry(conv: _Conversation, refunds: list[dict[str, Any]]) -> str:
    items = []
    for call in refunds:
        looked = _looked(conv, call["input"]["order_id"]) or {}
        items.append((looked.get("items") or [{"name": "order"}])[0]["name"])
    return f"I'm sorry about the {' and the '.join(items)}: here is the refund for you to confirm."


def _lookups(conv: _Conversation, todo: list[Task]) -> list[dict[str, Any]]:
    """Everything to read first, in one go (parallel tool_use blocks): orders, order lists, refund states."""
    calls: dict[str, dict[str, Any]] = {}
    for t in todo:
        if t.intent == "status":
            for oid in t.orders or [""]:
                args = {"order_id": oid} if oid else {}
                if _done(conv, "get_refund_status", **args) is None:
                    calls.setdefault(f"status:{oid}", _use("get_refund_status", **args))
        elif t.intent in ("order", "refund"):
            for oid in t.orders:
                if _looked(conv, oid) is None:
                    calls.setdefault(f"lookup:{oid}", _use("lookup_order", order_id=oid))
            if t.intent == "order" and not t.orders and not conv.known and _done(conv, "list_orders") is None:
                calls.setdefault("list", _use("list_orders", limit=5))
    return list(calls.values())


def _refunds(conv: _Conversation, todo: list[Task], said: str) -> list[dict[str, Any]]:
    calls = []
    for t in todo:
        for oid in t.orders if t.intent == "refund" else []:
            looked = _looked(conv, oid) or {}
            canonical = str(looked.get("order_id") or oid)
            if (
                looked.get("outcome") == "ok"
                and looked.get("refund_eligible")
                and _done(conv, "process_refund", order_id=canonical) is None
            ):
                amount = _amount(said) or float(looked.get("total_amount") or 0)
                reason = said.strip()[:200] or "customer request"
                calls.append(_use("process_refund", order_id=canonical, amount=amount, reason=reason))
    return calls


def _other(conv: _Conversation, t: Task) -> str:
    return t.text if t.intent == "cant" else _chat(t.text, conv.window_days)


def _answer(conv: _Conversation, t: Task) -> str:
    if t.intent == "status":
        return " ".join(
            _status_reply(_done(conv, "get_refund_status", **({"order_id": o} if o else {})) or {})
            for o in t.orders or [""]
        )
    if t.intent == "order" and not t.orders:
        listed = {"outcome": "ok", "orders": conv.known} if conv.known else _done(conv, "list_orders")
        return _list_reply(listed or {})
    if t.intent == "refund" and not t.orders:
        return _which(conv, _by_item(conv, t.text or conv.latest))
    if t.intent in ("order", "refund"):
        return " ".join(_order_reply(conv, oid, t.intent) for oid in t.orders)
    return _other(conv, t)


def _where(status: str, delivered_on: str | None) -> str:
    return {
        OrderStatus.DELIVERED: f"was delivered on {delivered_on}",
        OrderStatus.SHIPPED: "has shipped and is on its way",
        OrderStatus.PENDING: "hasn't shipped yet",
        OrderStatus.CANCELLED: "was cancelled",
    }.get(status, "is being handled")  # type: ignore[call-overload]


def _first_item(order: dict[str, Any]) -> str:
    """Its first item's name (list_orders gives names, lookup_order and the note whole items)."""
    first = (order.get("items") or ["your order"])[0]
    return str(first.get("name", "your order")) if isinstance(first, dict) else str(first)


def _list_reply(result: dict[str, Any]) -> str:
    if result.get("outcome") != "ok":
        return "I couldn't look up your orders just now."
    orders = result.get("orders") or []
    if not orders:
        return "I don't see any orders on your account yet."
    lines = [
        f"{o['order_id']} ({_first_item(o)}, {o['total']}) {_where(str(o['status']), o.get('delivered_on'))}."
        for o in orders[:5]
    ]
    return " ".join(["Here are your most recent orders:", *lines, "Which one would you like to know more about?"])


def _order_reply(conv: _Conversation, typed: str, intent: str) -> str:
    looked = _looked(conv, typed) or {}
    if looked.get("outcome") != "ok":
        return NOT_FOUND
    oid = str(looked["order_id"])
    item = (looked.get("items") or [{"name": "your order"}])[0]["name"]
    if intent == "refund":
        refund = _done(conv, "process_refund", order_id=oid)
        if refund is not None:
            return _refund_result(refund, looked, oid, item)
        existing = looked.get("existing_refund")
        if existing:
            state = str(existing["status"]).replace("_", " ")
            return f"Order {oid} already has a refund of {existing['amount']}, which is {state}."
        if looked.get("delivered_on") is None:
            return f"Order {oid} ({item}) hasn't been delivered yet, so it can't be refunded."
        return f"I'm sorry, order {oid} ({item}) can't be refunded: it was {looked.get('eligibility', '')}."
    where = _where(str(looked.get("status")), looked.get("delivered_on"))
    return f"Order {oid} ({item}, {looked.get('total')}) {where}."


def _refund_result(refund: dict[str, Any], looked: dict[str, Any], oid: str, item: str) -> str:
    code = refund.get("code")
    amount = refund.get("amount_cents")
    money = f"${int(amount) / 100:,.2f}" if isinstance(amount, int) else "the refund"
    if code == "AWAITING_CONFIRMATION":
        return (
            f"I'm sorry about the {item}. I've prepared a refund of {money} for order {oid}. "
            "It will be on its way as soon as you confirm."
        )
    if code == "REFUND_PROCESSED":
        return f"Done: your refund of {money} for order {oid} has been issued."
    if code == "LIMIT_EXCEEDED":
        return (
            f"A refund of {money} for the {item} needs a quick review by our team. I've passed it on, "
            "and they'll follow up here."
        )
    if code == "REFUND_EXISTS":
        state = str(refund.get("status")).replace("_", " ")
        return f"Order {oid} already has a refund of {money}, which is {state}."
    if code == "INVALID_AMOUNT":
        return f"I can refund at most the order total of {looked.get('total')} for order {oid}."
    return f"I wasn't able to refund order {oid}. A member of our team can take a closer look."


def _status_reply(result: dict[str, Any]) -> str:
    if result.get("outcome") != "ok":
        return NOT_FOUND
    refunds = result.get("refunds") or []
    if not refunds:
        if result.get("order_id"):
            return f"There is no refund on order {result['order_id']} so far."
        return "I couldn't find any refunds on your account."
    plain = {
        RefundStatus.AWAITING_CONFIRMATION: "waiting for your confirmation",
        RefundStatus.PENDING_APPROVAL: "being reviewed by our team",
        RefundStatus.PROCESSING: "being processed",
        RefundStatus.PROCESSED: "issued",
        RefundStatus.FAILED: "delayed; our team is on it",
        RefundStatus.CANCELLED: "cancelled",
        RefundStatus.EXPIRED: "expired",
        RefundStatus.DENIED: "not approved",
    }
    return " ".join(
        f"Your refund of {r['amount']} for order {r['order_id']} ({r['item']}) is "
        f"{plain.get(r['status'], r['status'])}."
        for r in refunds[:3]
    )


def _chat(text: str, window_days: int) -> str:
    if WHO.search(text):
        return INTRO + " How can I help?"
    if HOURS.search(text):
        return "Our support team is around Monday to Friday, 9:00-18:00 UTC, and I'm here any time."
    if POLICY.search(text):
        return f"You can return a delivered order for a refund within {window_days} days of delivery."
    if SHIPPING.search(text):
        return "Standard delivery takes 3-5 business days. We can't change the address once an order has shipped."
    if GREETING.search(text):
        return "Hi! " + INTRO + " What can I do for you?"
    return INTRO + " I can look up an order, refund a damaged item, or check a refund. What do you need?"
