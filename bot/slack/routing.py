"""Pure predicates over Slack payloads: which messages are for us, who wrote them, which thread.

No I/O here, so every rule is tested on payload shapes alone (see ../shared/slack-payloads).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

CUSTOMER_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message that may be a customer's, normalized from an `event_callback` envelope."""

    event_id: str | None
    channel: str
    ts: str
    thread_ts: str  # the session's root: the thread it is in, or itself for a top-level message
    user: str
    user_team: str | None  # the author's own team (never the envelope's team_id)
    installing_team: str | None
    text: str
    is_top_level: bool
    mentions_bot: bool
    files: tuple[str, ...] = ()

    @property
    def session_key(self) -> str:
        return session_key(self.channel, self.thread_ts)


def session_key(channel: str, thread_ts: str) -> str:
    return f"slack:{channel}:{thread_ts}"


def installing_team(body: dict[str, Any]) -> str | None:
    """The workspace that installed us, from `authorizations` (not the envelope's team_id, which in a
    Slack Connect channel can be the other organization's)."""
    auths = body.get("authorizations") or []
    if auths:
        a = auths[0]
        return a.get("team_id") or a.get("enterprise_id")
    return body.get("team_id")


def author_team(event: dict[str, Any]) -> str | None:
    """The author's team: `user_team`, else `user_profile.team`, else the event's own `team`."""
    return event.get("user_team") or (event.get("user_profile") or {}).get("team") or event.get("team")


def bot_user_id(body: dict[str, Any]) -> str | None:
    for a in body.get("authorizations") or []:
        if a.get("is_bot"):
            return a.get("user_id")
    return None


def ignore_reason(event: dict[str, Any], *, bot_user: str | None) -> str | None:
    """Why a message event is not a customer message (None: it is one)."""
    if event.get("type") not in ("message", "app_mention"):
        return "not a message"
    if event.get("subtype") not in CUSTOMER_SUBTYPES:
        return f"subtype {event.get('subtype')}"
    if event.get("bot_id") or event.get("bot_profile"):
        return "a bot's message"
    if not event.get("user") or event.get("user") == bot_user:
        return "our own message"
    if not event.get("channel") or not event.get("ts"):
        return "no channel or ts"
    return None


def mentions(text: str, bot_user: str | None) -> bool:
    return bool(bot_user) and f"<@{bot_user}>" in text


MENTION = re.compile(r"<@[A-Z0-9]+>")


def clean_text(text: str) -> str:
    """The customer's words: mentions of us dropped, Slack's own escaping undone."""
    text = MENTION.sub("", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip()


def parse(body: dict[str, Any]) -> Incoming | None:
    """The Incoming for a customer-shaped message envelope, or None for anything else."""
    event = body.get("event") or {}
    bot = bot_user_id(body)
    if ignore_reason(event, bot_user=bot) is not None:
        return None
    ts = str(event["ts"])
    thread = str(event.get("thread_ts") or ts)
    text = str(event.get("text") or "").replace("\x00", "")
    files = tuple(str(f.get("name") or f.get("title") or "a file") for f in event.get("files") or [])
    return Incoming(
        event_id=body.get("event_id"),
        channel=str(event["channel"]),
        ts=ts,
        thread_ts=thread,
        user=str(event["user"]),
        user_team=author_team(event),
        installing_team=installing_team(body),
        text=text,
        is_top_level=thread == ts,
        mentions_bot=event.get("type") == "app_mention" or mentions(text, bot),
        files=files,
    )


def served(channel: str, *, allowlist: list[str], staff_channel: str | None) -> bool:
    if staff_channel and channel == staff_channel:
        return False
    return not allowlist or channel in allowlist


def is_external(user_team: str | None, installing: str | None) -> bool:
    """A customer in a Slack Connect channel: their team is not the installing team."""
    return bool(user_team) and bool(installing) and user_team != installing
