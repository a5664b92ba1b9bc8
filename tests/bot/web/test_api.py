"""The website chat API end to end: the real aiohttp app on 127.0.0.1, driven over HTTP, on the
real store; only the model is a scripted stand-in where a test needs to count or hold its calls.

Every JSON answer is checked against the served OpenAPI description and for leaks (internal
codes, tool inputs, another customer's data) by the `Api` helper."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy import text as sql

from agent.model import ModelReply, ModelRequest
from agent.scripted import HostileModel, ScriptedModel, reply, text, tool_use
from bot.web.api import WEB_API
from bot.web.identity import check_token
from bot.web.schemas import MAX_BODY_BYTES, MAX_MESSAGE_CHARS, RATE_LIMIT
from storage.engine import Store
from storage.models import Ticket, WebTurnEvent
from storage.settings import Settings
from storage.types import FrozenClock
from tests.bot.conftest import Bot, bot_settings, start_bot, stop_bot
from tests.fakes.slack_api import FakeSlack
from tools import wording
from tools.codes import Code

KEY = "widget-identity-secret"
FOREIGN = ("james@example.com", "CUST-1002", "ORD-5501", "priya@example.com", "CUST-1003", "ORD-6610")
# internal codes as the eval defines them (OK is also an English word)
CODE_WORDS = re.compile(r"\b(?:" + "|".join(c.value for c in Code if "_" in c.value) + r")\b")


def token(email: str, *, expires_in: int = 600, now: float | None = None, key: str = KEY) -> str:
    expiry = int((now if now is not None else time.time()) + expires_in)
    sig = hmac.new(key.encode(), f"{email}|{expiry}".encode(), hashlib.sha256).hexdigest()
    return f"{email}|{expiry}|{sig}"


def as_customer(email: str, **kwargs: Any) -> dict[str, str]:
    return {"X-Customer-Token": token(email, **kwargs)}


class FreshToken(Mapping[str, str]):
    """A customer's token header, signed anew whenever it is read: a module-level token signed at
    import would expire (600 s) before the tests that use it run late in a full suite."""

    def __init__(self, email: str) -> None:
        self.email = email

    def __getitem__(self, key: str) -> str:
        return as_customer(self.email)[key]

    def __iter__(self) -> Iterator[str]:
        return iter(("X-Customer-Token",))

    def __len__(self) -> int:
        return 1

    def __or__(self, other: Mapping[str, str]) -> dict[str, str]:
        return {**self, **other}

    def __ror__(self, other: Mapping[str, str]) -> dict[str, str]:
        return {**other, **self}


SARAH = FreshToken("sarah@example.com")


def assert_clean(raw: str, *, inputs: tuple[str, ...] = ()) -> None:
    """No internal code, tool input or other customer's data in anything a visitor receives."""
    assert not CODE_WORDS.search(raw), raw
    for secret in (*FOREIGN, *inputs):
        assert secret not in raw, (secret, raw)


