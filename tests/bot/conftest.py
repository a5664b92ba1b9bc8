"""The real Bolt app behind its real HTTP server, driven by signed requests in Slack's payload
shapes, talking to a fake Slack Web API. Only the network edges are fakes."""

from __future__ import annotations

import itertools
import json
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr
from slack_sdk.signature import SignatureVerifier

from agent.model import Model
from agent.offline import OfflineModel
from bot.server import admin_app, runner_options, web_app
from bot.slack.runtime import Runtime
from storage.engine import Store
from storage.importer import seed
from storage.kb_import import seed_help_center
from storage.settings import Settings
from storage.types import Clock, SystemClock
from tests.fakes.slack_api import BOT_USER, HOME_TEAM, FakeSlack

SECRET = "test-signing-secret"
CUSTOMER_TEAM = "T_CUSTOMER"  # the other organization in the Slack Connect channel
SUPPORT = "C_SUPPORT"
STAFF_CHANNEL = "C_STAFF"
SARAH, JAMES, HIDDEN = "U_SARAH", "U_JAMES", "U_HIDDEN"
AGENT_ANA, COLLEAGUE = "U_ANA", "U_COLLEAGUE"
_ids = itertools.count(1)


def new_ts() -> str:
    n = next(_ids)
    return f"{1_700_000_000 + n}.{n:06d}"


def sign(body: str, *, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    ts = str(timestamp if timestamp is not None else int(time.time()))
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": SignatureVerifier(secret).generate_signature(timestamp=ts, body=body),
    }


