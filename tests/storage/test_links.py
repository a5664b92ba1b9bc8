"""storage.links: what counts as an executable or data link, and work linear in the text whatever
it holds (tests/linear.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from storage.links import find, normalise, rewrite, scheme_of, strip_unsafe, unsafe, without_links
from tests.linear import HOSTILE, _repeat, assert_linear

LINKISH: dict[str, Callable[[int], str]] = {
    "schemes": _repeat("a:"),
    "scheme_runs": _repeat("javascript:"),
    "slashes": _repeat("//a."),
    "markdown": _repeat("[a]("),
    "nested_labels": _repeat("[[a]"),
    "angles": _repeat("<a|"),
    "domains": _repeat("a.b."),
    "domains_spaced": _repeat("a.com "),
    "www": _repeat("www."),
    "entities": _repeat("&#104;"),
    "references": _repeat("\n[a]: "),
    "tags": _repeat("<a href="),
}


@pytest.mark.parametrize("name", [*HOSTILE, *LINKISH])
def test_finding_links_is_linear(name: str) -> None:
    make = HOSTILE.get(name) or LINKISH[name]
    assert_linear(lambda t: rewrite(normalise(t), lambda link: False), make, label=name, large=400_000)


@pytest.mark.parametrize(
    ("target", "scheme", "bad"),
    [
        ("javascript:alert(1)", "javascript", True),
        ("  JaVa\tScRiPt:alert(1)", "javascript", True),
        ("&#106;avascript:alert(1)", "javascript", True),
        ("data:text/html;base64,PHNjcmlwdD4=", "data", True),
        ("vbscript:msgbox", "vbscript", True),
        ("file:///etc/passwd", "file", True),
        ("https://help.example.com/a", "https", False),
        ("/relative/path", None, False),
        ("mailto:help@example.com", "mailto", False),
    ],
)
def test_executable_and_data_links_are_known_whatever_their_spelling(
    target: str, scheme: str | None, bad: bool
) -> None:
    assert scheme_of(target) == scheme
    assert unsafe(target) is bad


def test_stripping_unsafe_links_keeps_the_rest() -> None:
    text = "Read [the guide](https://help.example.com/a), not [this](javascript:alert(1)) or data:text/html,x."
    assert strip_unsafe(text) == "Read [the guide](https://help.example.com/a), not this or ."


def test_without_links_says_what_went() -> None:
    out, gone = without_links("Call www.shop.example/help or see [here](https://x.example/y).", blank="[link]")
    assert out == "Call [link] or see here."
    assert gone == ["www.shop.example/help", "https://x.example/y"]


def test_emails_mentions_and_tags_are_not_links() -> None:
    assert find("write to sarah@example.com, <@U123> or <b>bold</b>") == []