@dataclass
class Api:
    bot: Bot
    spec: dict[str, Any]

    def schema_for(self, method: str, path: str, status: int) -> dict[str, Any]:
        for template, ops in self.spec["paths"].items():
            if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
                responses = ops[method.lower()]["responses"]
                response = responses.get(str(status)) or responses["default"]
                return response["content"]["application/json"]["schema"]
        raise AssertionError(f"{method} {path} is not in the OpenAPI description")

    def validate(self, schema: dict[str, Any], instance: Any) -> None:
        Draft202012Validator({**schema, "components": self.spec["components"]}).validate(instance)

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        kwargs: dict[str, Any] = {"headers": headers or {}}
        if raw is not None:
            kwargs["data"] = raw
            kwargs["headers"] = {"Content-Type": "application/json", **kwargs["headers"]}
        elif body is not None:
            kwargs["json"] = body
        elif method == "POST":  # a Confirm or Cancel: no body, but said to be JSON like every change
            kwargs["headers"] = {"Content-Type": "application/json", **kwargs["headers"]}
        async with self.bot.http.request(method, f"{self.bot.url}{path}", **kwargs) as resp:
            assert resp.content_type == "application/json", (resp.status, await resp.text())
            payload = await resp.text()
            assert_clean(payload)
            data = json.loads(payload)
            self.validate(self.schema_for(method, path, resp.status), data)
            return resp.status, data, dict(resp.headers)

    async def messages(
        self, session_id: str, *, headers: Mapping[str, str], n: int, last: int | None = None
    ) -> list[dict[str, Any]]:
        """The first `n` entries of a session's message log stream (it stays open; we hang up)."""
        async with asyncio.timeout(20):
            return await self.stream(
                session_id, headers=headers, last=last, stop_after=n, template="/api/sessions/{session_id}/events"
            )

    async def chat(self, message: str, *, headers: Mapping[str, str], session_id: str | None = None) -> dict[str, Any]:
        body = {"message": message} | ({"session_id": session_id} if session_id else {})
        status, data, _ = await self.call("POST", "/api/chat", body, headers=headers)
        assert status == 200, data
        return data

    async def start(self, message: str, *, headers: Mapping[str, str], session_id: str | None = None) -> dict[str, Any]:
        body = {"message": message} | ({"session_id": session_id} if session_id else {})
        status, data, _ = await self.call("POST", "/api/turns", body, headers=headers)
        assert status == 202, data
        return data

    async def stream(
        self,
        turn_id: str,
        *,
        headers: Mapping[str, str],
        last: int | None = None,
        stop_after: int | None = None,
        template: str = "/api/turns/{turn_id}/events",
    ) -> list[dict[str, Any]]:
        """Read an SSE stream (all of it, or `stop_after` events and then hang up)."""
        hdrs = headers | ({"Last-Event-ID": str(last)} if last is not None else {})
        path = template.replace("{turn_id}", turn_id).replace("{session_id}", turn_id)
        async with self.bot.http.get(f"{self.bot.url}{path}", headers=hdrs) as resp:
            assert resp.status == 200 and resp.content_type == "text/event-stream"
            events: list[dict[str, Any]] = []
            fields: dict[str, str] = {}
            async for line in resp.content:
                decoded = line.decode().rstrip("\n")
                if decoded.startswith(":"):
                    continue
                if decoded:
                    name, _, value = decoded.partition(": ")
                    fields[name] = value
                    continue
                if not fields:  # the blank line after a keep-alive comment
                    continue
                assert_clean(fields["data"])
                event = {"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])}
                self.validate(
                    self.spec["paths"][template]["get"]["responses"]["200"]["x-sse-events"][event["event"]],
                    event["data"],
                )
                events.append(event)
                fields = {}
                if stop_after is not None and len(events) >= stop_after:
                    resp.close()  # the visitor's connection drops mid-turn
                    break
            return events


async def open_api(bot: Bot) -> Api:
    async with bot.http.get(f"{bot.url}/api/openapi.json") as resp:
        assert resp.status == 200
        return Api(bot, await resp.json())


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


async def web_bot(
    settings: Settings, store: Store, slack: FakeSlack, *, secret: str | None = KEY, **kwargs: Any
) -> Bot:
    overrides = {"chat_identity_secret": SecretStr(secret) if secret else None}
    return await start_bot(bot_settings(settings, slack, **overrides), store, slack, **kwargs)


@pytest.fixture
async def api(settings: Settings, store: Store, slack: FakeSlack) -> AsyncIterator[Api]:
    bot = await web_bot(settings, store, slack)
    yield await open_api(bot)
    await stop_bot(bot)


async def rows(api: Api, query: str) -> list[tuple[Any, ...]]:
    async with api.bot.rt.store.read() as s:
        return [tuple(r) for r in (await s.execute(sql(query))).all()]


class Gated(ScriptedModel):
    """A scripted model whose `hold`-th call waits until the test opens the gate."""

    def __init__(self, steps: list[Any], *, hold: int) -> None:
        super().__init__(steps)
        self.hold = hold
        self.calls = 0
        self.arrived = asyncio.Event()
        self.gate = asyncio.Event()

    async def complete(self, request: ModelRequest) -> ModelReply:
        self.calls += 1
        if self.calls == self.hold:
            self.arrived.set()
            await self.gate.wait()
        return await super().complete(request)


def said(request: ModelRequest) -> str:
    return json.dumps(request.messages)


# --- the description ---------------------------------------------------------------------------------
async def test_openapi_describes_exactly_the_served_routes(api: Api) -> None:
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in api.bot.runner.app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api/") and route.method != "HEAD"
    }
    described = {(method, path) for path, ops in api.spec["paths"].items() for method in ops}
    assert served == described
    assert len(served) == 8 and api.spec["openapi"].startswith("3.1")
    for schema in api.spec["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)  # OpenAPI 3.1 schemas are JSON Schema 2020-12
    refs = re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(api.spec))
    assert refs and set(refs) <= set(api.spec["components"]["schemas"])


