"""What `kb import` reads, and how much work a file may cost: the import's bounds on untrusted files.

- Files: only regular files under the folder it was given. A symbolic link is never followed (a
  Markdown link to `.env` would publish the bot's secrets) and is named as a problem, as is a
  FIFO or a device, a folder nested deeper than MAX_DEPTH, or more than MAX_FILES files. A file is
  opened without following links and checked again once open.
- Size: a Markdown or HTML file is at most MAX_FILE_BYTES; a Zendesk export at most
  MAX_EXPORT_BYTES, read in chunks and parsed one article at a time (`zendesk_articles`), with any
  one JSON string (an article's body) at most MAX_FILE_BYTES: a huge body is refused as it
  streams past, never held.
- Nesting: HTML nested deeper than MAX_HTML_DEPTH elements is refused before it is parsed (the
  parser's work grows with the square of the depth); Markdown nests at most 20 levels.
- Time: parsing one file (or one article) may take PARSE_SECONDS (`Deadline`), checked inside
  the Markdown parser's block and inline loops as well as between steps.
"""

from __future__ import annotations

import contextvars
import errno
import os
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import ijson

from storage.errors import Problem

MAX_FILE_BYTES = 2_000_000
MAX_EXPORT_BYTES = 256_000_000
MAX_DEPTH = 32
MAX_FILES = 50_000
MAX_HTML_DEPTH = 256
PARSE_SECONDS = 10.0
CHUNK = 1 << 16


# --- which files ------------------------------------------------------------------------------------------
def regular_files(root: Path, suffixes: tuple[str, ...]) -> tuple[list[Path], list[str]]:
    """The regular files under `root` with one of `suffixes`, and a problem for each symbolic link,
    special file or folder too deep found on the way (nothing is followed)."""
    files: list[Path] = []
    problems: list[str] = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        depth = len(Path(folder).relative_to(root).parts)
        for d in sorted(dirs):
            inner = Path(folder) / d
            if inner.is_symlink():
                problems.append(f"{inner}: is a symbolic link to a folder; links are not followed")
            elif depth + 1 > MAX_DEPTH:
                problems.append(f"{inner}: is nested deeper than {MAX_DEPTH} folders")
        dirs[:] = [] if depth + 1 > MAX_DEPTH else sorted(d for d in dirs if not (Path(folder) / d).is_symlink())
        for name in sorted(names):
            path = Path(folder) / name
            if not name.lower().endswith(suffixes):
                continue
            kind = _not_regular(path)
            if kind:
                problems.append(f"{path}: {kind}")
            else:
                files.append(path)
        if len(files) > MAX_FILES:
            return files[:MAX_FILES], [*problems, f"{root}: holds more than {MAX_FILES} files; import it in parts"]
    return files, problems


def _not_regular(path: Path) -> str | None:
    try:
        mode = os.lstat(path).st_mode
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISLNK(mode):
        return "is a symbolic link; links are not followed (import the file it points to from its own folder)"
    return None if stat.S_ISREG(mode) else "is not a regular file"


def open_regular(path: Path, limit: int) -> BinaryIO:
    """The file opened for reading without following a link, once it is known to be a regular
    file of at most `limit` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        link = exc.errno == errno.ELOOP
        raise Problem("is a symbolic link; links are not followed" if link else _unreadable(exc)) from exc
    f = os.fdopen(fd, "rb")
    info = os.fstat(f.fileno())
    if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
        f.close()
        raise Problem("is not a regular file" if not stat.S_ISREG(info.st_mode) else _larger(limit))
    return f


def _larger(limit: int) -> str:
    return f"is larger than {limit / 1_000_000:g} MB"


def read_text(path: Path, limit: int) -> str:
    """The file's UTF-8 text, opened without following a link, at most `limit` bytes."""
    with open_regular(path, limit) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise Problem(_larger(limit))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Problem("is not UTF-8 text") from exc


def _unreadable(exc: OSError) -> str:
    return f"cannot be read ({exc.strerror})"


# --- how much work ----------------------------------------------------------------------------------------
class Deadline:
    """PARSE_SECONDS of work for one file; `check` raises Problem once they are spent."""

    current: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("kb_parse_deadline", default=None)

    def __init__(self, seconds: float = PARSE_SECONDS) -> None:
        self.seconds = seconds
        self.until = time.monotonic() + seconds
        self.calls = 0

    def check(self) -> None:
        if time.monotonic() > self.until:
            raise Problem(f"took longer than {self.seconds:g} s to parse; split it or simplify its markup")

    def tick(self) -> None:
        """A cheap check for hot loops: the clock is read every 256 calls."""
        self.calls += 1
        if self.calls & 255 == 0:
            self.check()

    def __enter__(self) -> Deadline:
        self.token = Deadline.current.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        Deadline.current.reset(self.token)


