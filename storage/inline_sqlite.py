"""SQLite for the async engine without a thread hop per call: aiosqlite's connection interface
over a `sqlite3` connection that runs each call at once, in the event loop's thread.

Why: aiosqlite sends every cursor call (execute, fetchall, close, commit) to a thread of its own
and back, four hops or more a statement, each waiting for the event loop to come round again. A
write transaction held SQLite's lock across all of them, so under load the lock was mostly held
by transactions waiting for their turn on the loop (issue 19: 118 of 315 writes waited, 7.9 s
waiting against 2.1 s held). Run in place, a transaction holds the lock only while SQLite works:
a statement on this schema takes tens of microseconds, less than one hop.

What keeps the event loop free:
- WAL mode: readers never wait for the writer, and a commit does not wait for readers;
- one writer per process at a time (the store's asyncio lock), so no connection of ours ever
  waits in SQLite's busy handler for another of ours;
- a writer in another process (the command line, a second server on the same file) is not
  waited for in SQLite's busy handler either: connections here have busy_timeout 0, and the store
  retries `BEGIN IMMEDIATE` with asyncio sleeps for up to SQLITE_BUSY_TIMEOUT_MS (storage.engine).

SQLAlchemy's aiosqlite dialect drives it unchanged (`async_creator`), so SQL, types and events
are the aiosqlite dialect's own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any


class InlineCursor:
    """aiosqlite.Cursor's interface, each call run at once."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> Sequence[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()


class InlineConnection:
    """aiosqlite.Connection's interface (what SQLAlchemy's adapter calls) over a sqlite3 connection.
    `_connection` is the name the adapter looks for to tell an open connection from a closed one."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection: sqlite3.Connection | None = connection

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")
        return self._connection

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._conn.cursor())

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def stop(self) -> None:
        """aiosqlite's forced close (SQLAlchemy's terminate)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def creator(path: str) -> Callable[[], Coroutine[Any, Any, InlineConnection]]:
    """The `async_creator` for create_async_engine: SQLAlchemy emits BEGIN itself (isolation_level
    None), and the connection may be closed by whichever thread disposes of the engine."""

    async def connect() -> InlineConnection:
        return InlineConnection(sqlite3.connect(path, isolation_level=None, check_same_thread=False))

    return connect
