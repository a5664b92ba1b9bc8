"""A local Slack Web API on 127.0.0.1 for the real `slack_sdk` / `slack_bolt` clients.

Records every call and body; keeps the messages it was sent so `conversations.replies` can find
them (metadata included); knows users (team, email, or hidden email) and the staff channel's
members; answers 429 (with Retry-After) or 500 on demand (`fail_next`, or `inject` with a
`Fault` that picks which calls it hits, for the chaos soak's schedule of faults); optionally
enforces Slack's published rate limits per method and channel. Tests wait on
`wait_for(predicate)`, never on sleeps.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.slack.limits import LIMITS

HOME_TEAM = "T_HOME"
BOT_USER = "U_BOT"


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


@dataclass
class Fault:
    """The next `times` calls of `method` that `where(args)` accepts (every call without one) are
    answered `status` with Retry-After `retry_after` seconds."""

    method: str
    status: int = 429
    retry_after: int = 0
    times: int = 1
    where: Callable[[dict[str, Any]], bool] | None = None
    served: int = 0

    @property
    def spent(self) -> bool:
        return self.served >= self.times


def is_reply(args: dict[str, Any]) -> bool:
    """A post that carries the bot's reply metadata: a customer reply, not a ticket or notice."""
    return bool(args.get("metadata"))


@dataclass
class Bucket:
    """A token bucket: `rate` calls per second with a short `burst`."""

    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = field(default_factory=time.monotonic)

    def take(self) -> float:
        """0 when allowed now, else the seconds to wait (Retry-After)."""
        now = time.monotonic()
        if self.tokens < 0:
            self.tokens = self.burst
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


DEFAULT_LIMITS = LIMITS  # the one table the pacer also keeps to


