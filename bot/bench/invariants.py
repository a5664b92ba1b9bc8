"""What must hold after any run, read from the store and from the fake Slack's record of posts:
every invariant query of the chaos soak is in `check_invariants`, so a schema change means
editing one function.

- every customer message the harness sent is in the inbox once, finished, and answered: each of
  its replies reached Slack exactly once, in order within its thread;
- nothing stuck: no inbox item left pending or working, no reply left unposted, no ticket left
  without its staff-channel post; nothing dead-lettered;
- the staff channel shows each ticket once;
- money: the eval's rules (`agent.eval.invariant_violations`: one live refund per order, payouts
  only for confirmed or approved refunds of the right amount, one payout each), and at most one
  payout per order.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from agent.eval import invariant_violations
from bot.bench.fake_slack import FakeSlack
from desk.board import POSTING
from storage.engine import Store
from storage.states import UNFINISHED_INBOX, InboxStatus, OutboxStatus


def _row_of(post: dict[str, Any]) -> int | None:
    """The outbox row a post delivered (its metadata names it), or None for other posts."""
    meta = (post.get("metadata") or {}).get("event_payload") or {}
    return int(meta["row"]) if "row" in meta else None


def _ticket_of(post: dict[str, Any]) -> int | None:
    for block in post.get("blocks") or []:
        block_id = str(block.get("block_id") or "")
        if block_id.startswith("ticket_") and block_id.endswith("_header"):
            return int(block_id.split("_")[1])
    return None


@dataclass
class _Stored:
    inbox: dict[tuple[str, str], tuple[int, str, str]]  # (channel, ts) -> (id, status, kind)
    rows: list[Any]  # outgoing rows with a Slack address: id, inbox_id, seq, status
    tickets: list[Any]  # id, slack_ts
    per_order: list[Any]  # orders paid out more than once
    payouts: int


async def _stored(store: Store) -> _Stored:
    async with store.read() as s:
        q = s.execute
        inbox = {
            (c, ts): (i, st, kind)
            for i, c, ts, st, kind in (await q(text("SELECT id, channel, ts, status, kind FROM inbox"))).all()
        }
        rows = (
            await q(
                text(
                    "SELECT id, inbox_id, seq, status FROM outbox WHERE channel IS NOT NULL AND ephemeral_user IS NULL"
                )
            )
        ).all()
        tickets = (await q(text("SELECT id, slack_ts FROM tickets"))).all()
        per_order = (
            await q(text("SELECT order_id, count(*) FROM payouts GROUP BY order_id HAVING count(*) > 1"))
        ).all()
        payouts = (await q(text("SELECT count(*) FROM payouts"))).scalar_one()
    return _Stored(inbox, list(rows), list(tickets), list(per_order), int(payouts))


def _out_of_order(slack: FakeSlack, key: dict[int, tuple[int, int]]) -> list[tuple[Any, Any]]:
    """(a reply, the earlier one posted after it), thread by thread."""
    out: list[tuple[Any, Any]] = []
    for posts in slack.by_thread.values():
        keys = [key[r] for m in posts if (r := _row_of(m)) is not None and r in key and key[r][0]]
        out += [(a, b) for a, b in zip(keys, keys[1:], strict=False) if b < a]
    return out


async def check_invariants(
    store: Store,
    slack: FakeSlack,
    *,
    sent: list[tuple[str, str]],
    staff_channel: str,
    window_days: int,
    limit_cents: int,
) -> dict[str, Any]:
    """Counts of every violation (all zero when the run was correct) and a few examples of each."""
    got = await _stored(store)
    inbox, rows, tickets, per_order, payouts = got.inbox, got.rows, got.tickets, got.per_order, got.payouts
    money = await invariant_violations(store, window_days=window_days, limit_cents=limit_cents)
    key = {row: (i or 0, seq) for row, i, seq, _ in rows}  # (inbox_id, seq): acts outside a turn have inbox 0
    posted = Counter(key.get(r, (-r, 0)) for m in slack.messages if (r := _row_of(m)) is not None)
    expected = {key[row] for row, _, _, status in rows if status == OutboxStatus.POSTED}
    replied = {i for i, _ in posted}
    staff_posts = Counter(
        t for m in slack.messages if m["channel"] == staff_channel and not m.get("thread_ts") and (t := _ticket_of(m))
    )
    status = Counter(st for _, st, _ in inbox.values())
    lost = [key for key in sent if key not in inbox]
    # a message the bot finished without a reply (a click's answer may be the prompt's chat.update)
    unanswered = [
        i for i, st, kind in inbox.values() if kind == "message" and st == InboxStatus.DONE and i not in replied
    ]
    problems: dict[str, list[Any]] = {
        "lost_messages": lost,
        "stuck_in_inbox": [i for i, st, _ in inbox.values() if st in UNFINISHED_INBOX],
        "dead_letters": [i for i, st, _ in inbox.values() if st == InboxStatus.DEAD],
        "unanswered": unanswered,
        "duplicate_replies": sorted(k for k, n in posted.items() if n > 1),
        "replies_missing_in_slack": sorted(expected - set(posted)),
        "replies_not_recorded": sorted(set(posted) - set(key.values())),
        "unposted_replies": sorted(
            key[row] for row, _, _, st in rows if st not in (OutboxStatus.POSTED, OutboxStatus.SKIPPED)
        ),
        "out_of_order_replies": _out_of_order(slack, key),
        "duplicate_staff_posts": sorted(t for t, n in staff_posts.items() if n > 1),
        "unposted_tickets": sorted((t, ts) for t, ts in tickets if ts in (None, "", POSTING)),
        "money_violations": money + [f"order {o} has {n} payouts" for o, n in per_order],
    }
    counts = {k: len(v) for k, v in problems.items()}
    return {
        "ok": not any(counts.values()),
        **counts,
        "messages_sent": len(sent),
        "inbox": dict(status),
        "replies_posted": sum(posted.values()),
        "tickets": len(tickets),
        "payouts": payouts,
        "examples": {k: v[:5] for k, v in problems.items() if v},
    }
