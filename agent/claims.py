"""The claims check: nothing the store contradicts reaches a customer.

After the model writes and before anything is sent (`agent.policy.guard`, from the agent loop's
reply path that every face uses), each sentence is read for what it asserts, and each assertion
is checked against the store's facts for this session:

    assertion (English, Spanish, German)            checked against
    money moved: "refunded", "has been issued",     a processed refund of the order, amount or item
      "credited", "te hemos devuelto", "erstattet"    named, else of this conversation; or a refund
                                                      this conversation's tool results report paid
    a refund's state: "your refund is waiting for   a refund in that state, matched the same way
      your confirmation", "pending approval",
      "Refund status: processed", "denied"
    a person contacted or a ticket opened:          an unresolved ticket of this session
      "I've passed this to our team"
    a call or an email coming: "will call you",     nothing: we never phone or email, we answer here
      "you'll receive an email"
    an order's status, date or amount:              the customer's order of that number or item
      "ORD-8842 was delivered on 2026-11-26"

What a sentence asserts, not the words in it: a question, a condition ("if", "once", "only if:"
after it), a hypothetical or an offer ("would", "can be", "I can issue"), a rule with a generic
subject ("a reservation can be cancelled with a refund if:", "refunds are issued within …"), a
negation anywhere in its clause ("issued as a travel certificate, not as a refund"), a wish and a
participle used as an adjective ("the refunded balance") assert nothing; a bare participle
("$5,244, refunded to your card") asserts nothing in a reply that asks the customer to confirm.
A refund's state is asserted only of a refund ("your refund is delayed"), so "a delayed flight"
is no refund state. An amount is checked only when a sentence ties it to the customer's order:
an amount this conversation's tool results showed or the customer wrote is grounded (unless it is
another of their orders' own amount), and a difference, a fee or another product's price ("the
new variant costs $46.85, a difference of $4.03") says nothing about the order's amount.

An order number the customer has no order of supports nothing; an identifier this conversation's
tool results showed is theirs. `review` returns the reply to send: a true sentence about a refund
is re-rendered in place from the refund row, so the amount, order and state a customer reads never
come from model text; a contradicted reply is not sent (the guard repairs or replaces it, with
agent.truthful, written by code in the customer's language). Rules and facts, no model call;
every pattern is linear-time.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from agent.claim_patterns import (
    ALL_ORDER_GATES,
    ATTRIBUTIVE,
    CALL,
    CLAUSE_BREAK,
    CONDITION,
    CONDITIONAL_START,
    GENERIC,
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
    ORDER_GATE_BITS,
    ORDER_STATES,
    ORDER_STATUSES,
    POLICY_FRAME,
    PROGRESSIVE,
    PROPOSAL,
    PROPOSAL_WORDS,
    REFUND_CONTEXT,
    REFUND_STATUSES,
    REFUND_WORD,
    SENTENCE_WORDS,
    SPECIFIC,
    STATES,
    STATUS_LINE,
    TRAILING_CONDITION,
    gates,
    money,
    rx,
    status_word,
    when,
)
from agent.facts import Claim, Facts, Grounds, OrderFact, RefundFact
from agent.truthful import refund_line
from storage.order_formats import compact, digits, key
from tools.sanitizer import DIGIT_TOKEN, GENERIC_ORDER, called_an_order, pieces, rejoin, split_sentences

IT = re.compile(r"\b(?:your order|it)\b", re.IGNORECASE)
RELATIVE = re.compile(r"\s{0,3}(?:which|that|who|que|welche[rs]?|die|der|das)\b", re.IGNORECASE)
OFFER = rx(r"\b(?:can|could|would|may|might|should)\b|['’]d\b|\b(?:puedo|podr[ií]a|kann|k[oö]nnte)\b")
# words that make an amount something other than the order's own: a difference, a fee, another price
NOT_THE_ORDERS = rx(
    r"\b(?:difference|differ\w{0,4}|more|less|extra|additional|cheaper|pricier|save[sd]?|saving|savings|instead"
    r"|new|variant|option|alternative|upgrade|downgrade|fees?|per|each|balance|remaining|remainder|certificate"
    r"|voucher|gift card|discount|coupon|shipping|tax|deposit|budget|under|over|up to|at most|at least|limit)\b",
    r"\b(?:diferencia|adicional|nuev[oa]|variante|opci[oó]n|cada|saldo|envío|Differenz|zus[aä]tzlich|neue[nrs]?"
    r"|Variante|je|pro|Guthaben|Versand)\b",
    r"[=+×*/]|\s[-–]\s",
)


# --- claims --------------------------------------------------------------------------------------------


def _bounds(sentence: str, start: int, end: int) -> tuple[int, int]:
    """The clause a match stands in: from the last clause break before it to the next one after it."""
    begin = 0
    for b in CLAUSE_BREAK.finditer(sentence, 0, start):
        begin = b.end()
    stop = CLAUSE_BREAK.search(sentence, end)
    return begin, stop.start() if stop else len(sentence)


def _clause(sentence: str, m: re.Match[str]) -> str:
    begin, stop = _bounds(sentence, m.start(), m.end())
    return sentence[begin:stop]


def _before(sentence: str, m: re.Match[str]) -> str:
    """The clause a match starts in, up to the match."""
    begin, _ = _bounds(sentence, m.start(), m.end())
    return sentence[begin : m.start()]


def _near(sentence: str, m: re.Match[str], words: int) -> str:
    """The last few words of the clause before a match, and the match itself."""
    return " ".join([*_before(sentence, m).split()[-words:], m.group(0)])


def _negated(sentence: str, m: re.Match[str]) -> bool:
    """A negation anywhere in the match's clause: "not refunded", "issued, but not as a refund"."""
    return bool(NEGATION.search(_clause(sentence, m)))


