"""The claims check: nothing the store contradicts reaches a customer.

After the model writes and before anything is sent (`agent.policy.guard`, from the agent loop's
reply path that every face uses), each sentence is read for claims of fact, and each claim is
checked against the store's facts for this session:

    claim (English, Spanish, German)                checked against
    money moved: "refunded", "has been issued",     a processed refund of the order, amount or item
      "credited", "te hemos devuelto", "erstattet"    named, else of this conversation
    a refund's state: "waiting for your             a refund in that state, matched the same way
      confirmation", "pending approval",
      "Refund status: processed", "denied"
    a person contacted or a ticket opened:          an unresolved ticket of this session; we never
      "I've passed this to our team"                  phone, so "will call you" is always false
    an order's status, date or amount:              the customer's order of that number or item
      "ORD-8842 was delivered on 2026-11-26"

A negated claim ("I have not refunded anything yet") and a future or conditional one ("once you
confirm, your refund will be processed", "se procesará") state nothing that happened and pass.
An order number the customer has no order for supports nothing. When in doubt a sentence passes
only if no fact contradicts it.

`review` returns the reply to send: a reply with a contradicted claim becomes `truthful_reply`,
written by code from the store (the words live in tools.wording); a true sentence about a refund
is re-rendered from the refund row, so the amount, order and state a customer reads never come
from model text. Rules and facts, no second model call; every pattern is linear-time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from agent.claim_patterns import (
    CALL,
    CLAUSE_BREAK,
    CONDITION,
    CONDITIONAL_START,
    GENERIC_OBJECTS,
    HANDOFF,
    ITEM_STOP,
    MODAL,
    MONEY,
    MOVED,
    NEGATION,
    NEGATION_IMMUNE,
    NONFACT,
    OBJECT,
    ORDER_STATES,
    ORDER_STATUSES,
    PROGRESSIVE,
    REFUND_CONTEXT,
    REFUND_STATUSES,
    REFUND_WORD,
    STATES,
    STATUS_LINE,
    money,
    status_word,
    when,
)
from agent.facts import Facts, OrderFact, RefundFact
from storage.order_formats import compact, digits, key
from storage.types import format_cents
from tools import wording
from tools.sanitizer import GENERIC_ORDER, ORDER_WORD, TOKEN, split_sentences

IT = re.compile(r"\b(?:your order|it)\b", re.IGNORECASE)


# --- claims --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Claim:
    kind: str  # refund | handoff | call | order
    state: str
    sentence: str
    orders: tuple[str, ...] = ()  # the customer's orders the sentence names
    unknown: bool = False  # it names an order number the customer has no order of
    amounts: tuple[tuple[int, str | None], ...] = ()
    when: date | None = None


def _scope(sentence: str, start: int) -> str:
    """The clause a match starts in, up to the match."""
    begin = 0
    for m in CLAUSE_BREAK.finditer(sentence, 0, start):
        begin = m.end()
    return sentence[begin:start]


def _conditional(sentence: str, m: re.Match[str]) -> bool:
    """A condition governs the match: at the sentence's start, or since the last `;` or `:` before it."""
    start = max(sentence.rfind(";", 0, m.start()), sentence.rfind(":", 0, m.start())) + 1
    return bool(CONDITIONAL_START.search(sentence) or CONDITION.search(sentence[start : m.start()]))


def _near(sentence: str, m: re.Match[str], words: int) -> str:
    """The last few words of the clause before a match, and the match itself."""
    return " ".join([*_scope(sentence, m.start()).split()[-words:], m.group(0)])


def _negated(sentence: str, m: re.Match[str]) -> bool:
    return bool(NEGATION.search(_near(sentence, m, 5)))


def _not_done(sentence: str, m: re.Match[str]) -> bool:
    """Future, conditional, wished, in progress or asked: it does not say that something happened."""
    near = _near(sentence, m, 3)
    return bool(
        _conditional(sentence, m)
        or MODAL.search(near)
        or NONFACT.search(near)
        or PROGRESSIVE.search(m.group(0))
        or _question(sentence, m)
    )


def _question(sentence: str, m: re.Match[str]) -> bool:
    rest = sentence[m.end() :]
    stop = CLAUSE_BREAK.search(rest)
    return (rest[: stop.start()] if stop else rest).rstrip().endswith("?")


