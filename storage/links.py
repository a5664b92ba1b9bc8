"""Link-like things in text, found whatever their case, scheme or spelling.

A renderer turns more than `https://…` into something a person can click: Slack links bare
domains (`evil-example.com/e`) and its own `<url|text>`; a Markdown renderer links `[text](url)`
whatever the scheme (`javascript:`, `data:`), `<url>` autolinks, reference definitions and raw
`<a href>`; browsers read `HTTPS:`, `https:\\\\host\\path`, `//host/path` and `https:host` as
web addresses. `find` returns every one of those forms in a text, each with the address it
points at and the words that stay if it goes; `rewrite` keeps the ones a caller allows and
replaces the rest with their words. Used by the citation check (a reply keeps only the URLs this
turn's search returned), the help-center import (passages never store executable or data links)
and drafts saved from tickets (no URL at all).

`normalise` first decodes HTML character references and drops invisible characters that could
split a scheme or a host, so `&#104;ttps://…` or `ht\\u200btps://…` are seen as what they show.
A bare domain counts when its top-level domain is a real one (the Public Suffix List), or when a
path follows it. Every pattern is linear-time: bounded repeats, runs anchored by lookbehinds.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from publicsuffixlist import PublicSuffixList

MAX_TEXT = 200_000
DOT = r"[.\u3002\uff0e\uff61]"  # IDNA reads the ideographic and full-width full stops as dots
LABEL = r"[^\W_](?:[\w-]{0,61}[^\W_])?"
# schemes a browser or an OS opens without `//` (the special ones also as `https:host`)
UNSAFE = frozenset(
    ("javascript", "vbscript", "livescript", "data", "blob", "filesystem", "file", "view-source", "jar", "intent")
)
SCHEMES = UNSAFE | {"http", "https", "ftp", "ftps", "sftp", "ws", "wss", "about", "mailto", "tel", "sms", "callto"}
SCHEMES |= {"facetime", "skype", "chrome", "chrome-extension", "ms-settings", "smb", "ssh", "telnet", "ldap", "irc"}
SCHEMES |= {"magnet", "feed", "gopher"}
INVISIBLE = dict.fromkeys(map(ord, "\u200b\u2060\ufeff\u00ad\u180e"), None)
TRAILING = ".,;:!?'\"*_~"

MARKDOWN = (
    r"(?P<md>!?\[(?P<label>(?:[^\[\]\n]|\[[^\[\]\n]{0,100}\]){0,300})\]\(\s{0,8}"
    r"(?P<dest><[^<>\n]{0,2000}>|[^\s()<>]{0,2000}(?:\([^\s()]{0,300}\)[^\s()<>]{0,2000}){0,3})"
    r"(?:\s{1,8}(?:\"[^\"\n]{0,300}\"|'[^'\n]{0,300}'|\([^()\n]{0,300}\)))?\s{0,8}\))"
)
REFERENCE = (
    r"(?P<ref>(?:^|(?<=\n))[ \t]{0,3}\[[^\[\]\n]{1,300}\]:[ \t]{0,8}"
    r"(?P<refdest><[^<>\n]{0,2000}>|\S{1,2000})[^\n]{0,300})"
)
ANGLE = r"(?P<angle><(?P<inside>[^<>\s|]{1,2000})(?:\|(?P<words>[^<>\n]{0,300}))?>)"
HTML_TAG = (
    r"(?P<tag></?(?:a|img|image|iframe|frame|embed|object|form|base|link|meta|script|area|source|video|audio"
    r"|svg|math|button|input)\b[^<>]{0,2000}>)"
)
SCHEME = r"(?P<scheme>(?<![\w+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}:(?=\S))"
SLASHES = rf"(?P<slashes>(?<![\w:/\\])[/\\]{{2}}(?={LABEL}(?:{DOT}{LABEL}){{1,8}}))"
WWW = rf"(?P<www>(?<![\w.@-])www\d{{0,3}}{DOT}(?=[^\W_]))"
IPV4 = r"(?P<ip>(?<![\w.@-])\d{1,3}(?:\.\d{1,3}){3}(?=[:/]\d|/))"
DOMAIN = rf"(?P<domain>(?<![\w.@-])(?:{LABEL}{DOT}){{1,8}}(?P<tld>[^\W\d_]{{2,63}}|xn--[a-z0-9-]{{1,59}})(?![\w-]))"
KINDS = {  # in the order they are tried at one position
    "md": MARKDOWN,
    "ref": REFERENCE,
    "tag": HTML_TAG,
    "angle": ANGLE,
    "domain": DOMAIN,
    "scheme": SCHEME,
    "slashes": SLASHES,
    "www": WWW,
    "ip": IPV4,
}
FIND = re.compile("|".join(KINDS.values()), re.I)  # where something may start
EACH = {kind: re.compile(pattern, re.I) for kind, pattern in KINDS.items()}  # what starts there
BODY = re.compile(r"[^\s<>\"'`|\[\]{}]{0,2000}")
PATH = re.compile(r"(?::\d{1,5})?(?:[/?#\\][^\s<>\"'`|\[\]{}]{0,2000})?")
URLISH = re.compile(rf"[A-Za-z][A-Za-z0-9+.-]{{0,31}}:|//|\\\\|www\d{{0,3}}{DOT}|{LABEL}{DOT}", re.I)


@dataclass(frozen=True, slots=True)
class Link:
    start: int
    end: int
    target: str  # the address it points at, as written (without <> or a title)
    words: str = ""  # what stays in the text when the link goes
    label: tuple[int, int] | None = None  # where a Markdown link's words are, to check them too


def normalise(text: str) -> str:
    """HTML character references decoded and invisible characters dropped (`&#104;ttps`, `h\\u200bttps`)."""
    return html.unescape(text[:MAX_TEXT]).translate(INVISIBLE)


@cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList(accept_unknown=False)


def known_tld(domain: str) -> bool:
    name = unicodedata.normalize("NFKC", domain).lower().replace("\u3002", ".").rstrip(".")
    return _suffixes().publicsuffix(name) is not None


def scheme_of(target: str) -> str | None:
    """The scheme a browser would read in `target` (case, blanks and controls ignored), if any."""
    bare = re.sub(r"[\x00-\x20\x7f]", "", normalise(target))[:40].lower()
    m = re.match(r"([a-z][a-z0-9+.-]{0,31}):", bare)
    return m.group(1) if m else None


def unsafe(target: str) -> bool:
    """An executable or data link: opening it runs or shows something that is not a web page."""
    return scheme_of(target) in UNSAFE


def _trim(text: str, start: int, end: int) -> int:
    """The end of a bare URL without trailing punctuation or a closing bracket it did not open."""
    while end > start and text[end - 1] in TRAILING + ")":
        if text[end - 1] == ")" and text.count("(", start, end) >= text.count(")", start, end):
            break
        end -= 1
    return end


def _bare(text: str, m: re.Match[str], kind: str) -> Link | None:
    if kind == "scheme":
        scheme = m.group("scheme")[:-1].lower()
        after = text[m.end() : m.end() + 2]
        if scheme not in SCHEMES and after not in ("//", "\\\\", "/\\", "\\/"):
            return None
        end = _trim(text, m.start(), _end(BODY, text, m.end()))
    elif kind == "domain":
        end = _end(PATH, text, m.end())
        if end == m.end() and not known_tld(m.group("domain")):
            return None
        end = _trim(text, m.start(), end)
    else:  # slashes, www, ip
        end = _trim(text, m.start(), _end(BODY, text, m.end()))
    return Link(m.start(), end, text[m.start() : end]) if end > m.end() or kind == "domain" else None


def _end(pattern: re.Pattern[str], text: str, pos: int) -> int:
    m = pattern.match(text, pos)
    return m.end() if m else pos


def _delimited(m: re.Match[str], kind: str) -> Link | None:
    if kind == "md":
        dest = m.group("dest").strip("<>").strip()
        return Link(m.start(), m.end(), dest, m.group("label"), m.span("label"))
    if kind == "ref":
        return Link(m.start(), m.end(), m.group("refdest").strip("<>"))
    if kind == "angle":
        inside = m.group("inside")
        if not URLISH.match(inside):
            return None  # a tag, a mention: not a link
        return Link(m.start(), m.end(), inside, m.group("words") or "")
    return Link(m.start(), m.end(), m.group("tag"))  # an HTML tag that links or loads: the tag goes, its text stays


def _at(text: str, pos: int) -> Link | None:
    """The link that starts at `pos`, trying each kind in turn (one refused may hide another)."""
    for kind, pattern in EACH.items():
        m = pattern.match(text, pos)
        if m is None:
            continue
        link = _delimited(m, kind) if kind in ("md", "ref", "tag", "angle") else _bare(text, m, kind)
        if link is not None:
            return link
    return None


def find(text: str) -> list[Link]:
    """Every link-like thing in `text`, in order, none inside another."""
    found: list[Link] = []
    pos = 0
    while (m := FIND.search(text, pos)) is not None:
        link = _at(text, m.start())
        if link is None:
            pos = m.start() + 1
            continue
        found.append(link)
        pos = max(link.end, m.start() + 1)
    return found


def rewrite(text: str, keep: Callable[[Link], bool], *, blank: str = "", depth: int = 2) -> str:
    """`text` with every link `keep` refuses replaced by its words (themselves rewritten), or by
    `blank` when it has none; the words of kept Markdown links are rewritten too."""
    out: list[str] = []
    last = 0
    for link in find(text):
        out.append(text[last : link.start])
        if keep(link):
            if link.label is not None and depth:
                a, b = link.label
                words = rewrite(text[a:b], keep, blank=blank, depth=depth - 1)
                out.append(text[link.start : a] + words + text[b : link.end])
            else:
                out.append(text[link.start : link.end])
        elif link.words and depth:
            out.append(rewrite(link.words, keep, blank=blank, depth=depth - 1))
        else:
            out.append(blank if link.label is None or not link.words else "")
        last = link.end
    out.append(text[last:])
    return "".join(out)


def strip_unsafe(text: str) -> str:
    """`text` without executable or data links (a Markdown link to one keeps its words)."""
    return rewrite(normalise(text), lambda link: not unsafe(link.target))


def without_links(text: str, *, blank: str = "") -> tuple[str, list[str]]:
    """`text` with no link-like thing left (each becomes its words, or `blank`), and what went."""
    gone: list[str] = []

    def refuse(link: Link) -> bool:
        gone.append(link.target)
        return False

    return rewrite(normalise(text), refuse, blank=blank), gone
