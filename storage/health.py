"""Whether this replica's store is fit to work: it answers a read and takes a write.

A read alone says nothing of a full disk or a store gone read-only, where every turn fails while
`SELECT 1` still answers. The write is one upsert of a counter row of this replica's own in
`web_rate_limits`, which retention deletes like any closed window.
"""

from __future__ import annotations

import logging
from datetime import datetime

from storage.engine import Store
from storage.ratelimit import hit

log = logging.getLogger(__name__)
WINDOW_S = 60


async def takes_writes(store: Store, *, replica: str, now: datetime) -> bool:
    try:
        await hit(store, subject=f"health:{replica}", now=now, limit=2**31 - 1, window_s=WINDOW_S)
    except Exception as exc:  # any failure means "cannot write" for a health check
        log.warning("health check: the store refused a write (%s)", type(exc).__name__)
        return False
    return True


async def healthy(store: Store, *, replica: str, now: datetime) -> bool:
    return await store.ping() and await takes_writes(store, replica=replica, now=now)
