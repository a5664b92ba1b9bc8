"""Staff acts on help-center articles: save a resolved ticket's answer as a draft, publish, remove.

A draft is never searchable (its passages are unpublished, so the index never holds them);
`publish` makes it so. Every act is audit-logged with the staff member, and any face (the CLI's
`kb draft` / `kb publish`, the Slack ticket's *Save as article* button) calls these.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.analysis import STEMMERS, guess_language, language_of
from storage.engine import Store
from storage.kb_import import ArticleDoc, Section, passage_rows, slug
from storage.models import Article, ChatSession, Customer, InboxItem, Message, OutboxMessage, Passage, Ticket
from storage.search import index_for
from storage.states import TicketStatus
from tools.codes import Code, ToolResult
from tools.context import Actor, Deps, audit
from tools.redaction import redact

MAX_DRAFT_CHARS = 4000


def describe(a: Article, passages: int | None = None) -> dict[str, object]:
    out: dict[str, object] = {
        "article_id": a.id,
        "title": a.title,
        "url": a.url,
        "locale": a.locale,
        "status": a.status,
        "source": a.source,
        "tags": a.tags,
        "updated_at": a.updated_at.isoformat(),
    }
    if passages is not None:
        out["passages"] = passages
    return out


async def list_articles(deps: Deps, *, status: str | None = None) -> list[dict[str, object]]:
    counts = select(Passage.article_id, func.count().label("n")).group_by(Passage.article_id).subquery()
    stmt = select(Article, func.coalesce(counts.c.n, 0)).outerjoin(counts, counts.c.article_id == Article.id)
    if status:
        stmt = stmt.where(Article.status == status)
    async with deps.store.read() as s:
        rows = (await s.execute(stmt.order_by(Article.locale, Article.title))).all()
    return [describe(a, int(n)) for a, n in rows]


async def get_article(deps: Deps, article_id: int) -> Article | None:
    async with deps.store.read() as s:
        return await s.get(Article, article_id)


async def _conversation(deps: Deps, session: ChatSession | None) -> tuple[str, str]:
    """(what the customer asked, what staff answered) in a ticket's conversation: staff's own messages
    in a Slack thread, and the replies they sent from the ticket."""
    if session is None:
        return "", ""
    async with deps.store.read() as s:
        asked = [
            str(b.get("text", ""))
            for content in await s.scalars(
                select(Message.content)
                .where(Message.session_id == session.id, Message.is_customer_text)
                .order_by(Message.id)
                .limit(5)
            )
            for b in content
            if b.get("type") == "text"
        ]
        answered: list[str] = []
        if session.external_key and session.external_key.startswith("slack:"):
            _, channel, thread = session.external_key.split(":", 2)
            customer_user = (session.subject or "").rpartition(":")[2]
            answered = list(
                await s.scalars(
                    select(InboxItem.text)
                    .where(InboxItem.channel == channel, InboxItem.thread_ts == thread)
                    .where(InboxItem.user_id != customer_user)
                    .order_by(InboxItem.id)
                    .limit(20)
                )
            )
        answered += list(  # replies staff sent from the ticket (any face's customer: desk.staff.reply)
            await s.scalars(
                select(OutboxMessage.text)
                .where(OutboxMessage.session_id == session.id, OutboxMessage.kind == "staff_reply")
                .order_by(OutboxMessage.id)
                .limit(20)
            )
        )
    return "\n".join(asked)[:MAX_DRAFT_CHARS], "\n".join(answered)[:MAX_DRAFT_CHARS]


async def draft_from_ticket(deps: Deps, *, ticket_id: int, staff: Actor) -> ToolResult:
    """A resolved ticket's question and staff answer as a draft article (one per ticket)."""
    if staff.kind != "staff":
        return ToolResult(Code.NOT_ALLOWED, "Only support staff can save articles.")
    async with deps.store.read() as s:
        ticket = await s.get(Ticket, ticket_id)
        existing = await s.scalar(select(Article).where(Article.ticket_id == ticket_id))
        session = await s.get(ChatSession, ticket.session_id) if ticket and ticket.session_id else None
    if ticket is None:
        return ToolResult(Code.NOT_FOUND, "No such ticket.")
    if existing is not None:
        return ToolResult(Code.OK, f"Already saved as article {existing.id}.", {**describe(existing), "created": False})
    if ticket.status != TicketStatus.RESOLVED:
        return ToolResult(
            Code.INVALID_STATE, "Only a resolved ticket can be saved as an article.", {"status": ticket.status}
        )
    asked, answered = await _conversation(deps, session)
    names = await _names(deps, ticket.customer_id or (session.customer_id if session else None))
    question, taken = redact(asked or ticket.summary, names=names)
    answer, more = redact(answered, names=names)
    answer = answer or "(Write the answer here before publishing.)"
    title = re.split(r"(?<=[.?!])\s", question.strip(), maxsplit=1)[0][:120] or f"Ticket {ticket_id}"
    locale = language_of(session.locale if session else None) or await guess_language(question, list(STEMMERS))
    url = f"{deps.settings.help_center_url}/answers/{ticket_id}-{slug(title)[:60]}"
    doc = ArticleDoc(
        key=f"ticket:{ticket_id}",
        source="ticket",
        title=title,
        url=url,
        locale=locale or deps.settings.help_center_locale,
        tags=("from-ticket",),
        draft=True,
        sections=(Section("Question", "question", question), Section("Answer", "answer", answer)),
        origin=f"ticket {ticket_id}",
    )
    article = await _store_draft(deps, doc, ticket_id=ticket_id, staff=staff)
    redacted = [{"kind": kind, "text": text} for kind, text in [*taken, *more]]
    return ToolResult(
        Code.OK,
        f"Saved as draft article {article.id}" + (f" ({len(redacted)} details taken out)." if redacted else "."),
        {**describe(article), "created": True, "redacted": redacted},
    )


