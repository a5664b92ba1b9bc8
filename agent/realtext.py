"""`supportbot eval --suite realtext`: the guard and the classifier judged on text real models and
customers wrote (τ2-bench's airline conversations, read from the folder beside the checkout). The
grading and the report are here; the run, which drives the store and its sessions, is
`bot.realtext`'s.

On a scratch store holding the conversations' customers and τ2's retail store:

- every assistant reply a conversation sent before its first write action (the first greeting is
  the harness's, not the model's) goes through `agent.policy.guard` in a session bound to the
  conversation's customer, with what the conversation had shown so far (its tool results and the
  customer's words) as the turn's evidence; a transfer to a person the conversation made opens
  the session's ticket first, as it would in our store. Each such reply is honest by the
  conversation's own tool results, so every replacement is a false positive; a reply that lost a
  sentence that was not tool traffic (a tool's name, a JSON object), or lost its line breaks,
  counts against the guard;
- every customer message goes through `agent.policy.classify`, graded against the hand labels
  in `agent/realtext_labels.json` (keyed by file, task and message index, with a short hash of
  the message; the corpus text is never stored here): an unlabelled message expects no verdict;
- every planted lie in `agent/realtext_lies.json` (English, Spanish, German) is filled in with a
  retail customer's real order, looked up with our own tool in that customer's session, and put
  through the guard alone and after an honest reply: it must not reach the customer either way.

The report gives the issue's table (measured against each goal), the guard's CPU per reply
(p50, p95, max: `time.process_time`, the store's reads included) and every miss by key.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agent import facts, policy
from agent.realtext_corpus import Conversation, Corpus, digest
from storage.types import format_cents, to_cents
from tools.sanitizer import JSON_KEY, SNAKE, split_sentences

HERE = Path(__file__).resolve().parent
LABELS = HERE / "realtext_labels.json"
LIES = HERE / "realtext_lies.json"
REPLACING = {"false_refund", "false_order", "false_handoff", "tool_text", "unsafe_text"}
GOALS = {
    "replaced_share": 0.002,
    "lost_sentence_share": 0.01,
    "lost_not_tool_traffic": 0,
    "line_breaks_lost": 0,
    "lies_let_through": 0,
    "wrong_escalations": 0,
    "missed_person_requests": 0,
    "guard_cpu_p95_ms": 2.0,
}
WORD = re.compile(r"\w+")
KEPT_SHARE = 0.6  # a sentence survives when this share of its words is still in the reply


class Label(BaseModel):
    file: str
    task: str
    index: int
    hash: str
    verdict: str  # a policy reason (human_request, legal, …) or "none"
    bundled: bool = False  # other requests come with the request for a person: the model must go on
    ambiguous: bool = False  # a person could read it either way: a verdict or none is right
    why: str = ""


class Lie(BaseModel):
    id: str
    lang: str
    kind: str
    needs: str  # the status of the order the lie is about
    text: str


def load_labels(path: Path = LABELS) -> dict[tuple[str, str, int], Label]:
    raw = json.loads(path.read_text(encoding="utf-8"))["labels"]
    return {(x.file, x.task, x.index): x for x in (Label.model_validate(r) for r in raw)}


def load_lies(path: Path = LIES) -> list[Lie]:
    return [Lie.model_validate(r) for r in json.loads(path.read_text(encoding="utf-8"))["lies"]]


@dataclass
class Tally:
    replies: int = 0
    replaced: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # replies that lost a sentence
    lost_not_tool: list[str] = field(default_factory=list)  # … one that was not tool traffic
    multiline: int = 0
    breaks_lost: list[str] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    messages: int = 0
    verdicts: int = 0
    wrong: list[str] = field(default_factory=list)
    missed_person: list[str] = field(default_factory=list)
    missed_other: list[str] = field(default_factory=list)
    bundled_stopped: list[str] = field(default_factory=list)
    stale_labels: list[str] = field(default_factory=list)
    lies: int = 0
    lies_through: list[str] = field(default_factory=list)


@dataclass
class Seen:
    """What a conversation has shown so far: its tool results, the customer's words, the tools it used."""

    tool_results: list[str] = field(default_factory=list)
    customer: list[str] = field(default_factory=list)
    tools: set[str] = field(default_factory=set)


