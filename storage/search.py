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
- Typos, one mechanism per database, over the index's own vocabulary copied into `kb_fts_terms`
  at every refresh: on SQLite from the `fts5vocab` table `kb_fts_vocab` (a spelling pass: an
  unknown term's candidates are the terms sharing its first two letters, either way round), on
  PostgreSQL from `ts_stat` (candidates through a `pg_trgm` GIN index, `term % query`). Either way
  the closest candidate within `max_edits` (analysis.best_correction) is searched as well.
- Cost: the database never ranks a large share of itself (`plan`); `supportbot bench --suite kb`
  measures it at 10,000 articles.
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

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from storage.analysis import analyzer, best_correction, compound_head, joined_terms, max_edits
from storage.engine import Store

ANSWER_COVERAGE = 0.6
CANDIDATES = 12  # passages ranked by the database, then re-ranked by coverage
COMMON_SHARE, COMMON_MIN = 0.02, 200  # a term in more passages than this is "common" (see `plan`)
MAX_COMBINATIONS = 10
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
    position: int  # 0 is the article's opening passage
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


Group = frozenset[str]  # a query term and its spelling correction: either may match
Level = list[list[Group]]  # OR of alternatives, each an AND of groups


def plan(groups: list[Group], docs: dict[str, int], total: int) -> list[Level]:
    """Which passages the index ranks, most specific first, so that it never ranks a large share of itself.

    BM25 and ts_rank cost one evaluation per matching passage, and a question's common words
    ("order", "ship") match a large share of a big help center. So a selective term (in at most
    COMMON_SHARE of the passages) selects passages on its own, while common terms select only
    together: all of them (AND), then every combination of one fewer, down to half of them. A
    single common term beside selective ones selects nothing (a passage with only that word
    covers too little of the question to answer it), unless it is the question's only word. Every
    term still counts in the ranking (see `_fts5`) and in coverage; terms found nowhere are left out.
    """
    common_docs = max(COMMON_MIN, int(total * COMMON_SHARE))
    counts = {g: sum(docs.get(t, 0) for t in g) for g in groups}
    selective: Level = [[g] for g in groups if 0 < counts[g] <= common_docs]
    common = [g for g in groups if counts[g] > common_docs]
    if len(common) < 2:
        return [selective] if selective else ([[[common[0]]]] if common else [])
    levels: list[Level] = []
    for k in range(len(common), 1, -1):
        if k * 2 < len(common):
            break
        combos = [list(c) for c in itertools.islice(itertools.combinations(common, k), MAX_COMBINATIONS)]
        levels.append(selective + combos)
    return levels


def _fix(term: str, candidates: list[tuple[str, int]]) -> str | None:
    """The term searched instead of an unknown one: a spelling correction, else a compound's head."""
    return best_correction(term, candidates) or compound_head(term, candidates)


def _coverage(alternatives: Sequence[set[str]] | Sequence[Group], passage_terms: set[str]) -> float:
    if not alternatives:
        return 0.0
    return sum(1 for alts in alternatives if alts & passage_terms) / len(alternatives)


def _hit(r: Any, rank: float, coverage: float) -> Hit:
    """A passage row of either backend as a Hit (rank: higher is better)."""
    return Hit(
        passage_id=r.id,
        article_id=r.article_id,
        position=r.position,
        title=r.title,
        heading=r.heading,
        url=r.url,
        locale=r.locale,
        text=r.text,
        rank=rank,
        coverage=coverage,
    )


def _rerank(hits: list[Hit], limit: int) -> tuple[Hit, ...]:
    """Most coverage first; among equals an article's opening passage (which help centers write as
    the short answer), then the database's rank; one passage per article."""
    seen: set[int] = set()
    out: list[Hit] = []
    for hit in sorted(hits, key=lambda h: (-h.coverage, h.position > 0, -h.rank)):
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
def _fts5(level: Level, groups: list[Group]) -> str:
    """The level's passages, ranked by every term: `(level) AND (any term)` matches exactly the
    level's passages, while BM25 counts every phrase of the expression."""
    selects = " OR ".join(
        "(" + " AND ".join("(" + " OR ".join(f'"{t}"' for t in sorted(g)) + ")" for g in alt) + ")" for alt in level
    )
    ranks = " OR ".join(f'"{t}"' for g in groups for t in sorted(g))
    return f"({selects}) AND ({ranks})"


async def _run_levels(levels: list[Level], limit: int, run: Any) -> list[Any]:
    """Rows from each level until `limit` articles are found (a later level re-finds earlier rows)."""
    rows: dict[int, Any] = {}
    for level in levels:
        for r in await run(level):
            rows.setdefault(r.id, r)
        if len({r.article_id for r in rows.values()}) >= limit:
            break
    return list(rows.values())


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
        """Copy the index's vocabulary (fts5vocab) into `kb_fts_terms`, a plain table whose primary
        key makes the per-query term look-ups and spelling ranges cheap."""
        await session.execute(text("DELETE FROM kb_fts_terms"))
        await session.execute(text("INSERT INTO kb_fts_terms(term, docs) SELECT term, doc FROM kb_fts_vocab"))
        await _count_passages(session)

    async def _vocabulary(self, s: AsyncSession, terms: list[str]) -> tuple[dict[str, int], dict[str, str], int]:
        """(passages per known term, typo -> correction, published passages), in two round trips."""
        known = text(
            "SELECT term, docs FROM kb_fts_terms WHERE term IN :t "
            "UNION ALL SELECT NULL, value FROM kb_fts_stats WHERE name = 'passages'"
        ).bindparams(bindparam("t", expanding=True))
        docs: dict[str, int] = {}
        total = 0
        for term, n in await s.execute(known, {"t": terms}):
            if term is None:
                total = int(n)
            else:
                docs[term] = int(n)
        unknown = [t for t in terms if t not in docs and max_edits(t)][:MAX_CORRECTED]
        if not unknown:
            return docs, {}, total
        ranges, params = [], {}
        for i, prefix in enumerate(p for t in unknown for p in dict.fromkeys((t[:2], t[1] + t[0]))):
            ranges.append(f"(term >= :lo{i} AND term < :hi{i})")
            params |= {f"lo{i}": prefix, f"hi{i}": prefix + "\uffff"}
        rows = await s.execute(text("SELECT term, docs FROM kb_fts_terms WHERE " + " OR ".join(ranges)), params)
        candidates = [(r[0], int(r[1])) for r in rows]
        fixes: dict[str, str] = {}
        for t in unknown:
            mine = [c for c in candidates if c[0].startswith((t[:2], t[1] + t[0]))]
            if fixed := _fix(t, mine):
                fixes[t] = fixed
        docs |= {f: dict(candidates)[f] for f in fixes.values()}
        return docs, fixes, total

    async def search(self, query: str, *, language: str, limit: int = 3) -> Results:
        terms = list(dict.fromkeys(analyzer(language).terms(query)))[:MAX_QUERY_TERMS]
        if not terms:
            return Results(language, ())
        async with self.store.read() as s:
            docs, corrected, total = await self._vocabulary(s, terms)
            groups = [frozenset({t, corrected[t]} if t in corrected else {t}) for t in terms]

            async def run(level: Level) -> list[Any]:
                # rank inside the index alone, then read the few winners (the index holds published
                # passages only; other languages' stems rarely match, and are filtered here)
                return list(
                    await s.execute(
                        text(
                            "SELECT p.id, p.article_id, p.position, p.title, p.heading, p.url, p.locale, p.text,"
                            " p.fts_head, p.fts_body, f.score FROM ("
                            " SELECT rowid, bm25(kb_fts_passages, 4.0, 1.0) AS score FROM kb_fts_passages"
                            " WHERE kb_fts_passages MATCH :q ORDER BY score LIMIT :n"
                            ") f JOIN kb_passages p ON p.id = f.rowid"
                            " WHERE p.locale = :lang AND p.published ORDER BY f.score"
                        ),
                        {"q": _fts5(level, groups), "lang": language, "n": CANDIDATES * 3},
                    )
                )

            levels = plan(groups, docs, total)
            rows = await _run_levels(levels, limit, run)
            rows = rows[: CANDIDATES * 2]
        hits = [_hit(r, -float(r.score), _coverage(groups, set(f"{r.fts_head} {r.fts_body}".split()))) for r in rows]
        return Results(language, tuple(terms), corrected, _rerank(hits, limit))


async def _count_passages(session: AsyncSession) -> None:
    await session.execute(text("DELETE FROM kb_fts_stats"))
    await session.execute(
        text("INSERT INTO kb_fts_stats(name, value) SELECT 'passages', count(*) FROM kb_passages WHERE published")
    )


# --- PostgreSQL -------------------------------------------------------------------------------------
LEXEME = re.compile(r"^[^\W_]+$")


def _tsquery(level: Level, groups: list[Group]) -> str:
    """As `_fts5`: the level selects, every term ranks."""
    selects = " | ".join(
        "(" + " & ".join("(" + " | ".join(f"'{t}'" for t in sorted(g)) + ")" for g in alt) + ")" for alt in level
    )
    ranks = " | ".join(f"'{t}'" for g in groups for t in sorted(g))
    return f"({selects}) & ({ranks})"


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
                "WHERE word ~ '^[[:alnum:]]+$'"
            )
        )
        await _count_passages(session)

    async def _analyze(self, s: AsyncSession, words: list[str], config: str) -> list[str]:
        rows = await s.execute(
            text(
                "SELECT DISTINCT lexeme FROM unnest(to_tsvector(CAST(:cfg AS regconfig), :q)) "
                "WHERE lexeme ~ '^[[:alnum:]]+$'"
            ),
            {"cfg": config, "q": " ".join(words)},
        )
        return sorted(r[0] for r in rows)[:MAX_QUERY_TERMS]

    async def _vocabulary(self, s: AsyncSession, terms: list[str]) -> tuple[dict[str, int], dict[str, str], int]:
        rows = await s.execute(
            text(
                "SELECT term, docs FROM kb_fts_terms WHERE term = ANY(:t) "
                "UNION ALL SELECT NULL, value FROM kb_fts_stats WHERE name = 'passages'"
            ),
            {"t": terms},
        )
        docs: dict[str, int] = {}
        total = 0
        for term, n in rows:
            if term is None:
                total = int(n)
            else:
                docs[term] = int(n)
        unknown = [t for t in terms if t not in docs and max_edits(t)][:MAX_CORRECTED]
        if not unknown:
            return docs, {}, total
        await s.execute(text("SELECT set_config('pg_trgm.similarity_threshold', '0.2', true)"))
        found = await s.execute(
            text(
                "SELECT q.t, c.term, c.docs FROM unnest(CAST(:t AS text[])) AS q(t) CROSS JOIN LATERAL ("
                " SELECT term, docs FROM kb_fts_terms WHERE term % q.t ORDER BY similarity(term, q.t) DESC LIMIT 30"
                ") c"
            ),
            {"t": unknown},
        )
        by_term: dict[str, list[tuple[str, int]]] = {}
        for t, cand, n in found:
            by_term.setdefault(t, []).append((cand, int(n)))
        fixes = {
            t: f
            for t in unknown
            if (f := best_correction(t, by_term.get(t, [])) or compound_head(t, by_term.get(t, [])))
        }
        docs |= {f: dict(by_term[t])[f] for t, f in fixes.items()}
        return docs, fixes, total

    async def search(self, query: str, *, language: str, limit: int = 3) -> Results:
        from storage.analysis import PG_CONFIGS

        words = analyzer(language).words(query)
        if not words:
            return Results(language, ())
        async with self.store.read() as s:
            terms = await self._analyze(s, words, PG_CONFIGS.get(language, "simple"))
            if not terms:
                return Results(language, ())
            docs, corrected, total = await self._vocabulary(s, terms)
            groups = [
                frozenset(t for t in ({x, corrected[x]} if x in corrected else {x}) if LEXEME.match(t)) for x in terms
            ]

            async def run(level: Level) -> list[Any]:
                return list(
                    await s.execute(
                        text(
                            "SELECT c.*, tsvector_to_array(p.kb_fts) AS lexemes FROM ("
                            " SELECT p.id, p.article_id, p.position, p.title, p.heading, p.url, p.locale, p.text,"
                            " ts_rank(p.kb_fts, q.q, 1) AS score"
                            " FROM kb_passages p, CAST(:q AS tsquery) AS q(q)"
                            " WHERE p.kb_fts @@ q.q AND p.published AND p.locale = :lang"
                            " ORDER BY score DESC LIMIT :n"
                            ") c JOIN kb_passages p ON p.id = c.id ORDER BY c.score DESC"
                        ),
                        {"q": _tsquery(level, live), "lang": language, "n": CANDIDATES},
                    )
                )

            live = [g for g in groups if g]
            levels = plan(live, docs, total)
            rows = await _run_levels(levels, limit, run)
        hits = [_hit(r, float(r.score), _coverage(groups, set(r.lexemes))) for r in rows]
        return Results(language, tuple(terms), corrected, _rerank(hits, limit))
