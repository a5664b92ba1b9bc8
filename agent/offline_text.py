"""How the offline model reads a customer's message: order numbers as people type them, common
typos, the language, anger, and what each part of the message asks for. Pure text, no I/O.

Order numbers: whatever the shop's format (`ORD-8842`, `#1001`, `#W7678072`, `SO-2026-000123`),
typed with or without the hyphen, with spaces or a `#` (`ORD8842`, `ord 8842`, `#8842`). A bare
number counts only after `#` or an order word, or as the whole answer to "which order?". The
tools resolve what is typed; nothing here knows which orders exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agent.verdict_patterns import asks_for_person
from tools.sanitizer import NOT_AN_ID, has_digit

MAX_TEXT = 4000
TOKEN = re.compile(r"(?<![\w#-])#?[A-Za-z0-9][A-Za-z0-9-]{0,30}(?![\w-])")
WORD = re.compile(r"[A-Za-zÀ-ÿ']{1,40}")
ORDER_WORDS = {
    "order", "orders", "no", "nr", "number", "num", "pedido", "orden", "número", "numero", "bestellung",
    "bestellnummer", "auftrag", "nummer", "commande",
}  # fmt: skip
COMMON = {  # short words that are never an order-number prefix ("for 8842")
    "a", "an", "and", "are", "at", "by", "for", "from", "in", "is", "it", "its", "my", "of", "on", "or", "the",
    "to", "was", "with", "me", "i", "im", "y", "el", "la", "mi", "de", "en", "es", "und", "die", "der", "das",
    "ist", "mit", "von", "am", "um", "ich", "mein", "meine", "bis", "vor", "days", "day", "usd", "eur",
    "will", "when", "has", "have", "had", "did", "does", "got", "get", "not", "yet", "still", "but", "so",
    "about", "re", "que", "por", "para", "wo", "wie", "wann",
}  # fmt: skip
MEASURE = re.compile(
    r"\s?(?:cm|mm|m|km|kg|g|lbs?|pounds?|oz|ml|l|in|inch(?:es)?|ft|feet|%|years?|yrs?|y/o|gb|tb|hours?|hrs?|days?"
    r"|minutes?|mins?|percent|sq|pcs?|pieces?)\b",
    re.IGNORECASE,
)
YEAR_WORDS = {"in", "since", "from", "of", "year", "back", "until", "by", "en", "desde", "del", "seit", "im", "depuis"}
DASHES = str.maketrans(dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d", "-"))
DATE_LIKE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}-\d{1,2}(?:-\d{2,4})?")

VOCABULARY = {
    "refund", "refunds", "refunded", "broken", "damaged", "defective", "cracked", "faulty", "leaking",
    "blender", "kettle", "espresso", "machine", "headphones", "delivered", "delivery", "arrived", "shipping",
    "shipped", "order", "orders", "status", "where", "return", "returned", "money", "working", "package",
    "parcel", "tracking", "policy", "hours", "weekend", "received", "receive", "replacement", "cancel",
    "arrive", "deliver", "returns", "ships", "damage",
    "reembolso", "pedido", "devolución", "bestellung", "erstattung", "rückerstattung", "kaputt",
}  # fmt: skip
KEEP = {"were", "here", "there", "word", "work", "worked", "order", "older", "whole", "shop", "ship", "hour"}

REFUND = re.compile(
    r"\b(refund\w*|money back|return(?:ing)?|broken|broke|damaged|defective|cracked|faulty|leak\w*|"
    r"doesn'?t work|not working|stopped working|"
    r"reembols\w*|devoluci[oó]n|devolver|rot[oa]|da[nñ]ad[oa]|defectuos[oa]|no funciona|mi dinero|"
    r"r[uü]ckerstattung|erstattung|erstatten|geld zur[uü]ck|kaputt|besch[aä]digt|defekt|funktioniert nicht)\b",
    re.IGNORECASE,
)
STATUS = re.compile(
    r"\b(status|where(?:'s| is) my refund|has my refund|refund (?:go|come)|check (?:on )?my refund|"
    r"estado|d[oó]nde est[aá] mi reembolso|wo bleibt|stand meiner)\b",
    re.IGNORECASE,
)
ORDER_Q = re.compile(
    r"\b(where(?:'s|s| is)?|track\w*|deliver\w*|ship\w*|arriv\w*|when will|what did i order|"
    r"d[oó]nde est[aá]|lleg\w*|env[ií]o|entrega\w*|wo ist|wann kommt|lieferung|geliefert|angekommen|versand\w*)\b",
    re.IGNORECASE,
)
ORDER_Q_STRONG = re.compile(
    r"\b(?:where(?:'s|s| is)? my|never (?:came|arrived)|has(?:n'?t| not) (?:arrived|come)|"
    r"did(?:n'?t| not) (?:arrive|come)|not (?:arrived|received)|still waiting|"
    r"d[oó]nde est[aá] mi|no (?:ha )?llegado|wo (?:ist|bleibt) mein|nicht angekommen|noch nicht da)\b",
    re.IGNORECASE,
)
ORDER_NOUN = re.compile(r"\b(orders?|pedidos?|bestellung\w*|package|parcel|paket|purchase|compra)\b", re.IGNORECASE)
REFUND_WORD = re.compile(r"\b(refund\w*|reembols\w*|erstattung|r[uü]ckerstattung)\b", re.IGNORECASE)
CANT = [
    (
        re.compile(r"\bcancel\w{0,3}\s+(?:my\s+|the\s+|this\s+|an?\s+)?(?:order|purchase|subscription)\b", re.I),
        "I can't cancel orders from here; if you'd like, ask for a person and a member of our team will help.",
    ),
    (
        re.compile(r"\b(?:exchange|swap|replacement|replace it|new one)\b", re.I),
        "I can't arrange exchanges or replacements. I can refund a delivered order within the return window.",
    ),
    (
        re.compile(r"\b(?:discount|coupon|voucher|promo(?:tion)? code|price match)\b", re.I),
        "I can't give discounts, coupons or price matches.",
    ),
    (re.compile(r"\b(?:invoice|receipt)\b", re.I), "I can't send invoices or receipts from here."),
    (
        re.compile(r"\b(?:change|reset|update)\s+(?:my\s+)?(?:password|e-?mail|account)\b|\bdelete my account\b", re.I),
        "I can't change account details from here.",
    ),
]
ANGER = re.compile(
    r"\b(?:ridiculous|furious|angry|annoyed|frustrat\w{0,5}|terrible|awful|horrible|worst|useless|disgust\w{0,5}|"
    r"fed up|sick of|joke|rubbish|pathetic|incompetent|wtf|enfadad[oa]|hart[oa]|furios[oa]|p[eé]sim[oa]|"
    r"verg[uü]enza|w[uü]tend|sauer|frechheit|unversch[aä]mt|katastrophe|[aä]rgerlich)\b|!{2,}",
    re.IGNORECASE,
)
SPANISH = re.compile(
    r"\b(?:hola|gracias|reembolso|devoluci[oó]n|devolver|pedido|d[oó]nde|roto|rota|quiero|lleg[oó]|estado|"
    r"env[ií]o|dinero|por favor|todav[ií]a|est[aá])\b",
    re.IGNORECASE,
)
GERMAN = re.compile(
    r"\b(?:hallo|danke|bitte|r[uü]ckerstattung|erstattung|bestellung|kaputt|besch[aä]digt|geld|zur[uü]ck|"
    r"angekommen|lieferung|m[oö]chte|meine|ist|wo|noch|nicht|wurde)\b",
    re.IGNORECASE,
)
ENGLISH_ONLY = {
    "es": "(Lo siento, por ahora solo puedo responder en inglés.)",
    "de": "(Entschuldigung, ich kann im Moment nur auf Englisch antworten.)",
}
PART_BREAK = re.compile(  # not after "order no." or "Nr.": the number follows
    r"(?<=[?!.])(?<!\bno\.)(?<!\bnr\.)(?<!núm\.)\s+|\s*;\s*"
    r"|\b(?:also|plus|and also|además|y también|außerdem|und noch)\b",
    re.I,
)
CLAUSE_BREAK = re.compile(r",\s*|\s+(?:and|but|y|pero|und|aber)\s+", re.IGNORECASE)
WHO = re.compile(  # a question about the bot itself (small talk, not the help center's)
    r"\b(who are you|are you (?:a |an )?(?:bot|human|real|ai|claude|robot|person)|is this (?:a |an )?(?:bot|ai|human)"
    r"|am i (?:talking|speaking|chatting) (?:to|with)|eres (?:un )?(?:bot|humano)|bist du ein|sind sie ein)\b",
    re.IGNORECASE,
)
GENERAL = re.compile(
    r"\b(hours|open|opening|available|weekend|policy|return window|how long|how many days|shipping|delivery time|"
    r"change (?:my )?address|who are you|are you|is this a bot)\b",
    re.IGNORECASE,
)


def order_refs(text: str, *, answering: bool = False) -> list[str]:
    """The order numbers in a message, compacted (`ord 8842` -> `ORD8842`, `#1001` -> `#1001`). An
    amount ("$20"), a measure or size ("178 cm", "12th"), a date or a year ("in 2026") is none."""
    text = text[:MAX_TEXT].translate(DASHES)
    matches = list(TOKEN.finditer(text))
    out: list[str] = []
    for i, m in enumerate(matches):
        t = m.group(0)
        bare = t.lstrip("#")
        if not has_digit(bare) or sum(ch.isdigit() for ch in bare) < 3 or _not_an_order(text, m, bare):
            continue
        prev = matches[i - 1].group(0).lower() if i else ""
        gap = text[matches[i - 1].end() : m.start()] if i else ""
        if i and _a_year(bare, prev) and not t.startswith("#"):
            continue
        letters = any(ch.isalpha() for ch in bare)
        prefix = (
            not letters
            and not t.startswith("#")
            and prev.isalpha()
            and (len(prev) >= 2 or matches[i - 1].group(0).isupper())  # "I'm 178": a lone "m" is no prefix
            and len(prev) <= 4
            and text[max(0, matches[i - 1].start() - 1) : matches[i - 1].start()] not in ("'", "’")
            and prev not in COMMON
            and prev not in ORDER_WORDS
        )
        if letters or (not prefix and (t.startswith("#") or prev in ORDER_WORDS or (answering and _bare(matches, m)))):
            out.append(t.upper())
        elif prefix and gap.strip() == "":
            out.append((prev + bare).upper())  # "ord 8842", "so 2026-000123"
    return list(dict.fromkeys(out))


def _bare(matches: list[re.Match[str]], m: re.Match[str]) -> bool:
    """The message is just this number, give or take "it's" or "order": an answer to "which order?"."""
    others = [x.group(0).lower() for x in matches if x is not m]
    return len(others) <= 3 and all(o in COMMON or o in ORDER_WORDS or o in ("it's", "its", "s") for o in others)


def _not_an_order(text: str, m: re.Match[str], bare: str) -> bool:
    """A date, an amount ("$20", "20 €", "20.00"), a measure or an ordinal ("178 cm", "178cm", "12th")."""
    if DATE_LIKE.fullmatch(bare) or NOT_AN_ID.fullmatch(bare):
        return True
    before = text[max(0, m.start() - 2) : m.start()]
    if re.search(r"[$€£]\s?$", before):
        return True
    if not bare.isdigit():
        return False
    after = text[m.end() : m.end() + 12]
    return bool(re.match(r"[.,]\d|\s?(?:€|\$|eur|usd|dollars?|euros?)\b", after, re.I) or MEASURE.match(after))


def _a_year(bare: str, prev: str) -> bool:
    """A year after "in", "since", "from" … (not after an order word: "order 2024" may be an order)."""
    return len(bare) == 4 and bare[:2] in ("19", "20") and prev in YEAR_WORDS


def _close(a: str, b: str) -> bool:
    """Damerau-Levenshtein distance exactly one (a letter missing, extra, wrong or swapped)."""
    if a == b or abs(len(a) - len(b)) > 1 or a[0] != b[0]:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long[i]:
        i += 1
    return short[i:] == long[i + 1 :]


def fix_typos(text: str) -> str:
    """`refnd` -> `refund`, `blendr` -> `blender`, `brokn` -> `broken`: one-letter slips in the words
    the intents listen for, when exactly one such word is that close."""

    def fix(m: re.Match[str]) -> str:
        word = m.group(0)
        low = word.lower()
        if len(low) < 4 or low in VOCABULARY or low in KEEP:
            return word
        near = [v for v in VOCABULARY if _close(low, v)]
        return near[0] if len(near) == 1 else word

    return WORD.sub(fix, text[:MAX_TEXT].translate(DASHES))


def language(text: str) -> str | None:
    """es or de when the message is clearly Spanish or German; None for English (or unsure)."""
    es, de = len(SPANISH.findall(text[:MAX_TEXT])), len(GERMAN.findall(text[:MAX_TEXT]))
    if es >= 2 and es > de:
        return "es"
    if de >= 2 and de > es:
        return "de"
    return None


def angry(text: str) -> bool:
    caps = [w for w in re.findall(r"[A-Za-z]{3,20}", text[:MAX_TEXT]) if w.isupper() and w not in ("ORD", "USB")]
    return bool(ANGER.search(text[:MAX_TEXT])) or len(caps) >= 3


@dataclass
class Task:
    intent: str  # refund | status | order | chat | cant
    orders: list[str] = field(default_factory=list)
    text: str = ""


def _intent_of(text: str) -> str | None:
    refs = order_refs(text)
    if not refs and GENERAL.search(text):
        return None  # a general question, even if it mentions returns or delivery
    if STATUS.search(text) and REFUND_WORD.search(text):
        return "status"
    if REFUND.search(text):
        return "refund"
    if ORDER_Q_STRONG.search(text) or (ORDER_Q.search(text) and (ORDER_NOUN.search(text) or refs)):
        return "order"
    return None


def tasks(text: str, *, carried: str | None, answering: bool) -> list[Task]:
    """What each part of a message asks: "refund ORD-8842, and where is ORD-9120?" is two tasks.
    `carried` is the intent of the question we asked last ("which order?"), for a bare answer."""
    out: list[Task] = []
    for part in (p for p in PART_BREAK.split(text[:MAX_TEXT]) if p and p.strip(" ,.!?")):
        if asks_for_person(part):
            continue  # the person asked for is the classifier's verdict; the rest is ours to answer
        refs = order_refs(part, answering=answering)
        cant = [reply for pattern, reply in CANT if pattern.search(part)]
        if cant:
            out.append(Task("cant", [], cant[0]))
        intent = _intent_of(part)
        if refs and (intent is None or intent == "order") and carried and not ORDER_Q.search(part):
            intent = carried  # "ORD-8842" answering our "which order?"
        if intent is None and refs:
            intent = "order"
        if intent is None:
            if not cant:
                out.append(Task("chat", [], part.strip()))
            continue
        out += _split_by_clause(part, intent, refs)
    return _merge(out)


def _split_by_clause(part: str, intent: str, refs: list[str]) -> list[Task]:
    """Orders in one part may ask different things: "ORD-8842 broke, and ORD-9120 hasn't arrived"."""
    if len(refs) < 2:
        return [Task(intent, refs, part.strip())]
    by_intent: dict[str, list[str]] = {}
    for clause in CLAUSE_BREAK.split(part):
        for ref in order_refs(clause):
            if ref in refs:
                by_intent.setdefault(_intent_of(clause) or intent, []).append(ref)
    placed = {r for rs in by_intent.values() for r in rs}
    by_intent.setdefault(intent, []).extend(r for r in refs if r not in placed)
    return [Task(i, list(dict.fromkeys(rs)), part.strip()) for i, rs in by_intent.items() if rs]


def _merge(found: list[Task]) -> list[Task]:
    """One task per intent and order; a greeting or filler part next to real questions is dropped."""
    out: list[Task] = []
    for t in found:
        same = next((o for o in out if o.intent == t.intent and t.intent not in ("chat", "cant")), None)
        if same is not None:
            same.orders += [r for r in t.orders if r not in same.orders]
        elif t.intent != "cant" or t.text not in [o.text for o in out]:
            out.append(t)
    real = [t for t in out if t.intent != "chat" or GENERAL.search(t.text)]
    return real or out[:1]
