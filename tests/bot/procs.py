"""Real `supportbot run --http` processes for crash and multi-replica tests."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

from bot.bench.runner import start_replica
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
        "INBOX_LEASE_SECONDS": "3",
        "INBOX_POLL_SECONDS": "0.05",
        "COALESCE_SECONDS": "0",  # these tests follow each message's own turn; bursts are tested in process
        "LOG_LEVEL": "WARNING",
        **{k: str(v) for k, v in env.items()},
    }
    replica = await start_replica(full)  # the benchmark's own starter: one way to run the app
    return Proc(replica.proc, replica.url, replica.log)
