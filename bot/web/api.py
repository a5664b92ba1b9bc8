"""The HTTP chat API for a website's support widget, served beside /slack/events: the same agent,
guards and store as Slack, with the turn machinery in `bot.web.turns`.

    POST /api/chat                          a message in; the guarded reply and the session's state out
    POST /api/turns                         start a turn; returns its id at once
    GET  /api/turns/{turn_id}/events        its events as Server-Sent Events, re-readable (Last-Event-ID)
    POST /api/refunds/{refund_id}/confirm   the customer's Confirm (and /cancel) for a prepared refund
    GET  /api/health, /api/openapi.json

Identity: the host site vouches for its logged-in customer with `X-Customer-Token:
EMAIL|EXPIRY|SIG` (SIG = hex HMAC-SHA256 of `EMAIL|EXPIRY` under CHAT_IDENTITY_SECRET, EXPIRY a
Unix time at most a day ahead). Anything else is an anonymous visitor, `Actor.unverified`, known
by an opaque random id we issue (`X-Anonymous-Id`, sent back by the widget; only its hash is
stored). A session, its turns and its refunds answer only to the identity that created the
session; to anyone else they do not exist (404). Requests are size-limited and rate-limited per
identity (a counter in the store, so every replica sees the same count).

Errors are JSON `{"error": {"code", "message"}}`; the codes are this API's own, never the tools'.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.json_schema import models_json_schema

from bot.host import Host
from bot.web.turns import (
    EVENT_DATA,
    ConfirmationData,
    SessionState,
    Stored,
    TurnLog,
    TurnRef,
    hit,
)
from storage.models import ChatSession, Refund, WebTurn
from tools.context import Actor
from tools.sessions import customer_by_email, open_session

log = logging.getLogger(__name__)

TOKEN_HEADER, ANON_HEADER = "X-Customer-Token", "X-Anonymous-Id"
MAX_TOKEN_TTL_S = 24 * 3600  # "short-lived": a token valid for longer than this is refused
MAX_BODY_BYTES = 16 * 1024
MAX_MESSAGE_CHARS = 4000
RATE_LIMIT, RATE_WINDOW_S = 30, 60  # requests per identity per window
WEB_API: web.AppKey[WebApi] = web.AppKey("web_api")
ANON_ID = re.compile(r"[A-Za-z0-9_-]{32,64}")
TokenVerdict = Literal["verified", "absent", "expired", "invalid", "unknown_customer", "disabled"]


# --- request and response shapes (the OpenAPI schemas are generated from these) ----------------------
class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: str | None = Field(default=None, max_length=40)
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS, pattern=r"\S")

    @field_validator("message", "session_id")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        return value.replace("\x00", "") if value else value  # PostgreSQL text cannot hold NUL


class IdentityView(BaseModel):
    kind: Literal["customer", "anonymous"]
    token: TokenVerdict
    anonymous_id: str | None


class ChatResponse(BaseModel):
    session_id: str
    turn_id: str
    identity: IdentityView
    reply: str
    status: list[str]
    confirmation: ConfirmationData | None
    failed: bool
    state: SessionState


class TurnAccepted(BaseModel):
    session_id: str
    turn_id: str
    events_url: str
    identity: IdentityView


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    ok: bool


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = ErrorResponse(error=ErrorBody(code=code, message=message)).model_dump()
    return web.json_response(body, status=status, headers=headers)


_AIOHTTP_ERRORS = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


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
    except Exception:
        log.exception("web api: %s %s failed", request.method, request.path)
        return _error_response(500, "internal_error", "Something went wrong on our side. Please try again.")


# --- identity ---------------------------------------------------------------------------------------
def check_token(token: str, *, secret: bytes, now: int) -> tuple[TokenVerdict, str | None]:
    """`EMAIL|EXPIRY|SIG` → (verdict, email). The signature is compared in constant time first."""
    parts = token.rsplit("|", 2)
    if len(token) > 1024 or len(parts) != 3:
        return "invalid", None
    email, expiry, sig = parts
    expected = hmac.new(secret, f"{email}|{expiry}".encode(), hashlib.sha256).hexdigest().encode()
    if not hmac.compare_digest(expected, sig.strip().lower().encode()):
        return "invalid", None
    if not re.fullmatch(r"\d{1,12}", expiry, re.ASCII) or int(expiry) > now + MAX_TOKEN_TTL_S:
        return "invalid", None
    if int(expiry) <= now:
        return "expired", None
    return "verified", email


@dataclass(frozen=True, slots=True)
class Identity:
    subject: str  # what sessions are bound to (sessions.subject)
    actor: Actor
    token: TokenVerdict
    anonymous_id: str | None = None

    def view(self) -> IdentityView:
        kind: Literal["customer", "anonymous"] = "customer" if self.actor.kind == "customer" else "anonymous"
        return IdentityView(kind=kind, token=self.token, anonymous_id=self.anonymous_id)

    def headers(self) -> dict[str, str]:
        return {ANON_HEADER: self.anonymous_id} if self.anonymous_id else {}


async def identify(rt: Host, request: web.Request) -> Identity:
    raw = request.headers.get(TOKEN_HEADER)
    verdict: TokenVerdict = "absent"
    if raw is not None:
        secret = rt.settings.chat_identity_secret.get_secret_value() if rt.settings.chat_identity_secret else ""
        if not secret:
            verdict = "disabled"
        else:
            verdict, email = check_token(raw, secret=secret.encode(), now=int(rt.clock.now().timestamp()))
            if verdict == "verified" and email:
                customer = await customer_by_email(rt.deps, email)
                if customer is not None:
                    subject = f"web:customer:{customer.id}"
                    return Identity(subject, Actor.customer(customer.id, subject=subject), verdict)
                verdict = "unknown_customer"
    anon = request.headers.get(ANON_HEADER, "")
    if not ANON_ID.fullmatch(anon):
        anon = secrets.token_urlsafe(32)
    subject = "web:anon:" + hashlib.sha256(anon.encode()).hexdigest()[:40]
    return Identity(subject, Actor.unverified(subject), verdict, anon)


# --- the routes -------------------------------------------------------------------------------------
def _sse(event: Stored) -> bytes:
    data = json.dumps(event.data, separators=(",", ":"))
    return f"id: {event.seq}\nevent: {event.kind}\ndata: {data}\n\n".encode()


class WebApi:
    def __init__(self, rt: Host) -> None:
        self.rt = rt
        self.turns = TurnLog(
            deps=rt.deps,
            agent=rt.agent,
            owner=rt.owner,
            lease_s=rt.settings.inbox_lease_seconds,
            poll_s=rt.settings.inbox_poll_seconds,
        )
        self.spec = openapi()

    async def caller(self, request: web.Request) -> Identity:
        who = await identify(self.rt, request)
        wait = await hit(
            self.rt.store, subject=who.subject, now=self.rt.clock.now(), limit=RATE_LIMIT, window_s=RATE_WINDOW_S
        )
        if wait:
            headers = {"Retry-After": str(math.ceil(wait)), **who.headers()}
            raise ApiError(429, "rate_limited", "Too many requests. Please wait a moment and try again.", headers)
        return who

    async def body(self, request: web.Request) -> ChatRequest:
        if (request.content_length or 0) > MAX_BODY_BYTES:
            raise ApiError(413, "body_too_large", f"The request body is larger than {MAX_BODY_BYTES} bytes.")
        raw = await request.read()
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, "body_too_large", f"The request body is larger than {MAX_BODY_BYTES} bytes.")
        try:
            data = json.loads(raw or b"null")
        except ValueError:
            raise ApiError(400, "invalid_json", "The request body is not valid JSON.") from None
        try:
            return ChatRequest.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = (".".join(str(p) for p in first["loc"]) or "body")[:64]
            code = "message_too_long" if first["loc"] == ("message",) and first["type"] == "string_too_long" else ""
            raise ApiError(422, code or "invalid_request", f"{where}: {first['msg']}") from None

    async def session(self, who: Identity, session_id: str | None) -> str:
        """The caller's session: a new one, or theirs; anyone else's does not exist."""
        if session_id is None:
            return (await open_session(self.rt.deps, channel="web", actor=who.actor)).session_id
        async with self.rt.store.read() as s:
            row = await s.get(ChatSession, session_id)
        if row is None or row.channel != "web" or row.subject != who.subject:
            raise ApiError(404, "session_not_found", "No such session for this visitor.")
        return row.id

    async def owned_turn(self, who: Identity, key: str) -> WebTurn:
        turn = await self.turns.find(key)
        async with self.rt.store.read() as s:
            session = await s.get(ChatSession, turn.session_id) if turn else None
        if turn is None or session is None or session.subject != who.subject:
            raise ApiError(404, "turn_not_found", "No such turn for this visitor.")
        return turn

    async def answer(self, who: Identity, turn: TurnRef) -> web.Response:
        """Run the turn (in the background, so it finishes whatever happens to this request) and
        answer with what it stored."""
        self.turns.start(turn)
        events = [e async for e in self.turns.follow(turn.id, after=0) if e is not None]
        done = next((e for e in events if e.kind == "done"), None)
        if done is None:  # shutting down
            raise ApiError(503, "unavailable", "The service is restarting. Please try again.")
        texts = {kind: [str(e.data["text"]) for e in events if e.kind == kind] for kind in ("reply", "status", "error")}
        confirmations = [e.data for e in events if e.kind == "confirmation"]
        body = ChatResponse(
            session_id=turn.session_id,
            turn_id=turn.key,
            identity=who.view(),
            reply=" ".join(texts["reply"] or texts["error"]),
            status=texts["status"],
            confirmation=ConfirmationData.model_validate(confirmations[-1]) if confirmations else None,
            failed=bool(texts["error"]),
            state=SessionState.model_validate(done.data["state"]),
        )
        return web.json_response(body.model_dump(mode="json"), headers=who.headers())

    async def chat(self, request: web.Request) -> web.Response:
        who = await self.caller(request)
        req = await self.body(request)
        session_id = await self.session(who, req.session_id)
        return await self.answer(who, await self.turns.create(session_id, kind="message", text=req.message))

    async def start_turn(self, request: web.Request) -> web.Response:
        who = await self.caller(request)
        req = await self.body(request)
        session_id = await self.session(who, req.session_id)
        turn = await self.turns.create(session_id, kind="message", text=req.message)
        self.turns.start(turn)
        body = TurnAccepted(
            session_id=session_id, turn_id=turn.key, events_url=f"/api/turns/{turn.key}/events", identity=who.view()
        )
        return web.json_response(body.model_dump(mode="json"), status=202, headers=who.headers())

    async def events(self, request: web.Request) -> web.StreamResponse:
        who = await self.caller(request)
        turn = await self.owned_turn(who, request.match_info["turn_id"])
        last = request.headers.get("Last-Event-ID", "").strip()
        after = int(last) if re.fullmatch(r"\d{1,9}", last, re.ASCII) else 0
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
            async for event in self.turns.follow(turn.id, after=after):
                await resp.write(b": keep-alive\n\n" if event is None else _sse(event))
            await resp.write_eof()
        except ConnectionResetError:  # the reader went away; the turn goes on, and can be re-read
            pass
        except Exception:  # the stream is open: end it; the reader comes back with Last-Event-ID
            log.exception("web api: the event stream of %s failed", turn.key)
        return resp

    async def decide(self, request: web.Request, kind: Literal["confirm", "cancel"]) -> web.Response:
        who = await self.caller(request)
        refund_id = request.match_info["refund_id"]
        async with self.rt.store.read() as s:
            refund = await s.get(Refund, refund_id)
            session = await s.get(ChatSession, refund.session_id) if refund and refund.session_id else None
        if refund is None or session is None or session.channel != "web" or session.subject != who.subject:
            raise ApiError(404, "refund_not_found", "No such refund for this visitor.")
        return await self.answer(who, await self.turns.create(session.id, kind=kind, text="", refund_id=refund.id))

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
    app.middlewares.append(json_errors)
    app.router.add_post("/api/chat", api.chat)
    app.router.add_post("/api/turns", api.start_turn)
    app.router.add_get("/api/turns/{turn_id}/events", api.events)
    app.router.add_post("/api/refunds/{refund_id}/confirm", api.confirm)
    app.router.add_post("/api/refunds/{refund_id}/cancel", api.cancel)
    app.router.add_get("/api/health", api.health)
    app.router.add_get("/api/openapi.json", api.openapi)

    async def close(_: web.Application) -> None:
        await api.turns.close()

    app.on_shutdown.append(close)


# --- the OpenAPI description ------------------------------------------------------------------------
def openapi() -> dict[str, Any]:
    """OpenAPI 3.1 for the routes above; schemas come from the pydantic models that make the responses."""
    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (ChatRequest, "validation"),
        *((m, "serialization") for m in (ChatResponse, TurnAccepted, ErrorResponse, Health, *EVENT_DATA.values())),
    ]
    _, defs = models_json_schema(models, ref_template="#/components/schemas/{model}")

    def ref(name: str) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{name}"}

    def json_body(name: str, description: str, **extra: Any) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": ref(name)}}, **extra}

    anon_header = {
        ANON_HEADER: {"description": "The anonymous visitor's id: send it back", "schema": {"type": "string"}}
    }
    errors = {
        "default": json_body("ErrorResponse", "Any other error (500, or 503 while the service restarts)"),
        "404": json_body("ErrorResponse", "No such session, turn or refund for this visitor"),
        "429": json_body(
            "ErrorResponse",
            f"More than {RATE_LIMIT} requests in {RATE_WINDOW_S} s from this identity",
            headers={"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
        ),
    }
    body_errors = {
        "400": json_body("ErrorResponse", "The body is not JSON"),
        "413": json_body("ErrorResponse", f"The body is larger than {MAX_BODY_BYTES} bytes"),
        "422": json_body("ErrorResponse", "The body does not match ChatRequest (e.g. the message is too long)"),
    }
    chat_body = {"required": True, "content": {"application/json": {"schema": ref("ChatRequest")}}}
    turn_id = {"name": "turn_id", "in": "path", "required": True, "schema": {"type": "string"}}
    refund_id = {"name": "refund_id", "in": "path", "required": True, "schema": {"type": "string"}}
    last_event = {
        "name": "Last-Event-ID",
        "in": "header",
        "required": False,
        "description": "Replay only the events after this id (as browsers send on reconnect)",
        "schema": {"type": "integer", "minimum": 0},
    }

    def decision(verb: str) -> dict[str, Any]:
        return {
            "post": {
                "summary": f"{verb} a refund waiting for this customer's confirmation",
                "parameters": [refund_id],
                "responses": {
                    "200": json_body("ChatResponse", "What the customer is told", headers=anon_header),
                    **errors,
                },
            }
        }

    sse = {
        "description": "One SSE event per stored turn event (`id:` is its sequence number, `data:` JSON); "
        "the stream ends after `done`",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
        "x-sse-events": {kind: ref(model.__name__) for kind, model in EVENT_DATA.items()},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "supportbot website chat API", "version": "1"},
        "components": {
            "schemas": defs["$defs"],
            "securitySchemes": {
                "customerToken": {"type": "apiKey", "in": "header", "name": TOKEN_HEADER},
                "anonymousId": {"type": "apiKey", "in": "header", "name": ANON_HEADER},
            },
        },
        "security": [{"customerToken": []}, {"anonymousId": []}, {}],
        "paths": {
            "/api/chat": {
                "post": {
                    "summary": "Send a message and wait for the guarded reply and the session's state",
                    "requestBody": chat_body,
                    "responses": {
                        "200": json_body("ChatResponse", "The turn's reply", headers=anon_header),
                        **body_errors,
                        **errors,
                    },
                }
            },
            "/api/turns": {
                "post": {
                    "summary": "Start a turn; read its events from events_url",
                    "requestBody": chat_body,
                    "responses": {
                        "202": json_body("TurnAccepted", "The turn is queued", headers=anon_header),
                        **body_errors,
                        **errors,
                    },
                }
            },
            "/api/turns/{turn_id}/events": {
                "get": {
                    "summary": "The turn's events as Server-Sent Events, replayable",
                    "parameters": [turn_id, last_event],
                    "responses": {"200": sse, **errors},
                }
            },
            "/api/refunds/{refund_id}/confirm": decision("Confirm"),
            "/api/refunds/{refund_id}/cancel": decision("Cancel"),
            "/api/health": {
                "get": {
                    "summary": "Whether this replica reaches the store",
                    "security": [],
                    "responses": {
                        "200": json_body("Health", "Healthy"),
                        "503": json_body("Health", "The store is unreachable"),
                    },
                }
            },
            "/api/openapi.json": {
                "get": {
                    "summary": "This description",
                    "security": [],
                    "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}},
                }
            },
        },
    }
