"""Help-center search in the database itself, behind one small interface.

    PassageIndex.columns(...)  what a passage row needs for this index (written with the row)
    PassageIndex.refresh(s)    after passages changed, in the same transaction (spelling terms)
    PassageIndex.search(...)   a question in one language -> ranked passages, each with coverage

- SQLite: an FTS5 external-content table `kb_fts_passages` over `kb_passages(fts_head, fts_body)`
  (the words analyzed in Python for the passage's language, storage.analysis), kept in step by
  triggers that index published passages only; ranked by BM25 (`bm25()`, title and heading weigh 4x).
- PostgreSQL: a generated `tsvector` column `kb_passages.kb_fts` built with the passage
  language's text search configuration (`english`, `spanish`, `german`, …), weighted A title,
  B heading, D text, under a partial GIN index on published passages; ranked by `ts_rank`.
- Typos, one mechanism per database: SQLite's spelling pass looks up each query term in the
  index's own vocabulary (`fts5vocab` table `kb_fts_vocab`) and, for an unknown one, takes
  candidates from a `trigram`-tokenized FTS5 table of those terms (`kb_fts_spelling`);
  PostgreSQL takes them from `kb_fts_terms` (the `ts_stat` of the index) through its `pg_trgm`
  GIN index. Either way the closest candidate within `max_edits` is searched as well.
- The no-answer rule (`ANSWER_COVERAGE`), the same on both: raw BM25 and ts_rank scores are not
  comparable across queries, so each hit carries its *coverage*: the share of the question's
  content terms (after spelling correction) that the passage contains. The help center answers
  only when the top hit covers at least ANSWER_COVERAGE; the threshold is tuned on the retrieval
  eval (`supportbot eval --suite kb`).

Everything named `kb_fts*` is created by the migration and lives outside the ORM model
(`include_name` keeps it out of the schema comparison). A vector index (pgvector) would be
another PassageIndex: `columns` would add the embedding, `search` a nearest-neighbour query.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from storage.analysis import analyzer, best_correction, joined_terms, trigrams
from storage.engine import Store

ANSWER_COVERAGE = 0.6
CANDIDATES = 12  # passages ranked by the database, then re-ranked by coverage
MAX_QUERY_TERMS = 24
MAX_CORRECTED = 6
INDEX_PREFIX = "kb_fts"
SNIPPET_CHARS = 280
SENTENCE = re.compile(r"(?<=[.!?])\s+")


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic filter: the search index objects are the migration's, not the ORM model's."""
    return not (name or "").startswith((INDEX_PREFIX, f"ix_{INDEX_PREFIX}"))


@dataclass(frozen=True, slots=True)
class Hit:
    passage_id: int
    article_id: int
    title: str
    heading: str | None
    url: str
    locale: str
    text: str
    rank: float  # the database's relevance, higher is better; comparable within one query only
    coverage: float  # share of the query's content terms in this passage (the no-answer rule)


@dataclass(frozen=True, slots=True)
class Results:
    language: str
    terms: tuple[str, ...]  # the query's content terms as the index analyzed them
    corrected: dict[str, str] = field(default_factory=dict)  # typo -> the term searched instead
    hits: tuple[Hit, ...] = ()

    @property
    def answered(self) -> bool:
        return bool(self.terms) and bool(self.hits) and self.hits[0].coverage >= ANSWER_COVERAGE


class PassageIndex(Protocol):
    name: str

    def columns(self, *, language: str, title: str, heading: str | None, text: str) -> dict[str, Any]: ...

    async def refresh(self, session: AsyncSession) -> None: ...

    async def search(self, query: str, *, language: str, limit: int = 3) -> Results: ...


def index_for(store: Store) -> PassageIndex:
    return PostgresIndex(store) if store.dialect == "postgresql" else SqliteIndex(store)


async def published_languages(session: AsyncSession) -> list[str]:
    """The languages that have published passages: an index skip-scan, a few seeks each."""
    rows = await session.execute(
        text(
            "WITH RECURSIVE l(x) AS ("
            " SELECT min(locale) FROM kb_passages WHERE published"
            " UNION ALL"
            " SELECT (SELECT min(locale) FROM kb_passages WHERE locale > l.x AND published)"
            " FROM l WHERE l.x IS NOT NULL"
            ") SELECT x FROM l WHERE x IS NOT NULL"
        )
    )
    return [r[0] for r in rows]


