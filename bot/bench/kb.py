"""`supportbot bench --suite kb`: help-center import and search at scale, on this machine.

Writes N synthetic articles (default 10,000; about five passages each) as Markdown files with
front matter, beside the 26 demo articles, and measures:

- import: parsing the folder (`load_path`) and writing it (`import_articles`, one transaction);
- search: every retrieval-eval question (agent/kb_questions.json), several rounds, through the
  language choice and `PassageIndex.search` as the tool runs them: p50/p95/p99 in ms;
- recall@3 of the eval questions against the big index (quality at scale).

The synthetic articles mix the demo help center's own words (Zipf-weighted by their frequency
there) with made-up ones, in the same three languages: common support words ("order", "ship")
are common in the big index too, and the 26 real articles must be found among 10,000 others.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from agent.kb_eval import article_of, load_questions
from desk.sessions import open_session
from storage.engine import Store
from storage.kb_import import demo_documents, import_articles, load_path
from storage.migrate import upgrade
from storage.models import Base
from storage.search import index_for
from storage.settings import Settings
from storage.types import SystemClock
from tools.context import Actor
from tools.search_help_center import choose_language
from tools.toolbox import make_deps

SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "pe", "su")
SYLLABLES += ("na", "ri", "ko", "le", "ba", "di", "fo", "gu", "ha", "je")
LOCALES = (("en", 0.8), ("es", 0.1), ("de", 0.1))
WORDS = re.compile(r"[^\W\d_]+")


def _pseudo(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))


class _Lexicon:
    """A language's words for synthetic articles: the demo help center's own words (Zipf-weighted by
    their frequency there, so "order" is as common as in a real help center) and made-up ones."""

    def __init__(self, texts: list[str], rng: random.Random) -> None:
        counts = Counter(w.lower() for t in texts for w in WORDS.findall(t))
        self.domain = [w for w, _ in counts.most_common()]
        self.domain_weights = [1 / (rank + 1) for rank in range(len(self.domain))]
        self.pseudo = list(dict.fromkeys(_pseudo(rng) for _ in range(20_000)))
        self.pseudo_weights = [1 / (rank + 1) ** 0.8 for rank in range(len(self.pseudo))]

    def sentence(self, rng: random.Random, n: int) -> str:
        half = n // 2
        words = rng.choices(self.domain, self.domain_weights, k=n - half)
        words += rng.choices(self.pseudo, self.pseudo_weights, k=half)
        rng.shuffle(words)
        return " ".join(words).capitalize() + "."


def write_corpus(folder: Path, n: int, *, settings: Settings, seed: int = 7) -> int:
    """n synthetic Markdown articles plus the demo ones; returns the number of files written."""
    rng = random.Random(seed)
    demo = demo_documents(base_url=settings.help_center_url, return_window_days=settings.return_window_days)
    for d in demo:
        body = "\n\n".join(f"## {s.heading}\n\n{s.text}" if s.heading else s.text for s in d.sections)
        name = d.url.rsplit("/", 1)[-1]
        tags = ", ".join(d.tags)
        (folder / f"{name}.md").write_text(
            f"---\ntitle: {d.title}\nurl: {d.url}\nlocale: {d.locale}\ntags: [{tags}]\n---\n{body}\n"
        )
    lexicons = {loc: _Lexicon([f"{d.title} {d.body}" for d in demo if d.locale == loc], rng) for loc, _ in LOCALES}
    for i in range(n):
        locale = rng.choices([loc for loc, _ in LOCALES], weights=[w for _, w in LOCALES])[0]
        lex = lexicons[locale]
        title = lex.sentence(rng, rng.randint(3, 6)).rstrip(".")
        parts = [" ".join(lex.sentence(rng, rng.randint(8, 16)) for _ in range(3))]
        for _ in range(rng.randint(3, 5)):
            heading = lex.sentence(rng, rng.randint(2, 5)).rstrip(".")
            parts.append(f"## {heading}\n\n" + " ".join(lex.sentence(rng, rng.randint(8, 16)) for _ in range(4)))
        url = f"{settings.help_center_url}/bench/{i}"
        (folder / f"bench-{i:05d}.md").write_text(
            f"---\ntitle: {title}\nurl: {url}\nlocale: {locale}\n---\n" + "\n\n".join(parts) + "\n"
        )
    return n + len(demo)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


async def _searches(store: Store, settings: Settings, rounds: int) -> dict[str, Any]:
    deps = make_deps(store, settings, SystemClock())
    ctx = await open_session(deps, channel="bench", actor=Actor.unverified("bench"))
    index = index_for(store)
    questions = load_questions()
    timings: list[float] = []
    cpu_started = time.process_time()
    hits = 0
    answerable = [q for q in questions if q.answerable]
    for r in range(rounds):
        for q in questions:
            started = time.perf_counter()
            language = await choose_language(deps, ctx, q.question, None)
            results = await index.search(q.question, language=language, limit=3)
            timings.append((time.perf_counter() - started) * 1000)
            if r == 0 and q.answerable and any(article_of(h.url) in q.articles for h in results.hits):
                hits += 1
    cpu_ms = (time.process_time() - cpu_started) * 1000 / max(len(timings), 1)
    return {
        "searches": len(timings),
        "cpu_ms_per_search": round(cpu_ms, 2),  # this process's CPU (all threads): not inflated by other load
        "p50_ms": _pct(timings, 0.50),
        "p95_ms": _pct(timings, 0.95),
        "p99_ms": _pct(timings, 0.99),
        "mean_ms": round(statistics.fmean(timings), 2),
        "recall_at_3_at_scale": round(hits / len(answerable), 4),
    }


async def run_kb_bench(
    settings: Settings, *, articles: int, database_url: str | None, rounds: int = 5
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="supportbot-kb-bench-") as tmp:
        folder = Path(tmp) / "articles"
        folder.mkdir()
        files = await asyncio.to_thread(write_corpus, folder, articles, settings=settings)
        url = database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        store = Store.from_settings(settings, url=url)
        try:
            await upgrade(store)
            async with store.write() as s:  # a scratch database: start empty
                for table in reversed(Base.metadata.sorted_tables):
                    await s.execute(table.delete())
            started = time.perf_counter()
            docs = await asyncio.to_thread(load_path, folder, base_url=settings.help_center_url)
            parsed = time.perf_counter()
            counts = await import_articles(store, docs, clock=SystemClock())
            imported = time.perf_counter()
            again = await import_articles(store, docs, clock=SystemClock())
            reimported = time.perf_counter()
            search = await _searches(store, settings, rounds)
        finally:
            await store.dispose()
    return {
        "suite": "kb",
        "load_average": [round(x, 2) for x in os.getloadavg()],  # the machine's, at the end (2 cores)
        "database": store.dialect,
        "index": index_for(store).name,
        "articles": files,
        "passages": counts.passages,
        "import_parse_s": round(parsed - started, 2),
        "import_write_s": round(imported - parsed, 2),
        "import_total_s": round(imported - started, 2),
        "reimport_unchanged_s": round(reimported - imported, 2),
        "reimport_unchanged": again.unchanged,
        **search,
        "targets": {"p95_ms": 10 if store.dialect == "sqlite" else 25, "import_total_s": 60},
    }


def table(result: dict[str, Any]) -> str:
    t = result["targets"]
    met = result["p95_ms"] <= t["p95_ms"] and result["import_total_s"] <= t["import_total_s"]
    return "\n".join(
        [
            "| database | articles | passages | import (parse + write) | search p50 | p95 | p99 | CPU/search "
            "| recall@3 |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| {result['database']} | {result['articles']:,} | {result['passages']:,} | "
            f"{result['import_total_s']} s ({result['import_parse_s']} + {result['import_write_s']}) | "
            f"{result['p50_ms']} ms | {result['p95_ms']} ms | {result['p99_ms']} ms | "
            f"{result['cpu_ms_per_search']} ms | "
            f"{result['recall_at_3_at_scale']:.0%} |",
            "",
            f"load average {result['load_average']}; "
            f"targets: search p95 {t['p95_ms']} ms, import {t['import_total_s']} s: " + ("met" if met else "NOT met"),
        ]
    )
