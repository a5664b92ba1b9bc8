"""`supportbot kb import PATH [--prune]`: help-center articles from Markdown, HTML or a Zendesk export.

    PATH is a folder (every *.md, *.markdown, *.html, *.htm below it, and *.json Zendesk exports),
    or one such file.

- Markdown: optional YAML front matter (`title`, `url`, `locale`, `tags`, `draft`), parsed with
  python-frontmatter and markdown-it-py. The title is the front matter's, else the first `#` heading.
- HTML: parsed with selectolax; title from <title> or the first <h1>, URL from
  <link rel="canonical">, locale from <html lang>.
- Zendesk Help Center export: `{"articles": [{"id", "title", "body" (HTML), "html_url", "locale",
  "updated_at", "draft", "label_names"}]}`, the shape the Help Center API returns.

Articles are split into passages at their headings (levels 1-3; long sections again at sentence
ends), each with its heading's anchor in its URL. Every file is parsed before anything is
written, and every problem names its file (and article); then one transaction upserts by source
key (`zendesk:ID`, or `url:URL` for files): a changed article is rewritten, an unchanged one is
not touched. `--prune` removes the articles of the same kind of source (files, or Zendesk) that
the import did not contain; articles saved from tickets are never pruned.

Untrusted files are bounded (`storage.kb_files`): only regular files under the folder, no link
followed, each file's size, nesting and parse time capped, exports streamed. An article's URL
(front matter, `<link rel="canonical">`, Zendesk's `html_url`) must be on the help center's
hosts (HELP_CENTER_URL's and HELP_CENTER_HOSTS), or it would be cited as the source; an
article holding a credential (`storage.credentials`) refuses the import of its file; passages
are stored without executable or data links (`storage.links`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import frontmatter
import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from sqlalchemy import delete, insert, select, update

from storage import credentials, links
from storage.analysis import language_of
from storage.engine import Store
from storage.errors import KbImportError
from storage.kb_files import (
    MAX_FILE_BYTES,
    PARSE_SECONDS,
    Deadline,
    check_html,
    read_text,
    regular_files,
    tick,
    zendesk_articles,
)
from storage.kb_files import Problem as _Problem
from storage.models import Article, Passage
from storage.search import index_for
from storage.types import Clock

ANALYSIS_VERSION = "1"  # part of every article's hash: re-importing after an analysis change rewrites it
MAX_PASSAGES = 200
MAX_PASSAGE_CHARS = 1500
MARKDOWN_SUFFIXES = (".md", ".markdown")
HTML_SUFFIXES = (".html", ".htm")
FILE_SOURCES = ("markdown", "html")
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Section:
    heading: str | None
    anchor: str | None
    text: str


@dataclass(frozen=True, slots=True)
class ArticleDoc:
    key: str
    source: str
    title: str
    url: str
    locale: str
    tags: tuple[str, ...]
    draft: bool
    sections: tuple[Section, ...]
    origin: str  # the file (and article) it came from, for messages
    updated_at: datetime | None = None

    @property
    def body(self) -> str:
        return "\n\n".join(f"## {s.heading}\n{s.text}" if s.heading else s.text for s in self.sections)

    def digest(self) -> str:
        data = {k: v for k, v in asdict(self).items() if k not in ("origin", "updated_at")}
        data["v"] = ANALYSIS_VERSION
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Counts:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    passages: int = 0
    keys: list[str] = field(default_factory=list)


# --- small helpers ------------------------------------------------------------------------------------
def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\x00", "")).strip()


def slug(text: str) -> str:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    kept = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return re.sub(r" ", "-", kept)[:80].strip("-") or "section"


def _url(value: str, hosts: Collection[str]) -> str:
    """An absolute http(s) URL on one of the help center's `hosts` (any host when none are given)."""
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or re.search(r"[\s<>|\"\\]", value):
        raise _Problem(f"url: {value[:80]!r} is not an absolute http(s) URL")
    if len(value) > 1000:
        raise _Problem("url: longer than 1000 characters")
    host = (parts.hostname or "").lower()
    if hosts and host not in hosts:
        raise _Problem(
            f"url: {host[:80]!r} is not the help center's host ({', '.join(sorted(hosts))}); "
            "set HELP_CENTER_URL, or add it to HELP_CENTER_HOSTS"
        )
    return value