def _conditional(sentence: str, m: re.Match[str]) -> bool:
    """A condition governs the match: at the sentence's start, since the last `;` or `:` before it,
    or one that follows it in its clause ("… with a refund only if:")."""
    start = max(sentence.rfind(";", 0, m.start()), sentence.rfind(":", 0, m.start())) + 1
    _, stop = _bounds(sentence, m.start(), m.end())
    return bool(
        CONDITIONAL_START.search(sentence)
        or CONDITION.search(sentence[start : m.start()])
        or TRAILING_CONDITION.search(sentence[m.end() : stop])
    )


def _question(sentence: str, m: re.Match[str]) -> bool:
    rest = sentence[m.end() :]
    stop = CLAUSE_BREAK.search(rest)
    return (rest[: stop.start()] if stop else rest).rstrip(" *_)").endswith("?")


def _generic(sentence: str, m: re.Match[str]) -> bool:
    """A rule, not a fact about this customer: a generic subject, or a quoted policy, and nothing in
    the clause that is theirs (you, your, I, we, an amount)."""
    clause = _clause(sentence, m)
    if SPECIFIC.search(clause) or MONEY.search(clause):
        return False
    return bool(GENERIC.search(_before(sentence, m)) or POLICY_FRAME.search(sentence))


def _asserted(sentence: str, m: re.Match[str]) -> bool:
    return not (_question(sentence, m) or _conditional(sentence, m) or _generic(sentence, m))


def _not_done(sentence: str, m: re.Match[str]) -> bool:
    """Future, wished, in progress: it does not say that something happened."""
    near = _near(sentence, m, 3)
    return bool(MODAL.search(near) or NONFACT.search(near) or PROGRESSIVE.search(m.group(0)))


@functools.lru_cache(maxsize=4096)
def _item_words(order: OrderFact) -> frozenset[str]:
    out = set()
    for name, _, _ in order.items:
        for w in re.findall(r"[a-zäöüéñ]{3,30}", name.lower()):
            if w not in ITEM_STOP:
                out.add(w)
    return frozenset(out)


def references(sentence: str, facts: Facts, grounds: Grounds | None = None) -> tuple[list[str], bool]:
    """The customer's orders a sentence names (by number or item), and whether it names an order
    number the customer has no order of (unknown or another customer's: the same to us). A number
    shaped like none of this shop's orders that the conversation's tool results showed is theirs."""
    named: list[str] = []
    unknown = False
    for m in DIGIT_TOKEN.finditer(sentence):
        t = m.group(0)
        near = t.startswith("#") or called_an_order(sentence, m.start())
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
        elif _unknown(t, near=near, facts=facts, grounds=grounds):
            unknown = True
    lower = sentence.lower()
    said = set(SENTENCE_WORDS.findall(lower))
    said |= {w[:-2] for w in said if w.endswith("es")} | {w[:-1] for w in said if w.endswith("s")}
    words = {oid: _item_words(order) for oid, order in facts.orders.items()}
    for oid, ws in words.items():
        if oid not in named and ws & said:
            named.append(oid)
    thing = OBJECT.search(lower)
    if thing and thing.group(1) not in GENERIC_OBJECTS:  # "refunded the headphones": which of theirs?
        stem = thing.group(1).removesuffix("es").removesuffix("s")
        if not any(stem in w or w in thing.group(1) for ws in words.values() for w in ws):
            unknown = True
    return named, unknown