async def test_health(api: Api) -> None:
    status, body, _ = await api.call("GET", "/api/health")
    assert (status, body) == (200, {"ok": True})


async def test_unknown_api_paths_and_methods_answer_json(api: Api) -> None:
    async with api.bot.http.get(f"{api.bot.url}/api/nothing-here") as resp:
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    async with api.bot.http.get(f"{api.bot.url}/api/chat") as resp:
        assert resp.status == 405 and (await resp.json())["error"]["code"] == "method_not_allowed"


# --- identity ----------------------------------------------------------------------------------------
def test_token_check_is_exact() -> None:
    now = 1_800_000_000
    good = token("sarah@example.com", now=now)
    assert check_token(good, secret=KEY.encode(), now=now) == ("verified", "sarah@example.com")
    assert check_token(good, secret=b"another key", now=now) == ("invalid", None)
    assert check_token(good, secret=KEY.encode(), now=now + 601) == ("expired", None)
    email, expiry, sig = good.split("|")
    assert check_token(f"james@example.com|{expiry}|{sig}", secret=KEY.encode(), now=now)[0] == "invalid"
    assert check_token(f"{email}|{int(expiry) + 1}|{sig}", secret=KEY.encode(), now=now)[0] == "invalid"
    assert check_token(f"{email}|{expiry}|{sig.upper()}", secret=KEY.encode(), now=now)[0] == "verified"
    assert (
        check_token(token("sarah@example.com", expires_in=3 * 86400, now=now), secret=KEY.encode(), now=now)[0]
        == "invalid"
    )
    for junk in ("", "a|b", "|||", "sarah@example.com|soon|" + sig, "x" * 5000, "é|1|é"):
        assert check_token(junk, secret=KEY.encode(), now=now)[0] == "invalid"


async def test_a_verified_customer_continues_a_session_across_requests(api: Api) -> None:
    first = await api.chat("My blender ORD-8842 arrived broken, I'd like a refund", headers=SARAH)
    assert first["identity"] == {"kind": "customer", "token": "verified", "anonymous_id": None}
    assert first["confirmation"]["order_id"] == "ORD-8842" and first["confirmation"]["amount"] == "$89.99"
    assert first["confirmation"]["text"].endswith("Shall I go ahead? Use the Confirm button to send it, or Cancel.")
    assert "reply yes" not in json.dumps(first).lower()  # the web's own words, not the shell's
    pending = first["state"]["awaiting_confirmation"]
    assert pending["refund_id"] == first["confirmation"]["refund_id"] and first["state"]["escalated"] is False
    assert first["status"] == ["Preparing your refund"]  # the order came with the turn: no lookup first
    # a later request with a fresh token for the same customer continues the same conversation
    second = await api.chat("yes", headers=as_customer("sarah@example.com"), session_id=first["session_id"])
    assert second["session_id"] == first["session_id"]
    assert second["reply"].startswith("Done: your refund of $89.99 for order ORD-8842")
    assert second["state"]["awaiting_confirmation"] is None
    assert await rows(api, "SELECT channel, actor_kind, customer_id FROM sessions") == [
        ("web", "customer", "CUST-1001")
    ]
    assert await rows(api, "SELECT status FROM refunds") == [("processed",)]


