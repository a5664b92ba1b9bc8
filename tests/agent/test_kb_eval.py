"""The help center's quality floor on this database (the suite runs on SQLite and PostgreSQL):
recall@3 >= 0.8 over the answerable questions, at most 1 unanswerable question answered with a citation."""

from __future__ import annotations

from agent.kb_eval import FLOOR, load_questions, table
from bot.evals import run_kb_eval
from storage.settings import Settings


def test_the_question_set_has_what_the_floor_is_measured_on() -> None:
    questions = load_questions()
    kinds = {q.kind for q in questions}
    assert len(questions) >= 60 and sum(not q.answerable for q in questions) >= 15
    assert {"paraphrase", "typo", "language", "unanswerable"} <= kinds


async def test_retrieval_quality_floor(settings: Settings) -> None:
    rep = await run_kb_eval(settings, database_url=settings.database_url)
    print(table(rep))
    assert rep["recall_at_3"] >= FLOOR["recall_at_3"], table(rep)
    assert rep["offline_unanswerable_cited"] <= FLOOR["unanswerable_cited_max"], table(rep)
    assert rep["mrr"] > 0.5 and rep["offline_cited_correct"] > 0.5
    assert rep["floor_met"]
