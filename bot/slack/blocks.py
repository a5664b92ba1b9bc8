"""Block Kit and message text, built by pure functions (tested by comparing structures).

Everything shown in a channel goes through `slack_text`: Slack markup is escaped, so no
`<!channel>`, user mention or link the model (or a customer) invented can fire, and email
addresses are never shown in a shared channel. Text in a block is cut to what Slack accepts
there (`fit`), so a long reply is shortened instead of failing to render. All of it takes time
linear in the text (tests/test_linear_time.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from agent.events import Citation
from storage.states import TicketStatus
from tools import emails
from tools.wording import STAFF_REPLY_LABEL, confirm_how, reason_text

SLACK_USER = re.compile(r"[UW][A-Z0-9_]{1,20}")
SECTION_CHARS = 3000  # Slack's limit on a section's (and a context element's) text

CONFIRM, CANCEL = "refund_confirm", "refund_cancel"
CLAIM, RELEASE, RESOLVE = "ticket_claim", "ticket_release", "ticket_resolve"
APPROVE, DENY, LINK = "refund_approve", "refund_deny", "ticket_link_customer"
REPLY = "ticket_reply"
SAVE_ARTICLE = "ticket_save_article"
ACTION_IDS = (CONFIRM, CANCEL, CLAIM, RELEASE, RESOLVE, APPROVE, DENY, LINK, REPLY, SAVE_ARTICLE)


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(text: str) -> str:
    """Text for a shared channel: markup escaped, emails hidden."""
    return escape(emails.hide(text))


def fit(text: str, limit: int = SECTION_CHARS) -> str:
    """Escaped text cut to `limit` characters with an ellipsis, never inside an `&…;` entity."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&", max(0, len(cut) - 5))
    if amp >= 0 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def confirmation_blocks(*, refund_id: str, text: str, lead: str | None = None) -> list[Block]:
    """The refund prompt with Confirm/Cancel; with `lead` (the bot's reply) it is one message: the
    reply, the exact refund in small print, the buttons (one post instead of two in a paced channel)."""
    prompt: list[Block] = (
        [
            SectionBlock(block_id="refund_reply", text=MarkdownTextObject(text=fit(slack_text(lead)))),
            ContextBlock(block_id="refund_prompt", elements=[MarkdownTextObject(text=fit(slack_text(text)))]),
        ]
        if lead
        else [SectionBlock(block_id="refund_prompt", text=MarkdownTextObject(text=fit(slack_text(text))))]
    )
    return [
        *prompt,
        ActionsBlock(
            block_id="refund_actions",
            elements=[
                ButtonElement(text="Confirm refund", action_id=CONFIRM, value=refund_id, style="primary"),
                ButtonElement(text="Cancel", action_id=CANCEL, value=refund_id),
            ],
        ),
    ]


def reply_blocks(text: str, citations: tuple[Citation, ...]) -> list[Block]:
    """A reply that used help-center articles: the reply, then each article's title as a link in
    a context block. The URLs are the search results' own (agent.citations), checked http(s) at import."""
    out: list[Block] = [SectionBlock(block_id="reply", text=MarkdownTextObject(text=fit(slack_text(text))))]
    sources = sources_block(citations)
    return [*out, sources] if sources is not None else out


def sources_block(citations: tuple[Citation, ...]) -> ContextBlock | None:
    links = [
        MarkdownTextObject(text=f"📄 <{c.url}|{fit(escape(c.title).replace('|', '¦'), 300)}>")
        for c in citations[:5]
        if c.url.startswith(("https://", "http://")) and not any(ch in c.url for ch in "<>| ")
    ]
    return ContextBlock(block_id="reply_sources", elements=links) if links else None


def result_blocks(text: str) -> list[Block]:
    """What replaces the buttons once a confirmation was answered."""
    return [SectionBlock(block_id="refund_prompt", text=MarkdownTextObject(text=fit(slack_text(text))))]


@dataclass(frozen=True, slots=True)
class TicketView:
    id: int
    priority: str
    reason: str
    status: str
    summary: str
    customer: str | None  # "Sarah Chen (CUST-1001)" for staff eyes; None when unverified
    order_id: str | None
    claimed_by: str | None
    permalink: str | None
    refund_pending: str | None  # the amount of a refund waiting for approval
    unverified_user: str | None  # Slack user id to link, when the customer is unverified
    overdue: bool = False
    conversation: bool = False  # a customer conversation staff can reply into