def _item_words(order: OrderFact) -> set[str]:
    out = set()
    for name, _, _ in order.items:
        for w in re.findall(r"[a-zäöüéñ]{3,30}", name.lower()):
            if w not in ITEM_STOP:
                out.add(w)
    return out


def references(sentence: str, facts: Facts) -> tuple[list[str], bool]:
    """The customer's orders a sentence names (by number or item), and whether it names an order
    number the customer has no order of (unknown or another customer's: the same to us)."""
    named: list[str] = []
    unknown = False
    for m in TOKEN.finditer(sentence):
        t = m.group(0)
        if not any(ch.isdigit() for ch in t):
            continue
        near = t.startswith("#") or bool(ORDER_WORD.search(sentence[max(0, m.start() - 24) : m.start()]))
        bare = compact(t)
        has_letters = any(ch.isalpha() for ch in bare)
        if not has_letters and not near:
            continue
        k = key(t)
        own = [oid for oid in facts.orders if key(oid) == k]
        if not own and not has_letters:
            own = [oid for oid in facts.orders if digits(oid) == k]
        if own:
            named += [o for o in own if o not in named]
        elif GENERIC_ORDER.fullmatch(bare) or any(facts.formats.matches(s) for s in facts.formats.spellings(t)) or near:
            unknown = True
    lower = sentence.lower()
    words = {oid: _item_words(order) for oid, order in facts.orders.items()}
    for oid, ws in words.items():
        if oid not in named and any(re.search(rf"\b{re.escape(w)}(?:s|es)?\b", lower) for w in ws):
            named.append(oid)
    thing = OBJECT.search(lower)
    if thing and thing.group(1) not in GENERIC_OBJECTS:  # "refunded the headphones": which of theirs?
        stem = thing.group(1).removesuffix("es").removesuffix("s")
        if not any(stem in w or w in thing.group(1) for ws in words.values() for w in ws):
            unknown = True
    return named, unknown


def has_claims(text: str) -> bool:
    """A cheap first look: could this text claim anything at all? (If not, no facts are read.)"""
    return bool(
        any(p.search(text) for p, _ in MOVED)
        or STATUS_LINE.search(text)
        or any(p.search(text) for _, p in STATES)
        or any(p.search(text) for p in HANDOFF)
        or CALL.search(text)
        or any(p.search(text) for _, p, _ in ORDER_STATES)
        or MONEY.search(text)
    )


def extract(sentence: str, facts: Facts) -> list[Claim]:
    """The claims of one sentence that are stated as fact (not negated, not future, not asked)."""
    sentence = sentence[:2000]
    orders, unknown = references(sentence, facts)
    amounts = money(sentence)
    base = {"sentence": sentence, "orders": tuple(orders), "unknown": unknown, "amounts": amounts}
    out: list[Claim] = []
    context = bool(REFUND_CONTEXT.search(sentence))
    words = bool(REFUND_WORD.search(sentence))
    for pattern, needs in MOVED:
        m = pattern.search(sentence)
        ok = needs is None or (needs == "words" and words) or (needs == "any" and context)
        if m and ok and not _negated(sentence, m) and not _not_done(sentence, m):
            out.append(Claim("refund", "moved", **base))
            break
    line = STATUS_LINE.search(sentence)
    if line:
        out.append(Claim("refund", status_word(line.group(1)), **base))
    if context or line:
        for state, pattern in STATES:
            m = pattern.search(sentence)
            if m is None or _question(sentence, m) or _conditional(sentence, m):
                continue
            if state in NEGATION_IMMUNE or not _negated(sentence, m):
                out.append(Claim("refund", state, **base))
    out += _people_claims(sentence)
    out += _order_claims(sentence, facts, refund_talk=words)
    return out


def _people_claims(sentence: str) -> list[Claim]:
    out: list[Claim] = []
    call = CALL.search(sentence)
    if call and not _negated(sentence, call):
        out.append(Claim("call", "call", sentence))
    for pattern in HANDOFF:
        m = pattern.search(sentence)
        if m and not _negated(sentence, m) and not _conditional(sentence, m) and not _question(sentence, m):
            out.append(Claim("handoff", "contacted", sentence))
            break
    return out


