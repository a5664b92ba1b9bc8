"""What is said instead of a reply the store contradicts, or of one not fit to send: true sentences
written by code from the store (the words live in tools.wording), in the customer's language.

`truthful_reply` answers what the customer asked: what the store holds for each contradicted
claim, and where every order they named stands, with all its items. `corrections` is what the
model is told when it is asked once more (agent.repair); `state_summary` replaces pasted tool
output. Every line is built from rows, never from model text, so each passes the claims check it
replaces a reply for.
"""

from __future__ import annotations

from collections.abc import Iterable

from agent.facts import Claim, Facts, OrderFact, RefundFact
from storage.types import format_cents
from tools import wording


def refund_line(r: RefundFact, facts: Facts, language: str = "en") -> str:
    order = facts.orders.get(r.order_id)
    return wording.refund_status_line(
        order_id=r.order_id,
        item=order.item if order else "your order",
        amount=format_cents(r.amount_cents, r.currency),
        status=r.status,
        language=language,
    )


def order_line(order: OrderFact, language: str = "en") -> str:
    """The order as the store has it, with every item it holds."""
    return wording.order_line(
        order_id=order.id,
        item=wording.items_list([(name, quantity) for name, _, quantity in order.items], language=language),
        total=format_cents(order.total_cents, order.currency),
        status=order.status,
        delivered_on=order.delivered_on.isoformat() if order.delivered_on else None,
        language=language,
    )


def _latest(refunds: Iterable[RefundFact]) -> list[RefundFact]:
    by_order: dict[str, RefundFact] = {}
    for r in refunds:  # oldest first: the last one per order wins
        by_order[r.order_id] = r
    return list(by_order.values())


def refund_lines(facts: Facts, orders: Iterable[str] = (), language: str = "en") -> list[str]:
    wanted = list(orders)
    if wanted:
        lines = []
        for oid in wanted:
            rows = _latest(r for r in facts.refunds if r.order_id == oid)
            lines += [refund_line(r, facts, language) for r in rows] or [
                wording.no_refund_on(order_id=oid, language=language)
            ]
        return lines
    return [refund_line(r, facts, language) for r in _latest(r for r in facts.refunds if r.here)]


def _lines_for(c: Claim, facts: Facts, language: str) -> list[str]:
    say = wording.correction(language)
    if c.kind == "refund":
        if c.unknown and not c.orders:
            return [say["not_found"]]
        return refund_lines(facts, c.orders, language) or [say["no_refund_here"]]
    if c.kind in ("handoff", "call"):
        lines = [say["handoff_open"] if facts.ticket_open else say["no_handoff"]]
        return [*lines, say["no_calls"]] if c.kind == "call" else lines
    lines = [order_line(facts.orders[o], language) for o in c.orders]
    return [*lines, say["not_found"]] if c.unknown else lines


def truthful_reply(facts: Facts, claims: Iterable[Claim], *, asked: Iterable[str] = (), language: str = "en") -> str:
    """The fixed, true sentences said instead of a reply the store contradicts, in the customer's
    language: what the store says of each contradicted claim, and of every order the customer asked
    about (each with all its items)."""
    lines: list[str] = []
    claims = list(claims)
    for c in claims:
        lines += _lines_for(c, facts, language)
    for oid in asked:  # the orders they named and nothing above speaks of: where each stands, every item
        if oid in facts.orders and not any(oid in line for line in lines):
            lines.append(order_line(facts.orders[oid], language))
            lines += [refund_line(r, facts, language) for r in _latest(r for r in facts.refunds if r.order_id == oid)]
    return " ".join([wording.correction(language)["lead"], *dict.fromkeys(lines)])


def corrections(facts: Facts, claims: Iterable[Claim]) -> list[tuple[str, str]]:
    """(the contradicted sentence, what the store says instead), for asking the model once more."""
    out: dict[str, list[str]] = {}
    for c in claims:
        out.setdefault(c.sentence, [])
        out[c.sentence] += [line for line in _lines_for(c, facts, "en") if line not in out[c.sentence]]
    return [(sentence, " ".join(lines)) for sentence, lines in out.items()]


def state_summary(facts: Facts, language: str = "en") -> str:
    """Said instead of a reply that was not fit to send at all (pasted tool output, an exception)."""
    say = wording.correction(language)
    lines = refund_lines(facts, language=language)
    if facts.ticket_open:
        lines.append(say["handoff_open"])
    if not lines:
        lines.append(say["ask_again"])
    return " ".join([say["tool_text_lead"], *lines])
