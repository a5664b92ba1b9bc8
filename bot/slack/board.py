"""The staff channel: every ticket as a Block Kit message, kept up to date in place, and P1s that
wait too long re-announced.

Any replica may publish: posting a ticket the first time is claimed with a conditional update on
`tickets.slack_ts` (`posting`, the claim's time in `rendered_at`), so two replicas never both post
it; later changes are `chat.update`s of the same message (re-rendering the current state is
harmless to repeat). The first post carries metadata naming the ticket and is made once, without
the SDK's retries. A claim left `posting` (the replica died between the post and recording its
ts, or the post timed out) is settled by the sweep once it is older than any post can take: the
channel's history since the claim says whether the ticket is there (its ts is recorded) or not
(the claim is dropped and the ticket posted again). That one history read happens only for such
a ticket, never per post.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.faults import crash_point
from bot.slack.blocks import TicketView, as_dicts, slack_text, ticket_blocks, ticket_fallback_text
from bot.slack.client import post_timeout
from bot.slack.delivery import SlackOut
from desk import board
from desk.board import POSTING, Ticket
from tools.context import Deps

log = logging.getLogger(__name__)
TICKET_EVENT = "supportbot_ticket"  # metadata event_type of a ticket's message: {"ticket": id}


class StaffBoard:
    def __init__(self, out: SlackOut, deps: Deps) -> None:
        self.out = out
        self.deps = deps
        self.channel = deps.settings.support_staff_channel
        self._pending: set[asyncio.Task[None]] = set()

    def publish_soon(self, ticket_id: int) -> None:
        """Publish without holding up the caller (a customer's turn must not wait for the staff
        channel's posting pace); the housekeeping sweep retries whatever fails."""
        task = asyncio.create_task(self._publish_logged(ticket_id), name=f"publish-ticket-{ticket_id}")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish_logged(self, ticket_id: int) -> None:
        await self.try_publish(ticket_id, later="the sweep posts it")

    async def try_publish(self, ticket_id: int, *, later: str) -> None:
        """Publish, logging a failure instead of raising it (`later` says who tries again). Slack's
        429 is its pace, not a fault: nothing was posted, so it is a warning, with its Retry-After."""
        try:
            await self.publish(ticket_id)
        except SlackApiError as exc:
            if exc.response.status_code != 429:
                log.exception("could not publish ticket %d (%s)", ticket_id, later)
                return
            headers = exc.response.headers or {}
            wait = next((v for k, v in headers.items() if k.lower() == "retry-after"), "?")
            log.warning("ticket %d: Slack asked to wait %s s before posting (%s)", ticket_id, wait, later)
        except Exception:
            log.exception("could not publish ticket %d (%s)", ticket_id, later)

    async def drain(self, grace: float = 10.0) -> None:
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=grace)

    async def view(self, ticket_id: int) -> tuple[Ticket, TicketView] | None:
        found = await board.card(self.deps, ticket_id)
        if found is None:
            return None
        t, permalink = found.ticket, None
        if found.thread is not None:
            try:
                got = await self.out.call("chat.getPermalink", channel=found.thread[0], message_ts=found.thread[1])
                permalink = got.get("permalink")
            except Exception:  # a missing permalink must not stop the ticket from being shown
                log.warning("no permalink for ticket %d", ticket_id)
        return t, TicketView(
            id=t.id,
            priority=t.priority,
            reason=t.reason,
            status=t.status,
            summary=t.summary,
            customer=found.customer,
            order_id=t.order_id,
            claimed_by=t.claimed_by,
            permalink=permalink,
            refund_pending=found.refund_pending,
            unverified_user=found.unverified_user,
            overdue=board.overdue(self.deps, t),
            conversation=found.conversation,
        )

    async def publish(self, ticket_id: int) -> None:
        if not self.channel:
            return
        found = await self.view(ticket_id)
        if found is None:
            return
        ticket, view = found
        blocks = as_dicts(ticket_blocks(view))
        text = ticket_fallback_text(view)
        now = self.deps.clock.now()
        if ticket.slack_ts in (None, ""):
            await self._first_post(ticket_id, text, blocks)
        elif ticket.slack_ts != POSTING:
            await self.out.call(
                "chat.update",
                channel=ticket.slack_channel or self.channel,
                ts=ticket.slack_ts,
                text=text,
                blocks=blocks,
            )
            await board.mark_rendered(self.deps, ticket_id, now)

    async def _first_post(self, ticket_id: int, text: str, blocks: list[dict[str, Any]]) -> None:
        claimed = self.deps.clock.now()
        if not await board.claim_first_post(self.deps, ticket_id, claimed):
            return
        try:
            resp = await self.out.call(
                "chat.postMessage",
                client=self.out.poster,  # no SDK retries: a retry after a timeout could post twice
                channel=self.channel,
                text=text,
                blocks=blocks,
                metadata={"event_type": TICKET_EVENT, "event_payload": {"ticket": ticket_id}},
                unfurl_links=False,
            )
        except SlackApiError:  # Slack answered (a 429, an error): nothing was posted, try again later
            await board.drop_post_claim(self.deps, ticket_id, claimed)
            raise
        # any other failure (a timeout, a lost connection) leaves the claim: the sweep looks
        crash_point("after_ticket_post")
        await board.record_post(self.deps, ticket_id, ts=str(resp.get("ts")), channel=self.channel, rendered=claimed)

    async def settle_stale_claims(self) -> int:
        """Tickets left `posting` longer than a post can take: found in the channel, or posted again."""
        stale = self.deps.clock.now() - timedelta(seconds=2 * post_timeout(self.deps.settings) + 1)
        left = await board.stale_post_claims(self.deps, older_than=stale)
        for ticket_id, claimed in left:
            try:
                ts = await self._posted_since(ticket_id, claimed)
                if ts is not None:  # posted from a state that may have changed since: render it again
                    await board.record_post(self.deps, ticket_id, ts=ts, channel=self.channel, rendered=None)
                else:
                    await board.drop_post_claim(self.deps, ticket_id, claimed)
                    await self.try_publish(ticket_id, later="the next sweep posts it")
            except Exception:
                log.exception("could not settle ticket %d's post (the next sweep will)", ticket_id)
        return len(left)

    async def _posted_since(self, ticket_id: int, claimed: datetime) -> str | None:
        """The ts of the ticket's message in the staff channel, posted after `claimed`, if any."""
        cursor = None
        while True:
            resp = await self.out.call(
                "conversations.history",
                channel=self.channel,
                oldest=f"{claimed.timestamp() - 1:.6f}",
                include_all_metadata=True,
                limit=200,
                cursor=cursor,
            )
            for m in resp.get("messages") or []:
                meta = m.get("metadata") or {}
                if (
                    meta.get("event_type") == TICKET_EVENT
                    and (meta.get("event_payload") or {}).get("ticket") == ticket_id
                ):
                    return str(m.get("ts"))
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None

    async def sweep(self) -> int:
        """Publish tickets never shown, or changed since they were last rendered."""
        if not self.channel:
            return 0
        settled = await self.settle_stale_claims()
        ids = await board.to_render(self.deps)
        for ticket_id in ids:
            await self.try_publish(ticket_id, later="the next sweep posts it")
        return settled + len(ids)

    async def sla(self) -> list[int]:
        """Re-announce unclaimed P1s older than SLA_P1_MINUTES, once per SLA_REANNOUNCE_MINUTES."""
        if not self.channel:
            return []
        now = self.deps.clock.now()
        due = await board.due_reannounce(self.deps)
        for t in due:
            waited = int((now - t.created_at).total_seconds() // 60)
            link = ""
            if t.slack_ts and t.slack_ts != POSTING:
                try:
                    link = " " + (
                        await self.out.call(
                            "chat.getPermalink", channel=t.slack_channel or self.channel, message_ts=t.slack_ts
                        )
                    ).get("permalink", "")
                except Exception:
                    link = ""
            await self.out.say(
                self.channel, slack_text(f"⏰ P1 ticket #{t.id} has waited {waited} minutes without an owner.") + link
            )
            await self.publish(t.id)
        return [t.id for t in due]
