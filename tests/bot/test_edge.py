"""The HTTP edge under a slow-header flood: a real `supportbot run --http` in a subprocess with a
small open-file limit, hundreds of connections from other loopback addresses that send one header
line and stop, and requests with an over-long header. The process keeps answering /healthz, closes
the slow connections itself, and its log stays a few lines long. Bounded in time throughout."""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from bot.edge import Throttle, ThrottledRecords, connection_budget

FILES = 200  # the child's open-file limit: the common 1,024 scaled down to keep the test quick
HEADER_TIMEOUT_S = 2
PER_ADDRESS = 40
ATTACKERS = [f"127.0.0.{n}" for n in range(2, 10)]  # 8 addresses x 60 connections: far past FILES
PER_ATTACKER = 60
SLOW_HEAD = b"GET /healthz HTTP/1.1\r\nHost: shop.example\r\n"  # and then nothing more


def small_file_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILES, FILES))


@dataclass
class App:
    proc: asyncio.subprocess.Process
    url: str
    lines: int = 0
    said: dict[str, int] = field(default_factory=dict)  # how many log lines contained each of WATCHED

    WATCHED = ("Traceback", "out of system resource", "Error handling request", "malformed HTTP request")

    async def drain(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines += 1
            for word in self.WATCHED:
                if word.encode() in line:
                    self.said[word] = self.said.get(word, 0) + 1


@pytest.fixture
async def app(database_url: str, tmp_path: Path) -> AsyncIterator[App]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "MODEL", "SLACK", "SUPPORT"))}
    env |= {
        "DATABASE_URL": database_url,
        "MODEL_PROVIDER": "offline",
        "LOG_LEVEL": "INFO",
        "ADMIN_PORT": "0",
        "HTTP_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "HTTP_CONNECTIONS_PER_ADDRESS": str(PER_ADDRESS),
    }
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bot", "run", "--http", "--host", "127.0.0.1", "--port", "0"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        cwd=tmp_path,
        preexec_fn=small_file_limit,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(120):
            while b"listening on http://" not in (line := await proc.stdout.readline()):
                assert line, "the app exited before listening"
        app = App(proc, line.decode().split("listening on ", 1)[1].split()[0])
        drain = asyncio.create_task(app.drain())
        yield app
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    await drain


Client = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def slow_client(port: int, source: str) -> Client | None:
    """A connection from `source` that sends one header line and stops (None: it never connected).
    The writer is kept with the reader: a writer collected by the garbage collector closes it."""
    try:
        async with asyncio.timeout(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            writer.write(SLOW_HEAD)
            await writer.drain()
            return reader, writer
    except (OSError, TimeoutError):
        return None


async def closed_by_server(client: Client) -> bool:
    try:
        return await client[0].read(1) == b""
    except ConnectionResetError:
        return True
    finally:
        client[1].close()


async def wait_closed(client: Client, timeout_s: float) -> bool:
    try:
        return await asyncio.wait_for(closed_by_server(client), timeout_s)
    except TimeoutError:
        return False


async def healthz(url: str, deadline: float) -> int:
    """/healthz's status, asked until it answers or the deadline passes (0: never answered)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(f"{url}/healthz") as resp:
                    return resp.status
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.2)  # the next attempt: a retry interval, not a wait for an event
    return 0


async def test_a_slow_header_flood_leaves_healthz_answering_and_the_log_short(app: App) -> None:
    port = int(app.url.rsplit(":", 1)[1])
    async with asyncio.timeout(90):
        started = time.monotonic()
        flood = [slow_client(port, source) for source in ATTACKERS for _ in range(PER_ATTACKER)]
        clients = [c for c in await asyncio.gather(*flood) if c is not None]
        assert await healthz(app.url, deadline=time.monotonic() + HEADER_TIMEOUT_S + 15) == 200
        closed = await asyncio.gather(*(wait_closed(c, HEADER_TIMEOUT_S + 15) for c in clients))
        assert all(closed) and len(closed) > FILES  # every one of them, the refused and the cut-off alike
        assert time.monotonic() - started < HEADER_TIMEOUT_S + 30
        for _ in range(30):  # an over-long header is the client's mistake: 400, and no traceback
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{app.url}/healthz", headers={"X-Big": "a" * 20_000}) as r,
            ):
                assert r.status == 400
    app.proc.terminate()
    async with asyncio.timeout(60):
        assert await app.proc.wait() == 0
    assert app.said.get("Traceback", 0) == 0, app.said
    assert app.said.get("out of system resource", 0) <= 2, app.said
    assert app.said.get("malformed HTTP request", 0) <= 2, app.said
    assert app.lines < 40, (app.lines, app.said)


# --- the parts ----------------------------------------------------------------------------------------
def test_the_connection_budget_leaves_the_store_its_files() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert 8 <= connection_budget() <= max(soft - 64, 8)


def test_a_throttle_reports_once_per_interval_with_the_count() -> None:
    throttle = Throttle("x %s", every_s=3600)
    assert throttle.due() == 1  # the first one is said at once
    assert [throttle.due() for _ in range(5)] == [0] * 5
    throttle.last -= 3600
    assert throttle.due() == 6  # then how many there were since


def test_throttled_records_lose_their_traceback() -> None:
    import logging

    records = ThrottledRecords(lambda r: "boom" if r.msg == "boom" else None, logging.WARNING)
    try:
        raise ValueError("x")
    except ValueError:
        first = logging.LogRecord("t", logging.ERROR, __file__, 1, "boom", None, sys.exc_info())
    assert records.filter(first) and first.exc_info is None and first.levelno == logging.WARNING
    assert not records.filter(logging.LogRecord("t", logging.ERROR, __file__, 1, "boom", None, None))
    assert records.filter(logging.LogRecord("t", logging.ERROR, __file__, 1, "other", None, None))
