"""The words of the escalation classifier (agent.policy.classify), in English, Spanish, German and French.

What a customer's message asks for or reports, read the way a person would: word forms
("transferred", "transferring"), negation ("please do NOT transfer me", "I'd rather not be
transferred"), and intent rather than vocabulary ("my friend is a lawyer" and "this is
unacceptable" threaten nothing; "I'll see you in court" does). Each kind is a pattern plus the
negation that cancels it in the same sentence. Every pattern is linear-time: bounded repeats,
alternatives of literal words, and it only ever sees the first CLASSIFY_MAX_CHARS of a message.
"""

from __future__ import annotations

import re

FLAGS = re.IGNORECASE


def rx(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(alternatives), FLAGS)


SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+|\s[-–—]\s")
DET = r"(?:(?:a|an|the|your|some|any|one of your|real|actual|live|other|another|different|human|senior)\s+){0,3}"
PERSON = (
    r"(?:humans?|persons?|people|someone|somebody|anyone|anybody|agents?|representatives?|reps?|managers?"
    r"|supervisors?|staff|employees?|operators?|colleagues?|specialists?|team members?|customer service)"
)
PERSON_ES = (
    r"(?:humano|persona|agente|responsable|encargad[oa]|supervisor\w{0,2}|gerente|operador\w{0,2}|alguien"
    r"|representante|asesor\w{0,2})"
)
PERSON_DE = r"(?:Menschen|Mensch|Mitarbeiter\w{0,2}|Vorgesetzten|Manager|Person|Kundenberater\w{0,2}|jemandem|Chef)"
PERSON_FR = r"(?:humain|personne|agent|conseill\w{0,3}|responsable|quelqu['’]un|superviseur|op[ée]rat\w{0,4})"

