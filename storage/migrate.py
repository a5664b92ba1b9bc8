"""Schema migrations, run programmatically (`supportbot db upgrade`) on the store's own engine."""

from __future__ import annotations

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


async def upgrade(store: Store, revision: str = "head") -> None:
    def _upgrade(conn: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)

    async with store.engine.begin() as conn:
        await conn.run_sync(_upgrade)


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
