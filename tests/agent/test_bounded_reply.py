"""A model reply far larger than max_tokens allows is cut to MAX_REPLY_BYTES before anything else
reads it: through the real SDK against the local Messages API, and in the guard for any model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from agent import policy
from agent.events import Reply
from agent.loop import Agent
from agent.model import MAX_REPLY_BYTES, ClaudeModel, ModelRequest, cap_text, capped, make_client
from desk import Desk
from storage.models import Message
from tests.fakes.anthropic_api import FakeMessagesAPI
from tools.context import CallContext, Deps
from tools.toolbox import Toolbox

HUGE = "Thanks for waiting, here is more about your order. " * 40_000  # about 2 MB


def huge_reply(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    return [{"type": "text", "text": HUGE}, {"type": "text", "text": "And a second block."}], "end_turn"


@pytest.fixture
async def api() -> AsyncIterator[FakeMessagesAPI]:
    fake = FakeMessagesAPI(huge_reply, record=False)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def claude(api: FakeMessagesAPI, deps: Deps, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ClaudeModel]:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
    settings = deps.settings.model_copy(update={"anthropic_api_key": SecretStr("test-key"), "anthropic_max_retries": 0})
    model = ClaudeModel(make_client(settings), model=settings.anthropic_model)
    yield model
    await model.aclose()


def size(text: str) -> int:
    return len(text.encode("utf-8"))


def test_cap_cuts_on_a_character_boundary() -> None:
    assert cap_text("short") == "short"
    cut = cap_text("é" * 40_000)  # two bytes each
    assert size(cut) == MAX_REPLY_BYTES and cut == "é" * (MAX_REPLY_BYTES // 2)
    odd = cap_text("€" * 30_000, limit=10)  # three bytes each: never half a character
    assert odd == "€" * 3
    blocks = capped(
        [
            {"type": "text", "text": "a" * 50_000},
            {"type": "tool_use", "id": "t"},
            {"type": "text", "text": "b" * 50_000},
        ]
    )
    assert sum(size(b.get("text", "")) for b in blocks) == MAX_REPLY_BYTES and blocks[1] == {
        "type": "tool_use",
        "id": "t",
    }


async def test_the_claude_adapter_caps_a_two_megabyte_reply(claude: ClaudeModel) -> None:
    assert size(HUGE) > 2_000_000
    reply = await claude.complete(
        ModelRequest(system="s", tools=[], messages=[{"role": "user", "content": "hi"}], max_tokens=1024)
    )
    assert sum(size(b["text"]) for b in reply.content) <= MAX_REPLY_BYTES
    assert reply.content[0]["text"].startswith("Thanks for waiting") and reply.content[1]["text"] == ""


async def test_a_turn_with_a_two_megabyte_reply_finishes_with_a_capped_answer(
    claude: ClaudeModel, deps: Deps, sarah: CallContext
) -> None:
    agent = Agent(model=claude, toolbox=Toolbox(deps))
    async with asyncio.timeout(120):  # a hang guard, not a speed target: before the cap it ran for minutes
        events = [e async for e in Desk(agent).say(sarah, "where is my order?")]
    (reply,) = [e for e in events if isinstance(e, Reply)]
    assert 0 < size(reply.text) <= MAX_REPLY_BYTES and reply.text.startswith("Thanks for waiting")
    async with deps.store.read() as s:
        stored = (await s.scalars(select(Message).where(Message.role == "assistant"))).all()
    assert stored and all(size(str(m.content)) <= MAX_REPLY_BYTES + 1000 for m in stored)


async def test_the_guard_caps_any_models_text(deps: Deps, sarah: CallContext) -> None:
    # words, not one long run: the sanitizer's own patterns are made linear (and tested) in its module
    guarded = await policy.guard("a word " * 400_000, deps=deps, ctx=sarah)
    assert 0 < size(guarded.text) <= policy.MAX_REPLY <= MAX_REPLY_BYTES
