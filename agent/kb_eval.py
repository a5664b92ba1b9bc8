"""`supportbot eval --suite kb`: how well the help center is found, and how the offline model uses it.

Over the questions in agent/kb_questions.json (paraphrases, typos, Spanish and German, and
questions the demo help center cannot answer), on a scratch database seeded with the demo store:

- retrieval, per database: recall@3 (an answering article among the first three articles
  found) and MRR over the answerable questions, with the language chosen as the tool chooses it;
  and how often the no-answer rule says "answered" for each kind of question;
- the offline model, through the same Conversation the shell uses: the share of answerable
  questions answered with a citation of a right article, and the share of unanswerable ones
  answered with any citation at all (target 0).

The quality floor (FLOOR) is asserted by a test on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

QUESTIONS = Path(__file__).resolve().parent / "kb_questions.json"
FLOOR = {"recall_at_3": 0.8, "unanswerable_cited_max": 1}
RANKED = 10  # articles ranked per question for MRR


class Question(BaseModel):
    question: str
    articles: list[str] = Field(default_factory=list)  # the last part of the answering articles' URLs
    kind: str

    @property
    def answerable(self) -> bool:
        return bool(self.articles)


def load_questions(path: Path = QUESTIONS) -> list[Question]:
    return [Question.model_validate(q) for q in json.loads(path.read_text(encoding="utf-8"))["questions"]]


def article_of(url: str) -> str:
    return url.split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]


@dataclass
class Outcome:
    question: str
    kind: str
    expected: list[str]
    language: str
    found: list[str]  # articles, best first
    rank: int | None  # 1-based rank of the first answering article
    rule_answered: bool  # the no-answer rule let the tool answer
    coverage: float
    offline_cited: list[str]
    offline_reply: str


def _share(items: list[Outcome], test: Any) -> float:
    return round(sum(1 for o in items if test(o)) / len(items), 4) if items else 0.0


def report(outcomes: list[Outcome], dialect: str) -> dict[str, Any]:
    answerable = [o for o in outcomes if o.expected]
    unanswerable = [o for o in outcomes if not o.expected]
    by_kind = {
        kind: {
            "questions": len(group),
            "recall_at_3": _share(group, lambda o: o.rank is not None and o.rank <= 3),
            "rule_answered": _share(group, lambda o: o.rule_answered),
        }
        for kind in sorted({o.kind for o in outcomes})
        for group in [[o for o in outcomes if o.kind == kind]]
    }
    cited_unanswerable = sum(1 for o in unanswerable if o.offline_cited)
    rep: dict[str, Any] = {
        "suite": "kb",
        "database": dialect,
        "questions": len(outcomes),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "recall_at_3": _share(answerable, lambda o: o.rank is not None and o.rank <= 3),
        "mrr": round(sum(1 / o.rank for o in answerable if o.rank) / len(answerable), 4) if answerable else 0.0,
        "rule_answered_answerable": _share(answerable, lambda o: o.rule_answered),
        "rule_answered_unanswerable": _share(unanswerable, lambda o: o.rule_answered),
        "offline_cited_correct": _share(answerable, lambda o: any(a in o.expected for a in o.offline_cited)),
        "offline_unanswerable_cited": cited_unanswerable,
        "offline_unanswerable_cited_share": _share(unanswerable, lambda o: bool(o.offline_cited)),
        "by_kind": by_kind,
        "floor": FLOOR,
        "results": [asdict(o) for o in outcomes],
    }
    rep["floor_met"] = (
        rep["recall_at_3"] >= FLOOR["recall_at_3"] and cited_unanswerable <= FLOOR["unanswerable_cited_max"]
    )
    return rep


def table(rep: dict[str, Any]) -> str:
    lines = ["| kind | questions | recall@3 | rule says answered |", "|---|---|---|---|"]
    for kind, k in rep["by_kind"].items():
        lines.append(f"| {kind} | {k['questions']} | {k['recall_at_3']:.0%} | {k['rule_answered']:.0%} |")
    misses = [o for o in rep["results"] if o["expected"] and (o["rank"] is None or o["rank"] > 3)]
    wrong = [o for o in rep["results"] if not o["expected"] and o["offline_cited"]]
    lines.append("")
    lines += [f"missed: {o['question']!r} -> {o['found'][:3]} (wanted {o['expected']})" for o in misses]
    lines += [f"unanswerable but cited: {o['question']!r} -> {o['offline_cited']}" for o in wrong]
    lines.append(
        f"{rep['database']}: recall@3 {rep['recall_at_3']:.0%}, MRR {rep['mrr']:.3f} over {rep['answerable']} "
        f"answerable; offline model cited a right article for {rep['offline_cited_correct']:.0%} of them and cited "
        f"something for {rep['offline_unanswerable_cited']} of {rep['unanswerable']} unanswerable; "
        f"floor {'met' if rep['floor_met'] else 'NOT met'}"
    )
    return "\n".join(lines)
