"""Wake-ups between replicas: PostgreSQL LISTEN on one dedicated connection per replica.

Triggers (migration 0011) notify when work may have become claimable (an inbox row stored, or
its status changed to anything but `working`: `supportbot_inbox`) and when a website follower
has something new to read (a turn event: `turn:ID`, an outgoing row: `session:ID`, on
`supportbot_web`). A replica's `Listener` calls the callbacks registered for a channel, so a
worker or a stream on one replica wakes at once for what another stored.

Notifications only shorten waits: every waiter still polls (INBOX_POLL_SECONDS), so a lost
connection costs latency, never work, and the listener reconnects with backoff. SQLite has one
process, which wakes its own waiters directly; there `Listener` does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)
INBOX = "supportbot_inbox"
WEB = "supportbot_web"
RETRY_S = (0.5, 1.0, 2.0, 5.0)


class Listener:
    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        self.enabled = url.get_backend_name() == "postgresql"
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False) if self.enabled else ""
        self._callbacks: dict[str, list[Callable[[str], None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def on(self, channel: str, callback: Callable[[str], None]) -> None:
        """`callback(payload)` for each notification on `channel` (registered before `start`)."""
        self._callbacks.setdefault(channel, []).append(callback)

    def start(self) -> None:
        if self.enabled and self._task is None and self._callbacks:
            self._task = asyncio.create_task(self._listen(), name="db-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _deliver(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        for callback in self._callbacks.get(channel, ()):
            try:
                callback(payload)
            except Exception:  # a waiter's bug must not stop the others' wake-ups
                log.exception("notification callback for %s failed", channel)

    async def _listen(self) -> None:
        failures = 0
        while True:
            try:
                await self._connected_until_closed()
                failures = 0
                log.warning("the notification connection closed; polling until it is back")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: waiters poll meanwhile
                log.warning("cannot listen for notifications (%s); polling until it is back", type(exc).__name__)
            await asyncio.sleep(RETRY_S[min(failures, len(RETRY_S) - 1)])  # reconnect backoff
            failures += 1

    async def _connected_until_closed(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self._dsn, timeout=15)
        closed = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _c: closed.set())
            for channel in self._callbacks:
                await conn.add_listener(channel, self._deliver)
            self.connected.set()
            await closed.wait()
        finally:
            self.connected.clear()
            if not conn.is_closed():
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)