def _coverage(alternatives: Sequence[set[str]], passage_terms: set[str]) -> float:
    if not alternatives:
        return 0.0
    return sum(1 for alts in alternatives if alts & passage_terms) / len(alternatives)


def _rerank(hits: list[Hit], limit: int) -> tuple[Hit, ...]:
    """Most coverage first, the database's rank among equals; one passage per article."""
    seen: set[int] = set()
    out: list[Hit] = []
    for hit in sorted(hits, key=lambda h: (-h.coverage, -h.rank)):
        if hit.article_id not in seen:
            seen.add(hit.article_id)
            out.append(hit)
    return tuple(out[:limit])


def snippet(passage: str, query: str, language: str, *, chars: int = SNIPPET_CHARS) -> str:
    """The passage's sentence that shares most terms with the query, and what follows it, cut to
    `chars` at a word boundary."""
    sentences = [s for s in SENTENCE.split(passage.strip()) if s]
    if not sentences:
        return ""
    wanted = set(analyzer(language).terms(query))
    scores = [len(wanted & set(analyzer(language).terms(s))) for s in sentences]
    start = max(range(len(sentences)), key=lambda i: (scores[i], -i))
    out = sentences[start]
    for nxt in sentences[start + 1 :]:
        if len(out) + 1 + len(nxt) > chars:
            break
        out += " " + nxt
    if len(out) > chars:
        out = out[:chars].rsplit(" ", 1)[0].rstrip(",;:") + " …"
    return out


# --- SQLite -----------------------------------------------------------------------------------------
class SqliteIndex:
    name = "sqlite-fts5"

    def __init__(self, store: Store) -> None:
        self.store = store

    def columns(self, *, language: str, title: str, heading: str | None, text: str) -> dict[str, Any]:
        return {
            "fts_head": joined_terms(f"{title}\n{heading or ''}", language),
            "fts_body": joined_terms(text, language),
        }

    async def refresh(self, session: AsyncSession) -> None:
        await session.execute(text("DELETE FROM kb_fts_spelling"))
        await session.execute(
            text(
                "INSERT INTO kb_fts_spelling(term, docs) SELECT term, doc FROM kb_fts_vocab "
                "WHERE length(term) >= 4 AND term NOT GLOB '*[0-9]*'"
            )
        )

    async def _corrections(self, s: AsyncSession, terms: list[str]) -> dict[str, str]:
        vocab = text("SELECT term FROM kb_fts_vocab WHERE term IN :t").bindparams(bindparam("t", expanding=True))
        known = {r[0] for r in await s.execute(vocab, {"t": terms})}
        out: dict[str, str] = {}
        for term in [t for t in terms if t not in known][:MAX_CORRECTED]:
            grams = trigrams(term)
            if not grams:
                continue
            rows = await s.execute(
                text("SELECT term, docs FROM kb_fts_spelling WHERE kb_fts_spelling MATCH :q ORDER BY rank LIMIT 30"),
                {"q": " OR ".join(f'"{g}"' for g in grams)},
            )
            fixed = best_correction(term, [(r[0], int(r[1])) for r in rows])
            if fixed:
                out[term] = fixed
        return out

    async def search(self, query: str, *, language: str, limit: int = 3) -> Results:
        terms = list(dict.fromkeys(analyzer(language).terms(query)))[:MAX_QUERY_TERMS]
        if not terms:
            return Results(language, ())
        async with self.store.read() as s:
            corrected = await self._corrections(s, terms)
            alternatives = [{t, corrected[t]} if t in corrected else {t} for t in terms]
            match = " OR ".join(f'"{t}"' for t in sorted(set().union(*alternatives)))
            rows = await s.execute(
                text(
                    "SELECT p.id, p.article_id, p.title, p.heading, p.url, p.locale, p.text, p.fts_head, p.fts_body,"
                    " bm25(kb_fts_passages, 4.0, 1.0) AS score"
                    " FROM kb_fts_passages JOIN kb_passages p ON p.id = kb_fts_passages.rowid"
                    " WHERE kb_fts_passages MATCH :q AND p.locale = :lang AND p.published"
                    " ORDER BY score LIMIT :n"
                ),
                {"q": match, "lang": language, "n": CANDIDATES},
            )
            hits = [
                Hit(
                    passage_id=r.id,
                    article_id=r.article_id,
                    title=r.title,
                    heading=r.heading,
                    url=r.url,
                    locale=r.locale,
                    text=r.text,
                    rank=-float(r.score),
                    coverage=_coverage(alternatives, set(f"{r.fts_head} {r.fts_body}".split())),
                )
                for r in rows
            ]
        return Results(language, tuple(terms), corrected, _rerank(hits, limit))