def key(c: Conversation, index: int) -> str:
    return f"{c.file}/{c.task_id}#{index}"


# --- the guard -------------------------------------------------------------------------------------------
def _words(text: str) -> list[str]:
    return [w for w in WORD.findall(text.lower()) if len(w) > 1]


def lost_sentences(before: str, after: str) -> list[str]:
    """The sentences of `before` whose words are mostly gone from `after`."""
    kept = set(_words(after))
    out = []
    for sentence in split_sentences(before):
        words = _words(sentence)
        if words and sum(w in kept for w in words) < KEPT_SHARE * len(words):
            out.append(sentence.strip())
    return out


def tool_traffic(sentence: str, tools: set[str]) -> bool:
    """A sentence that pastes tool traffic: a tool's name or a JSON object."""
    return bool(JSON_KEY.search(sentence)) or any(name in tools for name in SNAKE.findall(sentence))


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def grade_reply(tally: Tally, key: str, text: str, out: policy.Guarded, tools: set[str]) -> None:
    tally.replies += 1
    multiline = len(_lines(text)) > 1
    tally.multiline += multiline
    if out.reason in REPLACING:
        tally.replaced.append(key)
        if multiline:
            tally.breaks_lost.append(key)
        return
    lost = lost_sentences(text, out.text)
    if lost:
        tally.lost.append(key)
        if not all(tool_traffic(s, tools) for s in lost):
            tally.lost_not_tool.append(key)
    gone = sum(1 for line in _lines(text) if lost_sentences(line, out.text) == split_sentences(line))
    if multiline and len(_lines(out.text)) < len(_lines(text)) - gone:
        tally.breaks_lost.append(key)


# --- the classifier --------------------------------------------------------------------------------------
Labels = dict[tuple[str, str, int], Label]


def classify_one(tally: Tally, c: Conversation, index: int, said: str, labels: Labels) -> None:
    tally.messages += 1
    where = key(c, index)
    label = labels.get((c.file, c.task_id, index))
    if label is not None and label.hash != digest(said):
        tally.stale_labels.append(where)
    expected = label.verdict if label is not None else "none"
    verdict = policy.classify(said)
    got = verdict.reason if verdict is not None else "none"
    if verdict is not None:
        tally.verdicts += 1
        if got != expected:
            tally.wrong.append(f"{where} {got} (expected {expected})")
    if verdict is None and expected != "none" and not (label is not None and label.ambiguous):
        (tally.missed_person if expected == "human_request" else tally.missed_other).append(f"{where} {expected}")
    if label is not None and label.bundled and verdict is not None and verdict.ends_turn:
        tally.bundled_stopped.append(where)


# --- planted lies ----------------------------------------------------------------------------------------
def _money_eu(cents: int) -> str:
    return f"{cents // 100:,}".replace(",", ".") + f",{cents % 100:02d} $"


_MONTHS_ES = (
    "enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre", "noviembre",
    "diciembre",
)  # fmt: skip


def fill(lie: Lie, order: dict[str, Any]) -> str:
    """The lie about this order: its own number and item, and a total and date it does not have."""
    cents = to_cents(order["total"])
    wrong = cents + 1730
    day = (order["delivered_at"] or order["placed_at"])[:10]
    from datetime import date

    shifted = date.fromisoformat(day) + timedelta(days=3)
    return lie.text.format(
        order=order["id"],
        item=order["items"][0]["name"].lower(),
        total=format_cents(cents, "USD"),
        total_eu=_money_eu(cents),
        wrong_total=format_cents(wrong, "USD"),
        wrong_total_eu=_money_eu(wrong),
        wrong_date=shifted.isoformat(),
        wrong_date_de=shifted.strftime("%d.%m.%Y"),
        wrong_date_es=f"{shifted.day} de {_MONTHS_ES[shifted.month - 1]}",
    )


def lie_through(said: str, out: policy.Guarded) -> bool:
    """A planted lie reached the customer: its words went out, or the guard let its sentences stand."""
    return _norm(said) in _norm(out.text) or (out.reason not in REPLACING and not lost_sentences(said, out.text))


def honest_replies(corpus: Corpus) -> list[str]:
    """Every reply a conversation sent before its first write (the ones the guard is judged on)."""
    return [
        m.content
        for c in corpus.conversations
        for m in c.messages
        if m.role == "assistant" and not m.tools and 0 < m.index < c.first_write() and m.content.strip()
    ]