# --- a person asked for ---------------------------------------------------------------------------------
PERSON_REQUEST = rx(
    rf"\b(?:talk|speak|chat|escalate)\w{{0,3}}\s+(?:to|with)\s+{DET}(?:\w+\s+)?{PERSON}\b",
    rf"\b(?:transfer|connect|put|pass|forward|send|bring|hand|get|give)\w{{0,3}}\s+(?:me|us)\s+"
    rf"(?:(?:over|through|back)\s+)?(?:to|with)\s+{DET}(?:\w+\s+)?{PERSON}\b",
    r"\b(?:be|being|get|getting)\s+(?:transferred|connected|put through|passed|escalated|handed over)\b",
    r"\b(?:transfer|connect)\s+(?:me|us)\b(?!\s+(?:to|onto|into)\s+(?:\w+\s+){0,3}(?:flights?|reservations?|bookings?"
    r"|seats?|dates?|plans?|accounts?|cards?|options?|cabins?|class)\b)",
    r"\bescalat\w{0,4}\s+(?:this|it|that|my\s+\w+|the\s+(?:matter|issue|case|request))\b|^\W{0,3}escalate\b",
    r"\bescalate\s+(?:if|as|when|within|to)\b",
    rf"\b(?:want|need|like|prefer|request|get|give)\s+(?:me\s+)?{DET}(?:human|person|agent|representative"
    r"|manager|supervisor|operator|staff member|specialist)s?\b",
    rf"\b(?:check|consult|confer)\s+with\s+{DET}(?:\w+\s+)?(?:human|person|agent|representative|manager|supervisor)s?\b",
    rf"\b(?:is|are)\s+(?:there\s+)?{DET}(?:\w+\s+)?{PERSON}\s+(?:\w+\s+)?(?:I|we)\s+(?:can|could|may)\s+"
    r"(?:talk|speak|chat)\b",
    rf"\b{PERSON}\s+(?:else\s+)?(?:I|we)\s+(?:can|could|may)\s+(?:talk|speak|chat)\s+(?:to|with)\b",
    rf"\b(?:is|are)\s+(?:there\s+)?(?:a|an|any)\s+(?:real\s+|actual\s+|live\s+)?{PERSON}\s+(?:available|around|there)\b",
    r"^\W{0,3}(?:a\s+)?(?:real\s+)?(?:human|person|agent|representative|operator|manager|supervisor)"
    r"(?:\s+please)?\W{0,3}$",
    r"\b(?:human|manager|supervisor|representative|real person|live agent)\s+(?:please|now)\b",
    rf"\bhablar\s+con\s+(?:(?:un|una|el|la|alg[uú]n|alguna|su|tu|otro|otra)\s+){{0,3}}(?:\w+\s+)?{PERSON_ES}\b",
    r"\b(?:p[aá]same|p[oó]ngame|p[aá]seme|comun[ií]queme|ponme|transfi[eé]r[ae]me|transferirme|con[eé]cteme)\b",
    rf"\bquiero\s+(?:un|una|a)\s+{PERSON_ES}\b|\bque me atienda\s+(?:un|una)\s+{PERSON_ES}\b",
    rf"\bmit\s+(?:(?:einem|einer|dem|der|ihrem|ihrer)\s+){{0,3}}(?:\w+\s+)?{PERSON_DE}\s+(?:sprechen|reden)\b",
    r"\b(?:verbinden|stellen)\s+sie\s+mich\b|\bverbinde\s+mich\b|\bleiten\s+sie\s+mich\s+weiter\b",
    rf"\b(?:einen|ein|eine)\s+{PERSON_DE}\s+bitte\b",
    rf"\bparler\s+(?:à|a|avec)\s+(?:un|une|le|la|votre|quelqu['’]un)?\s*(?:\w+\s+)?{PERSON_FR}\b",
    r"\b(?:transf[ée]rez|passez|mettez)[- ]moi\b",
)
# what cancels a request for a person in its sentence: "do NOT transfer me", "I'd rather not be
# transferred", "before you transfer me", "no need for a person", "thank you for transferring me"
PERSON_REFUSED = rx(
    r"\b(?:not|never|don['’]?t|do not|doesn['’]?t|didn['’]?t|no need|rather not|without|instead of|before you|nor)\b",
    r"\bthank(?:s| you) for (?:transferring|connecting|escalating)\b|\b(?:wait|waiting) for the transfer\b",
    r"\bno\s+(?:quiero|me)\b|\bsin\s+(?:transferir|pasar)\b|\bnicht\b|\bkein\w{0,2}\b|\bne\s+\w+\s+pas\b",
)
# a question about what the bot is, not a request: "Am I talking to a human?", "are you a real person?"
BOT_QUESTION = rx(
    r"\b(?:am I|are we|are you|is this|is it)\b|\b(?:hablo|eres|bist du|rede ich|sind sie|suis-je|es-tu)\b"
)
# a request made only if something else fails: "if you still see Silver, I'd like a supervisor"
# (not a polite "if possible" or "if that's the case", which accept the premise)
PERSON_CONDITION = rx(r"^\W{0,3}(?:if|unless|otherwise|si|wenn|falls)\b")
PERSON_POLITE = rx(
    r"^\W{0,3}if\s+(?:(?:it['’]?s|it is|that['’]?s|that is)\s+(?:possible|okay|ok|the case|true|so)|so|possible"
    r"|you (?:could|can|would|don['’]?t mind)|needed)\b"
)
# the message asks for more than the person: it has a question or a request of its own
MORE_REQUEST = rx(
    r"\?",
    r"\b(?:can you|could you|would you|will you|I need|I want|I['’]d like|go ahead|let['’]?s|add|change|cancel|book"
    r"|upgrade|downgrade|refund|check|search|look up|find|issue|send|confirm|process|update|move|switch|tell me"
    r"|show me|explain|what|how|when|where|why|which)\b",
    r"\b(?:puede|quiero|necesito|k[oö]nnen|m[oö]chte|brauche|pouvez|je voudrais)\b",
)

