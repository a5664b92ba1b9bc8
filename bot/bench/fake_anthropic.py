"""A local Messages API on 127.0.0.1 for the real `anthropic` SDK.

It records every request body, answers from a responder (a function of the request), marks as
cache reads the prefix that repeats an earlier request's up to a `cache_control` breakpoint, and
injects faults on demand: 429 with retry-after, 529, 500, or a hang past the client's timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

Answer = tuple[list[dict[str, Any]], str]
Responder = Callable[[dict[str, Any]], Answer | Awaitable[Answer]]


def tokens(value: Any) -> int:
    return max(1, len(json.dumps(value, sort_keys=True)) // 4)


def _strip_cache(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_cache(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_strip_cache(v) for v in value]
    return value


def segments(body: dict[str, Any]) -> list[tuple[Any, bool]]:
    """The request in cache order (tools, system, messages), each block with "has a breakpoint"."""
    out: list[tuple[Any, bool]] = [(t, "cache_control" in t) for t in body.get("tools", [])]
    system = body.get("system", [])
    if isinstance(system, str):
        system = [{"type": "text", "text": system}]
    out += [(b, "cache_control" in b) for b in system]
    for m in body.get("messages", []):
        content = m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]
        out += [({"role": m["role"], **b}, "cache_control" in b) for b in content]
    return out


class FakeMessagesAPI:
    def __init__(
        self,
        responder: Responder | None = None,
        *,
        min_cacheable: int = 1024,
        latency: float = 0.0,
        record: bool = True,
    ) -> None:
        self.responder = responder or (lambda body: ([{"type": "text", "text": "Hello from the fake."}], "end_turn"))
        self.min_cacheable = min_cacheable
        self.latency = latency
        self.requests: list[dict[str, Any]] = []
        self.usage: list[dict[str, int]] = []  # what each answer reported, in order
        self.asked: list[str] = []  # each request's newest customer words (which turn made the call)
        self.headers: list[dict[str, str]] = []
        self.record = record
        self.faults: list[str] = []  # "429" | "529" | "500" | "hang", consumed one per request
        self.cached: set[str] = set()
        self.ids = itertools.count(1)
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    async def start(self) -> str:
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_post("/v1/messages", self._messages)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        self._closing.set()  # releases hanging handlers so shutdown need not wait for them
        if self._runner:
            await self._runner.cleanup()

    def _usage(self, body: dict[str, Any]) -> dict[str, int]:
        """Prompt-caching arithmetic as the API documents it: at each breakpoint the cache is looked
        up at that block boundary and up to 20 boundaries before it; the prefix up to the last
        breakpoint is written. Prefixes under `min_cacheable` tokens are never cached."""
        segs = segments(body)
        running, digest = 0, hashlib.sha256()
        bounds: list[tuple[int, str, bool]] = []  # (tokens so far, prefix hash, is a breakpoint)
        for seg, bp in segs:
            digest.update(json.dumps(_strip_cache(seg), sort_keys=True).encode())
            running += tokens(_strip_cache(seg))
            bounds.append((running, digest.copy().hexdigest(), bp))
        read = write_upto = 0
        for i, (upto, _key, bp) in enumerate(bounds):
            if not bp or upto < self.min_cacheable:
                continue
            for back in range(i, max(-1, i - 21), -1):
                if bounds[back][1] in self.cached:
                    read = max(read, bounds[back][0])
                    break
            write_upto = max(write_upto, upto)
        for upto, key, bp in bounds:
            if bp and upto >= self.min_cacheable:
                self.cached.add(key)
        write = max(0, write_upto - read)
        return {
            "input_tokens": running - read - write,
            "cache_read_input_tokens": read,
            "cache_creation_input_tokens": write,
        }

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.asked.append(_newest_words(body))
        if self.record:  # a long benchmark keeps only the usage, not every body
            self.requests.append(body)
            self.headers.append({k.lower(): v for k, v in request.headers.items()})
        fault = self.faults.pop(0) if self.faults else None
        if fault == "hang":
            await self._closing.wait()  # never answers in time; the client's timeout ends the request
            return web.Response(status=499)
        if fault in ("429", "529", "500"):
            kind = {"429": "rate_limit_error", "529": "overloaded_error", "500": "api_error"}[fault]
            return web.json_response(
                {"type": "error", "error": {"type": kind, "message": "injected"}},
                status=int(fault),
                headers={"retry-after-ms": "5", "retry-after": "0"},
            )
        if self.latency:
            await asyncio.sleep(self.latency)  # the model's thinking time, not synchronization
        answer = self.responder(body)
        content, stop = await answer if inspect.isawaitable(answer) else answer
        usage = self._usage(body)
        usage["output_tokens"] = tokens(content)
        self.usage.append(dict(usage))
        return web.json_response(
            {
                "id": f"msg_{next(self.ids):08d}",
                "type": "message",
                "role": "assistant",
                "model": body.get("model", "fake"),
                "content": content,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": usage,
            }
        )


def _newest_words(body: dict[str, Any]) -> str:
    """The last text a user message of the request holds (the customer's words, not tool results)."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") != "user" or not isinstance(message.get("content"), list):
            continue
        texts = [b.get("text", "") for b in message["content"] if b.get("type") == "text"]
        if texts:
            return str(texts[-1])[:200]
    return ""