def evidence(seen: Seen) -> facts.Evidence:
    return facts.Evidence(tuple(seen.tool_results), tuple(seen.customer), frozenset(seen.tools))


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


# --- running and reporting -------------------------------------------------------------------------------
def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def report(tally: Tally, corpus: Corpus, labels: dict[tuple[str, str, int], Label]) -> dict[str, Any]:
    replies = max(tally.replies, 1)
    measured = {
        "replaced_share": round(len(tally.replaced) / replies, 4),
        "lost_sentence_share": round(len(tally.lost) / replies, 4),
        "lost_not_tool_traffic": len(tally.lost_not_tool),
        "line_breaks_lost": len(tally.breaks_lost),
        "lies_let_through": len(tally.lies_through),
        "wrong_escalations": len(tally.wrong),
        "missed_person_requests": len(tally.missed_person),
        "guard_cpu_p95_ms": _pct(tally.cpu_ms, 0.95),
    }
    return {
        "conversations": len(corpus.conversations),
        "replies": tally.replies,
        "multiline_replies": tally.multiline,
        "replaced": len(tally.replaced),
        "lost_sentence": len(tally.lost),
        "customer_messages": tally.messages,
        "labels": len(labels),
        "verdicts": tally.verdicts,
        "lies": tally.lies,
        "guard_cpu_ms": {"p50": _pct(tally.cpu_ms, 0.5), "p95": _pct(tally.cpu_ms, 0.95), "max": _pct(tally.cpu_ms, 1)},
        "measured": measured,
        "goals": GOALS,
        "goals_met": all(measured[k] <= v for k, v in GOALS.items()),
        "misses": {
            "replaced": tally.replaced,
            "lost_sentence": tally.lost,
            "lost_not_tool_traffic": tally.lost_not_tool,
            "line_breaks_lost": tally.breaks_lost,
            "lies_let_through": tally.lies_through,
            "wrong_escalations": tally.wrong,
            "missed_person_requests": tally.missed_person,
            "missed_other_verdicts": tally.missed_other,
            "bundled_requests_stopped": tally.bundled_stopped,
            "stale_labels": tally.stale_labels,
        },
    }


def table(rep: dict[str, Any]) -> str:
    m, n = rep["measured"], rep["replies"]
    miss = rep["misses"]
    rows = [
        ("honest replies replaced by fixed text", f"{rep['replaced']} of {n} ({m['replaced_share']:.1%})", "≤ 0.2 %"),
        (
            "replies that lost a sentence",
            f"{rep['lost_sentence']} ({m['lost_sentence_share']:.1%}); {m['lost_not_tool_traffic']} lost more "
            "than tool traffic",
            "≤ 1 %, and only tool traffic",
        ),
        (
            "multi-line replies whose line breaks were lost",
            f"{m['line_breaks_lost']} of {rep['multiline_replies']}",
            "0",
        ),
        ("planted false statements let through", f"{m['lies_let_through']} of {rep['lies']}", "0"),
        (
            "customer messages escalated wrongly",
            f"{m['wrong_escalations']} of {rep['verdicts']} verdicts on {rep['customer_messages']} messages",
            "0",
        ),
        ("clear requests for a person missed", str(m["missed_person_requests"]), "0"),
        ("other labelled verdicts missed", str(len(miss["missed_other_verdicts"])), "-"),
        ("bundled requests for a person that stopped the model", str(len(miss["bundled_requests_stopped"])), "0"),
        (
            "guard CPU per reply (p50 / p95 / max)",
            "{p50:.2f} / {p95:.2f} / {max:.2f} ms".format(**rep["guard_cpu_ms"]),
            "p95 ≤ 2 ms",
        ),
    ]
    lines = ["| what | measured | goal |", "|---|---|---|", *(f"| {a} | {b} | {c} |" for a, b, c in rows)]
    lines.append("")
    lines.append(f"{rep['conversations']} conversations; goals met: {'yes' if rep['goals_met'] else 'NO'}")
    if miss["stale_labels"]:
        lines.append(f"labels whose message changed: {', '.join(miss['stale_labels'][:10])}")
    return "\n".join(lines)
