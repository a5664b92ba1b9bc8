"""`kb import` on untrusted files: nothing outside the folder is read, no file costs unbounded work,
no credential is published, no article names another site as its source, and no passage keeps an
executable or data link. Issue 29's abuse run found each of these open; every problem is a clear
error naming the file, and nothing is imported."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.kb_files import MAX_FILE_BYTES, MAX_HTML_DEPTH, html_depth
from storage.kb_import import KbImportError, load_path

BASE = "https://help.example.com"
SECRET = "xoxb-1111111111-2222222222222-abcdefghijklmnopqrstuvwx"
ENV = f"# production settings\nSLACK_BOT_TOKEN={SECRET}\nANTHROPIC_API_KEY=sk-ant-api03-{'k' * 40}\n"
ARTICLE = "---\ntitle: Returns\n---\nYou can return an item within 30 days.\n"


def problems(path: Path, **kwargs: object) -> list[str]:
    with pytest.raises(KbImportError) as err:
        load_path(path, base_url=BASE, **kwargs)  # type: ignore[arg-type]
    return err.value.problems


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "returns.md").write_text(ARTICLE)
    return tmp_path / "kb"


# --- what is read ----------------------------------------------------------------------------------------
def test_a_symlink_to_a_secret_outside_the_folder_is_refused_and_never_read(folder: Path) -> None:
    (folder.parent / ".env").write_text(ENV)
    (folder / "settings.md").symlink_to(folder.parent / ".env")
    (folder / "more").symlink_to(folder.parent, target_is_directory=True)
    said = problems(folder)
    assert any(p.startswith(str(folder / "settings.md")) and "symbolic link" in p for p in said), said
    assert any(p.startswith(str(folder / "more")) and "symbolic link" in p for p in said), said
    assert SECRET not in "\n".join(said)


def test_a_fifo_is_named_not_waited_for(folder: Path) -> None:
    os.mkfifo(folder / "pipe.md")
    assert any("pipe.md: is not a regular file" in p for p in problems(folder))


def test_a_folder_nested_too_deep_is_named(folder: Path) -> None:
    deep = folder.joinpath(*["d"] * 33)
    deep.mkdir(parents=True)
    (deep / "x.md").write_text(ARTICLE)
    assert any("nested deeper than 32 folders" in p for p in problems(folder))


# --- what is published -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (f"Our bot token is {SECRET}.", "a Slack token"),
        ("App token: xapp-1-A0123456789-1234567890123-abcdef0123456789abcdef", "a Slack token"),
        (f"key sk-ant-api03-{'a' * 60}", "an Anthropic API key"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----", "a private key"),
        ("AWS: AKIAIOSFODNN7EXAMPLE", "an AWS access key id"),
        ("db: postgresql://bot:s3cr3tpass@db.internal/shop", "a password in a URL"),
        ("Set password=Tr0ub4dor3xyzzy in the config", "a secret value"),
        ("CHAT_IDENTITY_SECRET: 6f1c2a9b8e7d4c3b2a1f", "a secret value"),
    ],
)
def test_an_article_holding_a_credential_refuses_its_file(folder: Path, body: str, kind: str) -> None:
    (folder / "leak.md").write_text(f"# Settings\n\n{body}\n")
    said = problems(folder)
    (leak,) = [p for p in said if "leak.md" in p]
    assert f"holds what looks like {kind}" in leak and "nothing of this file was imported" in leak
    assert body.split()[-1].rstrip(".") not in leak  # the value itself is never repeated


def test_prose_about_passwords_is_not_a_credential(folder: Path) -> None:
    (folder / "reset.md").write_text("# Reset\n\nSet a new password: open Settings, then Security. Token: see email.\n")
    assert len(load_path(folder, base_url=BASE)) == 2


@pytest.mark.parametrize(
    ("name", "content"),
    [
        (
            "page.html",
            '<html><head><title>T</title><link rel="canonical" href="https://evil.example/x"></head>'
            "<body><p>text</p></body></html>",
        ),
        ("page.md", "---\ntitle: T\nurl: https://evil.example/reset\n---\ntext"),
    ],
)
def test_an_article_url_on_another_host_is_refused(folder: Path, name: str, content: str) -> None:
    (folder / name).write_text(content)
    (bad,) = [p for p in problems(folder) if name in p]
    assert "'evil.example' is not the help center's host (help.example.com)" in bad and "HELP_CENTER_HOSTS" in bad


def test_hosts_named_in_help_center_hosts_are_allowed(folder: Path) -> None:
    export = {
        "articles": [
            {"id": 1, "title": "T", "body": "<p>x</p>", "html_url": "https://acme.zendesk.com/a/1", "locale": "en"}
        ]
    }
    (folder / "zd.json").write_text(json.dumps(export))
    assert any("'acme.zendesk.com' is not the help center's host" in p for p in problems(folder))
    assert len(load_path(folder, base_url=BASE, hosts=["acme.zendesk.com"])) == 2


def test_passages_keep_no_executable_or_data_link(folder: Path) -> None:
    (folder / "links.md").write_text(
        "# Links\n\nReset it: javascript:alert(document.cookie) or "
        "`[Open](data:text/html;base64,PHNjcmlwdD4=)` or <vbscript:msgbox(1)>, see https://help.example.com/a.\n"
    )
    (links,) = [d for d in load_path(folder, base_url=BASE) if d.title == "Links"]
    assert "javascript" not in links.body and "data:" not in links.body and "vbscript" not in links.body
    assert "Open" in links.body and "https://help.example.com/a" in links.body


# --- how much work -------------------------------------------------------------------------------------
def test_the_nested_div_page_is_refused_before_it_is_parsed(folder: Path) -> None:
    """The 1.65 MB page of nested <div>s that kept the parser busy for over two minutes."""
    n = 150_000
    (folder / "nested.html").write_text(
        f"<html><head><title>T</title></head><body>{'<div>' * n}x{'</div>' * n}</body></html>"
    )
    assert any(f"nests HTML elements deeper than {MAX_HTML_DEPTH} levels" in p for p in problems(folder))


def test_a_markdown_link_bomb_runs_out_of_time_not_forever(folder: Path) -> None:
    (folder / "bomb.md").write_text("# Bomb\n\n" + "![" * 400_000)
    (bomb,) = [p for p in problems(folder, parse_seconds=0.5) if "bomb.md" in p]
    assert "took longer than 0.5 s to parse" in bomb


def test_a_huge_exported_body_is_refused_as_it_streams_past(folder: Path) -> None:
    """The 98 MB Zendesk body: refused without ever holding it (a 20 MB one stands in)."""
    body = "<p>" + "a" * 20_000_000 + "</p>"
    head = {"id": 1, "title": "T", "html_url": f"{BASE}/a/1", "locale": "en"}
    (folder / "zd.json").write_text(
        json.dumps({"articles": [head | {"body": "<p>ok</p>"}, head | {"id": 2, "body": body}]})
    )
    del body
    tracemalloc.start()
    try:
        said = problems(folder)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert any("zd.json: has a text (an article's body?) larger than 2 MB" in p for p in said), said
    assert peak < 8 * MAX_FILE_BYTES  # a few chunks and one article's worth, never the body


def test_a_large_export_is_read_one_article_at_a_time(folder: Path) -> None:
    arts = [
        {"id": i, "title": f"Article {i}", "body": f"<p>Text {i}.</p>", "html_url": f"{BASE}/a/{i}", "locale": "en"}
        for i in range(3000)
    ]
    (folder / "zd.json").write_text(json.dumps({"count": 3000, "articles": arts}))
    assert len(load_path(folder, base_url=BASE)) == 3001


# --- properties --------------------------------------------------------------------------------------------
CONTAINERS = st.sampled_from(["div", "section", "ul", "blockquote", "span", "b", "table"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(CONTAINERS, max_size=400), st.booleans(), st.booleans())
def test_html_nesting_is_refused_exactly_past_the_bound(
    tmp_path: Path, tags: list[str], close: bool, slash: bool
) -> None:
    """However the nesting is written (closed or not, `<div/>`, which HTML does not close), a page
    is parsed when it nests at most MAX_HTML_DEPTH elements and refused, unparsed, when deeper."""
    opened = "".join(f"<{t}{'/' if slash else ''}>" for t in tags)
    closed = "".join(f"</{t}>" for t in reversed(tags)) if close else ""
    html = f"<html><head><title>T</title></head><body>{opened}<p>text</p>{closed}</body></html>"
    page = tmp_path / f"p{len(tags)}{close}{slash}.html"
    page.write_text(html)
    try:
        assert len(tags) <= MAX_HTML_DEPTH and html_depth(html) == len(tags) + 2
        assert [d.title for d in load_path(page, base_url=BASE)] == ["T"]
    except AssertionError:
        assert len(tags) > MAX_HTML_DEPTH
        with pytest.raises(KbImportError, match="nests HTML elements deeper"):
            load_path(page, base_url=BASE)


BOMB_UNITS = st.sampled_from(
    ["[", "![", "[a](", "](", "[a]:", "<", "*a", "_a", "`", "[a][", "> ", "- ", "\\[", "(", "&#"]
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(BOMB_UNITS, st.integers(1, 20_000)), min_size=1, max_size=4))
def test_any_markdown_ends_in_articles_or_a_clear_problem(tmp_path: Path, runs: list[tuple[str, int]]) -> None:
    """Link and emphasis bombs of any mixture: the import ends, with the article or with a
    problem naming the file (the parse-time bound), never another exception."""
    page = tmp_path / "bomb.md"
    page.write_text("# Bomb\n\nSome text.\n\n" + "".join(unit * n for unit, n in runs))
    try:
        docs = load_path(page, base_url=BASE, parse_seconds=0.3)
    except KbImportError as exc:
        assert all(p.startswith(str(page)) for p in exc.problems) and "took longer than 0.3 s" in exc.problems[0]
    else:
        assert [d.title for d in docs] == ["Bomb"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["in", "out", "dir"]), st.booleans()), max_size=6), st.data())
def test_nothing_outside_the_folder_is_ever_read(
    tmp_path_factory: pytest.TempPathFactory, links: list[tuple[str, bool]], data: st.DataObject
) -> None:
    """Whatever mixture of links a folder holds (to files inside it, to secrets outside it, to
    folders), no article holds the secret and every link is named."""
    base = tmp_path_factory.mktemp("tree")
    (base / "outside").mkdir()
    (base / "outside" / "secret.md").write_text(f"# Secret\n\n{SECRET}\n")
    root = base / "kb"
    (root / "sub").mkdir(parents=True)
    (root / "ok.md").write_text(ARTICLE)
    for n, (kind, nested) in enumerate(links):
        where = root / "sub" if nested else root
        target = {"in": root / "ok.md", "out": base / "outside" / "secret.md", "dir": base / "outside"}[kind]
        (where / f"link{n}.md").symlink_to(target, target_is_directory=kind == "dir")
    try:
        docs = load_path(root, base_url=BASE)
    except KbImportError as exc:
        said = "\n".join(exc.problems)
        assert SECRET not in said and said.count("symbolic link") == len(links)
    else:
        assert not links and SECRET not in "\n".join(d.body for d in docs)
