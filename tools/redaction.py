"""What a draft article saved from a ticket must not keep: the people in the conversation.

`redact` replaces, in this order, every link-like thing (`storage.links`: a customer's photo link
is theirs, and a help article links only to the help center), email address, card-like number
(13 to 19 digits, spaced or not), street address (a number, a street name and a street word such
as Street, Ave, Lane or Broadway, with its apartment, city, state and ZIP when they follow), phone
number (7 to 15 digits in the usual spellings), order, customer or refund id (ORD-8842, #8842),
and name: the names given (the ticket's customer's), names introduced ("my name is", "this is",
"I'm"), greeted or signed ("Hi Sarah", "Thanks, Ana", "Best, Ana") and Slack mentions. It returns
the text and what it took out, for staff to check before publishing; a card is listed by its last
four digits only.

Names found by their wording are a best effort: staff read every draft before `kb publish`.
Every pattern is linear-time (bounded repeats, runs anchored by lookbehinds).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from storage.links import without_links
from tools.patterns import EMAIL

MAX_NAMES = 50
Found = tuple[str, str]  # (kind, what was taken out, as staff may see it)

CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
STREET_WORD = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Ter|Circle"
    r"|Cir|Highway|Hwy|Parkway|Pkwy|Square|Sq|Alley|Trail|Plaza|Broadway)"
)
STREET = re.compile(
    rf"(?<![\w-])\d{{1,6}}[A-Za-z]?(?:[ \t]{{1,3}}[A-Z][A-Za-z'.-]{{0,30}}){{0,4}}[ \t]{{1,3}}{STREET_WORD}\b\.?"
    r"(?:,?[ \t]{0,3}(?:Apt|Apartment|Suite|Ste|Unit|Floor|Fl|#)\.?[ \t]{0,3}[A-Za-z0-9-]{1,8})?"
    r"(?:,[ \t]{0,3}[A-Z][A-Za-z.'-]{1,30}(?:[ \t][A-Z][A-Za-z.'-]{1,30}){0,2})?"
    r"(?:,?[ \t]{0,3}[A-Z]{2}[ \t]{1,3}\d{5}(?:-\d{4})?)?"
)
ZIP = re.compile(r"(?<![\w-])[A-Z]{2}[ \t]{1,3}\d{5}(?:-\d{4})?(?![\w-])")
PHONE = re.compile(
    r"(?<![\w+.-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}(?![\w.-]{0,40}\d)"
)
DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}")
ORDER_ID = re.compile(r"(?<![\w#-])(?:#\d{3,12}|[A-Za-z]{1,6}-[A-Za-z0-9]{0,4}\d[A-Za-z0-9-]{0,20})(?![\w-])")
MENTION = re.compile(r"<@[A-Z0-9]{2,20}(?:\|[^<>\n]{0,80})?>")
NOT_NAMES = frozenset(
    ("The", "A", "An", "I", "It", "We", "You", "They", "He", "She", "This", "That", "There", "Here", "Not")
    + ("Sorry", "Happy", "Glad", "Just", "Also", "Still", "Really", "Very", "So", "Again", "All", "Everyone")
    + ("Team", "Support", "Sir", "Madam", "Customer", "Service", "Thanks", "Thank", "Please", "Yes", "No", "Ok")
    + ("Okay", "Good", "Great", "Looking", "Writing", "Calling", "Afraid", "Sure", "Unable", "Able", "Trying")
    + ("Going", "Back", "Done", "Interested", "However", "Unfortunately", "Alternatively", "Additionally", "Now")
)
NAME = r"[A-Z][a-z'’-]{1,30}(?:[ \t][A-Z][a-z'’-]{1,30}){0,2}"
INTRODUCED = re.compile(
    rf"(?i:\b(?:my name is|this is|i am|i'm|i’m|name:))[ \t]{{1,3}}(?P<name>{NAME})"
    r"(?=[ \t]{0,3}(?:[,.!?;:\n]|$)|[ \t]{1,3}[a-z])"  # "this is Booking 2 of 3" names no one
)
GREETED = re.compile(
    rf"(?i:\b(?:hi|hello|hey|dear|thanks|thank you|cheers|best|regards|best regards|kind regards|sincerely|"
    rf"bye|greetings))[,!]?[ \t]{{1,3}}(?P<name>{NAME})(?=[ \t]*(?:[,.!?\n]|$))"
)


def redact(text: str, *, names: Iterable[str] = ()) -> tuple[str, list[Found]]:
    """`text` without anyone's details, and what was taken out (see the module docstring)."""
    found: list[Found] = []
    text, links = without_links(text, blank="[link]")
    found += [("link", link[:80]) for link in links]
    text = _sub(EMAIL, text, "[email]", "email", found)
    text = _sub(CARD, text, "[card number]", "card number", found, shown=lambda t: f"ending {t[-4:]}")
    text = _sub(STREET, text, "[street address]", "street address", found)
    text = _sub(ZIP, text, "[street address]", "street address", found)
    text = _phones(text, found)
    text = _sub(ORDER_ID, text, "[order number]", "order number", found)
    text = _sub(MENTION, text, "[name]", "name", found)
    return _names(text, names, found), found


def _sub(
    pattern: re.Pattern[str], text: str, placeholder: str, kind: str, found: list[Found], shown: object = None
) -> str:
    def swap(m: re.Match[str]) -> str:
        found.append((kind, shown(m.group(0)) if callable(shown) else m.group(0)[:80]))
        return placeholder

    return pattern.sub(swap, text)


def _phones(text: str, found: list[Found]) -> str:
    def swap(m: re.Match[str]) -> str:
        t = m.group(0)
        digits = sum(c.isdigit() for c in t)
        if not 7 <= digits <= 15 or DATE.match(t.strip()) or not any(c in t for c in " .-()+"):
            return t
        found.append(("phone number", t))
        return "[phone number]"

    return PHONE.sub(swap, text)


def _names(text: str, given: Iterable[str], found: list[Found]) -> str:
    words = {w for name in given for w in re.findall(r"[^\W\d_][\w'’-]{1,40}", name)}
    for m in [*INTRODUCED.finditer(text), *GREETED.finditer(text)]:
        words.update(w for w in m.group("name").split() if w not in NOT_NAMES)
        if len(words) >= MAX_NAMES:  # a conversation names a few people; past that it is not one
            break
    if not words:
        return text
    alternatives = "|".join(sorted(map(re.escape, words), key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w'’-])(?:{alternatives})(?![\w'’-])")
    return _sub(pattern, text, "[name]", "name", found)
