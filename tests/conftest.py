"""Shared fixtures: one database per test on SQLite or PostgreSQL, a frozen clock, and a guard
that fails any test trying to reach anything but 127.0.0.0/8.

`TEST_DATABASE_URL` picks the database for the whole run (default: a temporary SQLite file).
Tests that need PostgreSQL whatever the pass use `TEST_PG_URL` (see `pg_url`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from desk.sessions import open_session
from storage.engine import Store, is_sqlite
from storage.importer import seed
from storage.migrate import upgrade
from storage.settings import Settings
from storage.types import FrozenClock
from tools.context import Actor, CallContext, Deps
from tools.gateway import StoreGateway
from tools.toolbox import Toolbox

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
SARAH, JAMES = "CUST-1001", "CUST-1002"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


# --- network guard ------------------------------------------------------------------------------
def _loopback(host: Any) -> bool:
    if host in ("localhost", "localhost.", b"localhost"):
        return True
    try:
        return ipaddress.ip_address(host.decode() if isinstance(host, bytes) else host).is_loopback
    except ValueError:
        return False


class NetworkBlocked(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def _only_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    real_connect, real_connect_ex, real_gai = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.getaddrinfo,
    )

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            raise NetworkBlocked(f"test tried to connect to {address!r}; only 127.0.0.1 is allowed")

    def connect(self: socket.socket, address: Any) -> None:
        check(self, address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(self, address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _loopback(host):
            raise NetworkBlocked(f"test tried to resolve {host!r}; only loopback names are allowed")
        return real_gai(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


# --- databases ----------------------------------------------------------------------------------
def _pg_admin_dsn(url: str) -> str:
    u = make_url(url)
    return u.set(drivername="postgresql").render_as_string(hide_password=False)


async def _pg_exec(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_pg_admin_dsn(url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class Databases:
    """Makes a fresh, migrated database per test by copying a template migrated once per run."""

    def __init__(self, base_url: str, workdir: Path) -> None:
        self.base_url = base_url
        self.workdir = workdir
        self.sqlite = is_sqlite(base_url)
        self.tag = uuid.uuid4().hex[:8]
        self.template: str | None = None
        self.created: list[str] = []

    async def _template(self) -> str:
        if self.template is None:
            if self.sqlite:
                url = f"sqlite+aiosqlite:///{self.workdir / 'template.db'}"
            else:
                name = f"sb_tmpl_{self.tag}"
                await _pg_exec(self.base_url, f"CREATE DATABASE {name}")
                self.created.append(name)
                url = make_url(self.base_url).set(database=name).render_as_string(hide_password=False)
            store = Store.from_settings(Settings(_env_file=None), url=url)  # type: ignore[call-arg]
            await upgrade(store)
            await store.dispose()
            self.template = url
        return self.template

    async def fresh(self) -> str:
        return await self.copy(await self._template())

    async def copy(self, source: str) -> str:
        """A new database holding what `source` holds (no connection to it may be open)."""
        n = uuid.uuid4().hex[:10]
        if self.sqlite:
            src = Path(make_url(source).database or "")
            dst = self.workdir / f"t_{n}.db"
            shutil.copyfile(src, dst)
            return f"sqlite+aiosqlite:///{dst}"
        name = f"sb_t_{self.tag}_{n}"
        await _pg_exec(self.base_url, f"CREATE DATABASE {name} TEMPLATE {make_url(source).database}")
        self.created.append(name)
        return make_url(self.base_url).set(database=name).render_as_string(hide_password=False)

    async def drop(self, url: str) -> None:
        if not self.sqlite:
            name = make_url(url).database
            await _pg_exec(self.base_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            self.created.remove(name or "")

    async def close(self) -> None:
        for name in list(reversed(self.created)):
            await _pg_exec(self.base_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    workdir = tmp_path_factory.mktemp("db")
    dbs = Databases(TEST_DATABASE_URL or f"sqlite+aiosqlite:///{workdir / 'unused.db'}", workdir)
    yield dbs
    if not dbs.sqlite:
        asyncio.run(dbs.close())


@pytest.fixture
async def database_url(databases: Databases) -> AsyncIterator[str]:
    url = await databases.fresh()
    yield url
    await databases.drop(url)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(_env_file=None, database_url=database_url)  # type: ignore[call-arg]


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    s = Store.from_settings(settings)
    yield s
    await s.dispose()


@pytest.fixture
def pg_url() -> str:
    """A PostgreSQL server URL for tests that need one whatever the pass.

    In CI a missing server is a failure, never a skip; on a laptop without one the test is
    reported as skipped with the reason (pytest -ra prints it).
    """
    url = TEST_DATABASE_URL if TEST_DATABASE_URL and not is_sqlite(TEST_DATABASE_URL) else ""
    url = url or os.environ.get("TEST_PG_URL", "")
    if not url:
        if IN_CI:
            pytest.fail("this test needs PostgreSQL: set TEST_PG_URL (.ci/run starts one)")
        pytest.skip('needs PostgreSQL: eval "$(.ci/start-postgres)" sets TEST_PG_URL')
    return url


_PG_DATABASES: dict[str, Databases] = {}


@pytest.fixture(scope="session", autouse=True)
def _drop_pg_databases() -> Iterator[None]:
    yield
    for dbs in _PG_DATABASES.values():
        asyncio.run(dbs.close())


@pytest.fixture
async def pg_database_url(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A fresh, migrated PostgreSQL database whatever the pass (multi-process tests need one)."""
    dbs = _PG_DATABASES.get(pg_url)
    if dbs is None:
        dbs = _PG_DATABASES[pg_url] = Databases(pg_url, tmp_path_factory.getbasetemp())
    url = await dbs.fresh()
    yield url
    await dbs.drop(url)