# --- threats, hazards and disputes ----------------------------------------------------------------------
LEGAL = rx(
    r"\b(?:I|we)(?:['’]ll|['’]m| will| am| are| plan to| intend to| shall)?\s+(?:going to\s+|gonna\s+)?"
    r"(?:sue|suing|take (?:you|this|it|legal action)|file (?:a )?(?:lawsuit|claim|complaint with))\b",
    r"\b(?:legal action|lawsuit|small claims|class action|see you in court|take (?:you|this|it) to court)\b",
    r"\b(?:my|our)\s+(?:lawyer|attorney|solicitor|legal team)\s+(?:will|is going to|['’]ll|shall|has been|is)\b",
    r"\b(?:call|calling|contact|contacting|get|getting|hire|hiring|involve|involving|consult|consulting|talk to"
    r"|speak to)\s+(?:my|a|our)\s+(?:lawyer|attorney|solicitor)\b",
    r"\b(?:demandar\w{0,4}|demandar[eé]|una demanda|acciones? legales?|medidas legales|juicio|tribunal)\b",
    r"\b(?:llamar|contactar|hablar con)\s+(?:a\s+)?mi\s+abogad[oa]\b|\bmi abogad[oa]\s+(?:va|se pondr[aá]|les)\b",
    r"\b(?:verklagen|verklage|klage einreichen|rechtliche schritte|vor gericht)\b",
    r"\b(?:meinen|unseren)\s+(?:Rechts)?anwalt\s+(?:ein|einschalten|einschalte|kontaktieren|anrufen)\b"
    r"|\b(?:schalte|schalten)\s+(?:meinen|unseren)\s+(?:Rechts)?anwalt\b",
    r"\b(?:poursuivre en justice|porter plainte|mon avocat)\b",
)
FRAUD = rx(
    r"\b(?:fraud|fraudulent|scam|scammed|scammers?|identity theft|stolen (?:card|credit card|account))\b",
    r"\b(?:unauthori[sz]ed|didn['’]t authori[sz]e)\s+(?:charge|transaction|payment|purchase|order)s?\b",
    r"\b(?:someone|somebody)\s+(?:used|stole|hacked)\s+(?:my|our)\b|\b(?:my )?account (?:was|has been) hacked\b",
    r"\b(?:fraude|fraudulent[oa]|estafa\w{0,3}|estafador\w{0,2}|timo)\b",
    r"\b(?:betrug|betr[uü]gerisch|betr[uü]ger|abzocke)\b|\b(?:escroquerie|arnaque)\b",
)
SAFETY = rx(
    r"\b(?:caught|catching|catches)\s+(?:on\s+)?fire\b|\bon fire\b|\bburst into flames\b|\bwent up in flames\b",
    r"\b(?:exploded|explosion|blew up|sparked|sparking|sparks came|smoke came|started smoking|was smoking|melted"
    r"|overheated|overheating)\b",
    r"\b(?:electric(?:al)? shock|electrocuted|shocked me|gave me a shock)\b",
    r"\b(?:burn(?:ed|t|s)?|scald(?:ed|s)?|cut|injur(?:ed|ies|y)|hurt|wound(?:ed)?)\s+(?:my|me|myself|him|her|his"
    r"|them|our|the (?:kid|child|baby))\b(?!\s+feelings)",
    r"\b(?:allergic reaction|food poisoning|choking hazard|choked on)\b",
    r"\b(?:se incendi[oó]|prendi[oó] fuego|se quem[oó]|me quem[eé]|quemadura|explot[oó]|descarga el[eé]ctrica"
    r"|me lesion[eé]|herid[oa]s?)\b",
    r"\b(?:Feuer gefangen|in Flammen|brannte|explodiert|verbrannt|verbr[uü]ht|Stromschlag|verletzt)\b",
    r"\b(?:a pris feu|a explos[ée]|br[uû]l[ée]|bless[ée]|d[ée]charge [ée]lectrique)\b",
)
SAFETY_NEGATED = rx(r"\b(?:no one|nobody|nothing|not|didn['’]?t|wasn['’]?t|never|nadie|niemand|personne)\b")
BILLING = rx(
    r"\b(?:charged|billed|debited)\s+(?:me\s+)?(?:twice|two times|double|2x)\b|\bdouble[- ]charged\b",
    r"\b(?:duplicate|double|two|second)\s+(?:charges?|payments?|transactions?|debits?)\b",
    r"\bcharge[- ]?backs?\b|\bcharge\s+back\b",
    r"\bdisput\w{1,4}\s+(?:(?:the|this|that|a|my|it|charge|payment|transaction)\s+){0,3}(?:with|through)\s+"
    r"(?:my|the)\s+(?:bank|card|credit card|card issuer)",
    r"\b(?:dispute|reverse)\s+(?:the|this|that)\s+(?:charge|payment|transaction)\b|\bfile a dispute\b",
    r"\b(?:me cobraron|cobrado)\s+dos veces\b|\b(?:cobro|cargo) (?:duplicado|doble)\b|\bdoble cargo\b",
    r"\bcontracargos?\b|\breclam\w{1,4}\s+(?:al|a mi)\s+banco\b",
    r"\b(?:doppelt|zweimal)\s+(?:abgebucht|belastet|berechnet)\b|\bdoppelte\s+(?:Abbuchung|Belastung)\b",
    r"\bR[uü]ckbuchung\b|\bbei meiner Bank\s+(?:widersprechen|zur[uü]ckbuchen|reklamieren)\b",
    r"\b(?:d[ée]bit[ée]|factur[ée])\s+deux fois\b|\brejet de (?:paiement|pr[ée]l[eè]vement)\b",
)
# "it says delivered but it never arrived": a delivery the customer disputes
NOT_ARRIVED = rx(
    r"\b(?:never|not|haven['’]?t|have not|hasn['’]?t|has not|didn['’]?t|did not|still (?:haven['’]?t|hasn['’]?t))"
    r"\s+(?:\w+\s+){0,2}?(?:received|got|gotten|arrived|come|shown up|turned up|gotten it)\b",
    r"\b(?:no\s+(?:lo\s+|la\s+)?(?:he|ha)\s+(?:recibido|llegado)|nunca (?:lleg[oó]|recib[ií]))\b",
    r"\b(?:nicht|nie|nichts)\s+(?:\w+\s+){0,2}?(?:erhalten|bekommen|angekommen)\b",
    r"\b(?:jamais|pas)\s+(?:\w+\s+){0,2}?(?:re[çc]u|arriv[ée])\b",
)
MARKED_DELIVERED = rx(
    r"\b(?:says|said|shows|showed|showing|marked|listed|states|claims|status (?:is|says)|tracking says)\s+"
    r"(?:(?:it|that|it['’]s|it was|as|was|has been|been)\s+){0,3}delivered\b",
    r"\bdelivered\b[^.?!]{0,40}\b(?:but|yet|however|though)\b",
    r"\b(?:marcad[oa]|aparece|dice)\s+(?:como\s+)?entregad[oa]\b|\bentregad[oa]\b[^.?!]{0,40}\bpero\b",
    r"\b(?:als\s+)?zugestellt\s+(?:markiert|angezeigt)\b|\bzugestellt\b[^.?!]{0,40}\baber\b",
    r"\b(?:marqu[ée]|indiqu[ée])\s+(?:comme\s+)?livr[ée]\b|\blivr[ée]\b[^.?!]{0,40}\bmais\b",
)


