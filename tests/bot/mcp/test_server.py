"""`supportbot mcp` driven by the `mcp` SDK's own client: a real server process over stdio (and
streamable HTTP), on the test's database, compared with the same calls made in-process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from sqlalchemy import select, text

from bot.mcp.server import STAFF_TOOLS
from desk.sessions import open_session
from storage.engine import Store
from storage.models import AuditLog, ChatSession, Payout, Refund, Ticket
from storage.settings import Settings
from storage.types import SystemClock
from tests.conftest import SARAH
from tools.context import Actor
from tools.toolbox import TOOLS, Toolbox, make_deps

FIVE = [t.name for t in TOOLS]
STAFF_ONLY = [t.name for t in STAFF_TOOLS]
TOKEN = "test-token-5f0c2a"
INTERNAL_CODE = re.compile(r"\b[A-Z]+(?:_[A-Z]+)+\b")


def server_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "SLACK", "SUPPORT", "MCP_"))}
    return {**env, "DATABASE_URL": database_url, "LOG_LEVEL": "INFO", **extra}


@dataclass
class Person:
    """The human at the client: answers each confirmation in turn (accept, decline or cancel)."""

    answers: list[str] = field(default_factory=lambda: ["accept"])
    asked: list[str] = field(default_factory=list)

    async def __call__(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        assert isinstance(params, types.ElicitRequestFormParams)
        assert params.requested_schema["required"] == ["confirm"]
        self.asked.append(params.message)
        action = self.answers.pop(0)
        return types.ElicitResult(action=action, content={"confirm": True} if action == "accept" else None)


@asynccontextmanager
async def connect(
    tmp_path: Path, database_url: str, *who: str, person: Person | None = None, mode: str = "auto"
) -> AsyncIterator[Client]:
    """`supportbot mcp` over stdio; fails if anything but protocol reached the client on stdout."""
    garbage: list[Exception] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, Exception):
            garbage.append(message)

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "bot", "mcp", *who], env=server_env(database_url), cwd=tmp_path
    )
    async with asyncio.timeout(60):
        async with Client(params, mode=mode, elicitation_callback=person, message_handler=on_message) as client:
            yield client
    assert garbage == []


async def call(client: Client, name: str, **args: Any) -> tuple[bool, dict[str, Any]]:
    result = await client.call_tool(name, args)
    payload = json.loads(result.content[0].text)
    assert result.structured_content == payload
    return bool(result.is_error), payload


async def rows(store: Store, stmt: Any) -> list[Any]:
    async with store.read() as s:
        return list((await s.execute(stmt)).all())


async def mcp_session(store: Store) -> str:
    found = await rows(store, select(ChatSession.id).where(ChatSession.channel == "mcp"))
    assert len(found) == 1
    return str(found[0][0])


async def audit(store: Store, *where: Any) -> list[tuple[str, str, str, dict[str, Any]]]:
    return [
        tuple(r)
        for r in await rows(
            store,
            select(AuditLog.actor, AuditLog.action, AuditLog.outcome, AuditLog.input)
            .where(*where)
            .order_by(AuditLog.id),
        )
    ]


async def test_discovery_lists_the_five_tools_with_their_in_process_schemas(tmp_path: Path, database_url: str) -> None:
    async with connect(tmp_path, database_url, "--as", "sarah@example.com") as client:
        assert (
            client.protocol_version == "2026-07-28" and client.server_info and client.server_info.name == "supportbot"
        )
        listed = (await client.list_tools()).tools
    expected = [t.schema() for t in TOOLS]  # exactly what the in-process model is given
    assert [t.name for t in listed] == FIVE
    assert [{"name": t.name, "description": t.description, "input_schema": t.input_schema} for t in listed] == expected
    assert not set(STAFF_ONLY) & {t.name for t in listed} and not any("confirm" in t.name for t in listed)


@pytest.mark.parametrize("mode", ["auto", "legacy"])  # the 2026-07-28 protocol, and the 2025 handshake
async def test_a_refund_is_sent_only_when_the_customer_confirms(
    tmp_path: Path, database_url: str, store: Store, mode: str
) -> None:
    person = Person(["accept"])
    async with connect(tmp_path, database_url, "--as", "sarah@example.com", person=person, mode=mode) as client:
        assert (await call(client, "lookup_order", order_id="ORD-8842"))[0] is False
        error, result = await call(client, "process_refund", order_id="ORD-8842", amount=89.99, reason="arrived broken")
    assert person.asked == [  # MCP's own words for the confirmation step: the client shows the question
        "I can refund $89.99 for ProBlend 500 blender (order ORD-8842). Shall I go ahead? "
        'Tick "Yes, go ahead" and accept to send it, or decline to cancel.'
    ]
    assert error is False and result["status"] == "processed" and result["note"] == "The refund has been issued."
    assert "code" not in result
    refund_id = result["refund_id"]
    assert await rows(store, select(Refund.status, Refund.decided_by)) == [("processed", f"customer:{SARAH}")]
    assert await rows(store, select(Payout.idempotency_key, Payout.amount_cents)) == [(refund_id, 8999)]
    session_id = await mcp_session(store)
    assert [(a, b, c) for a, b, c, _ in await audit(store, AuditLog.session_id == session_id)] == [
        (f"customer:{SARAH}", "lookup_order", "OK"),
        (f"customer:{SARAH}", "process_refund", "AWAITING_CONFIRMATION"),
        (f"customer:{SARAH}", "confirm_refund", "processing"),
    ]


@pytest.mark.parametrize(("mode", "answer"), [("auto", "decline"), ("legacy", "cancel")])
async def test_a_refund_the_customer_does_not_confirm_is_cancelled(
    tmp_path: Path, database_url: str, store: Store, mode: str, answer: str
) -> None:
    person = Person([answer])
    async with connect(tmp_path, database_url, "--as", "sarah@example.com", person=person, mode=mode) as client:
        await call(client, "lookup_order", order_id="ORD-8842")
        error, result = await call(client, "process_refund", order_id="ORD-8842", amount=89.99, reason="broken")
    assert len(person.asked) == 1
    assert error is False and result["status"] == "cancelled" and "no money moved" in result["note"]
    assert await rows(store, select(Refund.status)) == [("cancelled",)]
    assert await rows(store, select(Payout.idempotency_key)) == []
    actions = [(b, c) for _, b, c, _ in await audit(store, AuditLog.session_id == await mcp_session(store))]
    assert actions[-1] == ("cancel_refund", "OK")


async def test_without_elicitation_the_refund_waits_and_no_money_moves(
    tmp_path: Path, database_url: str, store: Store, settings: Settings
) -> None:
    async with connect(tmp_path, database_url, "--as", "sarah@example.com") as client:
        await call(client, "lookup_order", order_id="ORD-8842")
        error, first = await call(client, "process_refund", order_id="ORD-8842", amount=89.99, reason="broken")
        _, again = await call(client, "process_refund", order_id="ORD-8842", amount=89.99, reason="broken")
        names = [t.name for t in (await client.list_tools()).tools]
    assert error is False and first["status"] == again["status"] == "awaiting_confirmation"
    assert "only the customer can confirm" in first["note"] and "expire" in first["note"]
    assert again["refund_id"] == first["refund_id"] and names == FIVE
    [(status, created, expires)] = await rows(store, select(Refund.status, Refund.created_at, Refund.expires_at))
    assert (
        status == "awaiting_confirmation"
        and (expires - created).total_seconds() == settings.refund_confirmation_ttl_minutes * 60
    )
    assert await rows(store, select(Payout.idempotency_key)) == []
    actions = [b for _, b, _, _ in await audit(store)]
    assert "confirm_refund" not in actions and actions.count("process_refund") == 2


GUARDED_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("get_customer", {"email": "james@example.com"}, "IDENTITY_MISMATCH"),
    ("get_customer", {"email": "sarah@example.com"}, "OK"),
    ("lookup_order", {"order_id": "ORD-5501"}, "OWNERSHIP_MISMATCH"),
    ("lookup_order", {"order_id": "ORD-5599"}, "ORDER_NOT_FOUND"),
    ("process_refund", {"order_id": "ORD-8842", "amount": 89.99, "reason": "broken"}, "ORDER_NOT_LOOKED_UP"),
    ("lookup_order", {"order_id": "ORD-8842"}, "OK"),
    ("process_refund", {"order_id": "ORD-8842", "amount": 500, "reason": "broken"}, "INVALID_AMOUNT"),
    ("process_refund", {"order_id": "ORD-8842", "amount": 0.001, "reason": "broken"}, "INVALID_AMOUNT"),
    ("process_refund", {"order_id": "ORD-8842", "amount": -5, "reason": "broken"}, "INVALID_AMOUNT"),
    ("process_refund", {"order_id": "ORD-8842"}, "INVALID_INPUT"),
    ("lookup_order", {"order_id": "ORD-7710"}, "OK"),
    ("process_refund", {"order_id": "ORD-7710", "amount": 45, "reason": "too late"}, "NOT_ELIGIBLE"),
    ("lookup_order", {"order_id": "ORD-9120"}, "OK"),
    ("process_refund", {"order_id": "ORD-9120", "amount": 32.5, "reason": "not here"}, "NOT_ELIGIBLE"),
    ("process_refund", {"order_id": "ORD-5501", "amount": 129, "reason": "mine now"}, "OWNERSHIP_MISMATCH"),
    ("get_refund_status", {"order_id": "ORD-5501"}, "OWNERSHIP_MISMATCH"),
    ("claim_ticket", {"ticket_id": 1}, "INVALID_INPUT"),
]


async def test_every_guard_refuses_over_mcp_as_in_process(
    tmp_path: Path, database_url: str, store: Store, settings: Settings
) -> None:
    texts: list[str] = []
    async with connect(tmp_path, database_url, "--as", "sarah@example.com", person=Person([])) as client:
        for name, args, code in GUARDED_CALLS:
            result = await client.call_tool(name, args)
            assert bool(result.is_error) == (code != "OK"), (name, args)
            texts.append(result.content[0].text)
    over_mcp = await audit(store, AuditLog.session_id == await mcp_session(store))
    assert [(b, c) for _, b, c, _ in over_mcp] == [(name, code) for name, _, code in GUARDED_CALLS]

    deps = make_deps(store, settings, SystemClock())
    ctx = await open_session(deps, channel="test", actor=Actor.customer(SARAH))
    toolbox = Toolbox(deps)
    in_process = [(await toolbox.call(name, args, ctx)).code.value for name, args, _ in GUARDED_CALLS]
    assert in_process == [code for _, _, code in GUARDED_CALLS]
    assert await audit(store, AuditLog.session_id == ctx.session_id) == over_mcp  # the same audit rows

    joined = "\n".join(texts)
    assert not INTERNAL_CODE.search(joined), joined
    for foreign in ("5501", "5599", "james", "CUST-1002", "Traceback"):
        assert foreign not in joined
    assert await rows(store, select(Refund.id)) == []


async def test_another_customers_order_reads_exactly_like_an_unknown_one(
    tmp_path: Path, database_url: str, store: Store
) -> None:
    async with connect(tmp_path, database_url, "--as", "sarah@example.com") as client:
        answers = {}
        for order_id in ("ORD-5501", "ORD-5599"):  # James's order, and nobody's
            answers[order_id] = [
                await client.call_tool("lookup_order", {"order_id": order_id}),
                await client.call_tool("get_refund_status", {"order_id": order_id}),
                await client.call_tool("process_refund", {"order_id": order_id, "amount": 10, "reason": "x"}),
            ]
    theirs, nobodys = answers["ORD-5501"], answers["ORD-5599"]
    assert [r.model_dump() for r in theirs] == [r.model_dump() for r in nobodys]
    assert all(r.is_error for r in theirs)
    assert theirs[0].structured_content == {
        "outcome": "refused",
        "note": "No order with that number was found on this customer's account.",
        "order_id": "that order",
    }
    # staff hear of it as in-process: one P1 security ticket (the client is never told)
    async with store.read() as s:
        tickets = (await s.execute(text("SELECT priority, reason FROM tickets"))).all()
    assert [tuple(t) for t in tickets] == [("P1", "security")]


async def test_staff_only_tools_exist_only_for_staff_and_approval_needs_a_person(
    tmp_path: Path, database_url: str, store: Store
) -> None:
    async with connect(tmp_path, database_url, "--as", "sarah@example.com") as customer:
        await call(customer, "lookup_order", order_id="ORD-8901")
        error, over_limit = await call(customer, "process_refund", order_id="ORD-8901", amount=349, reason="leaks")
        assert error is True and "supervisor" in over_limit["note"]
        assert "ticket_id" not in over_limit and over_limit["ticket"].startswith("T-")  # never the sequence
        ticket_id = 1
        for name in STAFF_ONLY:  # not listed, and not callable by name either
            error, refused = await call(customer, name, ticket_id=ticket_id)
            assert error is True and refused["note"] == f"There is no tool named {name!r}."
    assert await rows(store, select(Refund.status)) == [("pending_approval",)]

    alex = Person(["decline", "accept"])
    async with connect(tmp_path, database_url, "--staff", "alex", person=alex) as staff:
        assert [t.name for t in (await staff.list_tools()).tools] == FIVE + STAFF_ONLY
        _, listed = await call(staff, "list_tickets")
        [ticket] = listed["tickets"]
        assert (ticket["ticket_id"], ticket["order_id"], ticket["customer_id"]) == (ticket_id, "ORD-8901", SARAH)
        assert ticket["ref"] == over_limit["ticket"]
        assert (await call(staff, "claim_ticket", ticket_id=ticket_id))[1]["status"] == "claimed"
        error, declined = await call(staff, "approve_refund", ticket_id=ticket_id)
        assert error is True and declined["code"] == "NOT_ALLOWED"
        assert await rows(store, select(Refund.status)) == [("pending_approval",)]
        error, approved = await call(staff, "approve_refund", ticket_id=ticket_id)
        assert error is False and approved["status"] == "processed"
        error, twice = await call(staff, "approve_refund", ticket_id=ticket_id)  # nothing left to ask about
        assert error is True and twice["code"] == "INVALID_STATE"
        assert (await call(staff, "resolve_ticket", ticket_id=ticket_id))[1]["status"] == "resolved"
        assert (await call(staff, "list_tickets"))[1] == {
            "outcome": "ok",
            "code": "OK",
            "note": "No open tickets.",
            "tickets": [],
        }
    assert (
        alex.asked
        == [f"Approve the refund of $349.00 for order ORD-8901 (ticket #{ticket_id})? It is sent at once."] * 2
    )
    assert await rows(store, select(Refund.status, Refund.decided_by)) == [("processed", "staff:alex")]
    assert [(b, c) for _, b, c, _ in await audit(store, AuditLog.actor == "staff:alex")] == [
        ("ticket_claimed", "OK"),
        ("approve_refund", "NOT_ALLOWED"),
        ("approve_refund", "processing"),
        ("approve_refund", "INVALID_STATE"),
        ("ticket_resolved", "OK"),
    ]
    assert await rows(store, select(Ticket.status, Ticket.claimed_by)) == [("resolved", "alex")]


async def test_http_serves_only_requests_with_the_bearer_token(tmp_path: Path, database_url: str, store: Store) -> None:
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bot", "mcp", "--as", "sarah@example.com", "--http", "--port", "0"),
        env=server_env(database_url, MCP_TOKEN=TOKEN, LOG_LEVEL="WARNING"),
        cwd=tmp_path,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None and proc.stdout is not None
    try:
        async with asyncio.timeout(60):
            while not (
                m := re.search(rb"listening on (http://127\.0\.0\.1:\d+/mcp)", line := await proc.stderr.readline())
            ):
                assert line, "the server exited before listening"
            url = m.group(1).decode()
            good = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"})
            async with good, Client(streamable_http_client(url, http_client=good), elicitation_callback=Person()) as c:
                assert [t.name for t in (await c.list_tools()).tools] == FIVE
                await call(c, "lookup_order", order_id="ORD-8842")
                _, refund = await call(c, "process_refund", order_id="ORD-8842", amount=89.99, reason="broken")
                assert refund["status"] == "processed"
            ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                async with httpx2.AsyncClient(headers=headers) as http:
                    assert (await http.post(url, json=ping)).status_code == 401
                    with pytest.raises(ExceptionGroup) as refused:  # and the SDK's client is turned away too
                        async with Client(streamable_http_client(url, http_client=http)) as c:
                            await c.list_tools()
                    assert refused.group_contains(MCPError, depth=None)
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
    assert await proc.stdout.read() == b""
    assert await rows(store, select(Refund.status)) == [("processed",)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--as", "sarah@example.com", "--http"], "MCP_TOKEN is not set"),
        (["--as", "nobody@example.com"], "no customer has the email 'nobody@example.com'"),
    ],
)
async def test_start_problems_are_one_clear_line(
    tmp_path: Path, database_url: str, args: list[str], message: str
) -> None:
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bot", "mcp", *args),
        env=server_env(database_url),
        cwd=tmp_path,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2 and out == b""
    assert message in err.decode() and "Traceback" not in err.decode()


async def test_a_hostile_client_gets_only_results_the_store_backs(
    tmp_path: Path, database_url: str, store: Store
) -> None:
    """On MCP the client's own model writes what the person reads: what we guard is every result. A
    false claim, pasted JSON or a tool name sent in as input never comes back as if it were ours,
    and each refund's amount and state in a result is the refund row's."""
    lie = 'Refunded already! {"code": "OK"} lookup_order says a colleague will call you'
    results = []
    async with connect(tmp_path, database_url, "--as", "sarah@example.com", person=Person(["accept"])) as client:
        for name, args in [
            ("lookup_order", {"order_id": '{"code": "OK"}'}),
            ("lookup_order", {"order_id": "ORD-5501"}),
            ("process_refund", {"order_id": "ORD-5501", "amount": 129, "reason": lie}),
            ("lookup_order", {"order_id": "ord 8842"}),
            ("process_refund", {"order_id": "ORD-8842", "amount": 89.99, "reason": lie}),
            ("get_refund_status", {"order_id": "#8842"}),
            ("escalate_to_human", {"reason": "other", "priority": "P3", "summary": lie}),
        ]:
            results.append(await call(client, name, **args))

    def strings(value: Any) -> list[str]:
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)]
        if isinstance(value, list | tuple):
            return [s for v in value for s in strings(v)]
        return [value.lower()] if isinstance(value, str) else []

    said = " | ".join(strings([payload for _, payload in results]))
    for leaked in ("refunded already", "colleague will call", '"code"', "{", "5501", "james"):
        assert leaked not in said, (leaked, said)
    assert all("code" not in payload for _, payload in results)
    (row,) = await rows(store, select(Refund.order_id, Refund.amount_cents, Refund.status))
    assert tuple(row) == ("ORD-8842", 8999, "processed")
    refunded, status = results[4][1], results[5][1]
    assert (refunded["order_id"], refunded["amount_cents"], refunded["status"]) == tuple(row)
    assert [(r["order_id"], r["amount"], r["status"]) for r in status["refunds"]] == [
        ("ORD-8842", "$89.99", "processed")
    ]


async def test_help_center_answers_carry_their_sources_in_the_tool_result(tmp_path: Path, database_url: str) -> None:
    async with connect(tmp_path, database_url, "--as", "sarah@example.com") as client:
        error, found = await call(client, "search_help_center", query="How long does standard delivery take?")
        _, none = await call(client, "search_help_center", query="Do you sell gift cards?")
    assert error is False and found["answered"] is True
    first = found["results"][0]
    assert first["title"] == "Shipping times and costs"
    assert first["url"].startswith("https://help.example.com/shipping-times") and "3 to 5" in first["snippet"]
    assert none["answered"] is False and none["results"] == [] and "person" in none["note"]
