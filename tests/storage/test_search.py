"""Help-center search on SQLite (FTS5, BM25) and PostgreSQL (tsvector, GIN): ranking, typos,
languages, drafts, the no-answer rule. The suite runs on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, update

from storage.analysis import analyzer, best_correction, guess_language, language_of
from storage.engine import Store
from storage.kb_import import ArticleDoc, Section, import_articles, seed_help_center
from storage.models import Article, Passage
from storage.search import ANSWER_COVERAGE, index_for, published_languages, snippet
from storage.types import FrozenClock

BASE = "https://help.example.com"


@pytest.fixture
async def helpcenter(store: Store, clock: FrozenClock) -> Store:
    await seed_help_center(store, clock, base_url=BASE, return_window_days=30)
    return store


async def top(store: Store, query: str, language: str = "en") -> list[str]:
    results = await index_for(store).search(query, language=language)
    return [h.url.removeprefix(BASE + "/") for h in results.hits]


@pytest.mark.parametrize(
    ("query", "language", "article"),
    [
        ("How long does standard shipping take?", "en", "shipping-times#delivery-times"),
        ("Which payment methods do you accept?", "en", "payment-methods"),
        ("Can I change the delivery address after ordering?", "en", "change-or-cancel-order"),
        ("What does the warranty on appliances cover?", "en", "warranty"),
        ("When are you open?", "en", "opening-hours"),
        ("¿Cuánto tarda el envío estándar?", "es", "es-envios"),
        ("Wie lange habe ich Zeit für eine Rücksendung?", "de", "de-rueckgabe"),
    ],
)
async def test_the_answering_article_ranks_first(helpcenter: Store, query: str, language: str, article: str) -> None:
    found = await top(helpcenter, query, language)
    assert found and found[0].startswith(article), found


async def test_typos_are_corrected_against_the_index_vocabulary(helpcenter: Store) -> None:
    results = await index_for(helpcenter).search("how much does gift wraping cost", language="en")
    assert results.corrected == {analyzer("en").terms("wraping")[0]: analyzer("en").terms("wrapping")[0]}
    assert results.hits[0].url.startswith(f"{BASE}/gift-wrap")
    assert results.answered
    warranty = await top(helpcenter, "how long is the waranty on appliances")
    assert warranty[0].startswith("warranty")


async def test_only_the_requested_language_is_searched(helpcenter: Store) -> None:
    results = await index_for(helpcenter).search("Versand Lieferzeiten", language="en")
    assert all(h.locale == "en" for h in results.hits)
    de = await index_for(helpcenter).search("Versand Lieferzeiten", language="de")
    assert de.hits and all(h.locale == "de" for h in de.hits)
    assert await published_languages_of(helpcenter) == ["de", "en", "es"]


async def published_languages_of(store: Store) -> list[str]:
    async with store.read() as s:
        return await published_languages(s)


async def test_drafts_and_removed_articles_are_never_found(store: Store, clock: FrozenClock) -> None:
    secret = ArticleDoc(
        key="url:https://help.example.com/secret",
        source="markdown",
        title="Secret sale",
        url="https://help.example.com/secret",
        locale="en",
        tags=(),
        draft=True,
        sections=(Section(None, None, "Everything is ninety percent off next Tuesday."),),
        origin="test",
    )
    await import_articles(store, [secret], clock=clock)
    index = index_for(store)
    assert (await index.search("secret sale ninety percent", language="en")).hits == ()
    async with store.write() as s:  # publishing flips the passages: the index follows
        await s.execute(update(Passage).values(published=True))
        await index.refresh(s)
    assert [h.title for h in (await index.search("secret sale ninety percent", language="en")).hits] == ["Secret sale"]
    async with store.write() as s:
        await s.execute(delete(Article))
        await index.refresh(s)
    assert (await index.search("secret sale ninety percent", language="en")).hits == ()


@pytest.mark.parametrize(
    "question",
    [
        "Do you sell gift cards?",
        "Are you hiring software engineers?",
        "Do you have a shop in Paris?",
        "What is the weather tomorrow?",
    ],
)
async def test_questions_the_help_center_cannot_answer_get_no_answer(helpcenter: Store, question: str) -> None:
    results = await index_for(helpcenter).search(question, language="en")
    assert not results.answered, [(h.title, h.coverage) for h in results.hits]
    assert all(h.coverage < ANSWER_COVERAGE for h in results.hits[:1])


async def test_a_question_of_stop_words_only_has_no_terms(helpcenter: Store) -> None:
    results = await index_for(helpcenter).search("can you please tell me how?", language="en")
    assert results.terms == () and results.hits == () and not results.answered


async def test_text_that_looks_like_query_syntax_is_only_text(helpcenter: Store) -> None:
    for query in ['ship* OR "', "NEAR(a b) AND -x", "'; DROP TABLE kb_passages; --", "a & b | !c:*"]:
        results = await index_for(helpcenter).search(query, language="en")
        assert isinstance(results.hits, tuple)
    assert await top(helpcenter, "shipping costs")


def test_snippet_picks_the_sentence_that_matches() -> None:
    text = "We ship worldwide. Standard delivery takes 3 to 5 business days. Express is faster."
    assert snippet(text, "how long is standard delivery", "en").startswith("Standard delivery takes 3 to 5")
    long = "Intro. " + "word " * 200
    assert len(snippet(long, "word", "en")) <= 285


def test_spelling_and_language_helpers() -> None:
    assert best_correction("retrun", [("return", 5), ("rerun", 1)]) == "return"
    assert best_correction("abc", [("abd", 9)]) is None  # too short to correct
    assert best_correction("shipping", [("sleeping", 3)]) is None  # too far
    assert language_of("es-MX") == "es" and language_of("de_DE") == "de" and language_of("12") is None


async def test_guess_language_among_the_help_center_languages() -> None:
    among = ["de", "en", "es"]
    assert await guess_language("¿Cuánto tarda el envío a Madrid?", among) == "es"
    assert await guess_language("Wie lange dauert der Versand nach Berlin?", among) == "de"
    assert await guess_language("How long does shipping take?", among) == "en"
    assert await guess_language("???", among) is None
    assert await guess_language("anything", ["en"]) == "en"


def test_plan_never_lets_a_common_word_select_on_its_own() -> None:
    from storage.search import plan

    g = {t: frozenset({t}) for t in ("ship", "take", "free", "abroad", "order")}
    docs = {"ship": 12_000, "take": 1_300, "order": 20_000, "free": 700, "abroad": 300}
    total = 50_000  # common: in more than 2% (1,000) of the passages
    assert plan([g["free"], g["ship"]], docs, total) == [[[g["free"]]]]  # "ship" ranks but does not select
    assert plan([g["ship"]], docs, total) == [[[g["ship"]]]]  # unless it is the only word
    levels = plan([g["abroad"], g["ship"], g["take"], g["order"]], docs, total)
    assert levels[0] == [[g["abroad"]], [g["ship"], g["take"], g["order"]]]
    assert levels[1] == [[g["abroad"]], [g["ship"], g["take"]], [g["ship"], g["order"]], [g["take"], g["order"]]]
    assert len(levels) == 2  # never fewer than half of the common words together
    assert plan([frozenset({"nowhere"})], {}, total) == []
    # a small help center (the demo's 90 passages): under COMMON_MIN passages every word selects
    assert plan([g["ship"], g["take"]], {"ship": 150, "take": 40}, 1_000) == [[[g["ship"]], [g["take"]]]]
