"""The website chat API on its own feet: CORS for widgets on other origins, anonymous visitors
limited per client address (X-Forwarded-For only through trusted proxies), and a cap on the new
tickets an address opens per hour. The real app on 127.0.0.1, driven over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request
from pydantic import SecretStr, ValidationError

from bot.web.identity import client_address, client_key
from bot.web.limits import LIMITS
from storage import metrics
from storage.engine import Store
from storage.settings import Settings
from storage.types import FrozenClock
from tests.bot.conftest import Bot, bot_settings, start_bot, stop_bot
from tests.bot.web.test_api import KEY, Api, as_customer, open_api, rows
from tests.fakes.slack_api import FakeSlack
from tools import wording

SHOP = "https://shop.example.com"


def sarah(clock: FrozenClock) -> dict[str, str]:
    return as_customer("sarah@example.com", now=clock.now().timestamp())


async def started(settings: Settings, store: Store, slack: FakeSlack, clock: FrozenClock, **overrides: Any) -> Bot:
    values = {"chat_identity_secret": SecretStr(KEY), **overrides}
    return await start_bot(bot_settings(settings, slack, **values), store, slack, clock=clock)


@pytest.fixture
async def cors_api(settings: Settings, store: Store, slack: FakeSlack, clock: FrozenClock) -> AsyncIterator[Api]:
    bot = await started(settings, store, slack, clock, chat_allowed_origins=[SHOP], trusted_proxy_hops=0)
    yield await open_api(bot)
    await stop_bot(bot)


def cors_headers(headers: Any) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower().startswith("access-control-")}


# --- CORS --------------------------------------------------------------------------------------------
async def test_a_preflight_from_an_allowed_origin_is_answered(cors_api: Api) -> None:
    bot = cors_api.bot
    asks = {"Origin": SHOP, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    async with bot.http.options(f"{bot.url}/api/chat", headers=asks) as resp:
        assert resp.status == 204
        got = cors_headers(resp.headers)
    assert got["Access-Control-Allow-Origin"] == SHOP  # the origin itself, never *
    assert got["Access-Control-Allow-Methods"] == "OPTIONS, POST"
    allowed = {h.strip().lower() for h in got["Access-Control-Allow-Headers"].split(",")}
    assert allowed == {"content-type", "x-customer-token", "x-anonymous-id", "last-event-id"}
    asks["Access-Control-Request-Method"] = "GET"
    async with bot.http.options(f"{bot.url}/api/turns/turn_x/events", headers=asks) as resp:
        assert resp.status == 204 and resp.headers["Access-Control-Allow-Methods"] == "GET, HEAD, OPTIONS"


async def test_an_unlisted_origin_gets_no_cors_headers(cors_api: Api) -> None:
    bot = cors_api.bot
    for origin in ("https://evil.example", "https://shop.example.com.evil.example", "http://shop.example.com"):
        asks = {"Origin": origin, "Access-Control-Request-Method": "POST"}
        async with bot.http.options(f"{bot.url}/api/chat", headers=asks) as resp:
            assert resp.status == 405 and cors_headers(resp.headers) == {}
        async with bot.http.post(f"{bot.url}/api/chat", json={"message": "hi"}, headers={"Origin": origin}) as resp:
            assert resp.status == 200 and cors_headers(resp.headers) == {}
            assert "Origin" in resp.headers["Vary"]


async def test_answers_to_an_allowed_origin_carry_cors_headers_and_expose_retry_after(
    settings: Settings, store: Store, slack: FakeSlack, clock: FrozenClock
) -> None:
    bot = await started(
        settings, store, slack, clock, chat_allowed_origins=[SHOP], chat_anonymous_requests_per_minute=3
    )
    try:
        api = await open_api(bot)
        status, data, headers = await api.call(
            "POST", "/api/turns", {"message": "hello"}, headers={**sarah(clock), "Origin": SHOP}
        )
        assert status == 202 and headers["Access-Control-Allow-Origin"] == SHOP
        url = f"{bot.url}/api/turns/{data['turn_id']}/events"
        async with bot.http.get(url, headers={**sarah(clock), "Origin": SHOP}) as resp:  # the SSE stream too
            assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == SHOP
            await resp.read()
        for _ in range(4):  # an anonymous visitor past its address's limit
            status, _, headers = await api.call("POST", "/api/chat", {"message": "hi"}, headers={"Origin": SHOP})
        assert status == 429 and headers["Access-Control-Allow-Origin"] == SHOP
        assert "Retry-After" in headers["Access-Control-Expose-Headers"] and int(headers["Retry-After"]) >= 1
    finally:
        await stop_bot(bot)


def test_allowed_origins_are_exact_origins() -> None:
    ok = Settings(_env_file=None, chat_allowed_origins="https://Shop.example.com/, http://localhost:8080")  # type: ignore[call-arg]
    assert ok.chat_allowed_origins == ["https://shop.example.com", "http://localhost:8080"]
    for bad in ("*", "https://*.example.com", "https://shop.example.com/widget", "shop.example.com", "null"):
        with pytest.raises(ValidationError, match="is not an origin"):
            Settings(_env_file=None, chat_allowed_origins=bad)  # type: ignore[call-arg]


# --- who the client is -------------------------------------------------------------------------------
def request(peer: str, forwarded: list[str]) -> Any:
    class Transport:
        def get_extra_info(self, name: str, default: Any = None) -> Any:
            return (peer, 40000) if name == "peername" else default

    headers = [("X-Forwarded-For", f) for f in forwarded]
    return make_mocked_request("GET", "/api/chat", headers=headers, transport=Transport())


def test_the_client_address_is_read_through_trusted_proxies_only() -> None:
    spoofed = request("10.0.0.5", ["6.6.6.6, 203.0.113.7"])
    assert client_address(spoofed, trusted_hops=0) == "10.0.0.5"  # no proxies: the header is the client's own
    assert client_address(spoofed, trusted_hops=1) == "203.0.113.7"  # what our proxy saw, not what was typed
    two = request("10.0.0.5", ["6.6.6.6", "203.0.113.7, 10.0.0.9"])  # two headers read as one list
    assert client_address(two, trusted_hops=2) == "203.0.113.7"
    assert client_address(request("10.0.0.5", []), trusted_hops=1) == "10.0.0.5"  # fewer entries: the peer
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9")  # one IPv6 host holds a /64
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:198.51.100.4") == client_key("198.51.100.4") != client_key("198.51.100.5")


# --- anonymous limits --------------------------------------------------------------------------------
def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels or None) or 0.0


async def test_anonymous_visitors_are_limited_per_client_address(
    settings: Settings, store: Store, slack: FakeSlack, clock: FrozenClock
) -> None:
    bot = await started(settings, store, slack, clock, chat_anonymous_requests_per_minute=3, trusted_proxy_hops=1)
    before = sample("supportbot_web_rate_limited_total", by="address")
    try:
        api = await open_api(bot)

        async def ask(forwarded: str, **extra: str) -> int:  # a fresh anonymous id every time
            headers = {"X-Forwarded-For": forwarded, **extra}
            return (await api.call("GET", "/api/turns/turn_unknown/events", headers=headers))[0]

        reads = 3 * LIMITS["read"] // LIMITS["chat"]  # stream reads have a bucket of their own, scaled alike
        assert [await ask("203.0.113.7") for _ in range(reads)] == [404] * reads
        assert await ask("203.0.113.7") == 429
        assert await ask(f"198.51.100.{1}, 203.0.113.7") == 429  # a typed entry on the left changes nothing
        assert await ask("203.0.113.8") == 404  # another address is not slowed down
        assert await ask("203.0.113.7", **sarah(clock)) == 404  # nor a signed-in customer behind the same address
        assert sample("supportbot_web_rate_limited_total", by="address") == before + 2
        clock.advance(seconds=60)
        assert await ask("203.0.113.7") == 404
    finally:
        await stop_bot(bot)


async def test_new_anonymous_tickets_are_capped_per_address_per_hour(
    settings: Settings, store: Store, slack: FakeSlack, clock: FrozenClock
) -> None:
    bot = await started(settings, store, slack, clock, chat_anonymous_tickets_per_hour=2)
    before = sample("supportbot_web_anonymous_tickets_refused_total")
    try:
        api = await open_api(bot)
        first = await api.chat("I want to talk to a human", headers={})
        again = await api.chat(
            "a human please",
            headers={"X-Anonymous-Id": first["identity"]["anonymous_id"]},
            session_id=first["session_id"],
        )  # raising one's own ticket is not a new ticket
        second = await api.chat("Can I speak to a real person?", headers={})
        third = await api.chat("I need a human agent now", headers={})
        assert first["reply"] == again["reply"] == second["reply"] == wording.ESCALATED_HUMAN
        assert third["reply"] == wording.TICKET_LIMIT and third["state"]["escalated"] is False
        assert await rows(api, "SELECT count(*) FROM tickets") == [(2,)]
        assert sample("supportbot_web_anonymous_tickets_refused_total") == before + 1
        customer = await api.chat("I want to talk to a human", headers=sarah(clock))
        assert customer["reply"] == wording.ESCALATED_HUMAN  # signed-in customers are not capped
        clock.advance(hours=1)
        later = await api.chat("I want to talk to a human", headers={})
        assert later["reply"] == wording.ESCALATED_HUMAN
        assert await rows(api, "SELECT count(*) FROM tickets") == [(4,)]
    finally:
        await stop_bot(bot)
