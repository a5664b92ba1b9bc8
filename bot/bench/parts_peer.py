"""The other side of `supportbot bench --suite parts`, in a process of its own so that its CPU is
not counted: the fake Slack and the fake Messages API (their URLs printed as one JSON line), and,
on `post URL N` read from stdin, N signed Slack message events sent to URL one after another
(answered with `ok` once every one got a 200, else the first other status). Ends at end of input."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time

import aiohttp

from bot.bench.fake_anthropic import FakeMessagesAPI
from bot.bench.fake_slack import FakeSlack
from bot.bench.runner import CUSTOMER_TEAM, event_envelope, signed

_SEQ = itertools.count(1)


def _event() -> str:
    n = next(_SEQ)
    ts = f"{int(time.time())}.{n:06d}"
    event = {
        "type": "message",
        "user": f"U_PARTS{n % 50}",
        "team": CUSTOMER_TEAM,
        "user_team": CUSTOMER_TEAM,
        "channel": f"C_PARTS{n % 10}",
        "ts": ts,
        "event_ts": ts,
        "text": "Hi, my kettle from order ORD-70001 arrived broken. I'd like a refund.",
        "channel_type": "channel",
    }
    return json.dumps(event_envelope(event, f"EvP{n:08d}"))


async def _post(http: aiohttp.ClientSession, url: str, n: int) -> str:
    for _ in range(n):
        body = _event()
        headers = {"Content-Type": "application/json", **signed(body)}
        async with http.post(url, data=body, headers=headers) as resp:
            await resp.read()
            if resp.status != 200:
                return f"status {resp.status}"
    return "ok"


async def main() -> None:
    slack, api = FakeSlack(), FakeMessagesAPI(record=False)
    await slack.start()
    await api.start()
    print(json.dumps({"slack": slack.url, "anthropic": api.url}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with aiohttp.ClientSession() as http:
        while line := (await reader.readline()).decode().split():
            answer = await _post(http, line[1], int(line[2])) if line[0] == "post" else f"unknown {line[0]}"
            print(answer, flush=True)
    await slack.close()
    await api.close()


if __name__ == "__main__":
    asyncio.run(main())