async def _store_draft(deps: Deps, doc: ArticleDoc, *, ticket_id: int, staff: Actor) -> Article:
    """The draft and its (unpublished) passages, in one transaction, audited."""
    now = deps.clock.now()
    async with deps.store.write() as s:
        article = Article(
            source="ticket",
            source_key=doc.key,
            title=doc.title,
            url=doc.url,
            locale=doc.locale,
            tags=list(doc.tags),
            body=doc.body,
            status="draft",
            content_hash=doc.digest(),
            ticket_id=ticket_id,
            created_at=now,
            updated_at=now,
        )
        s.add(article)
        await s.flush()
        s.add_all(Passage(**row) for row in passage_rows(deps.store, article.id, doc, published=False))
        audit(s, deps, actor=staff, action="kb_draft", input={"ticket_id": ticket_id}, outcome=Code.OK)
    return article


async def _names(deps: Deps, customer_id: str | None) -> list[str]:
    """The names a ticket's conversation may hold that we know of: its customer's."""
    if customer_id is None:
        return []
    async with deps.store.read() as s:
        name = await s.scalar(select(Customer.name).where(Customer.id == customer_id))
    return [name] if name else []


async def _set_published(store: Store, s: AsyncSession, article_id: int, now: datetime) -> None:
    await s.execute(
        update(Article).where(Article.id == article_id).values(status="published", published_at=now, updated_at=now)
    )
    await s.execute(update(Passage).where(Passage.article_id == article_id).values(published=True))
    await index_for(store).refresh(s)


async def publish(deps: Deps, *, article_id: int, staff: Actor) -> ToolResult:
    if staff.kind != "staff":
        return ToolResult(Code.NOT_ALLOWED, "Only support staff can publish articles.")
    async with deps.store.write() as s:
        article = await s.get(Article, article_id)
        if article is None:
            result = ToolResult(Code.NOT_FOUND, "No such article.")
        elif article.status == "published":
            result = ToolResult(Code.INVALID_STATE, "The article is already published.", describe(article))
        else:
            await _set_published(deps.store, s, article_id, deps.clock.now())
            await s.refresh(article)
            result = ToolResult(Code.OK, "Published: customers can find it now.", describe(article))
        audit(s, deps, actor=staff, action="kb_publish", input={"article_id": article_id}, outcome=result.code)
    return result


async def remove(deps: Deps, *, article_id: int, staff: Actor) -> ToolResult:
    if staff.kind != "staff":
        return ToolResult(Code.NOT_ALLOWED, "Only support staff can remove articles.")
    async with deps.store.write() as s:
        article = await s.get(Article, article_id)
        if article is None:
            result = ToolResult(Code.NOT_FOUND, "No such article.")
        else:
            result = ToolResult(Code.OK, "Removed.", describe(article))
            await s.execute(delete(Article).where(Article.id == article_id))
            await index_for(deps.store).refresh(s)
        audit(s, deps, actor=staff, action="kb_remove", input={"article_id": article_id}, outcome=result.code)
    return result
