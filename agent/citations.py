"""Citations: what a reply may link to, and what it did.

Only the articles this turn's `search_help_center` results contained may be linked. `check`
runs after the output guard on every model-written reply: every link-like thing in it
(`storage.links`: any scheme in any case, bare domains, `//host`, `https:\\host`, Markdown links,
autolinks and reference definitions, Slack's `<url|text>`, HTML anchors, spelled with character
references or invisible characters) that is not one of those passages' URLs (or their
article's, without the anchor) is removed, keeping a link's words, and "article 12" naming an
article the results did not contain loses its number. What remains linked, or named by its
exact title, becomes the reply's citations, which every face renders in its own way. `record`
writes the turn's help answer (storage.models.HelpAnswer).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agent.events import Citation
from storage import links
from storage.models import HelpAnswer, Ticket
from tools.codes import ToolResult
from tools.tickets import visible_open

TOOL = "search_help_center"
ARTICLE_REF = re.compile(r"\b(article|artículo|artikel)\s+(?:#|no\.?\s*|nr\.?\s*)?(\d{1,9})\b", re.IGNORECASE)


@dataclass
class TurnSources:
    """The help-center passages this turn's searches returned (nothing else may be cited)."""

    started: datetime | None = None
    searched: bool = False
    citations: list[Citation] = field(default_factory=list)
    quotes: list[str] = field(default_factory=list)  # the passages' snippets, as the model was sent them

    def add(self, name: str, result: ToolResult) -> None:
        if name != TOOL:
            return
        self.searched = True
        for r in result.data.get("results", []) if result.ok else []:
            cite = Citation(article_id=int(r["article_id"]), title=str(r["title"]), url=str(r["url"]))
            if cite not in self.citations:
                self.citations.append(cite)
            if r.get("snippet"):
                self.quotes.append(str(r["snippet"]))

    def allowed(self, url: str) -> Citation | None:
        for c in self.citations:
            if url in (c.url, c.url.split("#", 1)[0]):
                return c
        return None


def check(text: str, sources: TurnSources) -> tuple[str, tuple[Citation, ...]]:
    """The reply with every link and article reference the results did not contain removed, and
    the citations it keeps, in the order they appear (one per article)."""
    cited: list[Citation] = []

    def cite(c: Citation) -> None:
        if all(x.article_id != c.article_id for x in cited):
            cited.append(c)

    def keep(link: links.Link) -> bool:
        found = sources.allowed(link.target)
        if found is not None:
            cite(found)
        return found is not None

    def reference(m: re.Match[str]) -> str:
        ident = int(m.group(2))
        found = next((c for c in sources.citations if c.article_id == ident), None)
        if found is None:
            return m.group(1)
        cite(found)
        return m.group(0)

    out = links.rewrite(links.normalise(text), keep)
    out = ARTICLE_REF.sub(reference, out)
    for c in sources.citations:
        if len(c.title) >= 8 and c.title.lower() in out.lower():
            cite(c)
    out = re.sub(r"\(\s*\)|\[\s*\]|<\s*>", "", out)
    out = re.sub(r"[ \t]{2,}", " ", out)
    out = re.sub(r"[ \t]+([.,;:!?])", r"\1", out)
    return out.strip(), tuple(cited)


async def record(s: AsyncSession, *, session_id: str, sources: TurnSources, cited: tuple[Citation, ...]) -> None:
    """One row per turn that searched: answered (with which articles) or not, and whether the
    session was escalated in this turn already (later escalations set `escalated_at` themselves)."""
    if not sources.searched or sources.started is None:
        return
    ticket_at = await s.scalar(
        select(Ticket.updated_at).where(
            visible_open(session_id),
            Ticket.updated_at >= sources.started,
        )
    )
    s.add(
        HelpAnswer(
            session_id=session_id,
            answered=bool(cited),
            article_ids=[c.article_id for c in cited],
            created_at=sources.started,
            escalated_at=ticket_at,
        )
    )