def hosts_of(base_url: str, more: Iterable[str] = ()) -> frozenset[str]:
    """The hosts article URLs may name: the base URL's and `more`."""
    return frozenset({(urlsplit(base_url).hostname or "").lower(), *(h.lower() for h in more)} - {""})


def _no_credentials(doc: ArticleDoc) -> ArticleDoc:
    found = credentials.kinds(f"{doc.title}\n{doc.body}")
    if found:
        raise _Problem(
            f"holds what looks like {' and '.join(found)}; nothing of this file was imported. "
            "Remove it (and rotate it: it was in a file meant for publishing), then import again"
        )
    return doc


def _locale(value: object, default: str) -> str:
    lang = language_of(str(value)) if value else default
    if lang is None:
        raise _Problem(f"locale: {str(value)[:20]!r} is not a language tag such as en or es-MX")
    return lang


def _chunks(text: str) -> Iterator[str]:
    """A section's text, cut at sentence ends into passages of at most about MAX_PASSAGE_CHARS."""
    if len(text) <= MAX_PASSAGE_CHARS:
        yield text
        return
    current = ""
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        if current and len(current) + 1 + len(sentence) > MAX_PASSAGE_CHARS:
            yield current
            current = ""
        current = f"{current} {sentence}".strip()[: MAX_PASSAGE_CHARS * 2]
    if current:
        yield current


def _sections(raw: Iterable[tuple[str | None, str | None, str]]) -> tuple[Section, ...]:
    """Sections with unique anchors and no empty text; headings kept for sections that have text."""
    out: list[Section] = []
    used: dict[str, int] = {}
    for heading, anchor, body in raw:
        body = _clean(links.strip_unsafe(body))
        heading = _clean(links.strip_unsafe(heading)) if heading is not None else None
        if not body:
            continue
        if heading is not None:
            base = anchor or slug(heading)
            n = used.get(base, 0)
            used[base] = n + 1
            anchor = base if n == 0 else f"{base}-{n}"
        out.extend(Section(heading, anchor, chunk) for chunk in _chunks(body))
    if not out:
        raise _Problem("has no text")
    if len(out) > MAX_PASSAGES:
        raise _Problem(f"has {len(out)} sections; at most {MAX_PASSAGES} are imported per article")
    return tuple(out)


# --- Markdown -------------------------------------------------------------------------------------------
class FrontMatter(BaseModel):
    model_config = ConfigDict(extra="ignore")

    title: str | None = Field(default=None, max_length=300)
    url: str | None = None
    locale: str | None = None
    tags: list[str] = Field(default_factory=list)
    draft: bool = False

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: object) -> object:
        return [t.strip() for t in value.split(",") if t.strip()] if isinstance(value, str) else value


def _deadline_block(state: Any, start: int, end: int, silent: bool) -> bool:
    tick()
    return False


def _deadline_inline(state: Any, silent: bool) -> bool:
    tick()
    return False


_MD = MarkdownIt("commonmark", {"maxNesting": 20})
# a parse-time bound inside the parser's loops: link and emphasis bombs cost time at every position
_MD.block.ruler.before("table", "kb_deadline", _deadline_block)
_MD.inline.ruler.before("text", "kb_deadline", _deadline_inline)


def _inline_text(tok: Token) -> str:
    parts = []
    for child in tok.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "image":
            parts.append(child.content)
    return "".join(parts)


def markdown_sections(content: str) -> tuple[str | None, list[tuple[str | None, str | None, str]]]:
    """(the first # heading if it opens the document, [(heading, anchor, text)]) of a Markdown text."""
    title: str | None = None
    raw: list[tuple[str | None, str | None, str]] = []
    heading: str | None = None
    buf: list[str] = []
    level = 0
    for tok in _MD.parse(content):
        if tok.type == "heading_open":
            level = int(tok.tag[1])
        elif tok.type == "inline" and level:
            text = _clean(_inline_text(tok))
            if level == 1 and title is None and not raw and not "".join(buf).strip():
                title = text
            elif level <= 3:
                raw.append((heading, None, " ".join(buf)))
                heading, buf = text, []
            else:
                buf.append(text + ".")
            level = 0
        elif tok.type == "inline":
            buf.append(_inline_text(tok))
        elif tok.type in ("fence", "code_block"):
            buf.append(tok.content)
        elif tok.type == "html_block":
            buf.append(HTMLParser(tok.content).text(separator=" "))
    raw.append((heading, None, " ".join(buf)))
    return title, raw


