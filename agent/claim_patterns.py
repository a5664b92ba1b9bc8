"""The words of the claims check (agent.claims): what counts as a claim, in English, Spanish and German.

Pure patterns and the small parsers for amounts and dates. Every pattern is linear-time: bounded
repeats and gaps (`{0,4}?`), alternatives of literal words, no nested unbounded quantifiers, and
they only ever see one sentence of at most 2,000 characters.
"""

from __future__ import annotations

import functools
import re
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation

from storage.states import LIVE_REFUNDS
from storage.states import RefundStatus as R

FLAGS = re.IGNORECASE
GAP = r"(?:\s+\S+){0,4}?"  # up to four words in between (lazy, bounded)
WORDS = r"(?:\w+\s+){0,2}?"  # up to two words
PEOPLE = (
    r"(?:team|colleagues?|specialists?|supervisors?|managers?|person|people|humans?|agents?|staff|someone|somebody)"
)


def rx(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(alternatives), FLAGS)


# --- scope: what makes a sentence assert nothing ---------------------------------------------------------
NEGATION = rx(
    r"\b(?:not|no|never|nothing|none|nor|cannot|yet to|nicht|nichts|kein\w{0,3}|nie|niemals)\b",
    r"\b(?:nunca|nada|ning[uú]n\w{0,2}|jam[aá]s)\b",
    r"n['’]t\b",
)
# a modal right before the verb: "will be credited", "can be refunded", "wird erstattet"
MODAL = rx(
    r"\b(?:will|would|shall|should|could|can|may|might|must|going to|to be|be)\b",
    r"\b(?:puede|podr[aá]|podr[ií]a|va a|vamos a|ser[aá]|ser[ií]a|debe)\b",
    r"\b(?:werden|wird|w(?:ü|ue)rden?|kann|k[oö]nnen|soll|sollte|m[uü]ss\w{0,2})\b",
    r"['’](?:ll|d)\b",
)
# a condition anywhere in the clause: "once it has been processed", "sobald Sie bestätigen"
CONDITION = rx(
    r"\b(?:once|if|when|whenever|after|as soon as|until|unless|before|in case|provided|as long as)\b",
    r"\b(?:cuando|si|una vez|en cuanto|hasta que|siempre que)\b",
    r"\b(?:sobald|wenn|falls|nachdem|bis|sofern)\b",
)
# a condition after the claim that governs it: "can be cancelled with a refund only if: …"
TRAILING_CONDITION = rx(r"\b(?:if|unless|provided|as long as|si|siempre que|wenn|falls|sofern)\b")
# not a statement of fact: wishes, eligibility, requests ("eligible to be refunded", "you'd like it refunded")
NONFACT = rx(
    r"\b(?:like|want|wants|wish|eligible|able|need|needs|request|requested|asked|ask|whether|hope|expect"
    r"|allowed|possible|entitled|qualify|qualifies)\b"
)
PROGRESSIVE = rx(r"\b(?:being|siendo|gerade)\b")
CONDITIONAL_START = rx(
    r"^\W{0,3}(?:if|once|when|as soon as|after|should you|in case|unless|suppose|say|si|cuando|una vez|en cuanto"
    r"|wenn|falls|sobald)\b"
)
CLAUSE_BREAK = rx(
    r"[,;:()]\s", r"\s(?:but|pero|aber|however|sin embargo|jedoch|and|y|und|which|whereas)\s", r"\s[-–—]\s"
)
# a generic subject states a rule, not a fact about this customer: "a reservation can be cancelled …",
# "refunds are issued within …"; unless the clause names them, their money or their order
GENERIC = rx(
    r"^\W{0,3}(?:a|an|any|each|every|all|most|some|such)\s",
    r"^\W{0,3}(?:refunds|reservations|orders|flights|bookings|tickets|items|customers|users|passengers|members"
    r"|cancellations|returns|exchanges|compensation|certificates)\b",
    r"^\W{0,3}(?:un|una|cualquier|todos|todas|los reembolsos|los pedidos)\b",
    r"^\W{0,3}(?:ein|eine|jede|jeder|jedes|alle|Erstattungen|Bestellungen)\b",
)
SPECIFIC = rx(
    r"\b(?:you|your|yours|I|I['’]ve|we|we['’]ve|us|usted|ustedes|su|sus|tu|tus|le|te|Sie|Ihnen|Ihre?\w?|dich"
    r"|dein\w{0,2}|vous|votre|vos)\b"
)
# a rule being quoted: "According to our policy, …", "Per our policy, …", "Under our rules, …"
POLICY_FRAME = rx(
    r"^\W{0,3}(?:according to|per|under|based on|in line with|as per)\s+(?:our|the)\s+(?:\w+\s+){0,2}?"
    r"(?:policy|policies|rules?|terms|guidelines)\b",
    r"\b(?:seg[uú]n|de acuerdo con)\s+(?:nuestra|la)\s+pol[ií]tica\b|\bgem[aä](?:ß|ss)\s+(?:unserer|den)\s+\w{0,20}",
)
# a reply that ends by asking the customer to confirm: what it describes is a proposal
PROPOSAL = rx(
    r"\b(?:would you like (?:me|us) to|shall I|should I|do you want (?:me|us) to|want me to|"
    r"please confirm|confirm (?:with|that|if)|(?:like|want) (?:me )?to (?:proceed|go ahead)|ready to proceed"
    r"|go ahead (?:with|and)|proceed with)\b[^.?!]{0,200}\?",
    r"\bplease confirm\b",
    r"\b(?:\(yes\)|yes/no|reply yes|type yes|say yes|confirm with \W{0,2}yes)\b",
    r"\b(?:quiere que|desea que|confirme)\b|\b(?:soll ich|m[oö]chten Sie, dass|best[aä]tigen Sie)\b",
)
PROPOSAL_WORDS = ("you like", "shall i", "should i", "want me", "want us", "confirm", "proceed", "go ahead", "yes",
                  "quiere que", "desea que", "soll ich", "möchten sie", "bestätig")  # fmt: skip
