"""Schema migrations, run programmatically (`supportbot db upgrade`) on the store's own engine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from storage.engine import Store
from storage.models import Base
from storage.search import include_name

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str = "") -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _foreign_keys(conn: Connection, on: bool) -> None:
    """SQLite rebuilds a table to alter it (copy, drop, rename); with foreign keys on, dropping the
    old table would cascade-delete its children's rows. Off for the migration (a pragma outside any
    transaction, so on the raw connection), checked and on again after it."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
        if on:
            cursor.execute("PRAGMA foreign_key_check")
            broken = cursor.fetchall()
            if broken:
                raise RuntimeError(f"the migration left {len(broken)} rows with dangling foreign keys")
    finally:
        cursor.close()


async def upgrade(store: Store, revision: str = "head") -> None:
    await _migrate(store, command.upgrade, revision)


async def downgrade(store: Store, revision: str) -> None:
    """Back to `revision` (for tests of a migration and for an operator undoing one)."""
    await _migrate(store, command.downgrade, revision)


async def _migrate(store: Store, step: Callable[[Config, str], None], revision: str) -> None:
    def _run(conn: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        step(cfg, revision)

    sqlite = store.dialect == "sqlite"
    async with store.engine.connect() as conn:
        if sqlite:
            await conn.run_sync(_foreign_keys, False)
        try:
            await conn.run_sync(_run)
            await conn.commit()
        finally:
            if sqlite:
                await conn.run_sync(_foreign_keys, True)


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def current_revision(store: Store) -> str | None:
    def _current(conn: Connection) -> str | None:
        return MigrationContext.configure(conn).get_current_revision()

    async with store.engine.connect() as conn:
        return await conn.run_sync(_current)


async def schema_diff(store: Store) -> list[object]:
    """What autogenerate would change to make the database match the ORM (empty = in step)."""

    def _diff(conn: Connection) -> list[object]:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "render_as_batch": True,
                "include_name": include_name,
            },
        )
        return list(compare_metadata(ctx, Base.metadata))

    async with store.engine.connect() as conn:
        return await conn.run_sync(_diff)
