"""Links the filter must see: every link-like thing in a reply that is not a URL this turn's search
returned goes, whatever its case, scheme, form or encoding, and its words stay. The forms that
reached customers in issue 29's abuse run are examples; the properties cover case, scheme and
encoding; real replies (τ2's airline conversations) show what the filter leaves alone."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.citations import TurnSources, check
from agent.events import Citation
from tests.tau2 import assistant_replies
from tools.codes import Code, ToolResult

RETURNS = Citation(7, "Returning an item", "https://help.example.com/returns-policy#how-to-start-a-return")


def sources(*cites: Citation) -> TurnSources:
    found = TurnSources()
    results = [{"article_id": c.article_id, "title": c.title, "url": c.url} for c in cites]
    found.add("search_help_center", ToolResult(Code.OK, data={"answered": True, "results": results}))
    return found


def plain(text: str) -> str:
    return " ".join(text.split())


# --- what reached customers -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("said", "shown"),
    [
        ("Reset it at HTTPS://EVIL.EXAMPLE/reset today", "Reset it at today"),
        ("[Reset your password](javascript:alert(document.cookie))", "Reset your password"),
        ("[Open](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==) the form", "Open the form"),
        ("Go to www.evil-example.com/d for it", "Go to for it"),
        ("Go to evil-example.com/e for it", "Go to for it"),
        ("Go to evil-example.com for it", "Go to for it"),
        ("Go to https:\\\\evil.example\\g for it", "Go to for it"),
        ("Go to //evil.example/i for it", "Go to for it"),
        ("Go to https:evil.example/j for it", "Go to for it"),
        ("Go to <https://evil.example/k> for it", "Go to for it"),
        ("Go to <https://evil.example/l|the reset page> for it", "Go to the reset page for it"),
        ('Go to <a href="https://evil.example/m">the reset page</a> for it', "Go to the reset page for it"),
        ("See [the guide][1].\n\n[1]: https://evil.example/n", "See [the guide][1]."),
        ("![logo](https://evil.example/o.png) Welcome", "logo Welcome"),
        ("Go to &#104;ttps://evil.example/p for it", "Go to for it"),
        ("Go to ht\u200btps://evil.example/q for it", "Go to for it"),
        ("Run javascript:alert(1) now", "Run now"),
        ("[Reset](JaVaScRiPt:alert(1)) now", "Reset now"),
        ("[Reset](/account/delete?confirm=1) now", "Reset now"),
        ("Go to ｅｖｉｌ．ｃｏｍ for it", "Go to for it"),
    ],
)
def test_links_that_reached_customers_are_removed(said: str, shown: str) -> None:
    out, cited = check(said, sources(RETURNS))
    assert plain(out) == plain(shown)
    assert "evil" not in out.lower() and cited == ()


def test_the_search_results_own_urls_stay_in_any_form() -> None:
    url = RETURNS.url
    for said in (f"See {url}.", f"See [how to return]({url}).", f"See <{url}>.", f"See {url.split('#')[0]} now"):
        out, cited = check(said, sources(RETURNS))
        assert out == said and cited == (RETURNS,)


# --- properties ---------------------------------------------------------------------------------------
WORDS = st.lists(
    st.sampled_from(
        ["please", "your", "order", "help", "us", "the", "refund", "is", "on", "its", "way", "today", "thanks"]
    ),
    max_size=6,
)
LABELS = st.lists(st.sampled_from(["Reset", "your", "password", "here", "Open", "the", "form"]), min_size=1, max_size=3)
TLDS = ["com", "net", "org", "io", "co.uk", "de", "shop", "example", "evil", "xn--p1ai"]
BACKSLASHES = ["\\\\", "/\\", "\\/"]  # what browsers read as // after a scheme
KNOWN = ["com", "net", "org", "io", "co.uk", "de", "shop", "xn--p1ai"]


@st.composite
def cased(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if f else c for c, f in zip(text, flips, strict=True))


@st.composite
def hosts(draw: st.DrawFn, *, known: bool) -> str:
    labels = draw(st.lists(st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True), max_size=2))
    return ".".join(
        [
            *labels,
            "evil-" + draw(st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True)),
            draw(st.sampled_from(KNOWN if known else TLDS)),
        ]
    )


@st.composite
def targets(draw: st.DrawFn) -> str:
    """An address that must not be linked: any scheme, any case, or none."""
    path = "/" + draw(st.from_regex(r"[A-Za-z0-9_~%=&/-]{0,12}[A-Za-z0-9]", fullmatch=True))
    host = draw(hosts(known=False))
    scheme = draw(cased(draw(st.sampled_from(["http", "https", "ftp", "wss", "hxxp", "git+ssh", "chrome-extension"]))))
    kind = draw(st.sampled_from(["scheme", "backslash", "special", "relative", "www", "bare", "bare_path", "code"]))
    if kind == "scheme":
        return f"{scheme}://{host}{path}"
    if kind == "backslash":
        return scheme + ":" + draw(st.sampled_from(BACKSLASHES)) + host + path
    if kind == "special":
        return draw(cased(draw(st.sampled_from(["https:", "http:", "ftp:"])))) + host + path
    if kind == "relative":
        return draw(st.sampled_from(["//", "\\\\"])) + host + path
    if kind == "www":
        return draw(cased("www.")) + host + path
    if kind == "bare":
        return draw(cased(draw(hosts(known=True))))
    if kind == "bare_path":
        return draw(cased(host)) + path
    code = draw(cased(draw(st.sampled_from(["javascript", "vbscript", "data"]))))
    return f"{code}:{draw(st.sampled_from(['alert(1)', 'text/html;base64,PHNjcmlwdD4=', 'void(0)']))}"


@st.composite
def encoded(draw: st.DrawFn, target: str) -> str:
    """The same address spelled otherwise: a character as an HTML reference, an invisible character."""
    how = draw(st.sampled_from(["as is", "decimal", "hex", "named", "invisible"]))
    i = draw(st.integers(0, len(target) - 1))
    if how == "decimal":
        return target[:i] + f"&#{ord(target[i])};" + target[i + 1 :]
    if how == "hex":
        return target[:i] + f"&#x{ord(target[i]):x};" + target[i + 1 :]
    if how == "named":
        return target.replace(".", "&period;", 1).replace(":", "&colon;", 1)
    if how == "invisible":
        return target[:i] + "\u200b" + target[i:]
    return target


@st.composite
def linked(draw: st.DrawFn) -> tuple[str, str]:
    """(a link in one of the forms renderers know, the words that should stay)."""
    target = draw(encoded(draw(targets())))
    words = " ".join(draw(LABELS))
    form = draw(st.sampled_from(["bare", "markdown", "image", "autolink", "slack", "html"]))
    return {
        "bare": (target, ""),
        "markdown": (f"[{words}]({target})", words),
        "image": (f"![{words}]({target})", words),
        "autolink": (f"<{target}>", ""),
        "slack": (f"<{target}|{words}>", words),
        "html": (f'<a href="{target}">{words}</a>', words),
    }[form]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(WORDS, linked()), min_size=1, max_size=3), WORDS, st.booleans())
def test_every_link_not_returned_goes_and_its_words_stay(
    parts: list[tuple[list[str], tuple[str, str]]], tail: list[str], cite: bool
) -> None:
    said, shown = [], []
    for words, (link, kept) in parts:
        said += [*words, link]
        shown += [*words, kept]
    if cite:
        said.append(RETURNS.url)
        shown.append(RETURNS.url)
    said += tail
    shown += tail
    out, cited = check(" ".join(said), sources(RETURNS))
    assert plain(out) == plain(" ".join(shown))
    assert "evil" not in out.lower()
    assert cited == ((RETURNS,) if cite else ())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "e.g.",
                "i.e.",
                "9:00-18:00",
                "Mr. Smith",
                "and/or",
                "50%",
                "$89.99",
                "Node.js",
                "ORD-8842",
                "v2.5",
                "(see above)",
                "3/4",
                "24/7",
                "A.M.",
                "No.",
                "U.S.",
                "ok:",
            ]
        )
        | WORDS.map(" ".join),
        max_size=12,
    )
)
def test_prose_without_links_is_left_alone(pieces: list[str]) -> None:
    text = " ".join(pieces).strip()
    out, _ = check(text, sources(RETURNS))
    assert out == plain(text) or out == re.sub(r"[ \t]+([.,;:!?])", r"\1", plain(text))


# --- real replies -------------------------------------------------------------------------------------
def test_real_replies_keep_their_words() -> None:
    """Replies Claude models wrote to τ2's simulated customers: the filter changes almost none of
    them (they link to nothing), and never a word that is not part of a link-like thing."""
    replies = assistant_replies()
    assert len(replies) > 2000
    changed = [(r, check(r, TurnSources())[0]) for r in replies if check(r, TurnSources())[0] != plain_keep(r)]
    assert len(changed) / len(replies) <= 0.005, changed[:5]


def plain_keep(text: str) -> str:
    """What `check` makes of a text without links: its whitespace runs and stray spaces tidied."""
    out = re.sub(r"\(\s*\)|\[\s*\]|<\s*>", "", text)
    out = re.sub(r"[ \t]{2,}", " ", out)
    return re.sub(r"[ \t]+([.,;:!?])", r"\1", out).strip()
