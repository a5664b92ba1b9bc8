"""Text analysis for help-center search: words → terms, per language, and guessing a language.

`Analyzer(lang).terms(text)` is what the SQLite index stores and queries: NFKC, lower case,
words of letters and digits (a linear-time pattern), stop words dropped (storage.stopwords),
Snowball-stemmed for the language (PyStemmer, the same Snowball algorithms PostgreSQL's text
search configurations use), diacritics folded. PostgreSQL analyzes with its own configuration
(`english`, `spanish`, …; see `PG_CONFIGS`), so each database is consistent with itself.

`guess_language` uses py3langid's bundled model, loaded once off the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

import Stemmer

from storage.stopwords import STOPWORDS

WORD = re.compile(r"[^\W_]+")
MAX_ANALYZED_CHARS = 20_000  # a passage or a query longer than this is analyzed up to here
# language -> Snowball stemmer; PostgreSQL regconfig
STEMMERS = {
    "en": "english",
    "es": "spanish",
    "de": "german",
    "fr": "french",
    "it": "italian",
    "pt": "portuguese",
    "nl": "dutch",
    "sv": "swedish",
    "da": "danish",
    "no": "norwegian",
    "fi": "finnish",
}
PG_CONFIGS = STEMMERS  # the same names are PostgreSQL's built-in text search configurations
DEFAULT_LANGUAGE = "en"
MIN_LANGUAGE_CONFIDENCE = 0.7


def language_of(locale: str | None) -> str | None:
    """`es-MX`, `es_MX`, `ES` → `es`; None for anything that is not a language tag."""
    if not locale:
        return None
    lang = re.split(r"[-_]", locale.strip(), maxsplit=1)[0].lower()
    return lang if re.fullmatch(r"[a-z]{2,3}", lang) else None


@functools.cache
def _fold(word: str) -> str:
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class Analyzer:
    """One language's analysis. Cheap to build; `analyzer(lang)` caches one per language."""

    def __init__(self, language: str) -> None:
        self.language = language
        name = STEMMERS.get(language)
        self._stemmer = Stemmer.Stemmer(name, 50_000) if name else None
        self.stopwords = STOPWORDS.get(language, frozenset())
        self._memo: dict[str, str] = {}  # word -> folded stem

    def words(self, text: str) -> list[str]:
        """The content words, lower-cased, before stemming (what PostgreSQL is given to analyze)."""
        norm = unicodedata.normalize("NFKC", text[:MAX_ANALYZED_CHARS]).lower()
        return [w for w in WORD.findall(norm) if (len(w) > 1 or w.isdigit()) and w not in self.stopwords]

    def stems(self, words: Sequence[str]) -> list[str]:
        memo = self._memo
        missing = [w for w in dict.fromkeys(words) if w not in memo]
        if missing:
            stemmed = self._stemmer.stemWords(missing) if self._stemmer else missing
            if len(memo) > 200_000:  # bounded: a help center's vocabulary is far smaller
                memo.clear()
            memo.update(zip(missing, (_fold(w) for w in stemmed), strict=True))
        return [memo[w] for w in words]

    def terms(self, text: str) -> list[str]:
        return self.stems(self.words(text))


@functools.cache
def analyzer(language: str | None) -> Analyzer:
    return Analyzer(language or DEFAULT_LANGUAGE)


def joined_terms(text: str, language: str) -> str:
    """A text as one string of its terms, which FTS5's unicode61 tokenizer splits back unchanged."""
    return " ".join(analyzer(language).terms(text))


# --- spelling -------------------------------------------------------------------------------------
def max_edits(term: str) -> int:
    """How far a typo may be from the word meant: none for short words, which are too ambiguous."""
    return 0 if len(term) < 4 else 1 if len(term) < 7 else 2


def best_correction(term: str, candidates: Iterable[tuple[str, int]]) -> str | None:
    """The closest known term within `max_edits` (optimal string alignment: a swap of two letters
    is one edit), the more frequent one on a tie; None when nothing is close enough."""
    from rapidfuzz.distance import OSA

    limit = max_edits(term)
    if limit == 0:
        return None
    best: tuple[int, int, str] | None = None
    for cand, docs in candidates:
        if cand == term or abs(len(cand) - len(term)) > limit:
            continue
        dist = OSA.distance(term, cand, score_cutoff=limit)
        if dist <= limit and (best is None or (dist, -docs, cand) < best):
            best = (dist, -docs, cand)
    return best[2] if best else None


def compound_head(term: str, candidates: Iterable[tuple[str, int]]) -> str | None:
    """The known term a compound starts with ("ruckgabefrist" -> "ruckgab"): the longest one that
    leaves at least three letters, so a German question's compound finds the article's simple word."""
    heads = [c for c, _ in candidates if len(c) >= 4 and len(term) - len(c) >= 3 and term.startswith(c)]
    return max(heads, key=len) if heads else None


# --- which language a text is in ------------------------------------------------------------------
@functools.cache
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=False)


async def load_language_model() -> None:
    """Load the language identifier in a thread (about a second, once per process)."""
    await asyncio.to_thread(_identifier)


async def guess_language(text: str, among: Sequence[str]) -> str | None:
    """The most likely of `among` for `text`, or None when no language is likely enough.

    Ranks over the whole model and keeps the candidates, so no shared identifier is reconfigured.
    """
    if not among or not WORD.search(text):
        return None
    if len(among) == 1:
        return among[0]
    await load_language_model()
    import math

    scores = {lang: score for lang, score in _identifier().rank(text[:2000]) if lang in among}
    if not scores:
        return None
    top = max(scores.values())
    total = sum(math.exp(s - top) for s in scores.values())
    lang = max(scores, key=lambda k: scores[k])
    return lang if 1 / total >= MIN_LANGUAGE_CONFIDENCE else None