# a participle used as an adjective: "the refunded gift card balance" presupposes, it does not assert
ATTRIBUTIVE = rx(r"\b(?:the|a|an|any|this|that|each|every|its|their|el|la|los|las|der|die|das|den|dem)\s{1,3}$")
# --- refunds -------------------------------------------------------------------------------------------
REFUND_WORDS = (
    r"\b(?:refund\w{0,4}|reimburs\w{0,6}|money|credit\w{0,4}|reembols\w{0,4}|devoluci[oó]n|dinero|importe|"
    r"erstatt\w{0,4}|r[uü]ckerstatt\w{0,4}|gutschrift|geld|betrag)\b"
)
REFUND_WORD = rx(REFUND_WORDS)
REFUND_CONTEXT = rx(REFUND_WORDS, r"[$€£]", r"\d[.,]\d{2}\b")
_DONE = r"(?:issued|processed|sent|completed|paid|transferred|returned|credited)"
_AUX = r"(?:has|have|had|was|were|is|are|been|got|just|already|successfully)"
_ADV = r"(?:(?:just|already|now|successfully|also|fully|partially|since)\s+){0,2}"
_PAID_BACK = r"(?:refunded|reimbursed|credited)"
# money moved: (pattern, what else its clause needs: None, "words" (a refund word) or "any" (or an
# amount), and its form: "finite" (a verb with its subject or auxiliary), "participle" (a bare
# participle: "$5,244, refunded to your card", which a proposal may say of what would happen))
MOVED: list[tuple[re.Pattern[str], str | None, str]] = [
    (rx(rf"\b(?:I|we)(?:\s{{0,2}}['’]ve|\s+have|\s+had)?\s+{_ADV}{_PAID_BACK}\b"), None, "finite"),
    (rx(rf"\b(?:has|have|had)\s+{_ADV}been\s+{_ADV}{_PAID_BACK}\b"), None, "finite"),
    (rx(rf"\b(?:was|were|got|is|are)\s+{_ADV}{_PAID_BACK}\b"), None, "finite"),
    (rx(rf"^\W{{0,3}}{_PAID_BACK}\b"), None, "finite"),  # "Refunded the headphones."
    (rx(rf"\b{_PAID_BACK}\b"), None, "participle"),
    (rx(rf"\b{_AUX}\s+{WORDS}{_DONE}\b", rf"['’]ve\s+{WORDS}{_DONE}\b"), "words", "finite"),
    (rx(r"\b(?:I|we)\s+(?:just\s+|already\s+)?(?:issued|processed|sent|completed|paid)\b"), "words", "finite"),
    (rx(r"\b(?:went|gone|come) through\b"), "words", "finite"),
    (rx(r"\b(?:got|have|received)\s+(?:your\s+|the\s+)?money back\b"), None, "finite"),
    (rx(r"\b(?:reembolsamos|reembols[eé]|devolvimos|abonamos)\b"), None, "finite"),
    (
        rx(
            r"\b(?:he|ha|has|hemos|han|fue|fueron|sido|ya)\s+(?:le\s+|te\s+|les\s+)?{WORDS}"
            r"(?:reembolsad[oa]s?|abonad[oa]s?|ingresad[oa]s?)\b".replace("{WORDS}", WORDS)
        ),
        None,
        "finite",
    ),
    (rx(r"\b(?:reembolsad[oa]s?|abonad[oa]s?|ingresad[oa]s?)\b"), None, "participle"),
    (
        rx(
            rf"\b(?:he|ha|has|hemos|han|fue|fueron|sido|ya)\s+(?:le\s+|te\s+|les\s+)?{WORDS}"
            r"(?:devuelt[oa]s?|transferid[oa]s?|enviad[oa]s?|procesad[oa]s?|emitid[oa]s?|realizad[oa]s?|completad[oa]s?)\b"
        ),
        "any",
        "finite",
    ),
    (
        rx(
            r"\b(?:erstattet|zur[uü]ckerstattet|r[uü]ckerstattet|gutgeschrieben|zur[uü]ck[uü]berwiesen)\b",
            r"\b(?:ausgezahlt|zur[uü]ckgezahlt)\b",
        ),
        None,
        "finite",
    ),
    (
        rx(
            rf"\b(?:wurde|wurden|ist|sind|haben|habe|hat)\b{GAP}\s+"
            r"(?:bearbeitet|veranlasst|ausgef[uü]hrt|abgeschlossen|durchgef[uü]hrt|angewiesen|[uü]berwiesen|erfolgt)\b"
        ),
        "words",
        "finite",
    ),
]
# what was refunded, when a sentence says so: "Refunded the headphones", "I've refunded your kettle"
OBJECT = rx(r"\b(?:refunded|reimbursed|credited)\s+(?:you\s+for\s+)?(?:the|your)\s+(?:\w+\s+)?([a-z]{3,30})\b")
GENERIC_OBJECTS = {
    "order", "orders", "purchase", "money", "amount", "payment", "item", "items", "refund", "full", "total",
    "card", "account", "balance", "price", "cost", "charge", "difference", "rest", "remainder", "part",
}  # fmt: skip
STATUS_LINE = rx(
    r"\b(?:refund|reembolso|erstattung)(?:\s+status|\s+estado)?"
    r"(?:\s+(?:for|of|on|del?|f[uü]r)\s+(?:order\s+|pedido\s+|(?:die\s+)?Bestellung\s+)?[#\w-]{1,40})?"
    r"\s{0,3}:\s{0,3}([A-Za-zÀ-ÿ ]{3,30})"
)
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
    "moved": {R.PROCESSED},
    "live": set(LIVE_REFUNDS),
    "awaiting": {R.AWAITING_CONFIRMATION},
    "approval": {R.PENDING_APPROVAL},
    "processing": {R.PROCESSING},
    "pending": {R.AWAITING_CONFIRMATION, R.PENDING_APPROVAL, R.PROCESSING},
    "denied": {R.DENIED},
    "cancelled": {R.CANCELLED},
    "expired": {R.EXPIRED},
    "failed": {R.FAILED},
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
    (("pending", "waiting", "open", "pendiente", "offen", "ausstehend"), "pending"),
]