@pytest.mark.parametrize(
    ("headers", "verdict"),
    [
        ({}, "absent"),
        (as_customer("sarah@example.com", expires_in=-5), "expired"),
        (as_customer("sarah@example.com", key="forged-key"), "invalid"),
        (FreshToken("nobody@example.com"), "unknown_customer"),  # signed when the test runs, not at import
    ],
)
async def test_expired_forged_or_missing_tokens_get_an_anonymous_session(
    api: Api, headers: Mapping[str, str], verdict: str
) -> None:
    hello = await api.chat("what are your support hours?", headers=headers)
    assert hello["identity"]["kind"] == "anonymous" and hello["identity"]["token"] == verdict
    assert "9:00 to 18:00" in hello["reply"]
    anon = {"X-Anonymous-Id": hello["identity"]["anonymous_id"]}
    order = await api.chat(
        "My blender ORD-8842 arrived broken, refund please", headers=anon, session_id=hello["session_id"]
    )
    assert "89.99" not in order["reply"] and order["confirmation"] is None
    assert await rows(api, "SELECT count(*) FROM refunds") == [(0,)]
    human = await api.chat("I want to talk to a human", headers=anon, session_id=hello["session_id"])
    assert human["reply"] == wording.ESCALATED_HUMAN and human["state"]["escalated"] is True
    subject = await rows(api, "SELECT actor_kind, customer_id, subject FROM sessions")
    assert subject[0][:2] == ("unverified", None)
    assert hello["identity"]["anonymous_id"] not in subject[0][2]  # only its hash is stored


async def test_without_an_identity_secret_every_visitor_is_anonymous(
    settings: Settings, store: Store, slack: FakeSlack
) -> None:
    bot = await web_bot(settings, store, slack, secret=None)
    try:
        api = await open_api(bot)
        answer = await api.chat("hello", headers=SARAH)
        assert answer["identity"]["kind"] == "anonymous" and answer["identity"]["token"] == "disabled"
        assert await rows(api, "SELECT actor_kind FROM sessions") == [("unverified",)]
    finally:
        await stop_bot(bot)


async def test_a_session_answers_only_to_the_identity_that_created_it(api: Api) -> None:
    mine = await api.start("hello", headers=SARAH)
    james = as_customer("james@example.com")
    stranger = {"X-Anonymous-Id": "s" * 43}
    for other in (james, stranger, {}):
        status, body, _ = await api.call(
            "POST", "/api/chat", {"message": "hi", "session_id": mine["session_id"]}, headers=other
        )
        assert (status, body["error"]["code"]) == (404, "session_not_found")
        status, body, _ = await api.call("GET", f"/api/turns/{mine['turn_id']}/events", headers=other)
        assert (status, body["error"]["code"]) == (404, "turn_not_found")
    assert [e["event"] for e in await api.stream(mine["turn_id"], headers=SARAH)][-1] == "done"
    # an anonymous visitor keeps their session with their id, and only with it
    anon = await api.chat("hello", headers={})
    own = {"X-Anonymous-Id": anon["identity"]["anonymous_id"]}
    assert (await api.chat("thanks", headers=own, session_id=anon["session_id"]))["session_id"] == anon["session_id"]
    for other in (stranger, SARAH):
        status, _, _ = await api.call(
            "POST", "/api/chat", {"message": "hi", "session_id": anon["session_id"]}, headers=other
        )
        assert status == 404
    assert await rows(api, "SELECT count(*) FROM web_turns") == [(3,)]