# --- the seeded company and its sessions --------------------------------------------------------


@pytest.fixture
async def deps(store: Store, settings: Settings, clock: FrozenClock) -> Deps:
    await seed(store, clock)
    return Deps(store=store, settings=settings, clock=clock, gateway=StoreGateway(store, clock))


@pytest.fixture
def toolbox(deps: Deps) -> Toolbox:
    return Toolbox(deps)


async def session_for(deps: Deps, actor: Actor) -> CallContext:
    return await open_session(deps, channel="test", actor=actor)


@pytest.fixture
async def sarah(deps: Deps) -> CallContext:
    return await session_for(deps, Actor.customer(SARAH))


@pytest.fixture
async def james(deps: Deps) -> CallContext:
    return await session_for(deps, Actor.customer(JAMES))


@pytest.fixture
async def anon(deps: Deps) -> CallContext:
    return await session_for(deps, Actor.unverified("T9:U9"))


@pytest.fixture
async def staff(deps: Deps) -> CallContext:
    return await session_for(deps, Actor.staff("U-STAFF"))


async def ticket_by_ref(deps: Deps, ref: str) -> int:
    """The internal id of the ticket a tool result names by its public reference."""
    from sqlalchemy import select

    from storage.models import Ticket

    async with deps.store.read() as s:
        return int((await s.scalars(select(Ticket.id).where(Ticket.public_ref == ref))).one())


# --- the PostgreSQL pass runs what depends on the database ---------------------------------------
def _second_pass() -> bool:
    """The PostgreSQL pass of `.ci/run`, after the SQLite pass ran everything (TEST_EVERYTHING=1: all)."""
    return bool(TEST_DATABASE_URL) and not is_sqlite(TEST_DATABASE_URL) and not os.environ.get("TEST_EVERYTHING")


def pytest_report_header(config: pytest.Config) -> str:
    if not TEST_DATABASE_URL or is_sqlite(TEST_DATABASE_URL):
        return "database under test: SQLite (a fresh file per test)"
    if not _second_pass():
        return "database under test: PostgreSQL, every test (TEST_EVERYTHING)"
    return (
        "database under test: PostgreSQL; only the tests that use it run (the rest ran in the SQLite "
        "pass and are listed as deselected; TEST_EVERYTHING=1 runs them too)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _second_pass():
        return
    keep = [i for i in items if "database_url" in getattr(i, "fixturenames", ())]
    dropped = [i for i in items if "database_url" not in getattr(i, "fixturenames", ())]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