# --- people --------------------------------------------------------------------------------------------
HANDOFF: list[re.Pattern[str]] = [
    rx(
        r"\b(?:passed|handed|forwarded|escalated|referred|sent|flagged|raised|transferred|assigned)\b"
        rf"(?:\s+\S+){{0,6}}?\s+(?:on\s+|over\s+|along\s+)?to\s+(?:\S+\s+){{0,3}}?{PEOPLE}\b"
    ),
    rx(
        r"\b(?:escalated|notified|alerted|informed|contacted|asked|looped in|brought in|reached out to)\b"
        rf"(?:\s+[\w'’]+){{0,4}}?\s+{PEOPLE}\b"
    ),
    rx(
        rf"\b{PEOPLE}\b(?:\s+\S+){{0,3}}?\s+(?:has|have|had|was|were)\s+(?:already\s+|just\s+)?(?:been\s+)?"
        r"(?:notified|alerted|informed|asked|assigned|told|contacted|brought in|looped in)\b"
    ),
    rx(r"\b(?:I|we)(?:['’]ve| have)?\s+escalated\b", r"\bhas been escalated\b"),
    rx(r"\b(?:assigned|allocated)\s+to\s+(?:your|this)\s+(?:case|request|ticket|issue|query)\b"),
    rx(
        r"\b(?:team|colleagues?|specialists?|supervisors?|managers?|person|humans?|agents?|representatives?|staff"
        r"|someone|somebody|member|department)\b(?:\s+[\w'’]+){0,3}?\s+(?:will|['’]ll|is going to|are going to|shall)"
        rf"\s+{WORDS}(?:call|phone|ring|contact|reach out|follow up|get back|reply|respond|be in touch|get in touch"
        r"|email|look into|review|join|help|take over|be with you)\b"
    ),
    rx(
        rf"\b{PEOPLE}\b(?:\s+\S+){{0,3}}?\s+(?:is|are)\s+(?:now\s+|already\s+)?(?:looking into|reviewing|handling"
        r"|working on|on it)\b"
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
        r"\b(?:Kolleg\w{0,4}|Mitarbeiter\w{0,4}|Mensch|Team)\b(?:\s+\S+){0,3}?\s+wird\s+(?:\S+\s+){0,5}?"
        r"(?:anrufen|kontaktieren|melden|antworten|zur[uü]ckrufen|schreiben|k[uü]mmern)\b"
    ),
    rx(r"\bTicket\b(?:\s+\S+){0,3}?\s+(?:er[oö]ffnet|erstellt|angelegt)\b"),
]
# a call or an email to the customer: we never phone and never email, we answer here
CALL = rx(
    r"\b(?:call|phone|ring|e-?mail|text)\s+you\b|\bgive you a (?:call|ring)\b",
    r"\b(?:called|phoned|rang|e-?mailed|texted|messaged)\s+you\b",
    r"\b(?:send|sent|sending|forward|forwarded)\s+you\s+(?:an?\s+|the\s+)?(?:\w+\s+){0,2}?(?:e-?mails?|texts?|sms)\b",
    r"\byou(?:['’]ll|\s+will|\s+should|\s+are going to)\s+(?:receive|get|see)\s+(?:an?\s+|the\s+)?(?:\S+\s+){0,3}?"
    r"(?:e-?mails?|calls?|phone calls?|texts?)\b",
    r"\b(?:le|te|les)\s+(?:llamar[aá]n?|llamaremos|llamar[eé]|hemos llamado|llam[eé])\b",
    r"\b(?:le|te|les)\s+(?:enviaremos|enviar[eé]|enviar[aá]n?|hemos enviado|envi[eé]|mandaremos|escribiremos)\b"
    r"(?:\s+\S+){0,2}?\s+(?:correo|e-?mail|mensaje|sms)\b",
    r"\brecibir[aá]\s+(?:un\s+)?(?:correo|e-?mail|llamada)\b",
    r"\b(?:Sie|dich)\s+(?:\S+\s+){0,2}?(?:anrufen|zur[uü]ckrufen)\b",
    r"\b(?:rufen|rufe|ruft)\s+(?:Sie|dich)\b(?:\s+\S+){0,3}?\s+(?:an|zur[uü]ck)\b",
    r"\berhalten\s+(?:\S+\s+){0,3}?(?:E-?Mail|Mail|Anruf)\b",
    r"\bE-?Mail\b(?:\s+\S+){0,5}?\s+(?:geschickt|gesendet|zugeschickt|geschrieben)\b",
    r"\b(?:schicken|senden|schreiben)\s+(?:Ihnen|dir)\s+(?:\S+\s+){0,2}?E-?Mail\b",
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
    (
        "cancelled",
        rx(
            r"\b(?:was|were|has been|have been|had been|is|got|been)\s+(?:\w+\s+)?cancel{1,2}ed\b",
            r"\b(?:fue|ha sido|est[aá])\s+(?:cancelad[oa]|anulad[oa])\b|\bse (?:cancel[oó]|anul[oó])\b",
            rf"\b(?:wurde|ist)\b{GAP}\s+storniert\b",
        ),
        None,
    ),
]
ORDER_STATUSES: dict[str, set[str]] = {
    "delivered": {"delivered"},
    "not_delivered": {"pending", "shipped", "cancelled"},
    "shipped": {"shipped", "delivered"},
    "in_transit": {"shipped"},
    "not_shipped": {"pending", "cancelled"},
    "future_delivery": {"pending", "shipped"},
    "cancelled": {"cancelled"},
}
ITEM_STOP = {"with", "from", "pro", "set", "pack", "edition", "model", "the", "and", "for", "new", "plus", "mini"}