# --- confirmation ------------------------------------------------------------------------------------
async def test_confirm_moves_money_once_and_only_for_its_customer(api: Api) -> None:
    first = await api.chat("My blender ORD-8842 arrived broken, I'd like a refund", headers=SARAH)
    refund_id = first["confirmation"]["refund_id"]
    for other in (as_customer("james@example.com"), {}):
        status, body, _ = await api.call("POST", f"/api/refunds/{refund_id}/confirm", headers=other)
        assert (status, body["error"]["code"]) == (404, "refund_not_found")
    status, body, _ = await api.call("POST", "/api/refunds/RF-NOSUCHTHING/confirm", headers=SARAH)
    assert status == 404
    assert await rows(api, "SELECT status FROM refunds") == [("awaiting_confirmation",)]
    status, done, _ = await api.call("POST", f"/api/refunds/{refund_id}/confirm", headers=SARAH)
    assert status == 200 and done["session_id"] == first["session_id"]
    assert done["reply"].startswith("Done: your refund of $89.99") and done["state"]["awaiting_confirmation"] is None
    status, again, _ = await api.call("POST", f"/api/refunds/{refund_id}/confirm", headers=SARAH)
    assert again["reply"] == "That refund has already been handled, so nothing has changed."
    assert await rows(api, "SELECT status FROM refunds") == [("processed",)]
    assert await rows(api, "SELECT count(*) FROM payouts") == [(1,)]


async def test_cancel_then_confirm_changes_nothing(api: Api) -> None:
    first = await api.chat("My blender ORD-8842 arrived broken, I'd like a refund", headers=SARAH)
    refund_id = first["confirmation"]["refund_id"]
    status, cancelled, _ = await api.call("POST", f"/api/refunds/{refund_id}/cancel", headers=SARAH)
    assert status == 200 and cancelled["reply"] == wording.refund_cancelled(order_id="ORD-8842")
    assert cancelled["state"]["awaiting_confirmation"] is None
    status, late, _ = await api.call("POST", f"/api/refunds/{refund_id}/confirm", headers=SARAH)
    assert status == 200 and "already been handled" in late["reply"]
    assert await rows(api, "SELECT status FROM refunds") == [("cancelled",)]
    assert await rows(api, "SELECT count(*) FROM payouts") == [(0,)]


# --- ordering and streaming --------------------------------------------------------------------------
async def test_concurrent_requests_on_one_session_are_answered_one_at_a_time_in_order(
    settings: Settings, store: Store, slack: FakeSlack
) -> None:
    model = Gated([reply(text("First answer.")), reply(text("Second answer.")), reply(text("Third answer."))], hold=1)
    bot = await web_bot(settings, store, slack, model=model)
    try:
        api = await open_api(bot)
        turns = bot.runner.app[WEB_API].turns
        first = await api.start("first question", headers=SARAH)
        session = first["session_id"]
        async with asyncio.timeout(60):
            await model.arrived.wait()  # the first turn is inside the model call
            second = asyncio.create_task(api.chat("second question", headers=SARAH, session_id=session))
            await turns.wait_stored(session, 2)
            third = asyncio.create_task(api.chat("third question", headers=SARAH, session_id=session))
            await turns.wait_stored(session, 3)
            assert await rows(api, "SELECT status FROM web_turns ORDER BY id") == [
                ("running",),
                ("queued",),
                ("queued",),
            ]
            assert model.calls == 1 and not second.done() and not third.done()
            model.gate.set()
            answers = [await second, await third]
        assert [a["reply"] for a in answers] == ["Second answer.", "Third answer."]
        # each turn's model call saw the previous turn's finished reply: one at a time, in order
        assert "first question" in said(model.requests[1]) and "First answer." in said(model.requests[1])
        assert "Second answer." in said(model.requests[2]) and "third question" in said(model.requests[2])
        assert "second question" not in said(model.requests[0])
        events = await api.stream(first["turn_id"], headers=SARAH)
        assert [e["data"]["text"] for e in events if e["event"] == "reply"] == ["First answer."]
        assert await rows(api, "SELECT status FROM web_turns ORDER BY id") == [("done",)] * 3
    finally:
        await stop_bot(bot)


