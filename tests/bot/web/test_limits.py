"""The website chat API under hostile or broken conditions: bodies nested to blow the parser's
stack, bodies sent too slowly, a store that is down or locked, a flood of stream reads, and a
Confirm pressed after its confirmation expired. Real server, real sockets, real databases."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from bot.web.limits import MAX_JSON_DEPTH, READ_RATE_LIMIT, parse_json, too_deep
from bot.web.schemas import MAX_BODY_BYTES, RATE_LIMIT
from storage.engine import Store
from storage.migrate import upgrade
from storage.settings import Settings
from storage.types import FrozenClock
from tests.bot.conftest import bot_settings, envelope, message_event, sign, start_bot, stop_bot
from tests.bot.web.test_api import KEY, SARAH, Api, open_api, rows, token, web_bot
from tests.fakes.slack_api import FakeSlack
from tests.fakes.tcp_proxy import TcpProxy
from tools import refunds, wording

REFUND_ASK = "My blender ORD-8842 arrived broken, I'd like a refund"


# --- nesting -----------------------------------------------------------------------------------------
def test_nesting_is_measured_outside_strings_only() -> None:
    assert not too_deep(b'{"message": "' + b"[" * 5000 + b'"}')
    assert not too_deep(b'{"message": "\\"' + b"{" * 50 + b'"}')  # an escaped quote does not end the string
    assert too_deep(b"[" * (MAX_JSON_DEPTH + 1))
    assert not too_deep(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    assert too_deep(b"[]" * 100 + b"[" * (MAX_JSON_DEPTH + 1))
    assert parse_json(b'{"a": [1, {"b": "[[[["}]}') == {"a": [1, {"b": "[[[["}]}


async def test_deeply_nested_json_is_a_clean_400(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    deep = b"[" * 16_000
    assert len(deep) < MAX_BODY_BYTES
    for raw in (deep, b'{"message": ' + b"[" * 5000 + b"]" * 5000 + b"}", b"{" * 9000):
        for path in ("/api/chat", "/api/turns"):
            status, body, _ = await api.call("POST", path, headers=SARAH, raw=raw)
            assert (status, body["error"]["code"]) == (400, "invalid_json")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or "RecursionError" in r.getMessage()]
    brackets = await api.chat(
        "is [[[[[[[[[[[[[[[[ this ]]]]]]]]]]]]]]]] fine? what are your support hours?", headers=SARAH
    )
    assert "9:00 to 18:00" in brackets["reply"]  # brackets inside the message are just text
    assert await rows(api, "SELECT count(*) FROM web_turns") == [(1,)]


# --- slow bodies -------------------------------------------------------------------------------------
async def send_part_of_a_body(url: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    """Send the headers and the first half of the body, then nothing more (the connection stays
    open): returns the status and body the server answers with on its own."""
    where = make_url(url.replace("http://", "http+x://"))
    reader, writer = await asyncio.open_connection(where.host, where.port)
    lines = [f"POST {path} HTTP/1.1", f"Host: {where.host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body[: len(body) // 2])
    await writer.drain()
    try:
        async with asyncio.timeout(60):
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            length = next(int(h.split(":")[1]) for h in head.split("\r\n") if h.lower().startswith("content-length"))
            return int(head.split()[1]), await reader.readexactly(length)
    finally:
        writer.close()


@pytest.fixture
async def api(settings: Settings, store: Store, slack: FakeSlack) -> AsyncIterator[Api]:
    bot = await web_bot(settings, store, slack)
    yield await open_api(bot)
    await stop_bot(bot)


@pytest.fixture
async def impatient(settings: Settings, store: Store, slack: FakeSlack) -> AsyncIterator[Api]:
    bot = await web_bot(settings.model_copy(update={"http_body_timeout_s": 0.2}), store, slack)
    yield await open_api(bot)
    await stop_bot(bot)


async def test_a_body_sent_too_slowly_is_cut_off_with_408(impatient: Api) -> None:
    body = json.dumps({"message": "what are your support hours?"}).encode()
    for path in ("/api/chat", "/api/turns"):
        status, raw = await send_part_of_a_body(
            impatient.bot.url, path, {"Content-Type": "application/json", **SARAH}, body
        )
        assert status == 408 and json.loads(raw)["error"]["code"] == "body_timeout"
    slack_body = json.dumps(envelope(message_event("hello"))).encode()
    signed = {"Content-Type": "application/json", **sign(slack_body.decode())}
    status, _ = await send_part_of_a_body(impatient.bot.url, "/slack/events", signed, slack_body)
    assert status == 408
    assert await rows(impatient, "SELECT count(*) FROM web_turns") == [(0,)]
    assert await rows(impatient, "SELECT count(*) FROM inbox") == [(0,)]
    assert (await impatient.chat("what are your support hours?", headers=SARAH))["reply"]  # a whole body is fine


# --- the store down ------------------------------------------------------------------------------------
API_ROUTES = [
    ("POST", "/api/chat", {"message": "hello"}),
    ("POST", "/api/turns", {"message": "hello"}),
    ("GET", "/api/turns/turn_x/events", None),
    ("POST", "/api/refunds/RF-X/confirm", None),
    ("POST", "/api/refunds/RF-X/cancel", None),
]


async def assert_all_unavailable(api: Api) -> None:
    for method, path, body in API_ROUTES:
        status, answer, headers = await api.call(method, path, body, headers=SARAH)
        assert (status, answer["error"]["code"]) == (503, "unavailable"), (path, answer)
        assert int(headers["Retry-After"]) > 0
    status, health, _ = await api.call("GET", "/api/health")
    assert (status, health) == (503, {"ok": False})


@pytest.fixture
def log_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    caplog.set_level(logging.WARNING, logger="bot.web.api")
    return caplog.records


async def test_every_route_answers_503_while_postgresql_is_down_and_recovers(
    pg_database_url: str, slack: FakeSlack, log_errors: list[logging.LogRecord]
) -> None:
    real = make_url(pg_database_url)
    proxy = TcpProxy(real.host or "127.0.0.1", real.port or 5432)
    url = real.set(port=await proxy.start()).render_as_string(hide_password=False)
    settings = Settings(_env_file=None, database_url=url, chat_identity_secret=KEY)  # type: ignore[call-arg]
    store = Store.from_settings(settings)
    bot = await start_bot(bot_settings(settings, slack), store, slack)
    try:
        api = await open_api(bot)
        assert (await api.chat("hello", headers=SARAH))["reply"]
        await proxy.cut()
        await assert_all_unavailable(api)
        assert not [r for r in log_errors if r.levelno >= logging.ERROR]  # an outage is not a bug
        await proxy.start()
        assert (await api.chat("what are your support hours?", headers=SARAH))["reply"]
    finally:
        await stop_bot(bot)
        await store.dispose()
        await proxy.cut()


async def test_every_route_answers_503_while_sqlite_is_locked_past_its_busy_timeout(
    tmp_path: Path, slack: FakeSlack, log_errors: list[logging.LogRecord]
) -> None:
    path = tmp_path / "locked.db"
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{path}",
        sqlite_busy_timeout_ms=50,
        chat_identity_secret=KEY,
    )
    store = Store.from_settings(settings)
    await upgrade(store)
    bot = await start_bot(bot_settings(settings, slack), store, slack)
    other = sqlite3.connect(path, isolation_level=None)  # another process's connection, in effect
    try:
        api = await open_api(bot)
        assert (await api.chat("hello", headers=SARAH))["reply"]
        other.execute("BEGIN EXCLUSIVE")
        for method, path_, body in API_ROUTES:
            status, answer, _ = await api.call(method, path_, body, headers=SARAH)
            assert (status, answer["error"]["code"]) == (503, "unavailable"), (path_, answer)
        assert not [r for r in log_errors if r.levelno >= logging.ERROR]
        other.execute("ROLLBACK")
        assert (await api.chat("what are your support hours?", headers=SARAH))["reply"]
    finally:
        other.close()
        await stop_bot(bot)
        await store.dispose()


# --- rate limits ---------------------------------------------------------------------------------------
async def test_stream_reads_have_their_own_higher_limit(
    settings: Settings, store: Store, slack: FakeSlack, clock: FrozenClock
) -> None:
    bot = await web_bot(settings, store, slack, clock=clock)
    try:
        api = await open_api(bot)
        reader = {"X-Customer-Token": token("sarah@example.com", now=clock.now().timestamp())}
        for _ in range(RATE_LIMIT):  # the message bucket is spent...
            assert (await api.call("POST", "/api/refunds/RF-X/confirm", headers=reader))[0] == 404
        assert (await api.call("POST", "/api/chat", {"message": "hi"}, headers=reader))[0] == 429
        for _ in range(READ_RATE_LIMIT):  # ...and reads still go through, up to their own limit
            assert (await api.call("GET", "/api/turns/turn_unknown/events", headers=reader))[0] == 404
        status, body, headers = await api.call("GET", "/api/turns/turn_unknown/events", headers=reader)
        assert (status, body["error"]["code"]) == (429, "rate_limited") and int(headers["Retry-After"]) >= 1
        clock.advance(seconds=int(headers["Retry-After"]))
        assert (await api.call("GET", "/api/turns/turn_unknown/events", headers=reader))[0] == 404
    finally:
        await stop_bot(bot)


async def test_reads_do_not_spend_the_message_limit(api: Api) -> None:
    for _ in range(RATE_LIMIT + 5):
        assert (await api.call("GET", "/api/turns/turn_unknown/events", headers=SARAH))[0] == 404
    assert (await api.chat("what are your support hours?", headers=SARAH))["reply"]


# --- a confirmation that expired --------------------------------------------------------------------------
async def expired_refund(api: Api, clock: FrozenClock, *, swept: bool) -> dict[str, Any]:
    first = await api.chat(
        REFUND_ASK, headers={"X-Customer-Token": token("sarah@example.com", now=clock.now().timestamp())}
    )
    clock.advance(minutes=api.bot.rt.settings.refund_confirmation_ttl_minutes + 1)
    if swept:  # the housekeeper marked it expired before the customer came back
        assert [r.id for r in await refunds.expire_due(api.bot.rt.deps)] == [first["confirmation"]["refund_id"]]
    return first


@pytest.mark.parametrize("swept", [True, False])
async def test_confirm_after_expiry_says_expired_not_handled(
    settings: Settings, store: Store, slack: FakeSlack, clock: FrozenClock, swept: bool
) -> None:
    bot = await web_bot(settings, store, slack, clock=clock)
    try:
        api = await open_api(bot)
        first = await expired_refund(api, clock, swept=swept)
        fresh = {"X-Customer-Token": token("sarah@example.com", now=clock.now().timestamp())}
        status, late, _ = await api.call(
            "POST", f"/api/refunds/{first['confirmation']['refund_id']}/confirm", headers=fresh
        )
        assert status == 200 and late["reply"] == wording.CONFIRMATION_EXPIRED
        assert "expired" in late["reply"] and "ask again" in late["reply"] and "handled" not in late["reply"]
        status, cancel, _ = await api.call(
            "POST", f"/api/refunds/{first['confirmation']['refund_id']}/cancel", headers=fresh
        )
        assert status == 200 and cancel["reply"] == wording.CANCEL_EXPIRED
        assert await rows(api, "SELECT status FROM refunds") == [("expired",)]
        assert await rows(api, "SELECT count(*) FROM payouts") == [(0,)]
    finally:
        await stop_bot(bot)


# --- event streams ------------------------------------------------------------------------------------------
async def test_reopening_a_session_stream_spends_reads_not_messages(api: Api) -> None:
    first = await api.chat("what are your support hours?", headers=SARAH)
    for _ in range(RATE_LIMIT + 5):  # a widget on a flaky connection reopens the session's stream
        got = await api.messages(first["session_id"], headers=SARAH, n=1)
        assert got[0]["data"]["kind"] == "reply"
    assert (await api.chat("how long is your return window?", headers=SARAH, session_id=first["session_id"]))["reply"]


async def test_open_streams_are_capped_per_visitor_and_a_closed_one_frees_its_place(
    settings: Settings, store: Store, slack: FakeSlack
) -> None:
    bot = await web_bot(settings.model_copy(update={"chat_streams_per_client": 3}), store, slack)
    try:
        api = await open_api(bot)
        session = (await api.chat("hello", headers=SARAH))["session_id"]
        url = f"{bot.url}/api/sessions/{session}/events"
        held = [await bot.http.get(url, headers=SARAH) for _ in range(3)]
        assert [r.status for r in held] == [200, 200, 200]
        status, body, headers = await api.call("GET", f"/api/sessions/{session}/events", headers=SARAH)
        assert (status, body["error"]["code"]) == (429, "too_many_streams") and int(headers["Retry-After"]) > 0
        held[0].close()
        async with asyncio.timeout(20):
            while True:  # the server sees the hang-up when it next writes or reads; then the place is free
                again = await bot.http.get(url, headers=SARAH)
                if again.status == 200:
                    again.close()
                    break
                again.release()
                await asyncio.sleep(0.05)  # polling the server's own answer, not synchronization
    finally:
        for r in held:
            r.close()
        await stop_bot(bot)


async def test_an_idle_stream_ends_and_is_resumed_from_its_last_event(
    settings: Settings, store: Store, slack: FakeSlack
) -> None:
    bot = await web_bot(settings.model_copy(update={"chat_stream_idle_s": 0.5}), store, slack)
    try:
        api = await open_api(bot)
        first = await api.chat("what are your support hours?", headers=SARAH)
        async with asyncio.timeout(20):  # the stream ends by itself once nothing new came for a while
            events = await api.stream(first["session_id"], headers=SARAH, template="/api/sessions/{session_id}/events")
        assert [e["data"]["kind"] for e in events] == ["reply"]
        second = await api.chat("how long is your return window?", headers=SARAH, session_id=first["session_id"])
        assert second["reply"]
        resumed = await api.messages(first["session_id"], headers=SARAH, n=1, last=events[-1]["id"])
        assert "30 days" in resumed[0]["data"]["text"]  # only what came after
    finally:
        await stop_bot(bot)
