"""`supportbot bench --suite web`: the website chat API's cost per chat as chats grow.

One `supportbot run --http` replica (the fakes of Slack and the Messages API beside it, as in the
chat suite), and for each level of `--chats` (1, 5, 20, 50 by default) that many verified
customers chatting at once: each starts `--turns` turns one after another (`POST /api/turns`) and
reads each turn's event stream (`GET /api/turns/{id}/events`) to its `done`, after one warm-up
chat that is not counted. Reported per level,
from the replica's own counters: turns/s, CPU ms and SQL statements per chat, and turn latency.
The question is whether a chat costs the same at 50 as at 1 (linear), or each chat's events wake
and re-read every other chat's stream (quadratic).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bot.bench.fake_anthropic import FakeMessagesAPI
from bot.bench.fake_slack import FakeSlack
from bot.bench.runner import (
    STAFF,
    Params,
    Replica,
    counter_totals,
    model_responder,
    percentiles,
    prepare_store,
    replica_env,
    start_replica,
)

SECRET = "bench-widget-secret"
QUESTION = "what are your support hours?"


def customer_token(n: int) -> str:
    email, expiry = f"c{n}@bench.example", int(time.time()) + 3600
    sig = hmac.new(SECRET.encode(), f"{email}|{expiry}".encode(), hashlib.sha256).hexdigest()
    return f"{email}|{expiry}|{sig}"


async def one_turn(http: aiohttp.ClientSession, url: str, token: str, session_id: str | None) -> tuple[str, float]:
    """A turn started and streamed to its done; returns the session and the turn's milliseconds."""
    started = time.monotonic()
    body = {"message": QUESTION} | ({"session_id": session_id} if session_id else {})
    headers = {"X-Customer-Token": token}
    async with http.post(f"{url}/api/turns", json=body, headers=headers) as resp:
        accepted = await resp.json()
        if resp.status != 202:
            raise RuntimeError(f"POST /api/turns answered {resp.status}: {accepted}")
    async with http.get(f"{url}{accepted['events_url']}", headers=headers) as resp:
        async for line in resp.content:
            if line.startswith(b"event: done"):
                break
        else:
            raise RuntimeError("the turn's stream ended without done")
    return accepted["session_id"], (time.monotonic() - started) * 1000


async def chat(http: aiohttp.ClientSession, url: str, n: int, turns: int) -> list[float]:
    token, session_id, times = customer_token(n), None, []
    for _ in range(turns):
        session_id, ms = await one_turn(http, url, token, session_id)
        times.append(ms)
    return times


async def level(http: aiohttp.ClientSession, replica: Replica, chats: int, turns: int, first: int) -> dict[str, Any]:
    before = counter_totals(await scrape_one(http, replica.admin_url))
    started = time.monotonic()
    done = await asyncio.gather(*(chat(http, replica.url, first + i, turns) for i in range(chats)))
    wall = time.monotonic() - started
    after = counter_totals(await scrape_one(http, replica.admin_url))
    statements = after["read_statements"] + after["write_statements"]
    statements -= before["read_statements"] + before["write_statements"]
    return {
        "chats": chats,
        "turns": chats * turns,
        "turns_per_s": round(chats * turns / wall, 2),
        "cpu_ms_per_chat": round((after["cpu_s"] - before["cpu_s"]) * 1000 / chats, 1),
        "statements_per_chat": round(statements / chats, 1),
        "turn_ms": percentiles([ms for times in done for ms in times]),
    }


async def scrape_one(http: aiohttp.ClientSession, admin_url: str) -> list[str]:
    async with http.get(f"{admin_url}/metrics") as resp:
        return [await resp.text()]


async def run_web_bench(levels: list[int], *, turns: int = 3, database_url: str | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="supportbot-bench-web-") as tmp:
        url = database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        await prepare_store(url, Params(threads=sum(levels) + 1))
        slack, api = FakeSlack(staff_channel=STAFF), FakeMessagesAPI(model_responder(), record=False)
        await slack.start()
        await api.start()
        env = replica_env(url, slack, api, workers=64, pace=False, CHAT_IDENTITY_SECRET=SECRET)
        replica = await start_replica(env)
        results, first = [], 0
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=400)) as http:
                await chat(http, replica.url, sum(levels), turns)  # warm-up, not measured: first-use costs
                for chats in levels:
                    results.append(await level(http, replica, chats, turns, first))
                    first += chats
        finally:
            replica.proc.terminate()
            await replica.proc.wait()
            await slack.close()
            await api.close()
    return {"suite": "web", "database": "sqlite" if url.startswith("sqlite") else "postgresql", "levels": results}


def table(result: dict[str, Any]) -> str:
    lines = [
        "| concurrent chats | turns | turns/s | CPU ms/chat | statements/chat | turn p50/p95 ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["levels"]:
        t = r["turn_ms"]
        lines.append(
            f"| {r['chats']} | {r['turns']} | {r['turns_per_s']} | {r['cpu_ms_per_chat']} | "
            f"{r['statements_per_chat']} | {t['p50']}/{t['p95']} |"
        )
    return "\n".join(lines)