def _unknown(token: str, *, near: bool, facts: Facts, grounds: Grounds | None) -> bool:
    """A number that is not one of the customer's orders names an unknown one when it is shaped like
    this shop's order numbers, or is called an order and the conversation's tool results never showed it."""
    if GENERIC_ORDER.fullmatch(compact(token)) or any(facts.formats.matches(s) for s in facts.formats.spellings(token)):
        return True
    return near and not (grounds is not None and grounds.shows(token.lstrip("#")))


def _moved(sentence: str, *, proposal: bool, gate: Gates | None = None) -> re.Match[str] | None:
    """The first place the sentence says money moved, if it says so as a fact. A pattern that
    needs a refund word (or an amount) in its clause runs only when the sentence has one."""
    gate = gate or Gates.of(sentence)
    for pattern, needs, form in MOVED:
        if (needs is None and not gate.moved) or (needs == "words" and not gate.refund):
            continue
        if needs == "any" and not (gate.refund or gate.money):
            continue
        for m in pattern.finditer(sentence):
            clause = _with_antecedent(sentence, m)
            if needs == "words" and not REFUND_WORD.search(clause):
                continue
            if needs == "any" and not REFUND_CONTEXT.search(clause):
                continue
            if form == "participle" and (proposal or ATTRIBUTIVE.search(sentence[max(0, m.start() - 12) : m.start()])):
                continue
            if _negated(sentence, m) or _not_done(sentence, m) or not _asserted(sentence, m):
                continue
            return m
    return None


def _with_antecedent(sentence: str, m: re.Match[str]) -> str:
    """The match's clause, and the clause before it when this one is a relative clause ("a refund of
    $89.99, which is processed": what is processed is the refund)."""
    begin, stop = _bounds(sentence, m.start(), m.end())
    if not RELATIVE.match(sentence[begin:stop]) or begin == 0:
        return sentence[begin:stop]
    before, _ = _bounds(sentence, max(0, begin - 2), max(0, begin - 2))
    return sentence[before:stop]


def _status_line(sentence: str) -> bool:
    line = STATUS_LINE.search(sentence)
    return line is not None and status_word(line.group(1)) is not None


def _states(sentence: str) -> list[str]:
    """The refund states a sentence asserts of a refund: the refund named in the clause before its state."""
    out = []
    for state, pattern in STATES:
        m = pattern.search(sentence)
        if m is None or not REFUND_WORD.search(_before(sentence, m) + m.group(0)) or not _asserted(sentence, m):
            continue
        if MODAL.search(_near(sentence, m, 2)) and state not in ("awaiting", "approval"):
            continue
        if state in NEGATION_IMMUNE or not _negated(sentence, m):
            out.append(state)
    return out


class Gates(NamedTuple):
    """Which families of patterns a sentence's words open (each family runs only past its gate)."""

    moved: bool  # a word that says money moved by itself ("refunded", "erstattet")
    refund: bool
    money: bool
    people: bool
    bits: int  # every gate the sentence's words open (claim_patterns.GATES)
    amount: bool

    @staticmethod
    @functools.lru_cache(maxsize=4096)
    def of(sentence: str) -> Gates:
        bits = gates(sentence)
        if not bits and "$" not in sentence and "€" not in sentence and "£" not in sentence:
            return NO_GATES
        if bits & ALL_ORDER_GATES and not (bits & REFERENCE or "#" in sentence or DIGIT_TOKEN.search(sentence)):
            bits &= ~ALL_ORDER_GATES  # an order's status said of nothing that could be an order
        money = ("$" in sentence or "€" in sentence or "£" in sentence or bits & MONEY_WORD) and bool(
            MONEY.search(sentence)
        )
        amount = money and bool(
            bits & ORDERISH
            or (bits & PRICE and bits & YOU and " for " in sentence)
            or "#" in sentence
            or GENERIC_ORDER.search(sentence)
        )
        return Gates(bool(bits & MOVED_WORD), bool(bits & REFUND), bool(money), bool(bits & PEOPLE_WORD), bits, amount)