# --- PostgreSQL -------------------------------------------------------------------------------------
LEXEME = re.compile(r"^[^\W_]+$")


class PostgresIndex:
    name = "postgresql-tsvector"

    def __init__(self, store: Store) -> None:
        self.store = store

    def columns(self, *, language: str, title: str, heading: str | None, text: str) -> dict[str, Any]:
        return {}  # the tsvector is a generated column

    async def refresh(self, session: AsyncSession) -> None:
        await session.execute(text("DELETE FROM kb_fts_terms"))
        await session.execute(
            text(
                "INSERT INTO kb_fts_terms(term, docs) SELECT word, ndoc FROM "
                "ts_stat('SELECT kb_fts FROM kb_passages WHERE published') "
                "WHERE length(word) >= 4 AND word !~ '[0-9]'"
            )
        )

    async def _analyze(self, s: AsyncSession, words: list[str], config: str) -> list[str]:
        rows = await s.execute(
            text(
                "SELECT DISTINCT lexeme FROM unnest(to_tsvector(CAST(:cfg AS regconfig), :q)) "
                "WHERE lexeme ~ '^[[:alnum:]]+$'"
            ),
            {"cfg": config, "q": " ".join(words)},
        )
        return sorted(r[0] for r in rows)[:MAX_QUERY_TERMS]

    async def _corrections(self, s: AsyncSession, terms: list[str]) -> dict[str, str]:
        known = {
            r[0] for r in await s.execute(text("SELECT term FROM kb_fts_terms WHERE term = ANY(:t)"), {"t": terms})
        }
        unknown = [t for t in terms if t not in known and len(t) >= 4][:MAX_CORRECTED]
        if not unknown:
            return {}
        await s.execute(text("SELECT set_config('pg_trgm.similarity_threshold', '0.2', true)"))
        out: dict[str, str] = {}
        for term in unknown:
            rows = await s.execute(
                text("SELECT term, docs FROM kb_fts_terms WHERE term % :t ORDER BY similarity(term, :t) DESC LIMIT 30"),
                {"t": term},
            )
            fixed = best_correction(term, [(r[0], int(r[1])) for r in rows])
            if fixed:
                out[term] = fixed
        return out

    async def search(self, query: str, *, language: str, limit: int = 3) -> Results:
        from storage.analysis import PG_CONFIGS

        words = analyzer(language).words(query)
        if not words:
            return Results(language, ())
        async with self.store.read() as s:
            terms = await self._analyze(s, words, PG_CONFIGS.get(language, "simple"))
            if not terms:
                return Results(language, ())
            corrected = await self._corrections(s, terms)
            alternatives = [{t, corrected[t]} if t in corrected else {t} for t in terms]
            lexemes = sorted(t for t in set().union(*alternatives) if LEXEME.match(t))
            tsquery = " | ".join(f"'{t}'" for t in lexemes)
            rows = await s.execute(
                text(
                    "SELECT c.*, tsvector_to_array(p.kb_fts) AS lexemes FROM ("
                    " SELECT p.id, p.article_id, p.title, p.heading, p.url, p.locale, p.text,"
                    " ts_rank(p.kb_fts, q.q, 1) AS score"
                    " FROM kb_passages p, CAST(:q AS tsquery) AS q(q)"
                    " WHERE p.kb_fts @@ q.q AND p.published AND p.locale = :lang"
                    " ORDER BY score DESC LIMIT :n"
                    ") c JOIN kb_passages p ON p.id = c.id ORDER BY c.score DESC"
                ),
                {"q": tsquery, "lang": language, "n": CANDIDATES},
            )
            hits = [
                Hit(
                    passage_id=r.id,
                    article_id=r.article_id,
                    title=r.title,
                    heading=r.heading,
                    url=r.url,
                    locale=r.locale,
                    text=r.text,
                    rank=float(r.score),
                    coverage=_coverage(alternatives, set(r.lexemes)),
                )
                for r in rows
            ]
        return Results(language, tuple(terms), corrected, _rerank(hits, limit))