def _clause(sentence: str, m: re.Match[str]) -> str:
    begin = 0
    for b in CLAUSE_BREAK.finditer(sentence, 0, m.start()):
        begin = b.end()
    stop = CLAUSE_BREAK.search(sentence, m.end())
    return sentence[begin : stop.start() if stop else len(sentence)]


def _order_claims(sentence: str, facts: Facts, *, refund_talk: bool) -> list[Claim]:
    """Status and date claims about the orders named in their own clause (or the sentence's only
    order, or the one order looked up in this conversation); amounts against the named orders."""
    out: list[Claim] = []
    whole, whole_unknown = references(sentence, facts)
    for state, pattern, negated_state in ORDER_STATES:
        m = pattern.search(sentence)
        if m is None or _question(sentence, m) or _conditional(sentence, m):
            continue
        if state != "future_delivery" and MODAL.search(_near(sentence, m, 2)):
            continue  # "should have been delivered by now" says nothing about whether it was
        orders, unknown = references(_clause(sentence, m), facts)
        if not orders and not unknown:
            orders, unknown = (whole, whole_unknown) if len(whole) + whole_unknown == 1 else ([], False)
        if not orders and not unknown and len(facts.looked_up) == 1 and IT.search(sentence):
            orders = [facts.looked_up[0]]
        if not orders and not unknown:
            continue
        if state not in ("not_delivered", "not_shipped") and _negated(sentence, m):
            if negated_state is None:
                continue
            state = negated_state
        out.append(Claim("order", state, sentence, tuple(orders), unknown, when=when(sentence[m.end() :], facts.today)))
    amounts = money(sentence)
    if amounts and whole and not refund_talk:
        out.append(Claim("order", "amount", sentence, tuple(whole), whole_unknown, amounts))
    return out


# --- checking ------------------------------------------------------------------------------------------
def supporting(claim: Claim, facts: Facts) -> list[RefundFact]:
    """The refunds a refund claim is about, filtered by the state it claims (empty: unsupported)."""
    if claim.orders:
        pool = [r for r in facts.refunds if r.order_id in claim.orders]
    elif claim.unknown:
        pool = []
    else:
        pool = [r for r in facts.refunds if r.here]
    if claim.amounts:
        pool = [r for r in pool if any(c == r.amount_cents and cur in (None, r.currency) for c, cur in claim.amounts)]
    return [r for r in pool if r.status in REFUND_STATUSES[claim.state]]


def holds(claim: Claim, facts: Facts) -> bool:
    if claim.kind == "refund":
        return bool(supporting(claim, facts))
    if claim.kind == "call":
        return False  # nobody phones customers: staff answer in the conversation
    if claim.kind == "handoff":
        return facts.ticket_open
    if claim.unknown and not claim.orders:
        return False
    if claim.state == "amount":
        named = [facts.orders[o] for o in claim.orders]
        return all(any(c in o.amounts() and cur in (None, o.currency) for o in named) for c, cur in claim.amounts)
    for oid in claim.orders:
        order = facts.orders[oid]
        if claim.state == "placed":
            wrong = claim.when is not None and claim.when != order.placed_on
        else:
            wrong = order.status not in ORDER_STATUSES[claim.state] or (
                claim.state == "delivered" and claim.when is not None and claim.when != order.delivered_on
            )
        if wrong:
            return False
    return True


@dataclass(frozen=True, slots=True)
class Review:
    text: str  # what to send
    contradicted: tuple[Claim, ...] = ()
    rendered: int = 0  # sentences re-rendered from refund rows

    @property
    def reason(self) -> str | None:
        if not self.contradicted:
            return None
        kind = self.contradicted[0].kind
        return {"refund": "false_refund", "order": "false_order"}.get(kind, "false_handoff")


def quoted_sentences(quotes: Iterable[str], *, limit: int = 40) -> list[str]:
    """The sentences of help-center passages this turn's search returned, normalised for `unquoted`
    (the shop's published words: "refunds are issued within 5 days" is policy, not a claim)."""
    out: list[str] = []
    for quote in list(quotes)[:limit]:
        for sentence in split_sentences(quote[:2000]):
            norm = " ".join(sentence.strip(" …").lower().split())
            if len(norm) >= 20 and norm not in out:
                out.append(norm)
    return out


