"""One async engine and session factory per process.

SQLite (the embedded default) runs in WAL mode with foreign keys on, through SQLAlchemy's
aiosqlite dialect over `storage.inline_sqlite` (each call runs at once in the event loop's
thread, no thread hop: see there why). SQLAlchemy, not the sqlite3 driver, emits BEGIN (the
documented aiosqlite recipe): write transactions start with `BEGIN IMMEDIATE`, so a writer takes
the lock up front; when another process holds it, the store retries with asyncio sleeps for up to
SQLITE_BUSY_TIMEOUT_MS (SQLite's own busy handler would sleep in the event loop's thread). Read
transactions stay deferred, so WAL readers never wait for writers.
PostgreSQL goes through asyncpg with a pool sized by settings.

`check_database` is what a command runs before it touches anything: the URL is one we support,
a SQLite file is a SQLite database (read, never written, when it is not), PostgreSQL answers.

    StoreUnavailable   the database cannot be used as configured; the message says why, in one
                       line, with its host and port or path and never a password
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import os
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert, text
from sqlalchemy import exc as sa_exc
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from storage import inline_sqlite, metrics
from storage.dburl import check_url, describe, host_port, sqlite_path
from storage.errors import NestedWrite, StoreUnavailable
from storage.settings import Settings

_IMMEDIATE = "supportbot_begin_immediate"
SQLITE_HEADER = b"SQLite format 3\x00"
CONNECT_TIMEOUT_S = 15.0


# For an ORM UPDATE or DELETE in a transaction of its own, which loads no object: the identity map
# has nothing to bring up to date, so SQLAlchemy's default synchronisation ("auto": evaluate the
# WHERE clause in Python against the map) is pure cost on the hot paths (the queue, the outbox).
UNSYNCED = {"synchronize_session": False}


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _count_statements(engine: AsyncEngine) -> AsyncEngine:
    """Every statement counted once, read or write by its verb (BEGIN, COMMIT and pragmas aside)."""

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        verb = statement.lstrip()[:6].upper()
        if verb.startswith(("BEGIN", "COMMIT", "PRAGMA", "ROLLBA", "SAVEPO", "RELEAS")):
            return
        metrics.DB_STATEMENTS.labels("read" if verb.startswith(("SELECT", "WITH")) else "write").inc()

    return engine


def make_engine(url: str, *, pool_size: int = 5, max_overflow: int = 5, busy_timeout_ms: int = 1000) -> AsyncEngine:
    if not is_sqlite(url):
        return _count_statements(
            create_async_engine(
                url, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True, pool_recycle=1800
            )
        )
    database = make_url(url).database or ":memory:"
    if database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    pool = {"pool_size": pool_size, "max_overflow": max_overflow} if database != ":memory:" else {}
    engine = create_async_engine(url, async_creator=inline_sqlite.creator(database), **pool)
    engine.sync_engine.dialect.busy_timeout_ms = busy_timeout_ms  # type: ignore[attr-defined]  # Store.write's

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=0")  # never wait inside SQLite: Store.write retries BEGIN
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return _count_statements(engine)


_OUTAGES: tuple[type[BaseException], ...] = (
    OSError,  # connection refused or reset, and asyncpg's connect timeout
    sa_exc.OperationalError,  # SQLite "database is locked" / I/O errors; PostgreSQL shutting down
    sa_exc.InterfaceError,  # the connection went away under us
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,  # no pooled connection in time
)


def is_unavailable(error: BaseException) -> bool:
    """Whether an error means the store is unreachable or busy for now (worth a 503 and a retry),
    rather than a bug. Looks through the chain of causes, since drivers wrap each other's errors."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, _OUTAGES) or (isinstance(seen, DBAPIError) and seen.connection_invalidated):
            return True
        if type(seen).__module__.startswith("asyncpg") and type(seen).__name__ in _ASYNCPG_OUTAGES:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _busy(error: BaseException | None) -> bool:
    """SQLite's "another connection holds the write lock" (by its error code, not its message)."""
    return getattr(error, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


# what a command may meet when the database or the system fails mid-command (not a bug of ours)
DATABASE_ERRORS = (DBAPIError, OSError)
_ASYNCPG_OUTAGES = frozenset(
    {"CannotConnectNowError", "ConnectionDoesNotExistError", "ConnectionFailureError", "AdminShutdownError"}
)


class Gate:
    """At most `n` holders at once, waited for in the event loop in arrival order, except that an
    ack (work stored before its sender is told it arrived: a Slack event before its 200, a website
    turn before its 202) goes ahead of every other waiter, so it never queues behind a burst of
    turns. A place is handed from the releaser to the next waiter, never raced for.

    The store uses two: its SQLite writer (n = 1: SQLite has one writer at a time anyway, and
    waiting here is fair and cheap where SQLite's busy handler sleeps and polls) and its slots
    (`Slots`: what the connection pool holds)."""

    def __init__(self, n: int = 1) -> None:
        self.n = max(1, n)
        self.in_use = 0
        self._acks: collections.deque[asyncio.Future[None]] = collections.deque()
        self._others: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def waiting(self) -> int:
        return len(self._acks) + len(self._others)

    async def acquire(self, *, ack: bool = False) -> None:
        if self.in_use < self.n and not self.waiting:
            self.in_use += 1
            return
        line = self._acks if ack else self._others
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        line.append(turn)
        try:
            await turn  # the place is handed over with in_use unchanged
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # handed the place just as we were cancelled: pass it on
            else:
                line.remove(turn)
            raise

    def release(self) -> None:
        """Hand the place to the next waiter (acks first), or free it."""
        for line in (self._acks, self._others):
            while line:
                turn = line.popleft()
                if not turn.done():
                    turn.set_result(None)
                    return
        self.in_use -= 1


class Slots(Gate):
    """At most `n` transactions of this process at once (what its connection pool holds), waited
    for in the event loop rather than in the pool's checkout timeout, so any number of turns can
    be in flight (awaiting the model or Slack) while only a few touch the database. A task that
    already holds a slot (a read inside its own transaction, a task started inside one) goes
    through: it never waits on itself."""

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self._holding: contextvars.ContextVar[bool] = contextvars.ContextVar(f"store-slot-{id(self)}", default=False)

    @asynccontextmanager
    async def hold(self, *, ack: bool = False) -> AsyncIterator[None]:
        if self._holding.get():
            yield
            return
        await self.acquire(ack=ack)
        token = self._holding.set(True)
        try:
            yield
        finally:
            self._holding.reset(token)
            self.release()


@dataclass(eq=False)
class _Unit:
    """A unit of work (`Store.unit`): one write transaction, opened at first use."""

    task: asyncio.Task[Any] | None
    stack: AsyncExitStack | None = None
    session: AsyncSession | None = None
    paused: bool = False


_WAITED_ON: contextvars.ContextVar[bool] = contextvars.ContextVar("store_waited_on", default=False)


class Store:
    """The process's engine plus two session factories: `write()` and `read()`.

    Each context manager yields a session inside a transaction that commits on success and rolls
    back on error. On SQLite `write()` begins IMMEDIATE, and writers of one process also queue on
    an asyncio lock first: SQLite has one writer at a time anyway, and waiting in the event loop
    is fair and cheap where waiting in SQLite's busy handler means sleeping and polling. (Other
    processes on the same file still wait through busy_timeout; correctness never depends on the
    lock.) On PostgreSQL both factories are the same and there is no lock.
    """

    def __init__(self, engine: AsyncEngine, *, slots: int = 10) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        # SQLite: its one writer (the write lock's holder) needs no slot, the readers share the rest
        self.slots = Slots(slots - 1 if self.dialect == "sqlite" else slots)
        writer = engine.execution_options(**{_IMMEDIATE: True}) if self.dialect == "sqlite" else engine
        self._write = async_sessionmaker(writer, expire_on_commit=False)
        self._read = async_sessionmaker(engine, expire_on_commit=False)
        self._write_lock = Gate(1) if self.dialect == "sqlite" else None
        self._holder: contextvars.ContextVar[bool] = contextvars.ContextVar(f"store-write-{id(self)}", default=False)
        self._unit: contextvars.ContextVar[_Unit | None] = contextvars.ContextVar(
            f"store-unit-{id(self)}", default=None
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, url: str | None = None) -> Store:
        engine = make_engine(
            url or settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        )
        return cls(engine, slots=settings.db_pool_size + settings.db_max_overflow)

    # --- units of work ---------------------------------------------------------------------------
    @asynccontextmanager
    async def unit(self) -> AsyncIterator[None]:
        """Everything this task reads and writes in the block is one write transaction, opened at
        its first use and committed at the end (rolled back on an error): a model round's tools and
        its record. A `write()` inside is a savepoint of it, so a block that fails (a refund that
        lost a race) undoes only itself. Other tasks never join it. Nothing inside may wait on the
        network while it is open, except through `alone()`."""
        if self._joined() is not None:
            yield
            return
        unit = _Unit(asyncio.current_task())
        token = self._unit.set(unit)
        try:
            yield
        except BaseException as exc:
            await self._close_unit(unit, exc)
            raise
        else:
            await self._close_unit(unit, None)
        finally:
            self._unit.reset(token)

    @asynccontextmanager
    async def alone(self) -> AsyncIterator[None]:
        """Commit what the unit holds so far and run the block in transactions of its own: for work
        that must follow a commit (the payment gateway is called only once the refund is stored)."""
        unit = self._joined()
        if unit is None:
            yield
            return
        await self._close_unit(unit, None)
        unit.paused = True
        try:
            yield
        finally:
            unit.paused = False

    def _joined(self) -> _Unit | None:
        unit = self._unit.get()
        if unit is None or unit.paused or unit.task is not asyncio.current_task():
            return None
        return unit

    async def _unit_session(self, unit: _Unit) -> AsyncSession:
        if unit.session is None:
            stack = AsyncExitStack()
            unit.session = await stack.enter_async_context(self._own_write(ack=False))
            unit.stack = stack
        return unit.session

    async def _close_unit(self, unit: _Unit, exc: BaseException | None) -> None:
        stack, unit.stack, unit.session = unit.stack, None, None
        if stack is None:
            return
        if exc is None:
            await stack.aclose()  # commits
        else:
            await stack.__aexit__(type(exc), exc, exc.__traceback__)  # rolls back

    # --- transactions ----------------------------------------------------------------------------
    @asynccontextmanager
    async def write(self, *, ack: bool = False) -> AsyncIterator[AsyncSession]:
        """`ack`: storing work before its sender is told it arrived (goes first on SQLite). Inside a
        unit of work: a savepoint of its transaction."""
        unit = self._joined()
        if unit is not None:
            session = await self._unit_session(unit)
            async with session.begin_nested():
                yield session
            return
        async with self._own_write(ack=ack or _WAITED_ON.get()) as session:
            yield session

    @contextmanager
    def waited_on(self) -> Iterator[None]:
        """Someone is waiting on this task's work right now (a click, a staff button): its
        transactions go ahead of queued turns' like acks do, on this store, in this task."""
        token = _WAITED_ON.set(True)
        try:
            yield
        finally:
            _WAITED_ON.reset(token)

    @asynccontextmanager
    async def _own_write(self, *, ack: bool) -> AsyncIterator[AsyncSession]:
        metrics.DB_TRANSACTIONS.labels("write").inc()
        if self._write_lock is None:
            async with self.slots.hold(ack=ack), self._write() as session, session.begin():
                yield session
            return
        if self._holder.get():
            raise NestedWrite("a write transaction was opened inside another one; use the outer session")
        asked = time.perf_counter()
        await self._write_lock.acquire(ack=ack)
        try:
            held = time.perf_counter()
            metrics.DB_WRITE_LOCK_WAIT.observe(held - asked)
            token = self._holder.set(True)
            try:
                async with self._immediate() as session:
                    yield session
            finally:
                self._holder.reset(token)
                metrics.DB_WRITE_LOCK_HOLD.observe(time.perf_counter() - held)
        finally:
            self._write_lock.release()

    @asynccontextmanager
    async def _immediate(self) -> AsyncIterator[AsyncSession]:
        session = await self._begin_immediate()
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
        finally:
            await session.close()

    async def _begin_immediate(self) -> AsyncSession:
        """A session whose BEGIN IMMEDIATE went through, retried with asyncio sleeps while another
        process holds SQLite's write lock (up to SQLITE_BUSY_TIMEOUT_MS; then "database is
        locked", which is an outage to the caller)."""
        budget = getattr(self.engine.sync_engine.dialect, "busy_timeout_ms", 1000) / 1000
        deadline, delay = time.monotonic() + budget, 0.001
        while True:
            session = self._write()
            try:
                await session.begin()
                await session.connection()
                return session
            except sa_exc.OperationalError as exc:
                await session.close()
                if not _busy(exc.orig) or time.monotonic() + delay > deadline:
                    raise
            except BaseException:
                await session.close()
                raise
            await asyncio.sleep(delay)  # waiting out another process's transaction, not synchronization
            delay = min(delay * 2, 0.05)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """Inside a unit of work: its transaction."""
        unit = self._joined()
        if unit is not None:
            yield await self._unit_session(unit)
            return
        metrics.DB_TRANSACTIONS.labels("read").inc()
        async with self.slots.hold(ack=_WAITED_ON.get()), self._read() as session, session.begin():
            yield session

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:  # any failure means "not reachable" for a health check
            return False
        return True

    async def dispose(self) -> None:
        await self.engine.dispose()


@asynccontextmanager
async def reading(source: Store | AsyncSession) -> AsyncIterator[AsyncSession]:
    """A session to read with: the caller's own (already in its transaction), or a new read
    transaction of the store. For helpers that work alone or inside a caller's transaction."""
    if isinstance(source, Store):
        async with source.read() as s:
            yield s
    else:
        yield source


async def insert_all(s: AsyncSession, rows: Sequence[Any]) -> None:
    """New ORM rows inserted as Core `executemany`, one statement per table: for rows whose ids
    nobody reads back (history, usage, audit). The unit of work would send one INSERT … RETURNING
    per row (SQLite gives no order guarantee for a batch's RETURNING). Unset (None) attributes are
    left to the column defaults; rows keep their order."""
    groups: dict[tuple[Any, frozenset[str]], list[dict[str, Any]]] = {}
    for row in rows:
        mapper = sa_inspect(type(row))
        values = {
            attr.columns[0].key: value for attr in mapper.column_attrs if (value := getattr(row, attr.key)) is not None
        }
        groups.setdefault((mapper.local_table, frozenset(values)), []).append(values)
    for (table, _), batch in groups.items():
        await s.execute(insert(table), batch)


def sqlite_file_problem(path: Path) -> str | None:
    """Why an existing file cannot be our SQLite database (None: it can, or it does not exist yet).
    Only its first 16 bytes are read: a file that is not a database is never opened by SQLite."""
    if not path.exists():
        return None
    if path.is_dir():
        return f"{path.resolve()} is a folder, not a SQLite database file"
    try:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError as exc:
        return f"cannot read {path.resolve()}: {exc.strerror}"
    if head and head != SQLITE_HEADER:  # an empty file is an empty database to SQLite
        return f"{path.resolve()} is not a SQLite database (it was left unchanged); point DATABASE_URL at another file"
    return None


def _unavailable(exc: BaseException, url: URL) -> StoreUnavailable:
    if url.get_backend_name() == "sqlite":
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
        return StoreUnavailable(f"cannot open the SQLite database {describe(url).removeprefix('SQLite ')}: {detail}")
    where = f"PostgreSQL at {host_port(url)}"
    if isinstance(exc, TimeoutError):
        return StoreUnavailable(f"{where} did not answer within {CONNECT_TIMEOUT_S:.0f} s")
    if isinstance(exc, OSError):
        reason = exc.strerror if isinstance(exc, socket.gaierror) or not exc.errno else os.strerror(exc.errno)
        return StoreUnavailable(f"cannot reach {where} ({(reason or type(exc).__name__).lower()}); is it running?")
    detail = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
    return StoreUnavailable(f"{where} refused the connection: {detail}")


async def check_database(settings: Settings, *, url: str | None = None) -> str:
    """Make sure the database can be used before a command touches anything; returns how to name
    it to a person (path, or host/port/db). Raises DatabaseUrlError or StoreUnavailable."""
    parsed = check_url(url or settings.database_url)
    path = sqlite_path(parsed)
    if path is not None:
        problem = await asyncio.to_thread(sqlite_file_problem, path)
        if problem:
            raise StoreUnavailable(problem)
    store = Store.from_settings(settings, url=parsed.render_as_string(hide_password=False))
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S), store.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except (OSError, TimeoutError, DBAPIError) as exc:
        raise _unavailable(exc, parsed) from None
    finally:
        await store.dispose()
    return describe(parsed)
