"""The offline model's help-center answers: extractive, from `search_help_center`, never invented.

A general question (no order number, asked in general terms) is searched first, each question of
the message on its own (one search each, in one round). When the help center answers, the reply
quotes the best passage's snippet briefly, with its title and link; when it does not, it says so
(stating the return window from settings when that is what was asked) and offers a person, and a
"yes" to that offer opens a P3 ticket. Kept apart from agent/offline.py, which calls `step` from
one place.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from agent.offline_text import WHO
from storage.stopwords import STOPWORDS
from tools import wording

QUESTION = re.compile(
    r"^\s*(?:how|what|when|where|which|why|can|could|do|does|is|are|will|may|should|cómo|cuánto|cuándo|"
    r"qué|dónde|puedo|hay|wie|was|wann|wo|kann|gibt|muss)\b|\?\s*$",
    re.IGNORECASE,
)
PERSONAL = re.compile(r"\b(?:my|mine|i'm|i want|i need|mi|mis|mein|meine|meinen|meiner)\b", re.IGNORECASE)
ORDER = re.compile(r"\b[A-Za-z]{2,6}-\d{2,}\b")
RETURN_WINDOW = re.compile(r"\b(return window|how long .{0,40}return|how many days|return policy)\b", re.IGNORECASE)
YES = re.compile(r"^\s*(?:yes|yeah|yep|sure|please|ok(?:ay)?|sí|si|ja|gerne|claro)\b", re.IGNORECASE)
NO = re.compile(r"^\s*(?:no|nope|nein|not now|no thanks)\b", re.IGNORECASE)
WORD = re.compile(r"[^\W_]+")
SENTENCE = re.compile(r"(?<=[?!.])\s+|\s*;\s*")
GREETING = re.compile(r"^\s*(?:good (?:morning|afternoon|evening|night)|bye|goodbye|cheers)\b[\s!.,]*$", re.IGNORECASE)
MARKUP = re.compile(r"<[@#!][^<>\s]{0,80}>")
ALL_STOPWORDS = frozenset().union(*STOPWORDS.values())
Call = tuple[str, dict[str, Any], dict[str, Any]]
_ids = itertools.count(1)


def is_general_question(text: str) -> bool:
    """Asked in general terms ("Can I return an item?"), not about the customer's own order."""
    return bool(QUESTION.search(text)) and not PERSONAL.search(text) and not ORDER.search(text)


def _use(name: str, **args: Any) -> list[dict[str, Any]]:
    return [{"type": "tool_use", "id": f"toolu_offline_kb_{next(_ids):06d}", "name": name, "input": args}]


def _say(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text}]


def _result(turn: list[Call], name: str) -> dict[str, Any] | None:
    return next((r for n, _, r in turn if n == name), None)


def _answer_offer(texts: list[str], turn: list[Call]) -> list[dict[str, Any]] | None:
    text = texts[-1] if texts else ""
    if NO.search(text):
        return _say(wording.NO_PERSON)
    if not YES.search(text):
        return None
    escalated = _result(turn, "escalate_to_human")
    if escalated is None:
        asked = texts[-2] if len(texts) > 1 else text
        summary = f"The help center had no answer to: {asked[:300]}"
        return _use("escalate_to_human", reason="question", priority="P3", summary=summary)
    if escalated.get("outcome") != "ok":  # no ticket (the caller's quota): never promise a person
        return _say(wording.TICKET_LIMIT)
    return _say(wording.ESCALATED_HUMAN)


def questions(text: str) -> list[str]:
    """The parts of a message worth searching, each on its own ("How long is the return window? And how
    long does shipping take?" is two): a mention, a greeting or a question about the bot is no question."""
    asked = []
    for part in SENTENCE.split(MARKUP.sub(" ", text)):
        part = part.strip()
        words = [w for w in WORD.findall(part.lower()) if w not in ALL_STOPWORDS]
        if words and not WHO.search(part) and not GREETING.match(part):
            asked.append(part[:500])
    return list(dict.fromkeys(asked))


def _quote(result: dict[str, Any]) -> str:
    best = (result.get("results") or [])[0]
    return wording.help_center_quote(
        language=str(result.get("language") or "en"),
        snippet=str(best["snippet"]),
        title=str(best["title"]),
        url=str(best["url"]),
        asked=str(result.get("asked_language") or result.get("language") or "en"),
    )


def step(
    texts: list[str],
    turn: list[Call],
    *,
    last_reply: str,
    window_days: int,
    asked: list[str] | None = None,
    lead: list[str] | None = None,
) -> list[dict[str, Any]] | None:
    """The next blocks for a help-center question, or None when the message is not one. `asked` are
    the questions in the message (by default, `questions` of it): one search each, in one round.
    With `lead` (what the bot says it cannot do) the answer follows it, and when the help center
    has nothing to add the step returns None and the lead is said alone."""
    text = texts[-1] if texts else ""
    if wording.offered_person(last_reply):
        answered = _answer_offer(texts, turn)
        if answered is not None:
            return answered
    if WHO.search(text):
        return None  # small talk: the offline model's own lines
    asked = [q for q in (questions(text) if asked is None else asked) if q]
    if not asked:
        return None
    searched = {str(a.get("query")): r for n, a, r in turn if n == "search_help_center"}
    missing = [q for q in asked if q not in searched]
    if missing:
        return [block for q in missing for block in _use("search_help_center", query=q)]
    results = [searched[q] for q in asked]
    found = [r for r in results if r.get("answered") and r.get("results")]
    unanswered = [
        q for q, r in zip(asked, results, strict=True) if r not in found and (QUESTION.search(q) or not found)
    ]
    if lead and not found:
        return None
    said = [*(lead or []), *(_quote(r) for r in found)]
    if unanswered and not lead:
        language = str(results[0].get("asked_language") or results[0].get("language") or "en")
        known = wording.return_window_line(window_days) if any(RETURN_WINDOW.search(q) for q in unanswered) else ""
        said.append(wording.help_center_none(language=language, known=known))
    return _say(" ".join(said))