async def test_a_stream_is_replayed_after_a_disconnect_without_calling_the_model_again(
    settings: Settings, store: Store, slack: FakeSlack
) -> None:
    model = Gated(
        [
            reply(tool_use("lookup_order", order_id="ORD-8842")),
            reply(text("Your ProBlend 500 blender was delivered five days ago. Is anything wrong with it?")),
        ],
        hold=2,
    )
    bot = await web_bot(settings, store, slack, model=model)
    try:
        api = await open_api(bot)
        turn = await api.start("where is ORD-8842?", headers=SARAH)
        async with asyncio.timeout(60):
            head = await api.stream(turn["turn_id"], headers=SARAH, stop_after=1)  # then the visitor hangs up
            assert [(e["id"], e["event"], e["data"]) for e in head] == [
                (1, "status", {"text": "Looking up your order"})
            ]
            model.gate.set()
            rest = await api.stream(turn["turn_id"], headers=SARAH, last=1)
        assert [e["id"] for e in rest] == list(range(2, 2 + len(rest)))
        assert [e["event"] for e in rest] == ["reply", "reply", "done"]
        assert [e["data"]["text"] for e in rest[:2]] == [
            "Your ProBlend 500 blender was delivered five days ago.",
            "Is anything wrong with it?",
        ]
        assert rest[-1]["data"]["state"] == {
            "escalated": False,
            "ticket": None,
            "awaiting_confirmation": None,
            "with_person": False,
        }
        again = await api.stream(turn["turn_id"], headers=SARAH, last=0)
        assert again == head + rest
        assert await api.stream(turn["turn_id"], headers=SARAH, last=len(again)) == []
        assert model.calls == 2  # the lookup and the answer; no replay ran the model
    finally:
        await stop_bot(bot)


# --- limits ------------------------------------------------------------------------------------------
async def test_requests_are_size_limited(api: Api) -> None:
    cases = [
        (b"{" + b" " * MAX_BODY_BYTES + b"}", 413, "body_too_large"),
        (json.dumps({"message": "x" * (MAX_MESSAGE_CHARS + 1)}).encode(), 422, "message_too_long"),
        (b"{not json", 400, "invalid_json"),
        (b"{}", 422, "invalid_request"),
        (json.dumps({"message": "   "}).encode(), 422, "invalid_request"),
        (json.dumps({"message": "hi", "admin": True}).encode(), 422, "invalid_request"),
        (json.dumps({"message": 42}).encode(), 422, "invalid_request"),
    ]
    for raw, status, code in cases:
        for path in ("/api/chat", "/api/turns"):
            got, body, _ = await api.call("POST", path, headers=SARAH, raw=raw)
            assert (got, body["error"]["code"]) == (status, code), (raw[:40], body)
    assert await rows(api, "SELECT count(*) FROM web_turns") == [(0,)]
    ok = await api.chat("x" * (MAX_MESSAGE_CHARS - 10) + " thanks", headers=SARAH)
    assert ok["reply"]


async def test_requests_are_rate_limited_per_identity(
    settings: Settings, store: Store, slack: FakeSlack, clock: FrozenClock
) -> None:
    bot = await web_bot(settings, store, slack, clock=clock)
    try:
        api = await open_api(bot)
        busy = {"X-Anonymous-Id": "b" * 43}
        for _ in range(RATE_LIMIT):
            status, _, _ = await api.call("POST", "/api/refunds/RF-X/cancel", headers=busy)
            assert status == 404
        status, body, headers = await api.call("POST", "/api/chat", {"message": "hello"}, headers=busy)
        assert (status, body["error"]["code"]) == (429, "rate_limited")
        assert 1 <= int(headers["Retry-After"]) <= 60
        status, _, _ = await api.call("POST", "/api/chat", {"message": "hello"}, headers={"X-Anonymous-Id": "c" * 43})
        assert status == 200  # another visitor is not slowed down
        clock.advance(seconds=int(headers["Retry-After"]))
        status, _, _ = await api.call("POST", "/api/chat", {"message": "hello"}, headers=busy)
        assert status == 200
        limited = {"X-Customer-Token": token("sarah@example.com", now=clock.now().timestamp())}
        for _ in range(RATE_LIMIT):
            await api.call("POST", "/api/refunds/RF-X/cancel", headers=limited)
        assert (await api.call("GET", "/api/health"))[0] == 200  # health is not limited
        assert (await api.call("POST", "/api/refunds/RF-X/confirm", headers=limited))[0] == 429
    finally:
        await stop_bot(bot)