def message_event(
    text: str,
    *,
    user: str = SARAH,
    team: str = CUSTOMER_TEAM,
    channel: str = SUPPORT,
    ts: str | None = None,
    thread_ts: str | None = None,
    kind: str = "message",
    **extra: Any,
) -> dict[str, Any]:
    ts = ts or new_ts()
    event = {
        "type": kind,
        "user": user,
        "team": team,
        "user_team": team,
        "source_team": team,
        "user_profile": {"team": team},
        "channel": channel,
        "ts": ts,
        "event_ts": ts,
        "text": text,
        "channel_type": "channel",
        **extra,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def envelope(
    event: dict[str, Any], *, event_id: str | None = None, envelope_team: str = CUSTOMER_TEAM
) -> dict[str, Any]:
    """A Slack Connect envelope: team_id is the other org; authorizations names the installing team."""
    return {
        "token": "legacy",
        "team_id": envelope_team,
        "api_app_id": "A_SUPPORTBOT",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{next(_ids):08d}",
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": HOME_TEAM,
                "user_id": BOT_USER,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": True,
    }


@dataclass
class Bot:
    rt: Runtime
    url: str
    slack: FakeSlack
    http: aiohttp.ClientSession
    runner: web.AppRunner
    admin: web.AppRunner  # the operator listener: /metrics
    admin_url: str
    sent: list[dict[str, Any]] = field(default_factory=list)

    async def post(self, body: str, headers: dict[str, str]) -> aiohttp.ClientResponse:
        async with self.http.post(f"{self.url}/slack/events", data=body.encode(), headers=headers) as resp:
            await resp.read()
            return resp

    async def event(
        self,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        retry: int | None = None,
        envelope_team: str = CUSTOMER_TEAM,
    ) -> tuple[int, dict[str, Any]]:
        env = envelope(event, event_id=event_id, envelope_team=envelope_team)
        body = json.dumps(env)
        headers = {"Content-Type": "application/json", **sign(body)}
        if retry:
            headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
        resp = await self.post(body, headers)
        return resp.status, env

    async def say(self, text: str, **kwargs: Any) -> dict[str, Any]:
        """A customer message; returns the event."""
        event = message_event(text, **kwargs)
        status, _ = await self.event(event)
        assert status == 200
        return event

    async def click(
        self,
        action_id: str,
        value: str,
        *,
        user: str,
        team: str,
        channel: str,
        message_ts: str,
        thread_ts: str | None = None,
    ) -> int:
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": user, "name": user, "team_id": team},
            "api_app_id": "A_SUPPORTBOT",
            "token": "legacy",
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel,
                "is_ephemeral": False,
                **({"thread_ts": thread_ts} if thread_ts else {}),
            },
            "trigger_id": f"{next(_ids)}.trigger",
            "team": {"id": team, "domain": "x"},
            "channel": {"id": channel, "name": "support"},
            "message": {"ts": message_ts, "thread_ts": thread_ts, "type": "message"},
            "response_url": self.slack.response_url(f"action{next(_ids)}"),
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": "b",
                    "value": value,
                    "type": "button",
                    "action_ts": str(time.time()),
                }
            ],
        }
        body = "payload=" + urllib.parse.quote(json.dumps(payload))
        headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body)}
        return (await self.post(body, headers)).status

    async def command(self, text: str, *, user: str, team: str, key: str = "cmd") -> int:
        form = {
            "token": "legacy",
            "team_id": team,
            "team_domain": "x",
            "channel_id": SUPPORT,
            "channel_name": "support",
            "user_id": user,
            "user_name": user,
            "command": "/refund-status",
            "text": text,
            "response_url": self.slack.response_url(key),
            "trigger_id": "1.2.3",
        }
        body = urllib.parse.urlencode(form)
        headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body)}
        return (await self.post(body, headers)).status

    def replies(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        root = event.get("thread_ts") or event["ts"]
        return self.slack.posts(channel=event["channel"], thread_ts=root)

    async def wait_replies(self, event: dict[str, Any], n: int = 1) -> list[dict[str, Any]]:
        return await self.slack.wait_for(lambda: len(self.replies(event)) >= n and self.replies(event))


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(staff_channel=STAFF_CHANNEL)
    await fake.start()
    fake.add_user(SARAH, team=CUSTOMER_TEAM, email="sarah@example.com", name="sarah")
    fake.add_user(JAMES, team=CUSTOMER_TEAM, email="james@example.com", name="james")
    fake.add_user(HIDDEN, team=CUSTOMER_TEAM, email=None, name="hidden")
    fake.add_user(AGENT_ANA, team=HOME_TEAM, email="ana@acme.example", name="ana")
    fake.add_user(COLLEAGUE, team=HOME_TEAM, email="col@acme.example", name="colleague")
    fake.channel_members[STAFF_CHANNEL] = [AGENT_ANA, "U_BEN"]
    fake.add_user("U_BEN", team=HOME_TEAM, email="ben@acme.example", name="ben")
    yield fake
    await fake.close()


def bot_settings(settings: Settings, slack: FakeSlack, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "slack_bot_token": SecretStr("xoxb-test"),
        "slack_signing_secret": SecretStr(SECRET),
        "slack_api_url": slack.api_url,
        "support_staff_channel": STAFF_CHANNEL,
        "inbox_poll_seconds": 0.05,
        "inbox_lease_seconds": 5.0,
        "worker_concurrency": 4,
        "model_provider": "offline",
    }
    values.update(overrides)
    return settings.model_copy(update=values)


async def start_bot(
    settings: Settings,
    store: Store,
    slack: FakeSlack,
    *,
    model: Model | None = None,
    clock: Clock | None = None,
    workers: bool = True,
) -> Bot:
    await seed(store, clock or SystemClock())
    await seed_help_center(
        store, clock or SystemClock(), base_url=settings.help_center_url, return_window_days=settings.return_window_days
    )
    rt = Runtime.create(settings, store=store, model=model or OfflineModel(), clock=clock)
    await rt.identify()
    runner = web.AppRunner(web_app(rt), **runner_options(keepalive_s=settings.http_keepalive_timeout_s))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    admin = web.AppRunner(admin_app(rt.host), handle_signals=False, access_log=None)
    await admin.setup()
    admin_site = web.TCPSite(admin, "127.0.0.1", 0)
    await admin_site.start()
    admin_url = f"http://127.0.0.1:{admin_site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    if workers:
        rt.workers.start()
    return Bot(rt, url, slack, aiohttp.ClientSession(), runner, admin, admin_url)


async def stop_bot(bot: Bot) -> None:
    await bot.rt.workers.stop()
    await bot.rt.drain()
    await bot.http.close()
    await bot.runner.cleanup()
    await bot.admin.cleanup()


@pytest.fixture
async def bot(settings: Settings, store: Store, slack: FakeSlack) -> AsyncIterator[Bot]:
    b = await start_bot(bot_settings(settings, slack), store, slack)
    yield b
    await stop_bot(b)