def unquoted(sentence: str, quoted: list[str]) -> str:
    """The sentence without the help-center sentences it repeats word for word."""
    norm = " ".join(sentence.split())
    lower = norm.lower()
    for q in quoted:
        at = lower.find(q)
        if at >= 0:
            norm, lower = norm[:at] + norm[at + len(q) :], lower[:at] + lower[at + len(q) :]
    return norm


def review(text: str, facts: Facts, *, quotes: Iterable[str] = ()) -> Review:
    """`quotes`: the passages this turn's help-center search returned; a sentence repeating one
    is checked only for what it adds."""
    out: list[str] = []
    contradicted: list[Claim] = []
    rendered = 0
    quoted = quoted_sentences(quotes)
    for sentence in split_sentences(text):
        claims = extract(unquoted(sentence, quoted) if quoted else sentence, facts)
        bad = [c for c in claims if not holds(c, facts)]
        if bad:
            contradicted += bad
            continue
        rows = {r.id: r for c in claims if c.kind == "refund" for r in supporting(c, facts)}
        named = {o for c in claims for o in c.orders}
        if rows and named <= {r.order_id for r in rows.values()}:
            out += [refund_line(r, facts) for r in rows.values()]
            rendered += 1
        else:
            out.append(sentence.strip())
    if contradicted:
        return Review(truthful_reply(facts, contradicted), tuple(contradicted), rendered)
    if not rendered:
        return Review(text)
    return Review(" ".join(dict.fromkeys(out)), (), rendered)


# --- what is said instead ------------------------------------------------------------------------------
def refund_line(r: RefundFact, facts: Facts) -> str:
    order = facts.orders.get(r.order_id)
    return wording.refund_status_line(
        order_id=r.order_id,
        item=order.item if order else "your order",
        amount=format_cents(r.amount_cents, r.currency),
        status=r.status,
    )


def order_line(order: OrderFact) -> str:
    return wording.order_line(
        order_id=order.id,
        item=order.item,
        total=format_cents(order.total_cents, order.currency),
        status=order.status,
        delivered_on=order.delivered_on.isoformat() if order.delivered_on else None,
    )


def _latest(refunds: Iterable[RefundFact]) -> list[RefundFact]:
    by_order: dict[str, RefundFact] = {}
    for r in refunds:  # oldest first: the last one per order wins
        by_order[r.order_id] = r
    return list(by_order.values())


def refund_lines(facts: Facts, orders: Iterable[str] = ()) -> list[str]:
    wanted = list(orders)
    if wanted:
        lines = []
        for oid in wanted:
            rows = _latest(r for r in facts.refunds if r.order_id == oid)
            lines += [refund_line(r, facts) for r in rows] or [wording.no_refund_on(order_id=oid)]
        return lines
    return [refund_line(r, facts) for r in _latest(r for r in facts.refunds if r.here)]


def truthful_reply(facts: Facts, claims: Iterable[Claim]) -> str:
    """The fixed, true sentences said instead of a reply the store contradicts."""
    lines: list[str] = []
    for c in claims:
        if c.kind == "refund":
            if c.unknown and not c.orders:
                lines.append(wording.NOT_FOUND_ORDER)
            else:
                lines += refund_lines(facts, c.orders) or [wording.NO_REFUND_HERE]
        elif c.kind in ("handoff", "call"):
            lines.append(wording.HANDOFF_OPEN if facts.ticket_open else wording.NO_HANDOFF)
            if c.kind == "call":
                lines.append(wording.NO_CALLS)
        else:
            lines += [order_line(facts.orders[o]) for o in c.orders]
            if c.unknown:
                lines.append(wording.NOT_FOUND_ORDER)
    return " ".join([wording.CORRECTION_LEAD, *dict.fromkeys(lines)])


def state_summary(facts: Facts) -> str:
    """Said instead of a reply that was not fit to send at all (pasted tool output, an exception)."""
    lines = refund_lines(facts)
    if facts.ticket_open:
        lines.append(wording.HANDOFF_OPEN)
    if not lines:
        lines.append(wording.ASK_AGAIN)
    return " ".join([wording.TOOL_TEXT_LEAD, *lines])
