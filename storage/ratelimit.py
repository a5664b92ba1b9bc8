"""Fixed-window counters in the store (`web_rate_limits`), so every replica sees the same count.

A counter is named by its subject (an identity, a client address, "tickets:" + an address) and
counts within windows of `window_s` seconds, at most MAX_WINDOW_S: housekeeping deletes every
counter whose window started longer ago than that (see `storage.retention`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import case, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.engine import Store
from storage.models import WebRateLimit

MAX_WINDOW_S = 3600


async def hit_in(s: AsyncSession, *, subject: str, now: datetime, limit: int, window_s: int) -> float:
    """Count one in the subject's current window (one atomic upsert), inside the caller's
    transaction. Returns 0 when within `limit`, else the seconds until the window ends."""
    if not 0 < window_s <= MAX_WINDOW_S:
        raise ValueError(f"a rate-limit window is between 1 and {MAX_WINDOW_S} seconds")
    epoch = now.timestamp()
    start = datetime.fromtimestamp(epoch - epoch % window_s, tz=now.tzinfo)
    insert = postgresql.insert if s.bind.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(WebRateLimit).values(subject=subject[:200], window_start=start, count=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=["subject"],
        set_={
            "count": case((WebRateLimit.window_start == stmt.excluded.window_start, WebRateLimit.count + 1), else_=1),
            "window_start": stmt.excluded.window_start,
        },
    ).returning(WebRateLimit.count)
    count = (await s.execute(stmt)).scalar_one()
    if count <= limit:
        return 0.0
    return max((start + timedelta(seconds=window_s) - now).total_seconds(), 1.0)


async def hit(store: Store, *, subject: str, now: datetime, limit: int, window_s: int) -> float:
    """`hit_in` in a transaction of its own."""
    async with store.write() as s:
        return await hit_in(s, subject=subject, now=now, limit=limit, window_s=window_s)


# one token bucket row per key, on the database's clock (replicas' clocks may differ): a reservation
# takes a token, and a negative balance is the wait before the call may go
_TAKE_TOKEN = text(
    "INSERT INTO slack_pace (key, tokens, at) VALUES (:key, :burst - 1, clock_timestamp()) "
    "ON CONFLICT (key) DO UPDATE SET tokens = LEAST(:burst, slack_pace.tokens + "
    "EXTRACT(EPOCH FROM clock_timestamp() - slack_pace.at) * :rate) - 1, at = clock_timestamp() "
    "RETURNING tokens"
)


async def take_token(store: Store, *, key: str, burst: int, rate: float) -> float:
    """Take one token from the bucket `key` (PostgreSQL; shared by every replica) refilled at `rate`
    a second up to `burst`: the balance left, negative when the caller must wait."""
    async with store.write() as s:
        return float((await s.execute(_TAKE_TOKEN, {"key": key, "burst": burst, "rate": rate})).scalar_one())