NO_GATES = Gates(False, False, False, False, 0, False)
MOVED_WORD, REFUND, PEOPLE_WORD, ORDERISH, MONEY_WORD, PRICE, YOU, REFERENCE = (1 << i for i in range(8))


@functools.lru_cache(maxsize=4096)
def assertions(sentence: str, *, proposal: bool = False) -> bool:
    """A cheap first look at one sentence, before the store is read: does it assert anything the
    store could contradict? (A pure function of its text, so the guard's second look is free.)"""
    sentence = sentence[:2000]
    gate = Gates.of(sentence)
    return bool(
        ((gate.moved or gate.refund or gate.money) and _moved(sentence, proposal=proposal, gate=gate))
        or (gate.refund and (_status_line(sentence) or _states(sentence)))
        or (gate.people and _people(sentence))
        or any(_order_state(sentence, p) for state, p, _ in ORDER_STATES if gate.bits & ORDER_GATE_BITS[state])
        or gate.amount
    )


@functools.lru_cache(maxsize=256)
def is_proposal(text: str) -> bool:
    """The reply ends by asking the customer to confirm what it describes (a cheap look for the
    words first: most replies ask nothing of the kind)."""
    tail = text[-800:]
    lower = tail.lower()
    return any(w in lower for w in PROPOSAL_WORDS) and bool(PROPOSAL.search(tail))


def has_claims(text: str, *, proposal: bool | None = None) -> bool:
    proposal = is_proposal(text) if proposal is None else proposal
    return any(assertions(s, proposal=proposal) for s, _ in pieces(text) if s.strip())


def extract(sentence: str, facts: Facts, grounds: Grounds | None = None, *, proposal: bool = False) -> list[Claim]:
    """The claims of one sentence that are stated as fact (not negated, not future, not asked, not a rule)."""
    sentence = sentence[:2000]
    if not assertions(sentence, proposal=proposal):
        return []
    orders, unknown = references(sentence, facts, grounds)
    ids = tuple(m.group(0).lstrip("#") for m in DIGIT_TOKEN.finditer(sentence))
    base = {"sentence": sentence, "orders": tuple(orders), "unknown": unknown, "amounts": money(sentence), "names": ids}
    out: list[Claim] = []
    gate = Gates.of(sentence)
    if (gate.moved or gate.refund or gate.money) and _moved(sentence, proposal=proposal, gate=gate):
        out.append(Claim("refund", "moved", **base))
    line = STATUS_LINE.search(sentence)
    stated = status_word(line.group(1)) if line else None
    if stated is not None:
        out.append(Claim("refund", stated, **base))
    if gate.refund and stated is None:
        out += [Claim("refund", state, **base) for state in _states(sentence)]
    out += _people(sentence) if gate.people else []
    out += _order_claims(sentence, facts, grounds, whole=(orders, unknown), gate=gate)
    return out


def _people(sentence: str) -> list[Claim]:
    out: list[Claim] = []
    call = CALL.search(sentence)
    if call and not _negated(sentence, call) and not _question(sentence, call):
        out.append(Claim("call", "call", sentence))
    for pattern in HANDOFF:
        m = pattern.search(sentence)
        if m is None or _negated(sentence, m) or not _asserted(sentence, m) or OFFER.search(_near(sentence, m, 3)):
            continue
        out.append(Claim("handoff", "contacted", sentence))
        break
    return out


def _order_state(sentence: str, pattern: re.Pattern[str]) -> re.Match[str] | None:
    m = pattern.search(sentence)
    if m is None or not _asserted(sentence, m):
        return None
    return m


