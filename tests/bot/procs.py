"""Real `supportbot run --http` processes for crash and multi-replica tests."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

from tests.bot.conftest import SECRET, STAFF_CHANNEL
from tests.fakes.slack_api import FakeSlack


@dataclass
class Proc:
    proc: asyncio.subprocess.Process
    url: str
    log: list[str]

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.terminate()
        return await self.proc.wait()


async def start(database_url: str, slack: FakeSlack, **env: Any) -> Proc:
    full = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "SLACK", "SUPPORT"))},
        "DATABASE_URL": database_url,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack.api_url,
        "SUPPORT_STAFF_CHANNEL": STAFF_CHANNEL,
        "MODEL_PROVIDER": "offline",
        "INBOX_LEASE_SECONDS": "1",
        "INBOX_POLL_SECONDS": "0.05",
        "LOG_LEVEL": "WARNING",
        **{k: str(v) for k, v in env.items()},
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        "--http",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=full,
    )
    assert proc.stdout is not None
    log: list[str] = []
    async with asyncio.timeout(60):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise AssertionError("supportbot run exited before listening:\n" + "".join(log))
            log.append(line)
            m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            if m:
                break

    async def drain() -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            log.append(line.decode())

    asyncio.get_running_loop().create_task(drain())  # noqa: RUF006 - ends with the process
    return Proc(proc, m.group(1), log)
