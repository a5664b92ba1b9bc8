"""`kb import`: Markdown, HTML and Zendesk exports; good, bad, repeated and pruned; one transaction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from storage.engine import Store
from storage.kb_import import KbImportError, html_sections, import_articles, load_path, markdown_sections
from storage.models import Article, Passage
from storage.types import FrozenClock

BASE = "https://help.example.com"
HOSTS = ("acme.zendesk.com",)  # the Zendesk export's html_url host, beside HELP_CENTER_URL's

RETURNS_MD = """---
title: Returning an item
tags: [returns, refunds]
---
You can return a delivered order within 30 days.

## How to start a return

Message us with your order number.

## Return shipping

We email a prepaid label.

## Return shipping

A second section with the same heading gets its own anchor.
"""

HOURS_MD = """# Opening hours

The team works Monday to Friday.

## Weekends

Closed on Saturdays and Sundays.
"""

WARRANTY_HTML = """<!doctype html><html lang="de-DE"><head><title>Garantie</title>
<link rel="canonical" href="https://help.example.com/de/garantie"></head>
<body><h1>Garantie</h1><p>Zwei Jahre <b>Garantie</b> auf Geräte.</p>
<h2 id="claim">Garantiefall melden</h2><p>Nennen Sie die Bestellnummer.</p><script>alert(1)</script></body></html>"""


def zendesk(*articles: dict[str, Any]) -> dict[str, Any]:
    return {"articles": list(articles), "next_page": None, "count": len(articles)}


def zd(ident: int, title: str, body: str, *, draft: bool = False, locale: str = "en-us") -> dict[str, Any]:
    return {
        "id": ident,
        "title": title,
        "body": body,
        "html_url": f"https://acme.zendesk.com/hc/{locale}/articles/{ident}",
        "locale": locale,
        "updated_at": "2026-11-20T10:00:00Z",
        "draft": draft,
        "label_names": ["faq"],
        "section_id": 7,
    }


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "returns.md").write_text(RETURNS_MD)
    (tmp_path / "guides").mkdir()
    (tmp_path / "guides" / "Opening Hours.md").write_text(HOURS_MD)
    (tmp_path / "garantie.html").write_text(WARRANTY_HTML)
    return tmp_path


async def articles(store: Store) -> dict[str, Article]:
    async with store.read() as s:
        return {a.source_key: a for a in (await s.scalars(select(Article))).all()}


async def passages(store: Store, article_id: int) -> list[Passage]:
    async with store.read() as s:
        return list(
            (await s.scalars(select(Passage).where(Passage.article_id == article_id).order_by(Passage.position))).all()
        )


def test_markdown_splits_at_headings_and_the_first_h1_is_the_title() -> None:
    title, raw = markdown_sections(HOURS_MD)
    assert title == "Opening hours"
    assert [(h, t.strip()) for h, _, t in raw] == [
        (None, "The team works Monday to Friday."),
        ("Weekends", "Closed on Saturdays and Sundays."),
    ]


def test_html_splits_at_headings_keeps_ids_and_drops_scripts() -> None:
    title, raw = html_sections(WARRANTY_HTML)
    assert title == "Garantie"
    assert raw[0][0] is None and "Zwei Jahre" in raw[0][2]
    assert raw[1][:2] == ("Garantiefall melden", "claim")
    assert "alert" not in " ".join(t for _, _, t in raw)


async def test_folder_import_of_markdown_and_html(store: Store, folder: Path, clock: FrozenClock) -> None:
    docs = load_path(folder, base_url=BASE, default_locale="en", hosts=HOSTS)
    counts = await import_articles(store, docs, clock=clock)
    assert (counts.added, counts.updated, counts.unchanged) == (3, 0, 0)
    found = await articles(store)
    returns = found[f"url:{BASE}/returns"]
    assert (returns.title, returns.locale, returns.tags, returns.status) == (
        "Returning an item",
        "en",
        ["returns", "refunds"],
        "published",
    )
    rows = await passages(store, returns.id)
    assert [(p.heading, p.url) for p in rows] == [
        (None, f"{BASE}/returns"),
        ("How to start a return", f"{BASE}/returns#how-to-start-a-return"),
        ("Return shipping", f"{BASE}/returns#return-shipping"),
        ("Return shipping", f"{BASE}/returns#return-shipping-1"),
    ]
    assert all(p.title == "Returning an item" and p.published for p in rows)
    assert f"url:{BASE}/guides/opening-hours" in found  # URL from the path when the file names none
    garantie = found["url:https://help.example.com/de/garantie"]
    assert garantie.locale == "de" and garantie.source == "html"
    assert [p.url for p in await passages(store, garantie.id)][-1] == "https://help.example.com/de/garantie#claim"


async def test_repeated_import_changes_nothing_and_a_changed_file_is_rewritten(
    store: Store, folder: Path, clock: FrozenClock
) -> None:
    await import_articles(store, load_path(folder, base_url=BASE, hosts=HOSTS), clock=clock)
    before = await articles(store)
    clock.advance(hours=1)
    again = await import_articles(store, load_path(folder, base_url=BASE, hosts=HOSTS), clock=clock)
    assert (again.added, again.updated, again.unchanged, again.removed) == (0, 0, 3, 0)
    assert {k: a.updated_at for k, a in (await articles(store)).items()} == {k: a.updated_at for k, a in before.items()}
    (folder / "returns.md").write_text(RETURNS_MD.replace("30 days", "45 days"))
    changed = await import_articles(store, load_path(folder, base_url=BASE, hosts=HOSTS), clock=clock)
    assert (changed.added, changed.updated, changed.unchanged) == (0, 1, 2)
    after = await articles(store)
    returns = after[f"url:{BASE}/returns"]
    assert returns.id == before[f"url:{BASE}/returns"].id  # the same article, rewritten
    assert "45 days" in (await passages(store, returns.id))[0].text
    assert returns.updated_at == clock.now()


async def test_prune_removes_what_the_folder_no_longer_has(store: Store, folder: Path, clock: FrozenClock) -> None:
    export = folder.parent / "zd.json"
    export.write_text(json.dumps(zendesk(zd(1, "Shipping", "<p>Three to five days.</p>"))))
    await import_articles(store, load_path(folder, base_url=BASE, hosts=HOSTS), clock=clock)
    await import_articles(store, load_path(export, base_url=BASE, hosts=HOSTS), clock=clock)
    (folder / "garantie.html").unlink()
    counts = await import_articles(store, load_path(folder, base_url=BASE, hosts=HOSTS), clock=clock, prune=True)
    assert counts.removed == 1
    keys = set(await articles(store))
    assert "url:https://help.example.com/de/garantie" not in keys
    assert "zendesk:1" in keys  # another kind of source is not this import's to prune
    async with store.read() as s:
        orphans = await s.scalar(
            select(func.count()).select_from(Passage).where(~Passage.article_id.in_(select(Article.id)))
        )
    assert orphans == 0


async def test_zendesk_export(store: Store, tmp_path: Path, clock: FrozenClock) -> None:
    export = tmp_path / "export.json"
    body = "<p>Standard delivery takes 3-5 days.</p><h2>Express</h2><p>1-2 days.</p>"
    export.write_text(
        json.dumps(
            zendesk(
                zd(101, "Shipping times", body),
                zd(102, "Envíos", "<p>De 3 a 5 días.</p>", locale="es"),
                zd(103, "Unreleased", "<p>Secret sale next week.</p>", draft=True),
            )
        )
    )
    counts = await import_articles(store, load_path(export, base_url=BASE, hosts=HOSTS), clock=clock)
    assert counts.added == 3
    found = await articles(store)
    assert found["zendesk:101"].url == "https://acme.zendesk.com/hc/en-us/articles/101"
    assert found["zendesk:101"].locale == "en" and found["zendesk:102"].locale == "es"
    assert found["zendesk:101"].tags == ["faq"]
    assert [p.url for p in await passages(store, found["zendesk:101"].id)] == [
        "https://acme.zendesk.com/hc/en-us/articles/101",
        "https://acme.zendesk.com/hc/en-us/articles/101#express",
    ]
    assert found["zendesk:103"].status == "draft"
    assert not any(p.published for p in await passages(store, found["zendesk:103"].id))
    export.write_text(json.dumps(zendesk(zd(101, "Shipping times", body))))
    pruned = await import_articles(store, load_path(export, base_url=BASE, hosts=HOSTS), clock=clock, prune=True)
    assert (pruned.unchanged, pruned.removed) == (1, 2)


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("bad.md", "---\ntitle: [unclosed\n---\ntext", "front matter is not valid YAML"),
        ("notitle.md", "Just text, no heading.", "has no title"),
        ("empty.md", "---\ntitle: Empty\n---\n", "has no text"),
        ("badurl.md", "---\ntitle: T\nurl: javascript:alert(1)\n---\ntext", "is not an absolute http(s) URL"),
        ("badlocale.md", "---\ntitle: T\nlocale: 12345\n---\ntext", "locale"),
        ("tags.md", "---\ntitle: T\ntags: {a: 1}\n---\ntext", "front matter: tags"),
        ("binary.md", b"\xff\xfe\x00bad", "is not UTF-8 text"),
        ("export.json", '{"articles": [{"id": 5, "body": "<p>x</p>"}]}', "articles[0] (id 5): title: Field required"),
        ("broken.json", '{"articles": [', "is not valid JSON (parse error: premature EOF), in its first 14 bytes"),
        ("other.json", '{"customers": []}', "not a Zendesk articles export"),
    ],
)
async def test_a_bad_file_names_the_file_and_the_problem_and_imports_nothing(
    store: Store, folder: Path, name: str, content: str | bytes, problem: str
) -> None:
    target = folder / name
    target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
    with pytest.raises(KbImportError) as err:
        load_path(folder, base_url=BASE, hosts=HOSTS)
    assert any(str(target) in p and problem in p for p in err.value.problems), err.value.problems
    assert await articles(store) == {}


def test_two_files_claiming_the_same_url_are_refused(tmp_path: Path) -> None:
    for name in ("a.md", "b.md"):
        (tmp_path / name).write_text("---\ntitle: T\nurl: https://help.example.com/same\n---\ntext")
    with pytest.raises(KbImportError, match="the same article"):
        load_path(tmp_path, base_url=BASE, hosts=HOSTS)


def test_missing_path_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(KbImportError, match="no such file"):
        load_path(tmp_path / "nope", base_url=BASE, hosts=HOSTS)
    with pytest.raises(KbImportError, match="no Markdown, HTML or Zendesk export files"):
        load_path(tmp_path, base_url=BASE, hosts=HOSTS)