class FakeSlack:
    def __init__(self, *, staff_channel: str = "C_STAFF", rate_limits: bool = False) -> None:
        self.calls: list[Call] = []
        self.messages: list[dict[str, Any]] = []
        self.by_thread: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (channel, thread_ts) -> posts
        self._thread_events: dict[tuple[str, str], asyncio.Event] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.channel_members: dict[str, list[str]] = {staff_channel: []}
        self.faults: dict[str, list[tuple[int, int]]] = {}  # method -> [(status, retry_after)]
        self.injected: list[Fault] = []  # selective faults, served in order, each `times` times
        self.served_faults: list[tuple[float, str, int]] = []  # (monotonic time, method, status)
        self.responses: list[dict[str, Any]] = []  # bodies posted to response_url
        self.broken_users: set[str] = set()  # users.info always fails for these (a poison message)
        self.rate_limits = rate_limits
        self.buckets: dict[tuple[str, str], Bucket] = {}
        self.limited = 0
        self.ts = itertools.count(1)
        self.url = ""
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    # --- setup -----------------------------------------------------------------------------------
    def add_user(self, user: str, *, team: str, email: str | None = None, name: str | None = None) -> None:
        profile = {"email": email} if email else {}
        self.users[user] = {"id": user, "team_id": team, "name": name or user, "profile": profile}

    def fail_next(self, method: str, status: int = 429, *, times: int = 1, retry_after: int = 0) -> None:
        self.faults.setdefault(method, []).extend([(status, retry_after)] * times)

    def inject(self, fault: Fault) -> Fault:
        """Arm a fault; `wait_for(lambda: fault.spent)` waits until it has been served."""
        self.injected.append(fault)
        return fault

    def _fault_for(self, method: str, args: dict[str, Any]) -> tuple[int, int] | None:
        queued = self.faults.get(method)
        if queued:
            return queued.pop(0)
        for fault in self.injected:
            if fault.method == method and not fault.spent and (fault.where is None or fault.where(args)):
                fault.served += 1
                return fault.status, fault.retry_after
        return None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{key}", self._response_url)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self.url

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def response_url(self, key: str = "r1") -> str:
        return f"{self.url}/response/{key}"

    async def close(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    # --- observing ---------------------------------------------------------------------------------
    def called(self, method: str) -> list[dict[str, Any]]:
        return [c.args for c in self.calls if c.method == method]

    def posts(self, channel: str | None = None, thread_ts: str | None = None) -> list[dict[str, Any]]:
        if channel is not None and thread_ts is not None:
            return list(self.by_thread.get((channel, thread_ts), []))
        return [
            m
            for m in self.messages
            if (channel is None or m["channel"] == channel) and (thread_ts is None or m.get("thread_ts") == thread_ts)
        ]

    async def wait_for(self, predicate: Callable[[], Any], limit: float = 60.0) -> Any:
        """Until `predicate()` is truthy (re-checked on every call the fake serves); at most `limit` s
        (a hang guard, generous for a loaded machine: waiting ends as soon as the predicate holds)."""
        async with asyncio.timeout(limit), self._changed:
            while not (result := predicate()):
                await self._changed.wait()
            return result

    async def wait_thread(
        self, channel: str, thread_ts: str, predicate: Callable[[list[dict[str, Any]]], Any], limit: float = 60.0
    ) -> Any:
        """Until `predicate(posts in that thread)` is truthy: woken only by posts to that thread."""
        async with asyncio.timeout(limit):
            while not (result := predicate(self.by_thread.get((channel, thread_ts), []))):
                event = self._thread_events.setdefault((channel, thread_ts), asyncio.Event())
                await event.wait()
            return result

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --- the API -----------------------------------------------------------------------------------
    async def _args(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                args.update(await request.json())
            else:
                form = await request.post()
                for k, v in form.items():
                    value: Any = v
                    if k in ("blocks", "metadata", "view", "attachments") and isinstance(v, str):
                        try:
                            value = json.loads(v)
                        except json.JSONDecodeError:
                            value = v
                    args[k] = value
        return args

    def _limit(self, method: str, args: dict[str, Any]) -> float:
        if not self.rate_limits or method not in DEFAULT_LIMITS:
            return 0.0
        rate, burst, per_channel = DEFAULT_LIMITS[method]
        key = (method, str(args.get("channel", "")) if per_channel else "")
        bucket = self.buckets.setdefault(key, Bucket(rate, burst))
        return bucket.take()

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await self._args(request)
        self.calls.append(Call(method, args))
        try:
            fault = self._fault_for(method, args)
            if fault:
                status, retry_after = fault
                self.served_faults.append((time.monotonic(), method, status))
                return web.json_response(
                    {"ok": False, "error": "ratelimited" if status == 429 else "internal_error"},
                    status=status,
                    headers={"Retry-After": str(retry_after)},
                )
            if method == "users.info" and args.get("user") in self.broken_users:
                return web.json_response({"ok": False, "error": "internal_error"}, status=500)
            wait = self._limit(method, args)
            if wait > 0:
                self.limited += 1
                return web.json_response(
                    {"ok": False, "error": "ratelimited"},
                    status=429,
                    headers={"Retry-After": str(max(1, int(wait + 0.999)))},
                )
            handler = getattr(self, "m_" + method.replace(".", "_"), None)
            if handler is None:
                return web.json_response({"ok": False, "error": "unknown_method"})
            return web.json_response({"ok": True, **handler(args)})
        finally:
            await self._notify()

    async def _response_url(self, request: web.Request) -> web.Response:
        self.responses.append({"key": request.match_info["key"], **(await request.json())})
        await self._notify()
        return web.Response(text="ok")

    def _new_ts(self) -> str:
        n = next(self.ts)
        return f"{1_800_000_000 + n}.{n:06d}"

    def m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"user_id": BOT_USER, "bot_id": "B_BOT", "team_id": HOME_TEAM, "team": "Acme", "user": "supportbot"}

    def m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        ts = self._new_ts()
        msg = {
            "ts": ts,
            "channel": args.get("channel"),
            "thread_ts": args.get("thread_ts"),
            "text": args.get("text"),
            "blocks": args.get("blocks"),
            "metadata": args.get("metadata"),
            "user": BOT_USER,
            "bot_id": "B_BOT",
            "at": time.monotonic(),
        }
        self.messages.append(msg)
        key = (str(msg["channel"]), str(msg["thread_ts"] or ts))
        self.by_thread.setdefault(key, []).append(msg)
        if key in self._thread_events:
            self._thread_events.pop(key).set()
        return {"channel": args.get("channel"), "ts": ts, "message": msg}

    def m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        for m in self.messages:
            if m["channel"] == args.get("channel") and m["ts"] == args.get("ts"):
                m.update({"text": args.get("text"), "blocks": args.get("blocks")})
        return {"channel": args.get("channel"), "ts": args.get("ts")}

    def m_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"message_ts": self._new_ts()}

    def m_chat_getPermalink(self, args: dict[str, Any]) -> dict[str, Any]:
        ts = str(args.get("message_ts", "")).replace(".", "")
        return {
            "channel": args.get("channel"),
            "permalink": f"https://acme.slack.com/archives/{args.get('channel')}/p{ts}",
        }

    def m_conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        root = args.get("ts")
        with_meta = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        found = []
        for m in self.messages:
            if m["channel"] == args.get("channel") and (m.get("thread_ts") == root or m["ts"] == root):
                copy = dict(m)
                if not with_meta:
                    copy.pop("metadata", None)
                found.append(copy)
        return {"messages": found, "has_more": False, "response_metadata": {"next_cursor": ""}}

    def m_conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        """A channel's top-level messages, newest first, from `oldest` on (Slack's order and filter)."""
        with_meta = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        oldest = float(args.get("oldest") or 0)
        found = []
        for m in reversed(self.messages):
            if m["channel"] == args.get("channel") and not m.get("thread_ts") and float(m["ts"]) > oldest:
                copy = dict(m)
                if not with_meta:
                    copy.pop("metadata", None)
                found.append(copy)
        return {"messages": found, "has_more": False, "response_metadata": {"next_cursor": ""}}

    def m_conversations_members(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "members": self.channel_members.get(str(args.get("channel")), []),
            "response_metadata": {"next_cursor": ""},
        }

    def m_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = str(args.get("user"))
        return {"user": self.users.get(user, {"id": user, "team_id": "T_UNKNOWN", "profile": {}})}

    def m_assistant_threads_setStatus(self, args: dict[str, Any]) -> dict[str, Any]:
        return {}

    def m_views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"view": {"id": "V1", **(args.get("view") or {})}}