# --- reading a message ------------------------------------------------------------------------------------
REQUEST_CLAUSE = re.compile(r",\s{0,3}(?:and\s+)?|\s+and\s+(?:also\s+|then\s+)?|;\s{0,3}", FLAGS)


def hazard(sentence: str) -> bool:
    """A product that caught fire, sparked or hurt someone (not "nobody got hurt")."""
    for m in SAFETY.finditer(sentence):
        before = " ".join(sentence[max(0, m.start() - 60) : m.start()].split()[-4:])
        if not SAFETY_NEGATED.search(before):
            return True
    return False


def asks_for_person(sentence: str) -> bool:
    """A request for a person that is neither refused ("do NOT transfer me", "I'd rather not be
    transferred") nor made only if something else fails ("if you still see Silver, …")."""
    if PERSON_CONDITION.search(sentence) and not PERSON_POLITE.search(sentence):
        return False
    for m in PERSON_REQUEST.finditer(sentence):
        before = " ".join(_clause_before(sentence, m.start()).split()[-6:])
        if PERSON_REFUSED.search(f"{before} {m.group(0)}") or BOT_QUESTION.search(before):
            continue
        return True
    return False


def _clause_before(sentence: str, start: int) -> str:
    cut = max(sentence.rfind(",", 0, start), sentence.rfind(";", 0, start), sentence.rfind(" but ", 0, start))
    return sentence[max(cut + 1, start - 120) : start]


def without_request(sentence: str) -> str:
    """A sentence without its clauses that ask for a person (what else the message asks)."""
    if not asks_for_person(sentence):
        return sentence
    clauses = REQUEST_CLAUSE.split(sentence)
    return " ".join(c for c in clauses if not asks_for_person(c))
