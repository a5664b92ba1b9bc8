"""`supportbot kb …` and `db seed` as an operator runs them: real store, plain lines, exit codes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.cli import main
from desk import staff as staff_acts
from storage.models import Article, ChatSession
from tools.context import Actor, Deps


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    monkeypatch.setenv("HELP_CENTER_URL", "https://help.acme.test")
    return tmp_path


async def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


async def test_import_list_show_remove(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = env / "docs"
    docs.mkdir()
    (docs / "Gift Wrap.md").write_text("# Gift wrap\n\nWrapping costs 4.99.\n\n## Messages\n\nUp to 200 characters.")
    (docs / "bad.md").write_text("no title here")
    code, out, err = await run(capsys, "kb", "import", str(docs))
    assert code == 1 and "nothing was imported" in err and f"{docs / 'bad.md'}: has no title" in err
    (docs / "bad.md").unlink()
    code, out, _ = await run(capsys, "kb", "import", str(docs))
    assert code == 0 and "1 added, 0 updated, 0 unchanged, 0 removed (2 passages written)" in out
    code, out, _ = await run(capsys, "kb", "import", str(docs))
    assert "0 added, 0 updated, 1 unchanged" in out
    code, out, _ = await run(capsys, "kb", "list")
    assert "published en    2p  Gift wrap  https://help.acme.test/gift-wrap" in out
    article_id = int(out.split()[0])
    code, out, _ = await run(capsys, "kb", "show", str(article_id))
    assert code == 0 and out.startswith("# Gift wrap") and "## Messages\nUp to 200 characters." in out
    code, out, _ = await run(capsys, "kb", "remove", str(article_id))
    assert code == 0 and "Removed." in out
    code, _, err = await run(capsys, "kb", "remove", str(article_id))
    assert code == 1 and "NOT_FOUND" in err
    code, _, err = await run(capsys, "kb", "show", "999")
    assert code == 1 and "no article 999" in err


async def test_db_seed_loads_the_demo_help_center_once(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await run(capsys, "db", "seed")
    assert code == 0 and "26 help-center articles" in out
    await run(capsys, "db", "seed")
    code, out, _ = await run(capsys, "kb", "list")
    assert len(out.splitlines()) == 26
    assert {"de", "en", "es"} == {line.split()[2] for line in out.splitlines()}


async def test_draft_from_a_resolved_ticket_then_publish(
    env: Path, capsys: pytest.CaptureFixture[str], deps: Deps
) -> None:
    from tests.bot.test_kb_draft import ticket_with

    ticket_id = await ticket_with(
        deps,
        asked="Can I get my order ORD-8842 engraved? Mail me at sarah@example.com",
        answered="Yes: engraving is free on kettles, add a note at checkout.",
    )
    code, _, err = await run(capsys, "kb", "draft", str(ticket_id))
    assert code == 1 and "Only a resolved ticket" in err
    await staff_acts.resolve(deps, ticket_id=ticket_id, staff=Actor.staff("USTAFF"))
    code, out, _ = await run(capsys, "kb", "draft", str(ticket_id))
    assert code == 0 and "Saved as draft article" in out
    async with deps.store.read() as s:
        article = (await s.scalars(select(Article).where(Article.ticket_id == ticket_id))).one()
        assert await s.scalar(select(ChatSession.id)) is not None  # the conversation stays
    assert article.status == "draft" and article.source == "ticket"
    assert "engraving is free on kettles" in article.body
    assert "ORD-8842" not in article.body and "sarah@example.com" not in article.body  # customer details stay out
    code, out, _ = await run(capsys, "kb", "draft", str(ticket_id))
    assert code == 0 and f"Already saved as article {article.id}" in out
    code, out, _ = await run(capsys, "kb", "publish", str(article.id))
    assert code == 0 and "Published" in out
    code, _, err = await run(capsys, "kb", "publish", str(article.id))
    assert code == 1 and "already published" in err
