"""Every customer-bound text goes through `sanitize`; model replies also through `strip_tool_text`.

`sanitize` removes internal codes, replaces any text that looks like an exception or stack trace
with a plain apology, and withholds every email address, order number, customer id and refund id
that does not belong to the session's customer, and every internal session id. Ownership is
checked against the store, not a word list. A token merely *shaped* like an order number of this
shop (the shapes of the stored ids, ORDER_NUMBER_PATTERN, or the generic `ABC-123`) that belongs
to nobody is withheld too, so an unknown order and another customer's read exactly the same; so
is any `RF-…` that is not the customer's own refund. Bare numbers (`1002`) count as order numbers
only next to an order word or a `#`, or a reply could not say "in 2026".

`strip_tool_text` keeps a model from pasting its tool traffic: a JSON object or a `code` field
makes the whole reply unusable; a sentence naming a tool or a field (`lookup_order`,
`refund_eligible`), repeating an internal note the model was sent, or talking about "the
customer" is dropped.

Every pattern runs in linear time (bounded repeats, no nested or overlapping quantifiers,
fixed-width lookarounds), on text capped at MAX_TEXT characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, literal_column, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from storage import credentials
from storage.engine import Store, reading
from storage.models import Customer, Order, Refund
from storage.order_formats import Formats, compact, load_formats
from tools.patterns import EMAIL
from tools.wording import GENERIC_FALLBACK

MAX_TEXT = 20_000
# an identifier-like token: ORD-8842, #1001, W7678072, SO-2026-000123, CUST-1001, RF-3F2A9C, S-…
TOKEN = re.compile(r"(?<![\w#-])#?[A-Za-z0-9][A-Za-z0-9-]{0,40}(?![\w-])")
GENERIC_ORDER = re.compile(r"[A-Z]{2,6}-\d{2,12}")  # fullmatch: shaped like an order number anywhere
SESSION_ID = re.compile(r"S-[0-9A-F]{12}")  # fullmatch: tools.context.new_id("S")
ORDER_WORD = re.compile(
    r"\b(?:orders?|pedidos?|orden|bestellung|bestellnummer|auftrag|commande|nr|no|number|nummer|n[uú]mero)\W{0,3}$",
    re.IGNORECASE,
)
INTERNAL_CODE = re.compile(r"\b[A-Z][A-Z0-9]{0,40}(?:_[A-Z0-9]{1,40}){1,8}\b")
EXCEPTION_TEXT = re.compile(
    r"Traceback \(most recent call last\)|File \"[^\"\n]{0,500}\", line \d+|\b[A-Z]\w{0,60}(?:Error|Exception)\b[:(]"
    r"|\b(?:sqlalchemy|asyncpg|aiosqlite|psycopg2?|slack_sdk|slack_bolt|anthropic|pydantic)\.\w"
    r"|\bstack ?trace\b",
    re.IGNORECASE,
)
# tool traffic pasted into a reply
JSON_KEY = re.compile(r"""[{\[,]\s{0,8}["'][A-Za-z_][\w -]{0,40}["']\s{0,8}:""")
CODE_FIELD = re.compile(r"""\bcode["']?\s{0,4}[:=]""", re.IGNORECASE)
SNAKE = re.compile(r"\b[a-z][a-z0-9]{0,30}(?:_[a-z0-9]{1,30}){1,6}\b")  # tool and field names
URL = re.compile(r"\bhttps?://\S{1,2000}")
MODEL_TALK = re.compile(
    r"\b(?:tell|inform|ask|remind) (?:the|this) customer\b|\bthe customer (?:must|should|is|has|asked|wants|can)\b"
    r"|\bdo not (?:say|promise|tell|mention|speculate|retry|look|guess|describe)\b|\bverified customer\b"
    r"|\bthis customer'?s\b|\btool (?:results?|calls?|inputs?|outputs?)\b|\bsession note\b|\bsystem prompt\b"
    r"|\b(?:refund_id|order_id|ticket_id)\s{0,3}[:=]",
    re.IGNORECASE,
)
SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")

WITHHELD = {
    "order": "that order",
    "customer": "that account",
    "refund": "that refund",
    "email": "that email address",
    "session": "that reference",
}


@dataclass(frozen=True, slots=True)
class Sanitized:
    text: str
    withheld: list[str] = field(default_factory=list)
    replaced: bool = False  # the whole text was unsafe and became the generic apology

    @property
    def changed(self) -> bool:
        return self.replaced or bool(self.withheld)


def cap(text: str, limit: int = MAX_TEXT) -> str:
    """At most `limit` characters, cut after the last sentence that fits."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    end = max(head.rfind(". "), head.rfind("\n"), head.rfind("! "), head.rfind("? "))
    return head[: end + 1] if end > limit // 2 else head


def _tokens(text: str) -> dict[str, bool]:
    """Identifier-like tokens with a digit -> whether an order word or `#` stands right before them."""
    out: dict[str, bool] = {}
    for m in TOKEN.finditer(text):
        t = m.group(0)
        if not any(ch.isdigit() for ch in t):
            continue
        near = t.startswith("#") or bool(ORDER_WORD.search(text[max(0, m.start() - 24) : m.start()]))
        out[t] = out.get(t, False) or near
    return out


def _has_letters(token: str) -> bool:
    return any(ch.isalpha() for ch in token)


def _order_shaped(token: str, near_order_word: bool, formats: Formats) -> bool:
    bare = compact(token)
    if not any(ch.isalpha() for ch in bare) and not near_order_word:
        return False  # a bare number is a number, unless it is called an order
    if GENERIC_ORDER.fullmatch(bare):
        return True
    return any(formats.matches(s) for s in formats.spellings(token))


async def _foreign(
    source: Store | AsyncSession,
    customer_id: str | None,
    emails: set[str],
    tokens: dict[str, bool],
    pattern: str | None,
) -> dict[str, str]:
    """Which of these emails and tokens are not the customer's own: {token or lowercased email: kind}.
    `source` may be a session in the caller's read transaction (the guard's), which is then used."""
    async with reading(source) as s:
        own_email, formats, owners = await _lookups(s, customer_id, emails, tokens, pattern)
    foreign: dict[str, str] = {}
    for t, near in tokens.items():
        bare = compact(t)
        if SESSION_ID.fullmatch(bare):
            foreign[t] = "session"
        elif t in owners:
            kind, owner = owners[t]
            if owner != customer_id:
                foreign[t] = kind
        elif bare.startswith("RF-"):
            foreign[t] = "refund"  # nobody's refund: withheld like another customer's
        elif _order_shaped(t, near, formats):
            foreign[t] = "order"  # shaped like an order number but nobody's: withheld the same way
    for e in emails:
        if own_email is None or e.lower() != own_email.lower():
            foreign[e.lower()] = "email"
    return foreign


async def _lookups(
    s: AsyncSession, customer_id: str | None, emails: set[str], tokens: dict[str, bool], pattern: str | None
) -> tuple[str | None, Formats, dict[str, tuple[str, str]]]:
    """The customer's own email, the order formats, and who owns each token that names a stored row."""
    own_email = None
    if customer_id and emails:
        own_email = await s.scalar(select(Customer.email).where(Customer.id == customer_id))
    formats = await load_formats(s, pattern) if tokens else Formats()
    looked: dict[str, str] = {}  # a stored spelling -> the token it came from
    for t in tokens:
        for spelling in formats.spellings(t):
            looked.setdefault(spelling, t)
    owners: dict[str, tuple[str, str]] = {}  # token -> (kind, owning customer)
    if looked:
        rows = (await s.execute(_owners_of(list(looked)))).all()
        for kind, name, owner in sorted(rows, key=lambda r: _KINDS.index(r[0])):  # an order first, then …
            owners.setdefault(looked[name], (kind, owner))
    return own_email, formats, owners


_KINDS = ("order", "customer", "refund")


def _owners_of(names: list[str]) -> Any:
    """(kind, stored id, owning customer) of every order, customer and refund named, one statement."""

    def kind(name: str) -> Any:
        return literal_column(f"'{name}'", String).label("kind")  # a constant of ours, never input

    return union_all(
        select(kind("order"), Order.id, Order.customer_id).where(Order.id.in_(names)),
        select(kind("customer"), Customer.id, Customer.id).where(Customer.id.in_(names)),
        select(kind("refund"), Refund.id, Order.customer_id)
        .join(Order, Order.id == Refund.order_id)
        .where(Refund.id.in_(names)),
    )


def _looked_up(text: str) -> tuple[set[str], dict[str, bool]]:
    """The emails and id-like tokens of `text` that the store is asked about. A bare number that
    nothing calls an order ("9:00-18:00", "in 2026") is never looked up, so existing and unknown
    ones read alike."""
    emails = set(EMAIL.findall(text))
    tokens = {t: near for t, near in _tokens(EMAIL.sub(" ", text)).items() if near or _has_letters(t)}
    return emails, tokens


def needs_lookup(text: str) -> bool:
    """Whether sanitizing `text` reads the store (the guard opens a read transaction only then)."""
    emails, tokens = _looked_up(cap(text))
    return bool(emails or tokens)


async def sanitize(
    text: str, *, store: Store | AsyncSession, customer_id: str | None, order_pattern: str | None = None
) -> Sanitized:
    """`store` may be a session in the caller's read transaction."""
    text = cap(text)
    if EXCEPTION_TEXT.search(text):
        return Sanitized(GENERIC_FALLBACK, replaced=True)
    withheld: list[str] = []
    text = _withhold_credentials(text, withheld)
    emails, tokens = _looked_up(text)
    foreign = await _foreign(store, customer_id, emails, tokens, order_pattern) if emails or tokens else {}

    def swap_email(m: re.Match[str]) -> str:
        kind = foreign.get(m.group(0).lower())
        if kind:
            withheld.append(m.group(0))
            return WITHHELD[kind]
        return m.group(0)

    def swap_id(m: re.Match[str]) -> str:
        kind = foreign.get(m.group(0))
        if kind:
            withheld.append(m.group(0))
            return WITHHELD[kind]
        return m.group(0)

    out = EMAIL.sub(swap_email, text)
    out = TOKEN.sub(swap_id, out)
    codes = INTERNAL_CODE.findall(out)
    if codes:
        withheld.extend(codes)
        out = INTERNAL_CODE.sub("", out)
        out = re.sub(r"\(\s{0,20}\)|\[\s{0,20}\]", "", out)
        out = re.sub(r"[ \t]{2,}", " ", out)
        out = re.sub(r"\s{1,20}([.,;:!?])", r"\1", out)
        out = re.sub(r"(^|\n)\s{0,20}[:\-–]\s{0,20}", r"\1", out).strip()
    if not out.strip():
        return Sanitized(GENERIC_FALLBACK, withheld, replaced=True)
    return Sanitized(out, withheld)


def _withhold_credentials(text: str, withheld: list[str]) -> str:
    """A second line behind `kb import`'s refusal: a credential shape (`storage.credentials`) never
    reaches a customer, whatever put it in the text."""
    out, kinds = credentials.withhold(text)
    withheld.extend(kinds)
    return out


# --- tool traffic in a model's reply -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ToolText:
    text: str  # what is left to say
    found: tuple[str, ...] = ()  # what was removed, for the log
    unusable: bool = False  # a JSON object or a code field, or nothing left: replace the whole reply


def split_sentences(text: str) -> list[str]:
    return [s for s in SENTENCE_BREAK.split(text) if s.strip()]


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w$€£'’ ]", " ", text.lower()).split())


def note_fragments(notes: Iterable[str], *, limit: int = 60) -> list[str]:
    """The sentences of internal notes worth recognising (five words or more), normalised."""
    out: list[str] = []
    for note in list(notes)[:limit]:
        for sentence in split_sentences(note[:600]):
            norm = _norm(sentence)
            if len(norm.split()) >= 5 and norm not in out:
                out.append(norm)
    return out


def strip_tool_text(text: str, *, notes: Iterable[str] = ()) -> ToolText:
    text = cap(text)
    if JSON_KEY.search(text) or CODE_FIELD.search(text):
        return ToolText("", ("json or code field",), unusable=True)
    fragments = note_fragments(notes)
    kept: list[str] = []
    found: list[str] = []
    for sentence in split_sentences(text):
        plain = URL.sub(" ", EMAIL.sub(" ", sentence))
        names = SNAKE.findall(plain)
        norm = _norm(sentence)
        if names:
            found += names
        elif MODEL_TALK.search(plain):
            found.append("model-facing wording")
        elif any(f in norm for f in fragments):
            found.append("internal note")
        else:
            kept.append(sentence.strip())
    if not found:
        return ToolText(text)
    left = " ".join(kept).strip()
    return ToolText(left, tuple(found), unusable=not left)
