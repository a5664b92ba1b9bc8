"""A foreign page cannot make a visitor's browser change anything: every state-changing route of
the website chat API takes `application/json` only, a content type a browser never sends across
origins without a CORS preflight (which only CHAT_ALLOWED_ORIGINS pass). The real app on
127.0.0.1, driven over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from storage.engine import Store
from storage.settings import Settings
from tests.bot.conftest import stop_bot
from tests.bot.web.test_api import SARAH, Api, open_api, rows, web_bot
from tests.fakes.slack_api import FakeSlack

# what a page may send cross-origin without a preflight ("simple requests"), and a few more
SIMPLE = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None)
STATE_CHANGING = ("/api/chat", "/api/turns", "/api/refunds/RF-X/confirm", "/api/refunds/RF-X/cancel")


@pytest.fixture
async def api(settings: Settings, store: Store, slack: FakeSlack) -> AsyncIterator[Api]:
    bot = await web_bot(settings, store, slack)
    yield await open_api(bot)
    await stop_bot(bot)


@pytest.mark.parametrize("path", STATE_CHANGING)
@pytest.mark.parametrize("content_type", SIMPLE)
async def test_state_changing_routes_refuse_what_a_foreign_page_can_send(
    api: Api, path: str, content_type: str | None
) -> None:
    headers = {**SARAH} | ({"Content-Type": content_type} if content_type else {})
    async with api.bot.http.post(
        f"{api.bot.url}{path}", data=b'{"message": "refund my order"}', headers=headers
    ) as resp:
        assert resp.status == 415, await resp.text()
        body = await resp.json()
    assert body["error"]["code"] == "unsupported_media_type"
    assert await rows(api, "SELECT count(*) FROM web_turns") == [(0,)]
    assert await rows(api, "SELECT count(*) FROM sessions") == [(0,)]


async def test_json_with_a_charset_is_still_json(api: Api) -> None:
    headers = {**SARAH, "Content-Type": "application/json; charset=utf-8"}
    async with api.bot.http.post(
        f"{api.bot.url}/api/chat", data=b'{"message": "what are your support hours?"}', headers=headers
    ) as resp:
        assert resp.status == 200 and "9:00 to 18:00" in (await resp.json())["reply"]
