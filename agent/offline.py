"""A deterministic rules model behind the same `Model` interface as Claude, for trying supportbot
with no API key. It reads only the conversation it is sent (never scenario files): it extracts
emails and order numbers, recognizes refund, refund-status, order-question and chit-chat intents,
emits real `tool_use` blocks, and writes plain replies from the tool results. It says what it is.
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

ORDER_ID = re.compile(r"\b[A-Za-z]{2,6}-\d{2,}\b")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
AMOUNT = re.compile(r"(?:\$\s?(\d+(?:\.\d{1,2})?))|(\d+(?:\.\d{1,2})?)\s?(?:dollars|usd)\b", re.IGNORECASE)
REFUND = re.compile(
    r"\b(refund\w*|money back|return(?:ing)?|broken|broke|damaged|defective|cracked|faulty|leak\w*|"
    r"doesn'?t work|not working|stopped working)\b",
    re.IGNORECASE,
)
STATUS = re.compile(
    r"\b(status|where(?:'s| is) my refund|has my refund|refund (?:go|come)|check (?:on )?my refund)\b", re.IGNORECASE
)
ORDER_Q = re.compile(
    r"\b(where(?:'s| is)|track\w*|deliver\w*|ship\w*|arriv\w*|when will|what did i order)\b", re.IGNORECASE
)
HOURS = re.compile(r"\b(hours|open|opening|available|weekend)\b", re.IGNORECASE)
POLICY = re.compile(r"\b(policy|return window|how long .* return|how many days)\b", re.IGNORECASE)
SHIPPING = re.compile(
    r"\b(shipping|delivery time|how long .* (?:ship|deliver)|change (?:my )?address)\b", re.IGNORECASE
)
GREETING = re.compile(r"^\s*(hi|hello|hey|good (?:morning|afternoon|evening)|thanks|thank you)\b", re.IGNORECASE)
WHO = re.compile(r"\b(who are you|are you (?:a )?(?:bot|human|real|ai|claude))\b", re.IGNORECASE)

INTRO = "I'm supportbot's offline assistant, a rules-based stand-in for Claude, so I keep to refunds and orders."
_ids = itertools.count(1)


@dataclass
class _Conversation:
    verified_email: str | None
    texts: list[str]  # the customer's messages, oldest first
    turn: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(default_factory=list)  # this turn's tool calls
    earlier: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    asked_for_order: bool = False  # our last reply asked which order
    last_reply: str = ""
    window_days: int = 30  # read from the system prompt's policy

    @property
    def latest(self) -> str:
        return self.texts[-1] if self.texts else ""


def _parse(request: ModelRequest) -> _Conversation:
    verified = None
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
    conv = _Conversation(verified, texts)
    window = re.search(r"within (\d+) days", request.system)
    conv.window_days = int(window.group(1)) if window else 30
    conv.turn = [(n, a, r) for i, n, a, r in calls if i > last_customer]
    conv.earlier = [(n, a, r) for i, n, a, r in calls if i <= last_customer]
    conv.asked_for_order = "order number" in last_reply.lower() and last_reply.rstrip().endswith("?")
    conv.last_reply = last_reply
    return conv


def _amount(text: str) -> float | None:
    m = AMOUNT.search(text)
    if not m:
        return None
    try:
        return float(Decimal(m.group(1) or m.group(2)))
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


def _intent(conv: _Conversation) -> tuple[str, list[str]]:
    text = conv.latest
    orders = [o.upper() for o in ORDER_ID.findall(text)]
    if not orders and (POLICY.search(text) or HOURS.search(text) or SHIPPING.search(text)):
        return "chat", orders  # a general question, even if it mentions returns
    if STATUS.search(text) and re.search(r"refund", text, re.IGNORECASE):
        return "status", orders
    if REFUND.search(text):
        return "refund", orders
    if orders and conv.asked_for_order:  # answering our "which order?" question: carry the earlier intent on
        for earlier in reversed(conv.texts[:-1]):
            if REFUND.search(earlier):
                return "refund", orders
        return "order", orders
    if orders or ORDER_Q.search(text) and re.search(r"\border\b", text, re.IGNORECASE):
        return "order", orders
    return "chat", orders


def _decide(conv: _Conversation) -> list[dict[str, Any]]:
    text = conv.latest
    typed = [e.lower() for e in EMAIL.findall(text)]
    intent, orders = _intent(conv)
    if typed and conv.verified_email and typed[0] != conv.verified_email.lower():
        if _done(conv, "get_customer") is None:
            return [_use("get_customer", email=typed[0])]
        return _say(
            "That email address doesn't match the account you're signed in with, so I can't use it. "
            "I've asked a member of our team to help."
        )
    if intent == "chat" or offline_kb.is_general_question(text):  # the help center answers general questions
        kb = offline_kb.step(conv.texts, conv.turn, last_reply=conv.last_reply, window_days=conv.window_days)
        if kb is not None:
            return kb
    if intent == "chat":
        return _say(_chat(text, conv.window_days))
    if conv.verified_email is None:
        return _say(
            "I can answer general questions, but I can't access orders until we've confirmed who you are. "
            "A member of our team will help with that."
        )
    identified = any(n == "get_customer" and r.get("outcome") == "ok" for n, _, r in conv.earlier + conv.turn)
    if not identified:
        return [_use("get_customer", email=conv.verified_email)]
    if intent == "status":
        result = _done(conv, "get_refund_status")
        if result is None:
            return [_use("get_refund_status", order_id=orders[0])] if orders else [_use("get_refund_status")]
        return _say(_status_reply(result))
    if not orders:
        return _say(
            "I can help with that. Which order is it about? Please send me the order number (it starts with ORD-)?"
            if intent == "refund"
            else "Which order would you like me to check? Please send me the order number?"
        )
    for oid in orders:
        if _done(conv, "lookup_order", order_id=oid) is None:
            return [_use("lookup_order", order_id=oid)]
    if intent == "refund":
        for oid in orders:
            looked = _done(conv, "lookup_order", order_id=oid) or {}
            if (
                looked.get("outcome") == "ok"
                and looked.get("refund_eligible")
                and _done(conv, "process_refund", order_id=oid) is None
            ):
                amount = _amount(text) or float(looked.get("total_amount") or 0)
                reason = text.strip()[:200] or "customer request"
                return [_use("process_refund", order_id=oid, amount=amount, reason=reason)]
    return _say(" ".join(_order_reply(conv, oid, intent) for oid in orders))


def _order_reply(conv: _Conversation, oid: str, intent: str) -> str:
    looked = _done(conv, "lookup_order", order_id=oid) or {}
    if looked.get("outcome") != "ok":
        return "I couldn't find that order on your account. Could you double-check the order number?"
    item = (looked.get("items") or [{"name": "your order"}])[0]["name"]
    if intent == "refund":
        refund = _done(conv, "process_refund", order_id=oid)
        if refund is not None:
            code = refund.get("code")
            amount = refund.get("amount_cents")
            money = f"${int(amount) / 100:,.2f}" if isinstance(amount, int) else "the refund"
            if code == "AWAITING_CONFIRMATION":
                return (
                    f"I'm sorry about the {item}. I've prepared a refund of {money} for order {oid}. "
                    "Press Confirm (or reply yes) and I'll send it."
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
        existing = looked.get("existing_refund")
        if existing:
            state = str(existing["status"]).replace("_", " ")
            return f"Order {oid} already has a refund of {existing['amount']}, which is {state}."
        if looked.get("delivered_on") is None:
            return f"Order {oid} ({item}) hasn't been delivered yet, so it can't be refunded."
        return f"I'm sorry, order {oid} ({item}) can't be refunded: it was {looked.get('eligibility', '')}."
    status = "delivered on " + str(looked["delivered_on"]) if looked.get("delivered_on") else "not delivered yet"
    return f"Order {oid} ({item}, {looked.get('total')}) is {status}."


def _status_reply(result: dict[str, Any]) -> str:
    if result.get("outcome") != "ok":
        return "I couldn't find that order on your account. Could you double-check the order number?"
    refunds = result.get("refunds") or []
    if not refunds:
        return "I couldn't find any refunds on your account."
    plain = {
        "awaiting_confirmation": "waiting for your confirmation",
        "pending_approval": "being reviewed by our team",
        "processing": "being processed",
        "processed": "issued",
        "failed": "delayed; our team is on it",
        "cancelled": "cancelled",
        "expired": "expired",
        "denied": "not approved",
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
