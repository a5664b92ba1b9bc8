"""The words of the claims check (agent.claims): what counts as a claim, in English, Spanish and German.

Pure patterns and the small parsers for amounts and dates. Every pattern is linear-time: bounded
repeats and gaps (`{0,4}?`), alternatives of literal words, no nested unbounded quantifiers, and
they only ever see one sentence of at most 2,000 characters.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation

from storage.states import LIVE_REFUNDS

FLAGS = re.IGNORECASE
GAP = r"(?:\s+\S+){0,4}?"  # up to four words in between (lazy, bounded)
WORDS = r"(?:\w+\s+){0,2}?"  # up to two words
PEOPLE = (
    r"(?:team|colleagues?|specialists?|supervisors?|managers?|person|people|humans?|agents?|staff|someone|somebody)"
)


def rx(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(alternatives), FLAGS)


# --- scope: negation, future, condition ----------------------------------------------------------------
NEGATION = rx(
    r"\b(?:not|no|never|nothing|none|nor|cannot|yet to|nicht|nichts|kein\w{0,3}|nie|niemals)\b",
    r"\b(?:nunca|nada|ning[uú]n\w{0,2}|jam[aá]s)\b",
    r"n['’]t\b",
)
# a modal right before the verb: "will be credited", "can be refunded", "wird erstattet"
MODAL = rx(
    r"\b(?:will|would|shall|should|could|can|may|might|going to|to be|be)\b",
    r"\b(?:puede|podr[aá]|podr[ií]a|va a|vamos a)\b",
    r"\b(?:werden|wird|w(?:ü|ue)rden?|kann|k[oö]nnen)\b",
    r"['’](?:ll|d)\b",
)
# a condition anywhere in the clause: "once it has been processed", "sobald Sie bestätigen"
CONDITION = rx(
    r"\b(?:once|if|when|after|as soon as|until|unless|before|in case)\b",
    r"\b(?:cuando|si|una vez|en cuanto|hasta que)\b",
    r"\b(?:sobald|wenn|falls|nachdem|bis)\b",
)
# not a statement of fact: wishes, eligibility, requests ("eligible to be refunded", "you'd like it refunded")
NONFACT = rx(r"\b(?:like|want|wants|wish|eligible|able|need|needs|request|requested|asked|ask|whether|hope|expect)\b")
PROGRESSIVE = rx(r"\b(?:being|siendo|gerade)\b")
CONDITIONAL_START = rx(
    r"^\W{0,3}(?:if|once|when|as soon as|after|should you|in case|si|cuando|una vez|en cuanto|wenn|falls|sobald)\b"
)
CLAUSE_BREAK = rx(r"[,;:]\s", r"\s(?:but|pero|aber|however|sin embargo|jedoch|and|y|und)\s", r"\s[-–—]\s")

# --- refunds -------------------------------------------------------------------------------------------
REFUND_WORDS = (
    r"\b(?:refund\w{0,4}|reimburs\w{0,6}|money|credit\w{0,4}|reembols\w{0,4}|devoluci[oó]n|dinero|importe|"
    r"erstatt\w{0,4}|r[uü]ckerstatt\w{0,4}|gutschrift|geld|betrag)\b"
)
REFUND_WORD = rx(REFUND_WORDS)
REFUND_CONTEXT = rx(REFUND_WORDS, r"[$€£]", r"\d[.,]\d{2}\b")
_DONE = r"(?:issued|processed|sent|completed|paid|transferred|returned|credited)"
_AUX = r"(?:has|have|had|was|were|is|are|been|got|just|already|successfully)"
# money moved: (pattern, what else the sentence needs: None, "words" (a refund word), "any" (or an amount))
MOVED: list[tuple[re.Pattern[str], str | None]] = [
    (rx(r"\b(?:refunded|reimbursed|credited)\b"), None),
    (rx(rf"\b{_AUX}\s+{WORDS}{_DONE}\b", rf"['’]ve\s+{WORDS}{_DONE}\b"), "words"),
    (rx(r"\b(?:I|we)\s+(?:just\s+|already\s+)?(?:issued|processed|sent|completed|paid)\b"), "words"),
    (rx(r"\b(?:went|gone|come) through\b"), "words"),
    (rx(r"\b(?:got|have|received)\s+(?:your\s+|the\s+)?money back\b"), None),
    (rx(r"\b(?:reembolsad[oa]s?|abonad[oa]s?|ingresad[oa]s?|reembolsamos|reembols[eé]|devolvimos)\b"), None),
    (
        rx(
            rf"\b(?:he|ha|has|hemos|han|fue|fueron|sido|ya)\s+{WORDS}"
            r"(?:devuelt[oa]s?|transferid[oa]s?|enviad[oa]s?|procesad[oa]s?|emitid[oa]s?|realizad[oa]s?|completad[oa]s?)\b"
        ),
        "any",
    ),
    (
        rx(
            r"\b(?:erstattet|zur[uü]ckerstattet|r[uü]ckerstattet|gutgeschrieben|zur[uü]ck[uü]berwiesen)\b",
            r"\b(?:ausgezahlt|zur[uü]ckgezahlt)\b",
        ),
        None,
    ),
    (
        rx(
            rf"\b(?:wurde|wurden|ist|sind|haben|habe|hat)\b{GAP}\s+"
            r"(?:bearbeitet|veranlasst|ausgef[uü]hrt|abgeschlossen|durchgef[uü]hrt|angewiesen|[uü]berwiesen|erfolgt)\b"
        ),
        "words",
    ),
]
# what was refunded, when a sentence says so: "Refunded the headphones", "I've refunded your kettle"
OBJECT = rx(r"\b(?:refunded|reimbursed|credited)\s+(?:you\s+for\s+)?(?:the|your)\s+(?:\w+\s+)?([a-z]{3,30})\b")
GENERIC_OBJECTS = {
    "order", "orders", "purchase", "money", "amount", "payment", "item", "items", "refund", "full", "total",
    "card", "account", "balance", "price", "cost", "charge", "difference", "rest", "remainder", "part",
}  # fmt: skip
STATUS_LINE = rx(r"\b(?:refund|reembolso|erstattung)(?:\s+status|\s+estado)?\s{0,3}:\s{0,3}([A-Za-zÀ-ÿ ]{3,30})")
# refund states other than "moved" (checked only in sentences about refunds or money)
STATES: list[tuple[str, re.Pattern[str]]] = [
    (
        "awaiting",
        rx(
            r"\b(?:waiting|awaiting|waits|ready)\s+(?:for\s+)?(?:your\s+|the\s+)?confirm\w{0,6}",
            r"\besperando\s+(?:su|tu)\s+confirmaci[oó]n",
            r"\bpendiente de\s+(?:su\s+|tu\s+)?confirmaci[oó]n",
            r"\bwartet\s+auf\s+(?:Ihre|deine|die)\s+Best[aä]tigung",
        ),
    ),
    (
        "live",
        rx(
            r"\bprepared\s+(?:a|your|the)\s+(?:full\s+|partial\s+)?refund",
            rf"\brefund\b{GAP}\s+(?:is|has been)\s+(?:prepared|set up|created|ready)\b",
        ),
    ),
    (
        "approval",
        rx(
            rf"\b(?:pending|awaiting|waiting for|needs?|requires?|under)\s+(?:a\s+)?{WORDS}(?:approval|review)\b",
            r"\bbeing reviewed\b",
            r"\bpendiente de aprobaci[oó]n",
            r"\ben revisi[oó]n\b",
            r"\bwartet auf (?:die )?Freigabe",
            r"\bin Pr[uü]fung\b",
        ),
    ),
    (
        "processing",
        rx(r"\bbeing processed\b|\bin progress\b", r"\ben proceso\b|\bse est[aá] procesando\b|\bin Bearbeitung\b"),
    ),
    ("denied", rx(r"\b(?:denied|declined|rejected|not approved)\b|\bdenegad[oa]\b|\brechazad[oa]\b|\babgelehnt\b")),
    ("cancelled", rx(r"\bcancel{1,2}ed\b|\bcancelad[oa]\b|\banulad[oa]\b|\bstorniert\b")),
    ("expired", rx(r"\bexpired\b|\bcaducad[oa]\b|\bexpirad[oa]\b|\babgelaufen\b")),
    ("failed", rx(r"\b(?:failed|delayed)\b|\bfallid[oa]\b|\bfehlgeschlagen\b")),
]
NEGATION_IMMUNE = {"denied"}  # "not approved" is a state, not a negation
REFUND_STATUSES: dict[str, set[str]] = {
    "moved": {"processed"},
    "live": set(LIVE_REFUNDS),
    "awaiting": {"awaiting_confirmation"},
    "approval": {"pending_approval"},
    "processing": {"processing"},
    "pending": {"awaiting_confirmation", "pending_approval", "processing"},
    "denied": {"denied"},
    "cancelled": {"cancelled"},
    "expired": {"expired"},
    "failed": {"failed"},
}
STATUS_WORDS: list[tuple[tuple[str, ...], str]] = [  # "Refund status: …" -> the state it names
    (("approval", "review"), "approval"),
    (("confirm",), "awaiting"),
    (("processing", "progress", "proceso", "bearbeitung"), "processing"),
    (("processed", "issued", "complete", "done", "sent", "paid", "procesado", "abgeschlossen", "erstattet"), "moved"),
    (("denied", "rejected", "declined", "not approved", "denegado", "abgelehnt"), "denied"),
    (("cancel",), "cancelled"),
    (("expired",), "expired"),
    (("failed",), "failed"),
]

# --- people --------------------------------------------------------------------------------------------
HANDOFF: list[re.Pattern[str]] = [
    rx(
        r"\b(?:passed|handed|forwarded|escalated|referred|sent|flagged|raised|transferred|assigned)\b"
        rf"(?:\s+[\w'’]+){{0,4}}?\s+to\s+(?:\w+\s+){{0,3}}?{PEOPLE}\b"
    ),
    rx(
        r"\b(?:escalated|notified|alerted|informed|contacted|asked|looped in|brought in|reached out to)\b"
        rf"(?:\s+[\w'’]+){{0,4}}?\s+{PEOPLE}\b"
    ),
    rx(r"\b(?:I|we)(?:['’]ve| have)?\s+escalated\b", r"\bhas been escalated\b"),
    rx(
        r"\b(?:team|colleagues?|specialists?|supervisors?|managers?|person|humans?|agents?|representatives?|staff"
        r"|someone|somebody|member)\b(?:\s+[\w'’]+){0,3}?\s+(?:will|['’]ll|is going to|are going to|shall)\s+"
        rf"{WORDS}(?:call|phone|ring|contact|reach out|follow up|get back|reply|respond|be in touch|get in touch"
        r"|email|look into|review|join|help|take over|be with you)\b"
    ),
    rx(
        r"\b(?:opened|created|raised|filed|logged)\s+(?:a\s+|an\s+|your\s+)?(?:\w+\s+)?(?:ticket|case)\b",
        r"\bticket\b(?:\s+\S+){0,3}?\s+(?:has been|was|is)\s+(?:opened|created|raised|logged)\b",
    ),
    rx(
        r"\b(?:he|hemos|ha)\s+(?:pasado|trasladado|remitido|enviado|escalado|derivado|transferido)\b"
        rf"{GAP}\s+(?:al?|con)\s+(?:\S+\s+){{0,2}}?"
        r"(?:equipo|compa[nñ]er[oa]s?|agentes?|responsables?|supervisor\w{0,2}|especialistas?|persona)\b"
    ),
    rx(
        r"\b(?:compa[nñ]er[oa]|agente|persona|miembro|responsable|supervisor\w{0,2}|especialista|equipo)\b"
        r"(?:\s+\S+){0,3}?\s+(?:le\s+|te\s+|les\s+|se\s+)?"
        r"(?:llamar[aá]|contactar[aá]|escribir[aá]|responder[aá]|pondr[aá] en contacto|atender[aá])\b"
    ),
    rx(r"\b(?:he|hemos)\s+(?:abierto|creado)\s+(?:un|una)\s+(?:ticket|incidencia|caso)\b"),
    rx(
        r"\b(?:an|zu)\s+(?:\S+\s+){0,2}?(?:Team|Kolleg\w{0,4}|Mitarbeiter\w{0,4}|Support\w{0,6})\s+"
        r"weiter(?:geleitet|gegeben)\b"
    ),
    rx(
        r"\b(?:Kolleg\w{0,4}|Mitarbeiter\w{0,4}|Mensch|Team)\b(?:\s+\S+){0,3}?\s+wird\s+(?:\S+\s+){0,3}?"
        r"(?:anrufen|kontaktieren|melden|antworten|zur[uü]ckrufen|schreiben|k[uü]mmern)\b"
    ),
    rx(r"\bTicket\b(?:\s+\S+){0,3}?\s+(?:er[oö]ffnet|erstellt|angelegt)\b"),
]
CALL = rx(
    r"\b(?:call|phone|ring)\s+you\b",
    r"\b(?:le|te)\s+llamar[aá]\b",
    r"\b(?:Sie|dich)\s+(?:\S+\s+){0,2}?(?:anrufen|zur[uü]ckrufen)\b",
)

# --- orders --------------------------------------------------------------------------------------------
# (state, pattern, the state it becomes when negated, or None: a negated one claims nothing)
ORDER_STATES: list[tuple[str, re.Pattern[str], str | None]] = [
    (
        "delivered",
        rx(
            r"\b(?:was|were|has been|have been|had been|got|is|been)\s+(?:\w+\s+)?delivered\b",
            r"\bdelivered\s+(?:on|yesterday|today|last)\b",
            r"\b(?:fue|ha sido|se)\s+entregad[oa]\b|\bse entreg[oó]\b",
            rf"\b(?:wurde|ist)\b{GAP}\s+(?:zugestellt|geliefert)\b",
        ),
        "not_delivered",
    ),
    (
        "not_delivered",
        rx(
            r"\b(?:hasn['’]t|has not|wasn['’]t|was not|isn['’]t|is not|not)\s+(?:yet\s+)?(?:been\s+)?delivered\b",
            r"\bhas(?:n['’]t| not) arrived\b",
            r"\bnoch nicht (?:zugestellt|geliefert|angekommen)\b",
            rf"\btodav[ií]a no\b{GAP}\s+(?:llegado|entregad[oa])\b",
        ),
        None,
    ),
    (
        "shipped",
        rx(
            r"\b(?:has|have|was|were|had)\s+(?:been\s+)?(?:shipped|dispatched|sent out)\b",
            r"\b(?:fue|ha sido)\s+enviad[oa]\b",
            rf"\bwurde\b{GAP}\s+(?:versandt|verschickt|versendet)\b",
        ),
        "not_shipped",
    ),
    (
        "in_transit",
        rx(
            r"\b(?:is|it['’]s)\s+(?:now\s+|still\s+)?(?:on (?:its|the) way|in transit|out for delivery)\b",
            r"\best[aá] en camino\b|\ben tr[aá]nsito\b",
            r"\bist\s+(?:\S+\s+){0,2}?unterwegs\b",
        ),
        None,
    ),
    ("not_shipped", rx(r"\b(?:hasn['’]t|has not|not)\s+(?:yet\s+)?(?:been\s+)?(?:shipped|dispatched)\b"), None),
    (
        "future_delivery",
        rx(
            r"\bwill (?:be delivered|arrive|be shipped)\b|\bshould arrive\b|\bllegar[aá]\b",
            rf"\bwird\b{GAP}\s+(?:geliefert|zugestellt|ankommen)\b",
        ),
        None,
    ),
    ("placed", rx(r"\b(?:placed|ordered)\s+(?:it\s+)?on\b|\bbestellt am\b|\brealizad[oa] el\b"), None),
]
ORDER_STATUSES: dict[str, set[str]] = {
    "delivered": {"delivered"},
    "not_delivered": {"pending", "shipped", "cancelled"},
    "shipped": {"shipped", "delivered"},
    "in_transit": {"shipped"},
    "not_shipped": {"pending", "cancelled"},
    "future_delivery": {"pending", "shipped"},
}
ITEM_STOP = {"with", "from", "pro", "set", "pack", "edition", "model", "the", "and", "for", "new", "plus", "mini"}

# --- amounts and dates ---------------------------------------------------------------------------------
MONEY = rx(
    r"(?P<pre>[$€£])\s?(?P<a>\d(?:[\d.,]{0,13}\d)?)",
    r"(?<![\w.,-])(?P<b>\d(?:[\d.,]{0,13}\d)?)\s?(?P<post>[$€£]|USD|EUR|GBP|dollars?|euros?)(?![A-Za-z])",
)
CURRENCY = {"$": "USD", "€": "EUR", "£": "GBP", "usd": "USD", "eur": "EUR", "gbp": "GBP"}
CURRENCY |= {"dollar": "USD", "dollars": "USD", "euro": "EUR", "euros": "EUR"}
_MONTH_NAMES = [
    "january jan enero januar",
    "february feb febrero februar",
    "march mar marzo märz",
    "april apr abril",
    "may mayo mai",
    "june jun junio juni",
    "july jul julio juli",
    "august aug agosto",
    "september sep sept septiembre",
    "october oct octubre oktober okt",
    "november nov noviembre",
    "december dec diciembre dezember dez",
]
MONTHS = {name: i + 1 for i, names in enumerate(_MONTH_NAMES) for name in names.split()}
DATE = rx(
    r"(?P<iso>\d{4}-\d{2}-\d{2})",
    r"(?P<dmy>\d{1,2})[./](?P<m2>\d{1,2})[./](?P<y2>\d{4})",
    r"(?P<rel>yesterday|today|ayer|hoy|gestern|heute)",
    r"(?P<n>\d{1,2}) days ago|hace (?P<n2>\d{1,2}) d[ií]as|vor (?P<n3>\d{1,2}) Tagen",
    r"(?P<mon>[A-Za-zä]{3,10})\.?\s(?P<day>\d{1,2})(?:st|nd|rd|th)?\b(?:,?\s(?P<y3>\d{4}))?",
    r"(?P<day2>\d{1,2})(?:st|nd|rd|th)?\.?\s(?:de\s)?(?P<mon2>[A-Za-zä]{3,10})\b(?:\s(?:de\s)?(?P<y4>\d{4}))?",
)


def money(sentence: str) -> tuple[tuple[int, str | None], ...]:
    """Every amount in a sentence as (cents, currency or None): `$89.99`, `89,99 €`, `1,299.00 USD`."""
    out = []
    for m in MONEY.finditer(sentence):
        raw = (m.group("a") or m.group("b") or "").rstrip(".,")
        cents = cents_of(raw)
        if cents is not None:
            out.append((cents, CURRENCY.get((m.group("pre") or m.group("post") or "").lower())))
    return tuple(out)


def cents_of(raw: str) -> int | None:
    if "," in raw and "." in raw:
        decimal_mark = "," if raw.rfind(",") > raw.rfind(".") else "."
        raw = raw.replace("." if decimal_mark == "," else ",", "").replace(",", ".")
    elif "," in raw:
        raw = raw.replace(",", "") if re.fullmatch(r"\d{1,3}(?:,\d{3}){1,4}", raw) else raw.replace(",", ".")
    elif re.fullmatch(r"\d{1,3}(?:\.\d{3}){1,4}", raw):
        raw = raw.replace(".", "")
    try:
        value = Decimal(raw) * 100
    except InvalidOperation:
        return None
    return int(value) if value == value.to_integral_value() else None


def when(text: str, today: date) -> date | None:
    """The date a phrase starts with: ISO, `26.11.2026`, `November 26`, `26 de noviembre`, `yesterday`."""
    for m in DATE.finditer(text[:60]):
        found = _date(m, today)
        if found is not None:
            return found
    return None


def _date(m: re.Match[str], today: date) -> date | None:
    try:
        if m.group("iso"):
            return date.fromisoformat(m.group("iso"))
        if m.group("dmy"):
            return date(int(m.group("y2")), int(m.group("m2")), int(m.group("dmy")))
        if m.group("rel"):
            return today - timedelta(days=1 if m.group("rel").lower() in ("yesterday", "ayer", "gestern") else 0)
        n = m.group("n") or m.group("n2") or m.group("n3")
        if n:
            return today - timedelta(days=int(n))
        month = MONTHS.get((m.group("mon") or m.group("mon2") or "").lower())
        if month is None:
            return None
        day, year = int(m.group("day") or m.group("day2")), m.group("y3") or m.group("y4")
        if year:
            return date(int(year), month, day)
        guess = date(today.year, month, day)
        return guess if guess <= today + timedelta(days=31) else date(today.year - 1, month, day)
    except ValueError:
        return None


def status_word(text: str) -> str:
    t = text.lower()
    for words, state in STATUS_WORDS:
        if any(w in t for w in words):
            return state
    return "pending"
