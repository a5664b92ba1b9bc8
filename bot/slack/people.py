"""Who is who in a Slack Connect channel, and a customer's identity as Slack vouches for it.

- Staff: members of SUPPORT_STAFF_CHANNEL (conversations.members, cached STAFF_CACHE_SECONDS)
  or listed in SUPPORT_STAFF_USER_IDS.
- Customers: authors whose team differs from the installing team (see `routing.is_external`),
  or anyone when TREAT_INTERNAL_USERS_AS_CUSTOMERS is set (a test workspace).
- Colleagues: everyone else in the installing team. They can take a thread over, not press
  staff buttons.
A customer's identity never comes from what they type: a stored link (team, user) → customer,
else their Slack profile email (users.info, users:read.email) matched to a customer, which is
then stored as a link. No link and no visible email: unverified.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

from bot.slack.delivery import SlackOut
from bot.slack.routing import is_external
from desk.sessions import linked_customer, verify_by_email
from tools.context import Actor, Deps

log = logging.getLogger(__name__)
Kind = Literal["customer", "staff", "colleague"]


def subject(team: str | None, user: str) -> str:
    return f"{team or '-'}:{user}"


class People:
    def __init__(self, out: SlackOut, deps: Deps) -> None:
        self.out = out
        self.deps = deps
        self.settings = deps.settings
        self._staff: tuple[float, frozenset[str]] | None = None

    async def staff_members(self) -> frozenset[str]:
        """The staff channel's members (a read-only cache of Slack's answer; any replica may refresh it)."""
        channel = self.settings.support_staff_channel
        if not channel:
            return frozenset()
        now = time.monotonic()
        if self._staff and now - self._staff[0] < self.settings.staff_cache_seconds:
            return self._staff[1]
        members: set[str] = set()
        cursor = None
        while True:
            resp = await self.out.call(
                "conversations.members", http_verb="GET", channel=channel, cursor=cursor, limit=1000
            )
            members.update(resp.get("members") or [])
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        self._staff = (now, frozenset(members))
        return self._staff[1]

    async def is_staff(self, user: str) -> bool:
        return user in self.settings.support_staff_user_ids or user in await self.staff_members()

    async def classify(self, *, user: str, user_team: str | None, installing_team: str | None) -> Kind:
        if await self.is_staff(user):
            return "staff"
        if is_external(user_team, installing_team) or self.settings.treat_internal_users_as_customers:
            return "customer"
        return "colleague"

    async def actor_for(self, *, user: str, team: str | None) -> Actor:
        """The verified customer behind a Slack user, or an unverified actor."""
        who = subject(team, user)
        linked = await linked_customer(self.deps, channel="slack", subject=who)
        if linked:
            return Actor.customer(linked, subject=who)
        info = await self.out.call("users.info", http_verb="GET", user=user)
        email = ((info.get("user") or {}).get("profile") or {}).get("email")
        if email:
            found = await verify_by_email(
                self.deps, channel="slack", subject=who, email=email, vouched_by="slack:profile-email"
            )
            if found is not None:
                return Actor.customer(found, subject=who)
        return Actor.unverified(who)
