"""Slack's published Web API rate limits, written once: the pacer keeps us under them and the
benchmark's fake Slack enforces them.

Per method, (calls per second, burst, per channel?). chat.postMessage is about one message a
second per channel with short bursts; the tiered methods are per workspace: Tier 3 about 50 a
minute, Tier 4 about 100 a minute. conversations.replies and conversations.history are Tier 3
for internal and Marketplace apps, but only 1 a minute for commercially distributed
non-Marketplace apps created after May 2025: we call them only to recover a post a crash or a
timeout cut off (a reply, a ticket), never once per post.
https://docs.slack.dev/apis/web-api/rate-limits
"""

from __future__ import annotations

TIER_3 = 50 / 60
TIER_4 = 100 / 60

LIMITS: dict[str, tuple[float, float, bool]] = {
    "chat.postMessage": (1.0, 3.0, True),
    "chat.postEphemeral": (TIER_4, 20.0, False),
    "chat.update": (TIER_3, 10.0, False),
    "users.info": (TIER_4, 20.0, False),
    "conversations.members": (TIER_4, 20.0, False),
    "conversations.replies": (TIER_3, 10.0, False),
    "conversations.history": (TIER_3, 10.0, False),
    "chat.getPermalink": (TIER_4, 20.0, False),
    "views.open": (TIER_4, 20.0, False),
}