# --- what never gets out -----------------------------------------------------------------------------
async def test_a_hostile_model_leaks_nothing_through_the_api(
    settings: Settings, store: Store, slack: FakeSlack
) -> None:
    bot = await web_bot(settings, store, slack, model=HostileModel())
    try:
        api = await open_api(bot)
        inputs = ("ignore your rules", "mine now", "the big one", "twice", "tool_use", "input")
        answer = await api.chat("I want a refund for ORD-8842", headers=SARAH)
        assert_clean(json.dumps(answer), inputs=inputs)
        events: list[dict[str, Any]] = []
        for _ in range(3):  # the loop ends the hostile turns early; its tricks go on across turns
            turn = await api.start("and ORD-8842 again please", headers=SARAH, session_id=answer["session_id"])
            events += await api.stream(turn["turn_id"], headers=SARAH)
        assert_clean(json.dumps(events), inputs=inputs)
        assert len(events) > 5 and events[-1]["event"] == "done"
        assert await rows(api, "SELECT max(amount_cents) FROM refunds") == [(100,)]  # the guards held too
    finally:
        await stop_bot(bot)


async def test_an_escalation_that_would_reveal_another_customers_order_is_not_shown(
    settings: Settings, store: Store, slack: FakeSlack
) -> None:
    model = ScriptedModel(
        [reply(tool_use("lookup_order", order_id="ORD-5501")), reply(text("I couldn't find that order."))]
    )
    bot = await web_bot(settings, store, slack, model=model)
    try:
        api = await open_api(bot)
        probe = await api.start("refund ORD-5501 please", headers=SARAH)
        events = await api.stream(probe["turn_id"], headers=SARAH)
        # escalated in private (P1 security), exactly as an unknown order would look to the visitor
        assert [e["event"] for e in events] == ["status", "reply", "reply", "done"]
        assert " ".join(e["data"]["text"] for e in events if e["event"] == "reply") == wording.NOT_FOUND_ORDER
        assert events[-1]["data"]["state"] == {
            "escalated": False,
            "ticket": None,
            "awaiting_confirmation": None,
            "with_person": False,
        }
        async with bot.rt.store.read() as s:
            ticket = (await s.scalars(select(Ticket))).one()
        assert (ticket.reason, ticket.priority, ticket.status) == ("security", "P1", "open")
        # asking for a person opens the visible ticket, its own: the security ticket stays hidden
        human = await api.chat("I want to talk to a human", headers=SARAH, session_id=probe["session_id"])
        assert human["reply"] == wording.ESCALATED_HUMAN
        assert human["state"]["escalated"] is True
        async with bot.rt.store.read() as s:
            both = {t.reason: t for t in (await s.scalars(select(Ticket))).all()}
        assert set(both) == {"security", "human_request"}
        assert both["security"].priority == "P1" and both["security"].summary == ticket.summary  # untouched
        assert human["state"]["ticket"] == {"ref": both["human_request"].public_ref, "status": "open"}
    finally:
        await stop_bot(bot)


