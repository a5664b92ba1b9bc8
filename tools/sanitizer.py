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

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, bindparam, literal_column, select, union_all
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
# the same, only those with a digit (the lookahead reads one word at most, so the search stays linear)
DIGIT_TOKEN = re.compile(r"(?<![\w#-])#?(?=[A-Za-z-]{0,40}\d)[A-Za-z0-9][A-Za-z0-9-]{0,40}(?![\w-])")
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
_EXCEPTION_WORDS = ("traceback", "file \"", "error", "exception", "sqlalchemy", "asyncpg", "aiosqlite", "psycopg",
                    "slack_sdk", "slack_bolt", "anthropic.", "pydantic.", "stack")  # fmt: skip


def looks_like_exception(text: str) -> bool:
    """Exception text or a stack trace (a cheap look for its words first: most text has none)."""
    lower = text.lower()
    return any(w in lower for w in _EXCEPTION_WORDS) and bool(EXCEPTION_TEXT.search(text))


# tool traffic pasted into a reply
JSON_KEY = re.compile(r"""[{\[,]\s{0,8}["'][A-Za-z_][\w -]{0,40}["']\s{0,8}:""")
CODE_FIELD = re.compile(r"""\bcode["']?\s{0,4}[:=]""", re.IGNORECASE)
SNAKE = re.compile(r"\b[a-z][a-z0-9]{0,30}(?:_[a-z0-9]{1,30}){1,6}\b")  # tool and field names
URL = re.compile(r"\bhttps?://\S{1,2000}")
MODEL_TALK = re.compile(
    r"\b(?:tell|inform|ask|remind) (?:the|this) customer\b"
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


def has_digit(token: str) -> bool:
    """A digit in a word (a word of letters alone, most of them, is answered at C speed)."""
    return not token.isalpha() and any(ch.isdigit() for ch in token)


@functools.lru_cache(maxsize=256)
def _tokens(text: str) -> dict[str, bool]:
    """Identifier-like tokens with a digit -> whether an order word or `#` stands right before them
    (asked only of bare numbers: a token with letters is looked up either way). A pure function of
    the text, so the guard's two looks at one reply read it once."""
    out: dict[str, bool] = {}
    for m in DIGIT_TOKEN.finditer(text):
        t = m.group(0)
        if out.get(t):
            continue
        if t.startswith("#"):
            out[t] = True
        elif any(ch.isalpha() for ch in t):
            out[t] = False
        else:
            out[t] = called_an_order(text, m.start())
    return out


_ORDER_WORDS = frozenset(
    ("order", "orders", "pedido", "pedidos", "orden", "bestellung", "bestellnummer", "auftrag", "commande", "nr", "no",
     "number", "nummer", "número", "numero")
)  # fmt: skip


def called_an_order(text: str, start: int) -> bool:
    """An order word stands right before `start` ("order 8842", "order no. 8842", "Bestellnummer: 8842")."""
    before = text[max(0, start - 24) : start].rstrip(" \t#:.-–")
    last = before[-16:].rsplit(None, 1)[-1] if before.strip() else ""
    return last.lower().strip("(*\"'") in _ORDER_WORDS


# a number with a unit or an ending, not an identifier: "20th", "9am", "24-hour", "178cm", "2-segment"
NOT_AN_ID = re.compile(
    r"\d{1,5}(?:st|nd|rd|th|am|pm|h|hrs?|hours?|mins?|s|x|k|kg|g|cm|mm|m|km|lbs?|oz|ml|l|gb|mb|tb|in|ft|yrs?|pcs?)"
    r"|\d{1,5}-[A-Za-z]{1,12}",
    re.IGNORECASE,
)


def _has_letters(token: str) -> bool:
    """Letters in an identifier (a number with a unit or an ending is no identifier)."""
    return any(ch.isalpha() for ch in token) and not NOT_AN_ID.fullmatch(token.lstrip("#"))


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
        rows = (await s.execute(OWNERS, {"names": list(looked)})).all()
        for kind, name, owner in sorted(rows, key=lambda r: _KINDS.index(r[0])):  # an order first, then …
            owners.setdefault(looked[name], (kind, owner))
    return own_email, formats, owners


_KINDS = ("order", "customer", "refund")


def _owners_statement() -> Any:
    """(kind, stored id, owning customer) of every order, customer and refund named, one statement."""
    names = bindparam("names", expanding=True)

    def kind(name: str) -> Any:
        return literal_column(f"'{name}'", String).label("kind")  # a constant of ours, never input

    return union_all(
        select(kind("order"), Order.id, Order.customer_id).where(Order.id.in_(names)),
        select(kind("customer"), Customer.id, Customer.id).where(Customer.id.in_(names)),
        select(kind("refund"), Refund.id, Order.customer_id)
        .join(Order, Order.id == Refund.order_id)
        .where(Refund.id.in_(names)),
    )


OWNERS = _owners_statement()  # built once


Trusted = Callable[[str], bool]  # an identifier our own tools showed this conversation: the customer's own


def _looked_up(text: str, trusted: Trusted | None = None) -> tuple[set[str], dict[str, bool]]:
    """The emails and id-like tokens of `text` that the store is asked about. A bare number that
    nothing calls an order ("9:00-18:00", "in 2026") is never looked up, so existing and unknown
    ones read alike; nor is what our tools showed this conversation (`trusted`): they read only the
    customer's own rows."""
    found = EMAIL.findall(text) if "@" in text else []
    emails = {e for e in found if trusted is None or not trusted(e)}
    tokens = {
        t: near
        for t, near in _tokens(EMAIL.sub(" ", text) if found else text).items()
        if (near or _has_letters(t)) and (trusted is None or not trusted(t))
    }
    return emails, tokens


def needs_lookup(text: str, trusted: Trusted | None = None) -> bool:
    """Whether sanitizing `text` reads the store (the guard opens a read transaction only then)."""
    emails, tokens = _looked_up(cap(text), trusted)
    return bool(emails or tokens)


async def sanitize(
    text: str,
    *,
    store: Store | AsyncSession,
    customer_id: str | None,
    order_pattern: str | None = None,
    trusted: Trusted | None = None,
) -> Sanitized:
    """`store` may be a session in the caller's read transaction."""
    text = cap(text)
    if looks_like_exception(text):
        return Sanitized(GENERIC_FALLBACK, replaced=True)
    withheld: list[str] = []
    text = _withhold_credentials(text, withheld)
    emails, tokens = _looked_up(text, trusted)
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

    out = EMAIL.sub(swap_email, text) if any(k == "email" for k in foreign.values()) else text
    out = TOKEN.sub(swap_id, out) if foreign else out
    codes = INTERNAL_CODE.findall(out) if "_" in out else []
    if codes:  # the code's words out; the layout (line breaks, list markers) stays
        withheld.extend(codes)
        out = INTERNAL_CODE.sub("", out)
        out = re.sub(r"\([ \t]{0,20}\)|\[[ \t]{0,20}\]", "", out)
        out = re.sub(r"(?<=\S)[ \t]{2,}", " ", out)
        out = re.sub(r"[ \t]{1,20}([.,;:!?])", r"\1", out)
        out = re.sub(r"(^|\n)[ \t]{0,20}:[ \t]{0,20}", r"\1", out).strip()
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


_PIECE = re.compile(r"(?<=[.!?])[ \t]+|[ \t]*\n")  # a break between sentences: within a line, or a line end
SEPARATOR = re.compile(r"\s*")


def split_sentences(text: str) -> list[str]:
    return [s for s in SENTENCE_BREAK.split(text) if s.strip()]


def pieces(text: str) -> list[tuple[str, str]]:
    """The text as (sentence, the whitespace after it): joined back in order it is the text again,
    line breaks, blank lines, list items and table rows included. (A new list each call: callers
    replace pieces in it.)"""
    return list(_pieces(text))


@functools.lru_cache(maxsize=256)
def _pieces(text: str) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    at = 0
    for m in _PIECE.finditer(text):
        end = m.end()
        while end < len(text) and text[end] in " \t\n":  # a run of breaks belongs to one separator
            end += 1
        if m.start() < at:
            continue
        out.append((text[at : m.start()], text[m.start() : end]))
        at = end
    if at < len(text):
        out.append((text[at:], ""))
    return tuple(out)


def rejoin(parts: list[tuple[str, str]]) -> str:
    """Pieces back into text; a dropped sentence (empty) takes its separator with it, so no blank
    line or double space is left where it was."""
    out = []
    for sentence, sep in parts:
        if sentence.strip():
            out.append(sentence + sep)
        elif out and "\n" in sep and not out[-1].endswith("\n"):
            out[-1] = out[-1].rstrip(" \t") + "\n"
    return "".join(out).strip()


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


def plain(name: str, *, tools: Iterable[str] = ()) -> str | None:
    """What a snake_case word becomes for a customer: a tool's name "our system", a field's name its
    words ("payment_history" -> "payment history"); an identifier (it has a digit: "gift_card_7480005",
    "anya_garcia_5901") stays, it is the customer's own."""
    if any(ch.isdigit() for ch in name):
        return None
    if name in tools:
        return "our system"
    return name.replace("_", " ")


_TICKED = re.compile(r"`([^`\n]{1,80})`")


def _redact(sentence: str, tools: frozenset[str], found: list[str]) -> str:
    """Internal names in a sentence replaced by plain words; identifiers and everything else kept."""

    def swap(m: re.Match[str]) -> str:
        word = m.group(0)
        if EMAIL.fullmatch(word) or URL.match(word):
            return word
        said = plain(word, tools=tools)
        if said is None:
            return word
        found.append(word)
        return said

    out = _TICKED.sub(
        lambda m: m.group(1) if SNAKE.fullmatch(m.group(1)) and plain(m.group(1), tools=tools) else m.group(0), sentence
    )
    protected = [(m.start(), m.end()) for m in (*EMAIL.finditer(out), *URL.finditer(out))]
    return SNAKE.sub(lambda m: m.group(0) if any(a <= m.start() < b for a, b in protected) else swap(m), out)


_TALK_WORDS = ("customer", "do not", "tool ", "session note", "system prompt", "_id")


def _model_talk(text: str, lower: str) -> bool:
    return any(w in lower for w in _TALK_WORDS) and bool(MODEL_TALK.search(text))


def strip_tool_text(text: str, *, notes: Iterable[str] = (), tools: Iterable[str] = ()) -> ToolText:
    """A model's text with its tool traffic out and its layout kept: a JSON object or a `code` field
    makes the whole reply unusable; a tool or field name becomes plain words (an identifier stays);
    a sentence repeating an internal note, or telling the model's own instructions, is dropped, unless
    it is a question (a question is never dropped)."""
    text = cap(text)
    lower = text.lower()
    if JSON_KEY.search(text) or ("code" in lower and CODE_FIELD.search(text)):
        return ToolText("", ("json or code field",), unusable=True)
    fragments = note_fragments(notes)
    talk = _model_talk(text, lower)
    names_in = "_" in text and any(not has_digit(w) for w in SNAKE.findall(text))
    if not (fragments or talk or names_in):
        return ToolText(text)  # nothing to look at sentence by sentence
    names = frozenset(tools)
    found: list[str] = []
    parts = pieces(text)
    for i, (sentence, sep) in enumerate(parts):
        plain_text = URL.sub(" ", EMAIL.sub(" ", sentence)) if "@" in sentence or "://" in sentence else sentence
        question = sentence.rstrip(" *_)").endswith("?")
        if not question and talk and MODEL_TALK.search(plain_text):
            found.append("model-facing wording")
            parts[i] = ("", sep)
        elif not question and fragments and any(f in _norm(sentence) for f in fragments):
            found.append("internal note")
            parts[i] = ("", sep)
        elif names_in and "_" in plain_text and SNAKE.search(plain_text):
            parts[i] = (_redact(sentence, names, found), sep)
    if not found:
        return ToolText(text)
    left = rejoin(parts)
    return ToolText(left, tuple(found), unusable=not left)
