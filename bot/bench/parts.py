"""`supportbot bench --suite parts`: what each part a turn is built of costs, in CPU per call, on
this machine: the floor under the bot's own cost per turn (issue 19).

The parts are the real ones, each measured in this process with `time.process_time()` while its
other side runs in a peer process (`python -m bot.bench.parts_peer`: the fake Slack, the fake
Messages API and a sender of signed Slack events), so the figures are the client's cost alone:

- the store (SQLAlchemy 2 async over the inline SQLite driver, or asyncpg): a read transaction with
  one SELECT by key, each further SELECT in it, a write transaction with one UPDATE;
- a Claude call through the Anthropic SDK (its aiohttp transport), with the bot's real system
  prompt and tool definitions and a one-message history;
- a `chat.postMessage` through slack_sdk's `AsyncWebClient`;
- a Slack event's ack: the real HTTP app (aiohttp, Bolt, our middleware) storing the event in the
  inbox before its 200 (no worker runs, so nothing else spends CPU meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import SecretStr
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import func, select, update

from agent.model import ModelRequest
from bot.bench.runner import SECRET
from desk.sessions import open_session
from storage.migrate import upgrade
from storage.models import ChatSession, InboxItem
from storage.settings import Settings
from tools.context import Actor

WARM_UP = 30


async def _cpu_per_call(n: int, call: Callable[[], Awaitable[Any]]) -> float:
    """CPU milliseconds a call, over n calls after a warm-up."""
    for _ in range(WARM_UP):
        await call()
    started = time.process_time()
    for _ in range(n):
        await call()
    return round(1000 * (time.process_time() - started) / n, 3)


@contextlib.asynccontextmanager
async def _peer() -> AsyncIterator[tuple[asyncio.subprocess.Process, dict[str, str]]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.bench.parts_peer", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        async with asyncio.timeout(60):
            urls = json.loads(await proc.stdout.readline())
        yield proc, urls
    finally:
        with contextlib.suppress(ProcessLookupError, BrokenPipeError, ConnectionResetError):
            proc.stdin.close()
        async with asyncio.timeout(30):
            await proc.wait()


async def _ask(proc: asyncio.subprocess.Process, command: str) -> str:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write((command + "\n").encode())
    await proc.stdin.drain()
    async with asyncio.timeout(600):
        return (await proc.stdout.readline()).decode().strip()


def _settings(urls: dict[str, str], database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        slack_bot_token=SecretStr("xoxb-bench"),
        slack_signing_secret=SecretStr(SECRET),
        slack_api_url=urls["slack"] + "/api/",
        model_provider="claude",
        anthropic_api_key=SecretStr("bench"),
        anthropic_max_retries=0,
        slack_pace=False,
    )


async def run_parts_bench(*, n: int = 300, database_url: str | None = None) -> dict[str, Any]:
    from bot.host import Host
    from bot.server import web_app
    from bot.slack.runtime import Runtime

    with tempfile.TemporaryDirectory(prefix="supportbot-parts-") as tmp:
        url = database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'parts.db'}"
        async with _peer() as (peer, urls):
            os.environ["ANTHROPIC_BASE_URL"] = urls["anthropic"]  # read by the SDK itself
            host = Host.create(_settings(urls, url))
            try:
                await upgrade(host.store)
                result = await _store_parts(host, n)
                result |= await _client_parts(host, urls, n)
                rt = Runtime.on(host)
                before = await _inbox_rows(host.store)
                result["slack_ack"] = await _ack_part(peer, web_app(rt), n)
                stored = await _inbox_rows(host.store) - before  # every event acknowledged was stored first
            finally:
                await host.close()
                os.environ.pop("ANTHROPIC_BASE_URL", None)
    return {"n": n, "database": host.store.dialect, "events_stored": stored, "cpu_ms_per_call": result}


async def _inbox_rows(store: Any) -> int:
    async with store.read() as s:
        return int((await s.execute(select(func.count()).select_from(InboxItem))).scalar_one())


async def _store_parts(host: Any, n: int) -> dict[str, float]:
    store = host.store
    ctx = await open_session(host.deps, channel="slack", actor=Actor.unverified("bench:parts"), external_key="k")
    by_key = select(ChatSession).where(ChatSession.external_key == "k")
    bump = update(ChatSession).where(ChatSession.id == ctx.session_id).values(turns=ChatSession.turns + 1)

    async def read_one() -> None:
        async with store.read() as s:
            (await s.scalars(by_key)).one()

    async def read_five() -> None:
        async with store.read() as s:
            for _ in range(5):
                (await s.scalars(by_key)).one()

    async def write_one() -> None:
        async with store.write() as s:
            await s.execute(bump)

    one, five = await _cpu_per_call(n, read_one), await _cpu_per_call(n, read_five)
    return {
        "read_tx_one_select": one,
        "each_further_select": round((five - one) / 4, 3),
        "write_tx_one_update": await _cpu_per_call(n, write_one),
    }


async def _client_parts(host: Any, urls: dict[str, str], n: int) -> dict[str, float]:
    agent = host.agent
    request = ModelRequest(
        system=agent.system,
        tools=agent.tools,
        messages=[{"role": "user", "content": [{"type": "text", "text": "Where is my order ORD-1001?"}]}],
        max_tokens=1024,
    )
    slack = AsyncWebClient(token="xoxb-bench", base_url=urls["slack"] + "/api/")
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "Your refund of $25.00 is on its way."}}]

    async def post() -> None:
        await slack.chat_postMessage(channel="C_PARTS", thread_ts="1.000001", text="hello", blocks=blocks)

    return {
        "claude_call": await _cpu_per_call(n, lambda: agent.model.complete(request)),
        "slack_post": await _cpu_per_call(n, post),
    }


async def _ack_part(peer: asyncio.subprocess.Process, app: web.Application, n: int) -> float:
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    events = f"http://127.0.0.1:{port}/slack/events"
    try:
        if await _ask(peer, f"post {events} {WARM_UP}") != "ok":
            raise RuntimeError("the peer could not post the warm-up events")
        started = time.process_time()
        answer = await _ask(peer, f"post {events} {n}")
        spent = time.process_time() - started
        if answer != "ok":
            raise RuntimeError(f"the peer's events were not all acknowledged: {answer}")
    finally:
        await runner.cleanup()
    return round(1000 * spent / n, 3)


LABELS = {
    "read_tx_one_select": "read transaction with one SELECT by key",
    "each_further_select": "each further SELECT in a transaction",
    "write_tx_one_update": "write transaction with one UPDATE",
    "claude_call": "Claude call (Anthropic SDK, aiohttp transport)",
    "slack_post": "chat.postMessage (slack_sdk AsyncWebClient)",
    "slack_ack": "Slack event ack (aiohttp + Bolt + inbox insert)",
}


def table(result: dict[str, Any]) -> str:
    lines = [f"| part ({result['database']}, {result['n']} calls) | CPU ms a call |", "|---|---|"]
    for key, label in LABELS.items():
        lines.append(f"| {label} | {result['cpu_ms_per_call'][key]} |")
    return "\n".join(lines)
