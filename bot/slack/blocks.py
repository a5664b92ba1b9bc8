"""Block Kit and message text, built by pure functions (tested by comparing structures).

Everything shown in a channel goes through `slack_text`: Slack markup is escaped, so no
`<!channel>`, user mention or link the model (or a customer) invented can fire, and email
addresses are never shown in a shared channel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
from tools.tickets import reason_text

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")

CONFIRM, CANCEL = "refund_confirm", "refund_cancel"
CLAIM, RELEASE, RESOLVE = "ticket_claim", "ticket_release", "ticket_resolve"
APPROVE, DENY, LINK = "refund_approve", "refund_deny", "ticket_link_customer"
SAVE_ARTICLE = "ticket_save_article"
ACTION_IDS = (CONFIRM, CANCEL, CLAIM, RELEASE, RESOLVE, APPROVE, DENY, LINK, SAVE_ARTICLE)


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(text: str) -> str:
    """Text for a shared channel: markup escaped, emails hidden."""
    return escape(EMAIL.sub("(email hidden)", text))


def confirmation_blocks(*, refund_id: str, text: str, lead: str | None = None) -> list[Block]:
    """The refund prompt with Confirm/Cancel; with `lead` (the bot's reply) it is one message: the
    reply, the exact refund in small print, the buttons (one post instead of two in a paced channel)."""
    prompt: list[Block] = (
        [
            SectionBlock(block_id="refund_reply", text=MarkdownTextObject(text=slack_text(lead))),
            ContextBlock(block_id="refund_prompt", elements=[MarkdownTextObject(text=slack_text(text))]),
        ]
        if lead
        else [SectionBlock(block_id="refund_prompt", text=MarkdownTextObject(text=slack_text(text)))]
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
    links = [
        MarkdownTextObject(text=f"📄 <{c.url}|{escape(c.title).replace('|', '¦')}>")
        for c in citations[:5]
        if c.url.startswith(("https://", "http://")) and not any(ch in c.url for ch in "<>| ")
    ]
    out: list[Block] = [SectionBlock(block_id="reply", text=MarkdownTextObject(text=slack_text(text)))]
    if links:
        out.append(ContextBlock(block_id="reply_sources", elements=links))
    return out


def result_blocks(text: str) -> list[Block]:
    """What replaces the buttons once a confirmation was answered."""
    return [SectionBlock(block_id="refund_prompt", text=MarkdownTextObject(text=slack_text(text)))]


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


def ticket_blocks(t: TicketView) -> list[Block]:
    badge = {"P1": "🔴 P1", "P2": "🟠 P2", "P3": "🟡 P3"}.get(t.priority, t.priority)
    state = {"open": "Open, unclaimed", "claimed": f"Claimed by <@{t.claimed_by}>", "resolved": "Resolved"}[t.status]
    if t.overdue and t.status == "open":
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
        SectionBlock(block_id=f"ticket_{t.id}_summary", text=MarkdownTextObject(text=escape(t.summary[:2800]) or "-")),
    ]
    value = str(t.id)
    buttons: list[ButtonElement] = []
    if t.status == "open":
        buttons.append(ButtonElement(text="Claim", action_id=CLAIM, value=value, style="primary"))
    if t.status == "claimed":
        buttons += [
            ButtonElement(text="Release", action_id=RELEASE, value=value),
            ButtonElement(text="Resolve", action_id=RESOLVE, value=value, style="primary"),
        ]
    if t.status != "resolved" and t.refund_pending:
        buttons += [
            ButtonElement(text=f"Approve {t.refund_pending} refund", action_id=APPROVE, value=value, style="primary"),
            ButtonElement(text="Deny refund", action_id=DENY, value=value, style="danger"),
        ]
    if t.status != "resolved" and t.unverified_user:
        buttons.append(ButtonElement(text="Link to customer", action_id=LINK, value=value))
    if t.status == "resolved":  # staff close the loop: the answer becomes a draft help-center article
        buttons.append(ButtonElement(text="Save as article", action_id=SAVE_ARTICLE, value=value))
    if buttons:
        blocks.append(ActionsBlock(block_id=f"ticket_{t.id}_actions", elements=buttons))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f"ticket #{t.id} · priority {t.priority}")]))
    return blocks


def ticket_fallback_text(t: TicketView) -> str:
    return f"{t.priority} ticket #{t.id}: {reason_text(t.reason)} ({t.status})"


def as_dicts(blocks: list[Block]) -> list[dict[str, object]]:
    return [b.to_dict() for b in blocks]
