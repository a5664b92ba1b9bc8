"""What DATABASE_URL may be, and how to name a database to a person (never with its password).

supportbot speaks to two databases, each through its async driver: SQLite through aiosqlite
(the embedded default) and PostgreSQL through asyncpg. Any other URL is refused with one line
that says what would work, before anything is opened.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from storage.errors import DatabaseUrlError

SUPPORTED = (
    "supported: SQLite (sqlite+aiosqlite:///supportbot.db) and PostgreSQL "
    "(postgresql+asyncpg://USER:PASSWORD@HOST:5432/DB)"
)
DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}
PG_PORT = 5432


def check_url(url: str, *, name: str = "DATABASE_URL") -> URL:
    """The parsed URL, or DatabaseUrlError (the message never repeats the URL: it may hold a password)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise DatabaseUrlError(f"{name} is not a database URL; {SUPPORTED}") from None
    backend, _, driver = parsed.drivername.partition("+")  # no dialect is loaded to read these
    if backend not in DRIVERS:
        raise DatabaseUrlError(f"{name} is a {backend[:20]} URL, which supportbot does not support; {SUPPORTED}")
    if driver != DRIVERS[backend]:
        raise DatabaseUrlError(
            f"{name} needs the async driver: {backend}+{DRIVERS[backend]}://… "
            f"(it names {driver[:20] or 'the default driver'}); {SUPPORTED}"
        )
    if backend == "sqlite" and not parsed.database:
        raise DatabaseUrlError(f"{name} names no SQLite file; e.g. sqlite+aiosqlite:///supportbot.db")
    return parsed


def sqlite_path(url: URL) -> Path | None:
    """The file a SQLite URL names (None for an in-memory database)."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def host_port(url: URL) -> str:
    host = url.host or url.query.get("host") or "localhost"
    return f"{host}:{url.port or PG_PORT}"


def describe(url: str | URL) -> str:
    """The database as a person should see it: SQLite's absolute path, PostgreSQL's host, port and
    database; never the user's password."""
    parsed = url if isinstance(url, URL) else make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(parsed)
        return f"SQLite {path.resolve()}" if path else "SQLite in memory"
    return f"PostgreSQL {host_port(parsed)}/{parsed.database or ''}"