def tick() -> None:
    deadline = Deadline.current.get()
    if deadline is not None:
        deadline.tick()


TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]{0,40})\b[^<>]{0,2000}?(/?)>")
VOID = frozenset(
    ["area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"]
)
# elements whose end tag may be left out: a new one closes the last, so they do not nest by themselves
OPTIONAL_END = frozenset(
    [
        "p",
        "li",
        "dt",
        "dd",
        "option",
        "optgroup",
        "tr",
        "td",
        "th",
        "thead",
        "tbody",
        "tfoot",
        "colgroup",
        "rb",
        "rt",
        "rtc",
        "rp",
    ]
)
RAW = ("script", "style", "textarea", "title", "xmp", "noscript", "template")


def html_depth(html: str) -> int:
    """How deeply the elements of `html` nest, at most (comments and raw text skipped), measured
    in one pass without building a tree; `/>` closes an element only inside SVG or MathML."""
    depth = deepest = foreign = 0
    pos, lower = 0, html.lower()
    while (m := TAG.search(html, pos)) is not None:
        comment = html.find("<!--", pos, m.start())
        if comment != -1:
            end = html.find("-->", comment + 4)
            if end == -1:
                break
            pos = end + 3
            continue
        closing, name, self_closed = m.group(1), m.group(2).lower(), m.group(3)
        pos = m.end()
        if closing:
            depth = max(depth - 1, 0)
            foreign = max(foreign - 1, 0) if name in ("svg", "math") else foreign
        elif name in RAW:
            end = lower.find(f"</{name}", pos)
            close = html.find(">", end) if end != -1 else -1
            pos = len(html) if close == -1 else close + 1  # past its end tag: raw text holds no elements
        elif name not in VOID and name not in OPTIONAL_END and not (self_closed and foreign):
            depth += 1
            deepest = max(deepest, depth)
            foreign += name in ("svg", "math")
    return deepest


def check_html(html: str) -> None:
    if html_depth(html) > MAX_HTML_DEPTH:
        raise Problem(f"nests HTML elements deeper than {MAX_HTML_DEPTH} levels")


# --- Zendesk exports, streamed ------------------------------------------------------------------------------
class _Strings:
    """Follows a JSON text chunk by chunk and refuses one whose strings grow past `limit` bytes,
    before the parser holds them."""

    SEGMENT = re.compile(rb'(?:[^"\\]++|\\.)*+', re.DOTALL)

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.inside = False
        self.length = 0
        self.escaped = False  # the last chunk ended inside an escape

    def feed(self, chunk: bytes) -> None:
        pos = 1 if self.escaped and chunk else 0
        self.escaped = False
        while pos < len(chunk):
            m = self.SEGMENT.match(chunk, pos)
            end = m.end() if m else pos
            if self.inside:
                self.length += end - pos
                if self.length > self.limit:
                    raise Problem(f"has a text (an article's body?) larger than {self.limit / 1_000_000:g} MB")
            if end >= len(chunk):
                break
            if chunk[end : end + 1] == b"\\":  # a backslash that ends the chunk: its escape continues
                self.escaped = True
                break
            self.inside, self.length = not self.inside, 0
            pos = end + 1


def zendesk_articles(path: Path) -> Iterator[Any]:
    """The `articles` of a Zendesk export, one at a time, read in chunks (the file at most
    MAX_EXPORT_BYTES, any string in it at most MAX_FILE_BYTES). Raises Problem for a file that is
    not JSON or not an export."""
    with open_regular(path, MAX_EXPORT_BYTES) as f:
        yield from _stream(f)


def _stream(f: Any) -> Iterator[Any]:
    strings, found, top, seen = _Strings(MAX_FILE_BYTES), ijson.sendable_list(), _TopLevel(), 0
    articles = ijson.items_coro(found, "articles.item", use_float=True)
    shape = ijson.parse_coro(top)
    try:
        while chunk := f.read(CHUNK):
            strings.feed(chunk)
            articles.send(chunk)
            shape.send(chunk)
            seen += len(found)
            yield from found
            del found[:]
        articles.close()
        shape.close()
    except ijson.JSONError as exc:
        said = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise Problem(f"is not valid JSON ({said}), in its first {f.tell():,} bytes") from exc
    seen += len(found)
    yield from found
    if not seen and not top.has_articles:
        raise Problem('is not a Zendesk articles export (expected {"articles": [...]})')


class _TopLevel:
    """Whether the document is an object with an `articles` array (ijson parse events)."""

    def __init__(self) -> None:
        self.has_articles = False

    def send(self, event: tuple[str, str, Any]) -> None:
        prefix, kind, _ = event
        if prefix == "articles" and kind == "start_array":
            self.has_articles = True