# --- gates: a family's patterns run only when one of its words starts a word of the sentence ------------
SENTENCE_WORDS = re.compile(r"[^\W\d_]{1,40}")
GATE_MOVED = (
    "refunded", "reimbursed", "credited", "money", "reembolsad", "reembolsamos", "reembols", "abonad", "abonamos",
    "ingresad", "devolvimos", "erstattet", "zurückerstattet", "ruckerstattet", "rückerstattet", "gutgeschrieben",
    "zurücküberwiesen", "zuruckuberwiesen", "ausgezahlt", "zurückgezahlt",
)  # fmt: skip
GATE_PEOPLE = (
    "team", "colleague", "specialist", "supervisor", "manager", "person", "people", "human", "agent", "staff",
    "someone", "somebody", "member", "representative", "department", "ticket", "case", "escalat", "call", "phone",
    "ring", "rang", "mail", "email", "text", "messag", "sms", "equipo", "compañer", "companer", "persona",
    "miembro", "responsable", "especialista", "incidencia", "caso", "llam", "correo", "mensaj", "kolleg",
    "mitarbeiter", "mensch", "support", "anruf", "ruf", "zurückruf",
)  # fmt: skip
# each order state's own words (a state's patterns run only when one of them starts a word)
GATE_ORDER_STATES = {
    "delivered": ("delivered", "entregad", "entreg", "zugestellt", "geliefert"),
    "not_delivered": ("delivered", "arrived", "zugestellt", "geliefert", "angekommen", "llegado", "entregad"),
    "shipped": ("shipped", "dispatched", "sent", "enviad", "versandt", "verschickt", "versendet"),
    "in_transit": ("way", "transit", "delivery", "camino", "tránsito", "transito", "unterwegs"),
    "not_shipped": ("shipped", "dispatched"),
    "future_delivery": ("arrive", "delivered", "shipped", "llegar", "geliefert", "zugestellt", "ankommen"),
    "placed": ("placed", "ordered", "bestellt", "realizad"),
    "cancelled": ("cancelled", "canceled", "cancelad", "canceló", "cancelo", "anul", "storniert"),
}
# an amount a sentence could tie to an order: it names an order, or says what "you" paid
GATE_ORDERISH = ("order", "purchase", "pedido", "compra", "bestell", "commande", "achat")
GATE_PRICE = (
    "cost", "paid", "pay", "charg", "came", "comes", "total", "pric", "billed", "spent", "precio", "costo", "costó",
    "pag", "cobr", "gekostet", "kostet", "bezahlt", "preis", "summe", "gesamt", "importe", "betrag", "prix", "pay",
)  # fmt: skip
GATE_YOU = ("you", "su", "sus", "usted", "tu", "tus", "sie", "ihr", "ihnen", "vous", "votre", "vos")
# what an order's status can be said of: an order or parcel named, a possessive, "it" (the order looked up)
GATE_REFERENCE = (
    "order", "purchase", "pedido", "compra", "bestell", "commande", "package", "parcel", "paquete", "paket", "colis",
    "shipment", "envío", "envio", "sendung", "lieferung", "your", "su", "sus", "ihre", "ihr", "votre", "tu", "tus",
    "dein", "it",
)  # fmt: skip
GATE_REFUND = (
    "refund", "reimburs", "money", "credit", "reembols", "devoluci", "dinero", "importe", "erstatt", "rückerstatt",
    "ruckerstatt", "gutschrift", "geld", "betrag",
)  # fmt: skip
GATE_MONEY = ("usd", "eur", "gbp", "dollar", "euro")


GATES = (
    GATE_MOVED, GATE_REFUND, GATE_PEOPLE, GATE_ORDERISH, GATE_MONEY, GATE_PRICE, GATE_YOU, GATE_REFERENCE,
    *GATE_ORDER_STATES.values(),
)  # fmt: skip
ORDER_GATE_BITS = {state: 1 << (8 + i) for i, state in enumerate(GATE_ORDER_STATES)}
ALL_ORDER_GATES = sum(ORDER_GATE_BITS.values())


@functools.lru_cache(maxsize=65536)
def word_gates(word: str) -> int:
    """The gates a word opens, one bit each in the order of GATES (words repeat: each is read once)."""
    return sum(1 << i for i, gate in enumerate(GATES) if word.startswith(gate))


def gates(sentence: str) -> int:
    out = 0
    for bits in map(word_gates, set(SENTENCE_WORDS.findall(sentence.lower()))):
        out |= bits
    return out


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


def status_word(text: str) -> str | None:
    """The refund state the first words after "Refund status:" name (None: they name no state)."""
    t = " ".join(text.lower().split()[:3])
    for words, state in STATUS_WORDS:
        if any(w in t for w in words):
            return state
    return None
