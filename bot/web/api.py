"""The HTTP chat API for a website's support widget, served beside /slack/events: the same agent,
guards and store as Slack, with the turn machinery in `bot.web.turns`.

    POST /api/chat                          a message in; the guarded reply and the session's state out
    POST /api/turns                         start a turn; returns its id at once
    GET  /api/turns/{turn_id}/events        its events as Server-Sent Events, re-readable (Last-Event-ID)
    POST /api/refunds/{refund_id}/confirm   the customer's Confirm (and /cancel) for a prepared refund
    GET  /api/health, /api/openapi.json

Identity (`bot.web.identity`): a signed customer token, or an anonymous visitor's opaque id. A
session, its turns and its refunds answer only to the identity that created the session; to
anyone else they do not exist (404). Requests are bounded (`bot.web.limits`): a body must arrive
within HTTP_BODY_TIMEOUT_S (else 408), be at most 16 KiB (413) and nest at most a few levels
(400); a state-changing request must say `Content-Type: application/json` (else 415: a content
type no foreign page can send without a CORS preflight); each identity is rate-limited (a
counter in the store, so every replica sees the same count), with event-stream reads in a bucket
of their own; an anonymous visitor's also per client address, and the new tickets its address
opens per hour are capped (`bot.web.turns`).
Cross-origin browsers are served per CHAT_ALLOWED_ORIGINS (`bot.web.cors`).

Errors are JSON `{"error": {"code", "message"}}`; the codes are this API's own, never the tools'.
While the store is unreachable every route answers 503 `unavailable` with Retry-After.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Literal

from aiohttp import web
from pydantic import ValidationError

from bot.host import Host
from bot.web import cors
from bot.web.events import CitationData, ConfirmationData, SessionState, message
from bot.web.identity import Identity, identify
from bot.web.limits import (
    LIMITS,
    RATE_WINDOW_S,
    BadJson,
    BodyTimeout,
    BodyTooLarge,
    Bucket,
    bucket_subject,
    parse_json,
    read_body,
)
from bot.web.openapi import openapi
from bot.web.schemas import (
    MAX_BODY_BYTES,
    ChatRequest,
    ChatResponse,
    ErrorBody,
    ErrorResponse,
    Health,
    TurnAccepted,
)
from bot.web.turns import TurnLog
from desk import outbox, turnlog
from desk.outbox import Row
from desk.sessions import open_session
from desk.turnlog import Stored, Turn, TurnRef
from storage import metrics
from storage.engine import is_unavailable
from storage.ratelimit import hit

log = logging.getLogger(__name__)
WEB_API: web.AppKey[WebApi] = web.AppKey("web_api")


def preferred_language(request: web.Request) -> str | None:
    """The first language of the Accept-Language header ("es-MX,es;q=0.9" -> "es-MX"), if any."""
    header = request.headers.get("Accept-Language", "")[:200]
    first = header.split(",", 1)[0].split(";", 1)[0].strip()
    return first if first and first != "*" else None


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = ErrorResponse(error=ErrorBody(code=code, message=message)).model_dump()
    return web.json_response(body, status=status, headers=headers)


_AIOHTTP_ERRORS = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
UNAVAILABLE_RETRY_S = 5
STREAM_RETRY_S = 10


@web.middleware
async def json_errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
    """Under /api every error is JSON, and nothing internal (an exception's text) gets out."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as exc:
        return _error_response(exc.status, exc.code, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return _error_response(exc.status, _AIOHTTP_ERRORS.get(exc.status, "http_error"), exc.reason, allow)
    except Exception as exc:
        if is_unavailable(exc):
            log.warning(
                "web api: %s %s: the store is unavailable (%s)", request.method, request.path, type(exc).__name__
            )
            return _error_response(
                503,
                "unavailable",
                "The service is briefly unavailable. Please try again in a few seconds.",
                {"Retry-After": str(UNAVAILABLE_RETRY_S)},
            )
        log.exception("web api: %s %s failed", request.method, request.path)
        return _error_response(500, "internal_error", "Something went wrong on our side. Please try again.")


@web.middleware
async def json_only(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
    """A state-changing request under /api takes JSON only: a browser sends any other content type
    across origins as a "simple request", without asking CHAT_ALLOWED_ORIGINS first."""
    changes = request.path.startswith("/api/") and request.method not in ("GET", "HEAD", "OPTIONS")
    if changes and request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send the request with Content-Type: application/json.")
    return await handler(request)


# --- the routes -------------------------------------------------------------------------------------
def _sse(event: Stored) -> bytes:
    data = json.dumps(event.data, separators=(",", ":"))
    return f"id: {event.seq}\nevent: {event.kind}\ndata: {data}\n\n".encode()


def _sse_row(row: Row) -> bytes:
    data = message(row).model_dump_json()
    return f"id: {row.id}\nevent: message\ndata: {data}\n\n".encode()


def _last_event_id(request: web.Request) -> int:
    last = request.headers.get("Last-Event-ID", "").strip()
    return int(last) if re.fullmatch(r"\d{1,12}", last, re.ASCII) else 0


class StreamGate:
    """How many event streams are open, per visitor identity, per client address and in all: a
    new stream past a cap is refused (429), so one client cannot hold the process's streams."""

    def __init__(self, *, per_client: int, total: int) -> None:
        self.per_client, self.total = per_client, total
        self.open: dict[str, int] = {}
        self.count = 0

    def keys(self, who: Identity) -> list[str]:
        return [f"id:{who.subject}", *([f"addr:{who.client}"] if who.client else [])]

    @contextlib.contextmanager
    def hold(self, who: Identity) -> Iterator[None]:
        keys = self.keys(who)
        if self.count >= self.total or any(self.open.get(k, 0) >= self.per_client for k in keys):
            metrics.WEB_RATE_LIMITED.labels("streams").inc()
            raise ApiError(
                429,
                "too_many_streams",
                "Too many open event streams. Close one, or wait a moment and try again.",
                {"Retry-After": str(STREAM_RETRY_S), **who.headers()},
            )
        self.count += 1
        for k in keys:
            self.open[k] = self.open.get(k, 0) + 1
        try:
            yield
        finally:
            self.count -= 1
            for k in keys:
                self.open[k] -= 1
                if not self.open[k]:
                    del self.open[k]


class WebApi:
    def __init__(self, rt: Host) -> None:
        self.rt = rt
        self.turns = TurnLog(rt)
        self.spec = openapi()
        st = rt.settings
        self.streams = StreamGate(per_client=st.chat_streams_per_client, total=st.chat_streams_max)

    async def caller(self, request: web.Request, bucket: Bucket = "chat") -> Identity:
        who = await identify(self.rt, request)
        limits = [("identity", bucket_subject(who.subject, bucket), LIMITS[bucket])]
        if who.client is not None:  # an anonymous visitor: a new id is free, an address is not (one bucket)
            limits.append(("address", f"web:addr:{who.client}", self.rt.settings.chat_anonymous_requests_per_minute))
        now = self.rt.clock.now()
        for by, subject, limit in limits:
            wait = await hit(self.rt.store, subject=subject, now=now, limit=limit, window_s=RATE_WINDOW_S)
            if wait:
                metrics.WEB_RATE_LIMITED.labels(by).inc()
                headers = {"Retry-After": str(math.ceil(wait)), **who.headers()}
                raise ApiError(429, "rate_limited", "Too many requests. Please wait a moment and try again.", headers)
        return who

    async def body(self, request: web.Request) -> ChatRequest:
        try:
            raw = await read_body(request, limit=MAX_BODY_BYTES, timeout_s=self.rt.settings.http_body_timeout_s)
            data = parse_json(raw)
        except BodyTooLarge:
            raise ApiError(413, "body_too_large", f"The request body is larger than {MAX_BODY_BYTES} bytes.") from None
        except BodyTimeout:
            raise ApiError(408, "body_timeout", "The request body took too long to arrive.") from None
        except BadJson:
            raise ApiError(400, "invalid_json", "The request body is not valid JSON.") from None
        try:
            return ChatRequest.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = (".".join(str(p) for p in first["loc"]) or "body")[:64]
            code = "message_too_long" if first["loc"] == ("message",) and first["type"] == "string_too_long" else ""
            raise ApiError(422, code or "invalid_request", f"{where}: {first['msg']}") from None

    async def session(self, who: Identity, session_id: str | None, *, locale: str | None = None) -> str:
        """The caller's session: a new one, or theirs; anyone else's does not exist. A new one keeps
        the visitor's preferred language (Accept-Language) for the help center."""
        if session_id is None:
            return (await open_session(self.rt.deps, channel="web", actor=who.actor, locale=locale)).session_id
        found = await turnlog.owned_session(self.rt.deps, session_id, subject=who.subject, channel="web")
        if found is None:
            raise ApiError(404, "session_not_found", "No such session for this visitor.")
        return found

    async def owned_turn(self, who: Identity, key: str) -> Turn:
        turn = await turnlog.owned_turn(self.rt.deps, key, subject=who.subject)
        if turn is None:
            raise ApiError(404, "turn_not_found", "No such turn for this visitor.")
        return turn

    async def answer(self, who: Identity, turn: TurnRef) -> web.Response:
        """Wait for the turn (a worker runs it, on this replica or another, whatever happens to this
        request) and answer with what it stored, plus the support team's messages not yet shown."""
        events = [e async for e in self.turns.follow(turn.id, after=0) if e is not None]
        done = next((e for e in events if e.kind == "done"), None)
        unseen = await outbox.for_session(self.rt.deps, turn.session_id, undelivered=True)
        if done is None:  # shutting down
            raise ApiError(503, "unavailable", "The service is restarting. Please try again.")
        texts = {kind: [str(e.data["text"]) for e in events if e.kind == kind] for kind in ("reply", "status", "error")}
        confirmations = [e.data for e in events if e.kind == "confirmation"]
        cited = {c["article_id"]: c for e in events if e.kind == "reply" for c in e.data.get("citations", [])}
        body = ChatResponse(
            session_id=turn.session_id,
            turn_id=turn.key,
            identity=who.view(),
            reply=" ".join(texts["reply"] or texts["error"]),
            citations=[CitationData.model_validate(c) for c in cited.values()],
            status=texts["status"],
            confirmation=ConfirmationData.model_validate(confirmations[-1]) if confirmations else None,
            failed=bool(texts["error"]),
            state=SessionState.model_validate(done.data["state"]),
            messages=[message(r) for r in unseen],
        )
        await outbox.delivered(self.rt.deps, [r.id for r in unseen])
        return web.json_response(body.model_dump(mode="json"), headers=who.headers())

    async def chat(self, request: web.Request) -> web.Response:
        who = await self.caller(request)
        req = await self.body(request)
        session_id = await self.session(who, req.session_id, locale=preferred_language(request))
        turn = await self.turns.create(session_id, kind="message", text=req.message, client=who.client)
        return await self.answer(who, turn)

    async def start_turn(self, request: web.Request) -> web.Response:
        who = await self.caller(request)
        req = await self.body(request)
        session_id = await self.session(who, req.session_id, locale=preferred_language(request))
        turn = await self.turns.create(session_id, kind="message", text=req.message, client=who.client)
        body = TurnAccepted(
            session_id=session_id,
            turn_id=turn.key,
            events_url=f"/api/turns/{turn.key}/events",
            session_events_url=f"/api/sessions/{session_id}/events",
            identity=who.view(),
        )
        return web.json_response(body.model_dump(mode="json"), status=202, headers=who.headers())

    async def events(self, request: web.Request) -> web.StreamResponse:
        who = await self.caller(request, "read")
        turn = await self.owned_turn(who, request.match_info["turn_id"])
        with self.streams.hold(who):
            stream = self.turns.follow(turn.id, after=_last_event_id(request))
            chunks = ((b": keep-alive\n\n" if e is None else _sse(e)) async for e in stream)
            return await self._stream(request, who, chunks)

    async def session_events(self, request: web.Request) -> web.StreamResponse:
        """The session's message log as SSE: every reply, and the support team's replies and notices
        as they are written, on any replica."""
        who = await self.caller(request, "read")  # a reconnecting widget spends reads, never messages
        session_id = await self.session(who, request.match_info["session_id"])
        with self.streams.hold(who):
            stream = self.turns.follow_session(session_id, after=_last_event_id(request))
            chunks = ((b": keep-alive\n\n" if r is None else _sse_row(r)) async for r in stream)
            return await self._stream(request, who, chunks)

    async def _stream(self, request: web.Request, who: Identity, chunks: AsyncIterator[bytes]) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
                **who.headers(),
            }
        )
        await resp.prepare(request)
        try:
            async for chunk in chunks:
                await resp.write(chunk)
            await resp.write_eof()
        except ConnectionResetError:  # the reader went away; the turn goes on, and can be re-read
            pass
        except Exception:  # the stream is open: end it; the reader comes back with Last-Event-ID
            log.exception("web api: an event stream of %s failed", request.path)
        return resp

    async def decide(self, request: web.Request, kind: Literal["confirm", "cancel"]) -> web.Response:
        who = await self.caller(request)
        refund_id = request.match_info["refund_id"]
        found = await turnlog.owned_refund(self.rt.deps, refund_id, subject=who.subject, channel="web")
        if found is None:
            raise ApiError(404, "refund_not_found", "No such refund for this visitor.")
        turn = await self.turns.create(found[1], kind=kind, text="", refund_id=found[0], client=who.client)
        return await self.answer(who, turn)

    async def confirm(self, request: web.Request) -> web.Response:
        return await self.decide(request, "confirm")

    async def cancel(self, request: web.Request) -> web.Response:
        return await self.decide(request, "cancel")

    async def health(self, request: web.Request) -> web.Response:
        ok = await self.rt.store.ping()
        return web.json_response(Health(ok=ok).model_dump(), status=200 if ok else 503)

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(self.spec)


def add_routes(app: web.Application, rt: Host) -> None:
    """Mount /api/* on the bot's HTTP server."""
    api = app[WEB_API] = WebApi(rt)
    cors.install(app, origins=rt.settings.chat_allowed_origins)  # outermost: preflights never reach a route
    app.middlewares.append(json_errors)
    app.middlewares.append(json_only)
    app.router.add_post("/api/chat", api.chat)
    app.router.add_post("/api/turns", api.start_turn)
    app.router.add_get("/api/turns/{turn_id}/events", api.events)
    app.router.add_get("/api/sessions/{session_id}/events", api.session_events)
    app.router.add_post("/api/refunds/{refund_id}/confirm", api.confirm)
    app.router.add_post("/api/refunds/{refund_id}/cancel", api.cancel)
    app.router.add_get("/api/health", api.health)
    app.router.add_get("/api/openapi.json", api.openapi)

    async def close(_: web.Application) -> None:
        await api.turns.close()

    app.on_shutdown.append(close)