def _order_claims(
    sentence: str, facts: Facts, grounds: Grounds | None, *, whole: tuple[list[str], bool], gate: Gates
) -> list[Claim]:
    """Status and date claims about the orders named in their own clause (or the sentence's only
    order, or the one order looked up in this conversation); amounts against the named orders."""
    out: list[Claim] = []
    whole_named, whole_unknown = whole
    for state, pattern, negated_state in ORDER_STATES:
        if not gate.bits & ORDER_GATE_BITS[state]:
            continue
        m = _order_state(sentence, pattern)
        if m is None:
            continue
        if state != "future_delivery" and MODAL.search(_near(sentence, m, 2)):
            continue  # "should have been delivered by now" says nothing about whether it was
        clause = _clause(sentence, m)
        orders, unknown = references(clause, facts, grounds)
        if not orders and not unknown:
            orders, unknown = (whole_named, whole_unknown) if len(whole_named) + whole_unknown == 1 else ([], False)
        if not orders and not unknown and len(facts.looked_up) == 1 and IT.search(sentence):
            orders = [facts.looked_up[0]]
        if not orders and not unknown:
            continue
        if state not in ("not_delivered", "not_shipped") and _negated(sentence, m):
            if negated_state is None:
                continue
            state = negated_state
        day = when(sentence[m.start() :], facts.today) or when(clause[: max(0, clause.find(m.group(0)))], facts.today)
        out.append(Claim("order", state, sentence, tuple(orders), unknown, when=day))
    if not gate.amount or not (whole_named or whole_unknown) or gate.refund or sentence.rstrip(" *_)").endswith("?"):
        return out
    amounts = _order_amounts(sentence, facts, grounds, whole_named)
    if amounts:
        out.append(Claim("order", "amount", sentence, tuple(whole_named), whole_unknown, amounts))
    return out


def _order_amounts(
    sentence: str, facts: Facts, grounds: Grounds | None, named: list[str]
) -> tuple[tuple[int, str | None], ...]:
    """The amounts a sentence states as its orders' own: not a difference, a fee or another price,
    and not one the conversation's tool results showed or the customer wrote (unless it is another
    of their orders' own amount)."""
    others: set[int] = set()
    for oid, order in facts.orders.items():
        if oid not in named:
            others |= order.amounts()
    for oid in named:
        others -= facts.orders[oid].amounts()
    out = []
    for m in MONEY.finditer(sentence):
        found = money(m.group(0))
        if not found:
            continue
        cents, currency = found[0]
        begin, stop = _bounds(sentence, m.start(), m.end())
        window = sentence[max(begin, m.start() - 40) : min(stop, m.end() + 25)]
        if NOT_THE_ORDERS.search(window):
            continue
        if grounds is not None and cents in grounds.amounts and cents not in others:
            continue
        out.append((cents, currency))
    return tuple(out)


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


def reported(claim: Claim, grounds: Grounds | None) -> bool:
    """A refund this conversation's tool results report as paid: of the order or reservation the
    sentence names (any, if it names none), for every amount it states."""
    if grounds is None or claim.state != "moved" or claim.unknown:
        return False
    pool = [(o, c) for o, c in grounds.refunds if not claim.names or (o is not None and o.lstrip("#") in claim.names)]
    if not claim.amounts:
        return bool(pool)
    return all(any(c == cents for _, c in pool) for cents, _ in claim.amounts)


def holds(claim: Claim, facts: Facts, grounds: Grounds | None = None) -> bool:
    if claim.kind == "refund":
        return bool(supporting(claim, facts)) or reported(claim, grounds)
    if claim.kind == "call":
        return False  # nobody phones or emails customers: staff answer in the conversation
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
    text: str  # what to send when nothing is contradicted (true refund sentences re-rendered in place)
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


def review(text: str, facts: Facts, *, quotes: Iterable[str] = (), grounds: Grounds | None = None) -> Review:
    """`quotes`: the passages this turn's help-center search returned; a sentence repeating one
    is checked only for what it adds. The layout (line breaks, lists) is kept."""
    parts = pieces(text)
    contradicted: list[Claim] = []
    rendered = 0
    quoted = quoted_sentences(quotes)
    proposal = is_proposal(text)
    seen_lines: set[str] = set()
    for i, (sentence, sep) in enumerate(parts):
        if not sentence.strip():
            continue
        found = extract(unquoted(sentence, quoted) if quoted else sentence, facts, grounds, proposal=proposal)
        bad = [c for c in found if not holds(c, facts, grounds)]
        contradicted += bad
        rows = {r.id: r for c in found if c.kind == "refund" for r in supporting(c, facts)}
        named = {o for c in found for o in c.orders}
        if not bad and rows and named <= {r.order_id for r in rows.values()}:
            lines = [line for r in rows.values() if (line := refund_line(r, facts)) not in seen_lines]
            seen_lines.update(lines)
            parts[i] = (" ".join(lines), sep if lines else "")
            rendered += 1
    if contradicted or not rendered:
        return Review(text, tuple(contradicted), rendered)
    return Review(rejoin(parts), (), rendered)