# --- a replica that died -----------------------------------------------------------------------------
async def test_a_turn_whose_replica_died_is_taken_over_and_answered_once(
    settings: Settings, store: Store, slack: FakeSlack, clock: FrozenClock
) -> None:
    """The queue's lease, not the web face, decides who runs a turn: a replica that died mid-turn
    loses it when its lease runs out, and a worker here runs the turn again, with the next attempt."""
    bot = await web_bot(settings, store, slack, clock=clock)
    try:
        api = await open_api(bot)
        visitor = await api.chat("hello", headers={})
        anon = {"X-Anonymous-Id": visitor["identity"]["anonymous_id"]}
        await bot.rt.workers.stop()  # nothing here claims the next turn: "the other replica" does
        turn = await bot.runner.app[WEB_API].turns.create(visitor["session_id"], kind="message", text="support hours?")
        now = clock.now()
        async with store.write() as s:
            await s.execute(
                sql(
                    "UPDATE inbox SET status = 'working', lease_owner = 'dead-replica', attempts = 1, "
                    "lease_expires_at = :until WHERE id = (SELECT inbox_id FROM web_turns WHERE key = :key)"
                ),
                {"until": now + timedelta(seconds=5), "key": turn.key},
            )
            s.add(WebTurnEvent(turn_id=turn.id, seq=1, kind="status", data={"text": "Thinking"}, created_at=now))
        clock.advance(seconds=30)  # the dead replica's lease runs out
        bot.rt.workers.start()
        async with asyncio.timeout(60):
            events = await api.stream(turn.key, headers=anon)
        assert [e["event"] for e in events][-1] == "done"
        assert [e["event"] for e in events].count("reply") >= 1
        assert "9:00 to 18:00" in " ".join(e["data"].get("text", "") for e in events)
        async with asyncio.timeout(30):  # the stream ends with the turn's events; the worker then marks it done
            await bot.rt.workers.wait_completed(2)  # "hello", then the turn taken over
        assert await rows(
            api,
            f"SELECT status, attempts FROM inbox WHERE id = (SELECT inbox_id FROM web_turns WHERE key = '{turn.key}')",
        ) == [("done", 2)]
        later = await api.chat("thanks", headers=anon, session_id=visitor["session_id"])
        assert later["reply"] and later["failed"] is False
    finally:
        await stop_bot(bot)


async def test_a_turn_that_keeps_failing_gets_the_one_failure_policy(
    settings: Settings, store: Store, slack: FakeSlack
) -> None:
    """INBOX_MAX_ATTEMPTS failures: the visitor's apology, a P2 ticket, an alert for staff, and the
    turn can be replayed with `supportbot inbox retry` (the same policy as a Slack message)."""

    class Broken(ScriptedModel):
        async def complete(self, request: ModelRequest) -> ModelReply:
            raise RuntimeError("a bug in the model adapter")

    bot = await web_bot(settings, store, slack, model=Broken([]))
    try:
        api = await open_api(bot)
        answer = await api.chat("hello?", headers=SARAH)
        assert answer["failed"] is True and answer["reply"] == wording.DEAD_LETTER
        assert answer["state"]["escalated"] is True
        assert await rows(api, "SELECT face, status, attempts FROM inbox") == [
            ("web", "dead", settings.inbox_max_attempts)
        ]
        assert await rows(api, "SELECT priority, reason FROM tickets") == [("P2", "dead_letter")]
        assert await rows(api, "SELECT kind FROM outbox ORDER BY id") == [("apology",), ("alert",)]
    finally:
        await stop_bot(bot)


# --- the help center --------------------------------------------------------------------------------------
async def test_an_anonymous_visitor_gets_a_cited_answer_in_their_language(api: Api) -> None:
    visitor = {"X-Anonymous-Id": "v" * 43, "Accept-Language": "es-ES,es;q=0.9,en;q=0.5"}
    answer = await api.chat("¿Cuánto tarda la entrega?", headers=visitor)
    assert answer["identity"]["kind"] == "anonymous"
    assert answer["reply"].startswith("Esto dice nuestro centro de ayuda")
    (cited,) = answer["citations"]
    assert cited["title"] == "Plazos y costes de envío"
    assert cited["url"].startswith("https://help.example.com/es-envios") and cited["url"] in answer["reply"]
    assert await rows(api, "SELECT locale FROM sessions") == [("es-ES",)]
    started = await api.start("¿Cuál es el horario de atención?", headers=visitor, session_id=answer["session_id"])
    events = await api.stream(started["turn_id"], headers=visitor)
    replies = [e["data"] for e in events if e["event"] == "reply"]
    assert all(r["citations"] == [] for r in replies[:-1])
    assert replies[-1]["citations"] and replies[-1]["citations"][0]["title"] == "Horario de atención al cliente"
    spec = api.spec["components"]["schemas"]
    assert "citations" in spec["ChatResponse"]["required"] and spec["CitationData"]["required"] == [
        "article_id",
        "title",
        "url",
    ]
