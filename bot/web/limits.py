"""Request limits for the website chat API: a fixed-window counter per identity, in the store, so
every replica sees the same count."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import case
from sqlalchemy.dialects import postgresql, sqlite

from storage.engine import Store
from storage.models import WebRateLimit


async def hit(store: Store, *, subject: str, now: datetime, limit: int, window_s: int) -> float:
    """Count a request in the identity's fixed window (one atomic upsert, shared by every replica).
    Returns 0 when allowed, else the seconds until the window ends."""
    epoch = now.timestamp()
    start = datetime.fromtimestamp(epoch - epoch % window_s, tz=now.tzinfo)
    insert = postgresql.insert if store.dialect == "postgresql" else sqlite.insert
    stmt = insert(WebRateLimit).values(subject=subject, window_start=start, count=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=["subject"],
        set_={
            "count": case((WebRateLimit.window_start == stmt.excluded.window_start, WebRateLimit.count + 1), else_=1),
            "window_start": stmt.excluded.window_start,
        },
    ).returning(WebRateLimit.count)
    async with store.write() as s:
        count = (await s.execute(stmt)).scalar_one()
    if count <= limit:
        return 0.0
    return max((start + timedelta(seconds=window_s) - now).total_seconds(), 1.0)
