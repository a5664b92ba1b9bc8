"""`supportbot kb …`: the help center from the command line (import, list, show, remove, draft, publish).

Parsing lives in bot/cli.py; each command here runs against the store and prints plain lines. A
mistake of the user's (a bad file, an unknown id) is one line on stderr and exit code 1.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Callable
from pathlib import Path

from storage.engine import Store
from storage.kb_import import KbImportError, import_articles, load_path
from storage.migrate import upgrade
from storage.settings import Settings
from storage.types import SystemClock
from tools import articles
from tools.codes import ToolResult
from tools.context import Actor, Deps
from tools.toolbox import make_deps

Progress = Callable[[int, int], None]


def _staff() -> Actor:
    return Actor.staff(f"cli:{getpass.getuser()}")


def _say(result: ToolResult) -> int:
    if result.ok:
        print(result.note)
        return 0
    print(f"{result.code.value}: {result.note}", file=sys.stderr)
    return 1


async def kb_import(store: Store, settings: Settings, path: str, *, prune: bool, progress: Progress | None) -> int:
    try:
        docs = await asyncio.to_thread(
            load_path,
            Path(path),
            base_url=settings.help_center_url,
            default_locale=settings.help_center_locale,
            hosts=settings.help_center_hosts,
        )
    except KbImportError as exc:
        print(f"import failed, nothing was imported. {exc}", file=sys.stderr)
        return 1
    counts = await import_articles(store, docs, clock=SystemClock(), prune=prune, progress=progress)
    print(
        f"{counts.added} added, {counts.updated} updated, {counts.unchanged} unchanged, "
        f"{counts.removed} removed ({counts.passages} passages written)"
    )
    return 0


async def kb_list(deps: Deps) -> int:
    rows = await articles.list_articles(deps)
    if not rows:
        print("no articles (supportbot kb import PATH, or supportbot db seed for the demo help center)")
    for a in rows:
        print(f"{a['article_id']:>5}  {a['status']:<9} {a['locale']:<3} {a['passages']:>3}p  {a['title']}  {a['url']}")
    return 0


async def kb_show(deps: Deps, article_id: int) -> int:
    article = await articles.get_article(deps, article_id)
    if article is None:
        print(f"no article {article_id}", file=sys.stderr)
        return 1
    print(f"# {article.title}")
    print(f"id {article.id} · {article.status} · {article.locale} · {article.source} · {article.url}")
    if article.tags:
        print("tags: " + ", ".join(article.tags))
    print()
    print(article.body)
    return 0


def _list_redacted(redacted: list[dict[str, str]]) -> None:
    """What the draft no longer holds, so staff can check it says what it should before publishing."""
    if redacted:
        print(f"redacted {len(redacted)}:")
    for item in redacted:
        print(f"  {item['kind']}: {item['text']}")


async def run(command: str, settings: Settings, *, target: str, prune: bool, progress: Progress | None) -> int:
    store = Store.from_settings(settings)
    try:
        await upgrade(store)
        deps = make_deps(store, settings, SystemClock())
        if command == "import":
            return await kb_import(store, settings, target, prune=prune, progress=progress)
        if command == "list":
            return await kb_list(deps)
        if command == "show":
            return await kb_show(deps, int(target))
        if command == "remove":
            return _say(await articles.remove(deps, article_id=int(target), staff=_staff()))
        if command == "publish":
            return _say(await articles.publish(deps, article_id=int(target), staff=_staff()))
        if command == "draft":
            result = await articles.draft_from_ticket(deps, ticket_id=int(target), staff=_staff())
            code = _say(result)
            _list_redacted(result.data.get("redacted", []) if result.ok else [])
            if result.ok and result.data.get("created"):
                print(
                    f"review it with `supportbot kb show {result.data['article_id']}`, then "
                    f"`supportbot kb publish {result.data['article_id']}`"
                )
            return code
        raise ValueError(command)
    finally:
        await store.dispose()
