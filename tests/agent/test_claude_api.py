"""The Claude adapter through the real `anthropic` SDK against a local Messages API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import text as sql

from agent.events import Event, Reply
from agent.loop import Agent
from agent.model import ClaudeModel, make_client
from desk import Desk
from tests.fakes.anthropic_api import FakeMessagesAPI
from tools.context import CallContext, Deps
from tools.toolbox import Toolbox
from tools.wording import MODEL_OUTAGE


def script(*steps: tuple[list[dict[str, Any]], str]) -> Any:
    """A responder that plays `steps` in order, then says goodbye."""
    queue = list(steps)

    def respond(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        return queue.pop(0) if queue else ([{"type": "text", "text": "Anything else?"}], "end_turn")

    return respond


def use(name: str, n: int, **args: Any) -> tuple[list[dict[str, Any]], str]:
    return [{"type": "tool_use", "id": f"toolu_{name}_{n}", "name": name, "input": args}], "tool_use"


@pytest.fixture
async def api() -> AsyncIterator[FakeMessagesAPI]:
    fake = FakeMessagesAPI(min_cacheable=200)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def claude(api: FakeMessagesAPI, deps: Deps, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Agent]:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)  # read by the SDK itself
    settings = deps.settings.model_copy(
        update={"anthropic_api_key": SecretStr("test-key"), "anthropic_timeout_s": 0.5, "anthropic_max_retries": 2}
    )
    client = make_client(settings)
    assert str(client.base_url).startswith(api.url)
    model = ClaudeModel(client, model=settings.anthropic_model)
    yield Agent(model=model, toolbox=Toolbox(deps))
    await model.aclose()


async def run(agent: Agent, ctx: CallContext, message: str) -> list[Event]:
    return [e async for e in Desk(agent).say(ctx, message)]


def breakpoints(body: dict[str, Any]) -> list[str]:
    where = [f"tool:{t['name']}" for t in body["tools"] if "cache_control" in t]
    where += [f"system:{i}" for i, b in enumerate(body["system"]) if "cache_control" in b]
    for i, m in enumerate(body["messages"]):
        where += [f"message:{i}:{j}" for j, b in enumerate(m["content"]) if "cache_control" in b]
    return where


async def test_request_shape_tools_system_cache_and_pairing(
    api: FakeMessagesAPI, claude: Agent, deps: Deps, sarah: CallContext
) -> None:
    api.responder = script(
        use("get_customer", 1, email="sarah@example.com"),
        use("lookup_order", 2, order_id="ORD-8842"),
        ([{"type": "text", "text": "Your blender order ORD-8842 is eligible for a refund."}], "end_turn"),
    )
    events = await run(claude, sarah, "My blender ORD-8842 broke")
    assert [e.text for e in events if isinstance(e, Reply)] == ["Your blender order ORD-8842 is eligible for a refund."]
    assert len(api.requests) == 3
    first, _, last = api.requests
    auth = api.headers[0].get("x-api-key") or api.headers[0].get("authorization", "").removeprefix("Bearer ")
    assert auth == "test-key" and "anthropic-version" in api.headers[0]
    assert first["model"] == deps.settings.anthropic_model and first["max_tokens"] == deps.settings.anthropic_max_tokens
    assert [t["name"] for t in first["tools"]] == [
        "get_customer",
        "lookup_order",
        "list_orders",
        "process_refund",
        "escalate_to_human",
        "get_refund_status",
        "search_help_center",
        "get_product_details",
        "get_order_changes",
    ]
    assert first["tools"][3]["input_schema"]["required"] == ["order_id", "reason"]  # items or an amount
    assert first["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert "150" not in json.dumps(first["system"]) + json.dumps(first["tools"])  # the limit is never shown
    for body in api.requests:  # one fixed breakpoint after tools + system, one moving on the newest block
        n = len(body["messages"]) - 1
        assert breakpoints(body) == ["system:0", f"message:{n}:{len(body['messages'][n]['content']) - 1}"]
    # tool_result pairing in the last request
    msgs = last["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]
    assert msgs[2]["content"][0]["type"] == "tool_result"
    assert msgs[2]["content"][0]["tool_use_id"] == "toolu_get_customer_1"
    assert json.loads(msgs[2]["content"][0]["content"])["customer_id"] == "CUST-1001"
    assert msgs[4]["content"][0]["tool_use_id"] == "toolu_lookup_order_2"
    assert msgs[0]["content"][0]["text"].startswith("[Session note]")
    rows = await _q(deps, "SELECT input_tokens, cache_read_tokens, cache_write_tokens, output_tokens FROM model_calls")
    assert len(rows) == 3 and all(r[0] + r[1] + r[2] > 0 and r[3] > 0 for r in rows)
    assert rows[0][1] == 0 and rows[0][2] > 0  # the first call wrote the cache
    assert rows[1][1] >= rows[0][2]  # the next tool round re-read all of it


async def test_prefix_is_byte_identical_across_sessions_and_turns(
    api: FakeMessagesAPI, claude: Agent, deps: Deps, sarah: CallContext, james: CallContext
) -> None:
    api.responder = script(
        use("lookup_order", 1, order_id="ORD-8842"),
        ([{"type": "text", "text": "Found it."}], "end_turn"),
        ([{"type": "text", "text": "Hello James."}], "end_turn"),
        use("get_refund_status", 2),
        ([{"type": "text", "text": "No refunds."}], "end_turn"),
    )
    await run(claude, sarah, "ORD-8842?")
    await run(claude, james, "hello")
    await run(claude, sarah, "any refunds?")
    prefixes = {json.dumps(b["tools"]) + json.dumps(b["system"]) for b in api.requests}
    assert len(api.requests) == 5 and len(prefixes) == 1
    rows = await _q(deps, "SELECT cache_read_tokens FROM model_calls ORDER BY id")
    assert all(r[0] > 0 for r in rows[1:])  # every request after the first re-reads at least the prefix


@pytest.mark.parametrize(
    ("faults", "recovers"),
    [
        (["429"], True),
        (["500"], True),
        (["529", "529"], True),
        (["hang"], True),
        (["529", "529", "529"], False),
        (["500", "429", "500"], False),
        (["hang", "hang", "hang"], False),
    ],
)
async def test_faults_are_retried_then_apologised_for(
    api: FakeMessagesAPI, claude: Agent, deps: Deps, sarah: CallContext, faults: list[str], recovers: bool
) -> None:
    api.faults = list(faults)
    api.responder = script(([{"type": "text", "text": "Here to help!"}], "end_turn"))
    events = await run(claude, sarah, "hello, is anyone there?")
    assert len(api.requests) == (len(faults) + 1 if recovers else 3)  # the SDK's 1 try + 2 retries
    tickets = await _q(deps, "SELECT priority, reason, summary FROM tickets")
    if recovers:
        assert [e.text for e in events if isinstance(e, Reply)] == ["Here to help!"]
        assert tickets == []
    else:
        assert [e.text for e in events if isinstance(e, Reply)] == [MODEL_OUTAGE]
        assert [(p, r) for p, r, _ in tickets] == [("P2", "model_failure")]
        assert "hello, is anyone there?" in tickets[0][2]  # a person can answer the kept message
    kept = await _q(deps, "SELECT content FROM messages WHERE is_customer_text ORDER BY id")
    assert "hello, is anyone there?" in str(kept[0][0])


async def _q(deps: Deps, query: str) -> list[tuple[Any, ...]]:
    async with deps.store.read() as s:
        return [tuple(r) for r in (await s.execute(sql(query))).all()]