def ticket_blocks(t: TicketView) -> list[Block]:
    badge = {"P1": "🔴 P1", "P2": "🟠 P2", "P3": "🟡 P3"}.get(t.priority, t.priority)
    state = {
        TicketStatus.OPEN: "Open, unclaimed",
        TicketStatus.CLAIMED: f"Claimed by <@{t.claimed_by}>",
        TicketStatus.RESOLVED: "Resolved",
    }[TicketStatus(t.status)]
    if t.overdue and t.status == TicketStatus.OPEN:
        state += " - *waiting past its SLA*"
    who = (
        escape(t.customer)
        if t.customer
        else (f"<@{t.unverified_user}> (not verified)" if t.unverified_user else "not verified")
    )
    fields = [
        MarkdownTextObject(text=f"*Customer*\n{who}"),
        MarkdownTextObject(text=f"*Order*\n{escape(t.order_id) if t.order_id else '-'}"),
        MarkdownTextObject(text=f"*Status*\n{state}"),
        MarkdownTextObject(text=f"*Thread*\n<{t.permalink}|open the conversation>" if t.permalink else "*Thread*\n-"),
    ]
    blocks: list[Block] = [
        HeaderBlock(
            block_id=f"ticket_{t.id}_header", text=PlainTextObject(text=f"{badge} · #{t.id} · {reason_text(t.reason)}")
        ),
        SectionBlock(block_id=f"ticket_{t.id}_fields", fields=fields),
        SectionBlock(
            block_id=f"ticket_{t.id}_summary",
            text=MarkdownTextObject(text=fit(escape(t.summary[:SECTION_CHARS])) or "-"),
        ),
    ]
    value = str(t.id)
    buttons: list[ButtonElement] = []
    if t.status == TicketStatus.OPEN:
        buttons.append(ButtonElement(text="Claim", action_id=CLAIM, value=value, style="primary"))
    if t.status == TicketStatus.CLAIMED:
        buttons += [
            ButtonElement(text="Release", action_id=RELEASE, value=value),
            ButtonElement(text="Resolve", action_id=RESOLVE, value=value, style="primary"),
        ]
    if t.status != TicketStatus.RESOLVED and t.refund_pending:
        buttons += [
            ButtonElement(text=f"Approve {t.refund_pending} refund", action_id=APPROVE, value=value, style="primary"),
            ButtonElement(text="Deny refund", action_id=DENY, value=value, style="danger"),
        ]
    if t.status != TicketStatus.RESOLVED and t.conversation:
        buttons.append(ButtonElement(text="Reply to customer", action_id=REPLY, value=value))
    if t.status != TicketStatus.RESOLVED and t.unverified_user:
        buttons.append(ButtonElement(text="Link to customer", action_id=LINK, value=value))
    if t.status == TicketStatus.RESOLVED:  # staff close the loop: the answer becomes a draft help-center article
        buttons.append(ButtonElement(text="Save as article", action_id=SAVE_ARTICLE, value=value))
    if buttons:
        blocks.append(ActionsBlock(block_id=f"ticket_{t.id}_actions", elements=buttons))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f"ticket #{t.id} · priority {t.priority}")]))
    return blocks


def ticket_fallback_text(t: TicketView) -> str:
    return f"{t.priority} ticket #{t.id}: {reason_text(t.reason)} ({t.status})"


def row_message(
    kind: str, text: str, data: dict[str, Any] | None, author: str
) -> tuple[str, list[dict[str, object]] | None]:
    """How a row of the outgoing log reads in Slack: (fallback text, blocks or None). A refund prompt
    carries its buttons; a staff reply names who wrote it; everything else is escaped text."""
    data = data or {}
    if kind == "confirmation" and data.get("refund_id"):
        lead = text if data.get("lead") else None
        prompt = f"{data.get('prompt') or text} {confirm_how('slack')}"
        blocks = confirmation_blocks(refund_id=str(data["refund_id"]), text=prompt, lead=lead)
        sources = sources_block(citations_of(data)) if lead else None
        if sources is not None:  # the reply it rides on used help-center articles
            blocks.insert(1, sources)
        return slack_text(text), as_dicts(blocks)
    if kind == "staff_reply":
        who = author.partition(":")[2]
        label = f"<@{who}>" if SLACK_USER.fullmatch(who) else escape(who[:64])
        return f"*{STAFF_REPLY_LABEL}* ({label}): {slack_text(text)}", None
    cited = citations_of(data)
    if kind == "reply" and cited:  # a help-center answer: its articles' links under it
        return slack_text(text), as_dicts(reply_blocks(text, cited))
    return slack_text(text), None


def citations_of(data: dict[str, Any] | None) -> tuple[Citation, ...]:
    """The help-center articles a reply row cites (the desk writes them into its data)."""
    out = []
    for c in (data or {}).get("citations") or []:
        try:
            out.append(Citation(article_id=int(c["article_id"]), title=str(c["title"]), url=str(c["url"])))
        except (KeyError, TypeError, ValueError):
            continue
    return tuple(out)


def as_dicts(blocks: list[Block]) -> list[dict[str, object]]:
    return [b.to_dict() for b in blocks]