def parse_markdown(
    text: str, *, origin: str, default_url: str, default_locale: str, hosts: Collection[str] = ()
) -> ArticleDoc:
    try:
        post = frontmatter.loads(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise _Problem(f"front matter is not valid YAML{where}") from exc
    try:
        meta = FrontMatter.model_validate(dict(post.metadata))
    except ValidationError as err:
        e = err.errors()[0]
        raise _Problem(f"front matter: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}") from err
    h1, raw = markdown_sections(post.content)
    title = _clean(meta.title or h1 or "")
    if not title:
        raise _Problem("has no title (add `title:` front matter or a `# Title` line)")
    url = _url(meta.url or default_url, hosts)
    return ArticleDoc(
        key=f"url:{url}",
        source="markdown",
        title=title[:300],
        url=url,
        locale=_locale(meta.locale, default_locale),
        tags=tuple(meta.tags),
        draft=meta.draft,
        sections=_sections(raw),
        origin=origin,
    )


# --- HTML -----------------------------------------------------------------------------------------------
MARK, SEP = "\x1e", "\x1f"


def html_sections(html: str) -> tuple[str | None, list[tuple[str | None, str | None, str]]]:
    """(the first <h1>'s text, [(heading, anchor, text)]) of an HTML document or fragment."""
    check_html(html)
    tree = HTMLParser(html.replace(MARK, " ").replace(SEP, " "))
    for node in tree.css("script, style, noscript, template, nav"):
        node.decompose()
    root = tree.body or tree.root
    if root is None:
        return None, []
    first_h1: str | None = None
    for node in root.css("h1, h2, h3"):
        heading = _clean(node.text(separator=" "))
        if node.tag == "h1" and first_h1 is None:
            first_h1 = heading
        node.replace_with(f"{MARK}{heading}{SEP}{node.attributes.get('id') or ''}{MARK}")
    pieces = root.text(separator=" ").split(MARK)
    raw: list[tuple[str | None, str | None, str]] = [(None, None, pieces[0])]
    for i in range(1, len(pieces) - 1, 2):
        heading, _, anchor = pieces[i].partition(SEP)
        raw.append((heading or None, anchor or None, pieces[i + 1]))
    if first_h1 is not None and raw and len(raw) > 1 and raw[1][0] == first_h1 and not _clean(raw[0][2]):
        raw = [(None, None, raw[1][2]), *raw[2:]]  # the <h1> titles the page: its text is the intro
    return first_h1, raw


def parse_html_file(
    text: str, *, origin: str, default_url: str, default_locale: str, hosts: Collection[str] = ()
) -> ArticleDoc:
    check_html(text)
    tree = HTMLParser(text)
    title_node = tree.css_first("title")
    canonical = tree.css_first('link[rel="canonical"]')
    html_node = tree.css_first("html")
    h1, raw = html_sections(text)
    title = _clean((title_node.text() if title_node else "") or h1 or "")
    if not title:
        raise _Problem("has no title (a <title> or an <h1>)")
    url = _url((canonical.attributes.get("href") if canonical else None) or default_url, hosts)
    lang = html_node.attributes.get("lang") if html_node else None
    return ArticleDoc(
        key=f"url:{url}",
        source="html",
        title=title[:300],
        url=url,
        locale=_locale(lang, default_locale),
        tags=(),
        draft=False,
        sections=_sections(raw),
        origin=origin,
    )


# --- Zendesk --------------------------------------------------------------------------------------------
class ZendeskArticle(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: int | str
    title: str = Field(min_length=1, max_length=300)
    body: str | None = None
    html_url: str
    locale: str
    updated_at: datetime | None = None
    draft: bool = False
    label_names: list[str] = Field(default_factory=list)


def parse_zendesk(
    records: Iterable[Any],
    *,
    origin: str,
    problems: list[str],
    hosts: Collection[str] = (),
    parse_seconds: float = PARSE_SECONDS,
) -> list[ArticleDoc]:
    """The articles of a Zendesk export's `articles` list, one at a time (each its own deadline);
    every problem is added to `problems`, naming the article."""
    out = []
    for i, rec in enumerate(records):
        label = f"{origin}: articles[{i}]"
        if isinstance(rec, dict) and isinstance(rec.get("id"), int | str):
            label += f" (id {str(rec['id'])[:40]})"
        try:
            with Deadline(parse_seconds):
                out.append(_zendesk_article(rec, label, hosts))
        except ValidationError as err:
            problems.extend(f"{label}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        except _Problem as exc:
            problems.append(f"{label}: {exc}")
    return out


def _zendesk_article(rec: Any, label: str, hosts: Collection[str]) -> ArticleDoc:
    art = ZendeskArticle.model_validate(rec)
    _, raw = html_sections(art.body or "")
    url = _url(art.html_url, hosts)
    return _no_credentials(
        ArticleDoc(
            key=f"zendesk:{art.id}",
            source="zendesk",
            title=_clean(art.title),
            url=url,
            locale=_locale(art.locale, "en"),
            tags=tuple(art.label_names),
            draft=art.draft,
            sections=_sections(raw),
            origin=label,
            updated_at=art.updated_at,
        )
    )


# --- files ----------------------------------------------------------------------------------------------
SUFFIXES = (*MARKDOWN_SUFFIXES, *HTML_SUFFIXES, ".json")


def _file_url(base_url: str, rel: Path) -> str:
    parts = [slug(p) for p in rel.with_suffix("").parts]
    return f"{base_url.rstrip('/')}/{'/'.join(quote(p) for p in parts)}"


@dataclass(frozen=True, slots=True)
class _Where:
    base_url: str
    default_locale: str
    hosts: Collection[str]
    parse_seconds: float


def _load_one(path: Path, rel: Path, where: _Where, problems: list[str]) -> list[ArticleDoc]:
    origin = str(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            records = zendesk_articles(path)
            return parse_zendesk(
                records, origin=origin, problems=problems, hosts=where.hosts, parse_seconds=where.parse_seconds
            )
        text = read_text(path, MAX_FILE_BYTES)
        kw = {"origin": origin, "default_url": _file_url(where.base_url, rel), "default_locale": where.default_locale}
        hosts = where.hosts
        with Deadline(where.parse_seconds):
            if suffix in MARKDOWN_SUFFIXES:
                return [_no_credentials(parse_markdown(text, **kw, hosts=hosts))]
            if suffix in HTML_SUFFIXES:
                return [_no_credentials(parse_html_file(text, **kw, hosts=hosts))]
        raise _Problem("is not Markdown (.md), HTML (.html) or a Zendesk export (.json)")
    except _Problem as exc:
        problems.append(f"{origin}: {exc}")
        return []


def load_path(
    path: Path,
    *,
    base_url: str,
    default_locale: str = "en",
    hosts: Iterable[str] = (),
    parse_seconds: float = PARSE_SECONDS,
) -> list[ArticleDoc]:
    """Parse every article under `path` (a folder, or one file); raise KbImportError naming every
    bad file. Article URLs must be on `base_url`'s host or one of `hosts`; each file (or exported
    article) may take `parse_seconds` to parse."""
    if not path.exists() and not path.is_symlink():
        raise KbImportError([f"{path}: no such file or folder"])
    where = _Where(base_url, default_locale, hosts_of(base_url, hosts), parse_seconds)
    if path.is_dir():
        root = path.resolve()  # the folder named is the one meant; nothing under it is followed
        files, problems = regular_files(root, SUFFIXES)
    else:
        root, files, problems = path.parent, [path], []
    docs: list[ArticleDoc] = []
    for file in files:
        docs.extend(_load_one(file, file.relative_to(root), where, problems))
    seen: dict[str, str] = {}
    for doc in docs:
        if doc.key in seen:
            problems.append(f"{doc.origin}: the same article ({doc.key}) as {seen[doc.key]}")
        seen.setdefault(doc.key, doc.origin)
    if not docs and not problems:
        problems.append(f"{path}: no Markdown, HTML or Zendesk export files found")
    if problems:
        raise KbImportError(problems)
    return docs


# --- writing --------------------------------------------------------------------------------------------
def passage_rows(store: Store, article_id: int, doc: ArticleDoc, *, published: bool) -> list[dict[str, Any]]:
    index = index_for(store)
    rows = []
    for n, sec in enumerate(doc.sections):
        rows.append(
            {
                "article_id": article_id,
                "position": n,
                "title": doc.title,
                "heading": sec.heading[:300] if sec.heading else None,
                "url": f"{doc.url}#{sec.anchor}" if sec.anchor else doc.url,
                "locale": doc.locale,
                "published": published,
                "text": sec.text,
                **index.columns(language=doc.locale, title=doc.title, heading=sec.heading, text=sec.text),
            }
        )
    return rows


def _article_row(doc: ArticleDoc, now: datetime) -> dict[str, Any]:
    return {
        "source": doc.source,
        "source_key": doc.key,
        "title": doc.title,
        "url": doc.url,
        "locale": doc.locale,
        "tags": list(doc.tags),
        "body": doc.body,
        "status": "draft" if doc.draft else "published",
        "content_hash": doc.digest(),
        "source_updated_at": doc.updated_at,
        "updated_at": now,
        "published_at": None if doc.draft else now,
    }


async def import_articles(
    store: Store,
    docs: list[ArticleDoc],
    *,
    clock: Clock,
    prune: bool = False,
    progress: Progress | None = None,
) -> Counts:
    """Upsert `docs` by source key in one transaction, then refresh the search index's terms."""
    now = clock.now()
    counts = Counts()
    async with store.write() as s:
        existing = {
            key: (aid, digest)
            for key, aid, digest in await s.execute(select(Article.source_key, Article.id, Article.content_hash))
        }
        new = [d for d in docs if d.key not in existing]
        changed = [d for d in docs if d.key in existing and existing[d.key][1] != d.digest()]
        counts.unchanged = len(docs) - len(new) - len(changed)
        done = counts.unchanged
        for start in range(0, max(len(new), len(changed)), 500):
            part_new, part_changed = new[start : start + 500], changed[start : start + 500]
            ids = await _insert_articles(s, part_new, now)
            if part_changed:
                await s.execute(
                    update(Article), [{"id": existing[d.key][0], **_article_row(d, now)} for d in part_changed]
                )
                await s.execute(
                    delete(Passage).where(Passage.article_id.in_([existing[d.key][0] for d in part_changed]))
                )
            rows = [
                row
                for doc, aid in [*zip(part_new, ids, strict=True), *((d, existing[d.key][0]) for d in part_changed)]
                for row in passage_rows(store, aid, doc, published=not doc.draft)
            ]
            if rows:  # Core executemany: one statement for the batch (the ORM would split it by NULL columns)
                await (await s.connection()).execute(Passage.__table__.insert(), rows)
            counts.passages += len(rows)
            done += len(part_new) + len(part_changed)
            if progress:
                progress(done, len(docs))
        counts.added, counts.updated = len(new), len(changed)
        if prune:
            counts.removed = await _prune(s, docs)
        await index_for(store).refresh(s)
    if progress and not docs:
        progress(0, 0)
    return counts


async def _insert_articles(s: Any, docs: list[ArticleDoc], now: datetime) -> list[int]:
    if not docs:
        return []
    result = await s.execute(
        insert(Article).returning(Article.id, sort_by_parameter_order=True),
        [{**_article_row(d, now), "created_at": now} for d in docs],
    )
    return [r[0] for r in result]


async def _prune(s: Any, docs: list[ArticleDoc]) -> int:
    kinds: set[str] = set()
    if any(d.source == "zendesk" for d in docs):
        kinds.add("zendesk")
    if any(d.source in FILE_SOURCES for d in docs):
        kinds.update(FILE_SOURCES)
    keep = {d.key for d in docs}
    gone = [
        aid
        for aid, key in await s.execute(select(Article.id, Article.source_key).where(Article.source.in_(kinds)))
        if key not in keep
    ]
    for start in range(0, len(gone), 500):
        await s.execute(delete(Article).where(Article.id.in_(gone[start : start + 500])))
    return len(gone)


# --- the demo help center -------------------------------------------------------------------------------
def demo_documents(*, base_url: str, return_window_days: int) -> list[ArticleDoc]:
    """The demo store's help center (storage/helpcenter/*.md), with the settings' return window."""
    folder = resources.files("storage") / "helpcenter"
    docs = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".md"):
            continue
        text = entry.read_text(encoding="utf-8").replace("{{return_window_days}}", str(return_window_days))
        docs.append(
            parse_markdown(
                text,
                origin=f"storage/helpcenter/{entry.name}",
                default_url=_file_url(base_url, Path(entry.name)),
                default_locale="en",
            )
        )
    return docs


async def seed_help_center(store: Store, clock: Clock, *, base_url: str, return_window_days: int) -> Counts:
    docs = demo_documents(base_url=base_url, return_window_days=return_window_days)
    return await import_articles(store, docs, clock=clock)
