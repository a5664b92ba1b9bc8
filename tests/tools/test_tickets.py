"""Tickets: one unresolved per session, staff-only transitions, audit, links."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from desk import staff as staff_acts
from desk.customer import ask_who
from desk.sessions import load_context, open_session
from tests.conftest import ticket_by_ref
from tools import tickets
from tools.codes import Code
from tools.context import Actor, CallContext, Deps, TicketQuota
from tools.toolbox import Toolbox

STAFF_A, STAFF_B = Actor.staff("U-A"), Actor.staff("U-B")


async def escalate(toolbox: Toolbox, ctx: CallContext, priority: str = "P3", summary: str = "help") -> int:
    res = await toolbox.call("escalate_to_human", {"reason": "other", "priority": priority, "summary": summary}, ctx)
    assert res.ok and "ticket_id" not in res.data  # the model sees a public reference, never the sequence
    return await ticket_by_ref(toolbox.deps, str(res.data["ticket"]))


async def test_escalating_again_updates_the_unresolved_ticket(toolbox: Toolbox, deps: Deps, sarah: CallContext) -> None:
    first = await escalate(toolbox, sarah, "P3", "first")
    second = await escalate(toolbox, sarah, "P1", "second")
    third = await escalate(toolbox, sarah, "P2", "third")
    assert first == second == third
    async with deps.store.read() as s:
        prio, summary = (await s.execute(text("SELECT priority, summary FROM tickets"))).one()
    assert prio == "P1" and summary.splitlines() == ["first", "second", "third"]
    await staff_acts.resolve(deps, ticket_id=first, staff=STAFF_A)
    assert await escalate(toolbox, sarah) != first  # after resolution a new ticket opens


async def test_claim_release_resolve(toolbox: Toolbox, deps: Deps, sarah: CallContext) -> None:
    tid = await escalate(toolbox, sarah)
    assert (await staff_acts.claim(deps, ticket_id=tid, staff=sarah.actor)).code is Code.NOT_ALLOWED
    assert (await staff_acts.claim(deps, ticket_id=tid, staff=STAFF_A)).code is Code.OK
    lost = await staff_acts.claim(deps, ticket_id=tid, staff=STAFF_B)
    assert lost.code is Code.ALREADY_CLAIMED and lost.data["claimed_by"] == "U-A"
    assert (await staff_acts.release(deps, ticket_id=tid, staff=STAFF_B)).code is Code.ALREADY_CLAIMED
    assert (await staff_acts.resolve(deps, ticket_id=tid, staff=STAFF_B)).code is Code.ALREADY_CLAIMED
    assert (await staff_acts.release(deps, ticket_id=tid, staff=STAFF_A)).code is Code.OK
    assert (await staff_acts.claim(deps, ticket_id=tid, staff=STAFF_B)).code is Code.OK
    assert (await staff_acts.resolve(deps, ticket_id=tid, staff=STAFF_B)).code is Code.OK
    assert (await staff_acts.claim(deps, ticket_id=tid, staff=STAFF_A)).code is Code.INVALID_STATE
    assert (await staff_acts.claim(deps, ticket_id=99999, staff=STAFF_A)).code is Code.NOT_FOUND
    async with deps.store.read() as s:
        log = (
            await s.execute(
                text("SELECT actor, action, outcome FROM audit_log WHERE action LIKE 'ticket_%' ORDER BY id")
            )
        ).all()
    assert [tuple(r) for r in log] == [
        ("customer:CUST-1001", "ticket_claimed", "NOT_ALLOWED"),
        ("staff:U-A", "ticket_claimed", "OK"),
        ("staff:U-B", "ticket_claimed", "ALREADY_CLAIMED"),
        ("staff:U-B", "ticket_released", "ALREADY_CLAIMED"),
        ("staff:U-B", "ticket_resolved", "ALREADY_CLAIMED"),
        ("staff:U-A", "ticket_released", "OK"),
        ("staff:U-B", "ticket_claimed", "OK"),
        ("staff:U-B", "ticket_resolved", "OK"),
        ("staff:U-A", "ticket_claimed", "INVALID_STATE"),
        ("staff:U-A", "ticket_claimed", "NOT_FOUND"),
    ]


async def test_link_customer_verifies_the_channel_identity(toolbox: Toolbox, deps: Deps) -> None:
    ctx = await open_session(deps, channel="slack", actor=Actor.unverified("T2:U7"), external_key="slack:C1:1.0")
    assert (await toolbox.call("lookup_order", {"order_id": "ORD-8842"}, ctx)).code is Code.IDENTITY_UNVERIFIED
    ticket = await ask_who(deps, ctx)
    assert ticket is not None
    refused = await staff_acts.link(
        deps, staff=Actor.customer("CUST-1002"), ticket_id=ticket.id, customer="sarah@example.com"
    )
    assert refused.code is Code.NOT_ALLOWED
    unknown = await staff_acts.link(deps, staff=STAFF_A, ticket_id=ticket.id, customer="nobody@example.com")
    assert unknown.code is Code.NOT_FOUND
    res = await staff_acts.link(deps, staff=STAFF_A, ticket_id=ticket.id, customer="sarah@example.com")
    assert res.code is Code.OK and res.data["customer_id"] == "CUST-1001"
    ctx2 = await load_context(deps, ctx.session_id)
    assert ctx2 is not None and ctx2.actor == Actor.customer("CUST-1001", subject="T2:U7")
    assert (await toolbox.call("lookup_order", {"order_id": "ORD-8842"}, ctx2)).ok
    # the same thread reopened later keeps its session and now its verified actor
    again = await open_session(deps, channel="slack", actor=Actor.unverified("T2:U7"), external_key="slack:C1:1.0")
    assert again == ctx2


async def test_a_raised_ticket_shows_its_newest_reason(deps: Deps, sarah: CallContext) -> None:
    async with deps.store.write() as s:
        first, _ = await tickets.open_or_update(
            s, deps, session_id=sarah.session_id, priority="P2", reason="refund_approval", summary="over the limit"
        )
    async with deps.store.write() as s:  # the same priority again: the reason stays
        await tickets.open_or_update(
            s, deps, session_id=sarah.session_id, priority="P2", reason="tool_failure", summary="x"
        )
    async with deps.store.write() as s:
        raised, created = await tickets.open_or_update(
            s, deps, session_id=sarah.session_id, priority="P1", reason="legal", summary="my lawyer will call"
        )
    assert not created and raised.id == first.id
    assert (raised.priority, raised.reason) == ("P1", "legal")
    async with deps.store.write() as s:  # a lower one later does not take the reason back down
        again, _ = await tickets.open_or_update(
            s, deps, session_id=sarah.session_id, priority="P3", reason="clarification", summary="?"
        )
    assert (again.priority, again.reason) == ("P1", "legal")


async def test_details_hold_the_history_and_the_conversation(toolbox: Toolbox, deps: Deps, sarah: CallContext) -> None:
    from agent import history

    await history.append(
        deps.store,
        deps.clock,
        session_id=sarah.session_id,
        role="user",
        content=[{"type": "text", "text": "I want a person"}],
        customer_text=True,
    )
    tid = await escalate(toolbox, sarah, "P3", "customer is confused")
    await escalate(toolbox, sarah, "P1", "customer asked for a person")
    await staff_acts.claim(deps, ticket_id=tid, staff=STAFF_A)
    assert (await tickets.details(deps, ticket_id=tid, staff=sarah.actor)).code is Code.NOT_ALLOWED
    assert (await tickets.details(deps, ticket_id=999, staff=STAFF_A)).code is Code.NOT_FOUND
    shown = await tickets.details(deps, ticket_id=tid, staff=STAFF_A)
    assert shown.code is Code.OK
    assert shown.data["customer"] == "Sarah Chen <sarah@example.com>" and shown.data["priority"] == "P1"
    assert [(e["kind"], e["priority"], e["actor"]) for e in shown.data["history"]] == [
        ("opened", "P3", "supportbot"),
        ("raised", "P1", "supportbot"),
        ("claimed", "P1", "staff:U-A"),
    ]
    assert shown.data["history"][1]["note"] == "customer asked for a person"
    assert {"who": "customer", "text": "I want a person"} in shown.data["transcript"]


async def test_a_ticket_quota_caps_new_tickets_not_updates(deps: Deps) -> None:
    quota = TicketQuota(key="addr-1", limit=2)
    sessions = [await open_session(deps, channel="web", actor=Actor.unverified(f"web:anon:{n}")) for n in range(3)]

    async def escalate_in(ctx: CallContext) -> bool:
        async with deps.store.write() as s:
            _, created = await tickets.open_or_update(
                s, deps, session_id=ctx.session_id, priority="P1", reason="human_request", summary="x", quota=quota
            )
        return created

    assert await escalate_in(sessions[0]) and await escalate_in(sessions[1])
    assert not await escalate_in(sessions[0])  # raising a session's own ticket costs nothing
    with pytest.raises(tickets.TicketQuotaExceeded):
        await escalate_in(sessions[2])
    async with deps.store.read() as s:
        assert (await s.execute(text("SELECT count(*) FROM tickets"))).scalar() == 2
        assert (await s.execute(text("SELECT count(*) FROM ticket_events WHERE kind = 'opened'"))).scalar() == 2
    deps.clock.advance(hours=1)  # type: ignore[attr-defined]
    assert await escalate_in(sessions[2])


async def test_the_escalation_tool_says_no_ticket_was_opened_past_the_quota(toolbox: Toolbox, deps: Deps) -> None:
    ctx = await open_session(deps, channel="web", actor=Actor.unverified("web:anon:x"))
    capped = CallContext(ctx.session_id, ctx.actor, ticket_quota=TicketQuota(key="addr-2", limit=0))
    res = await toolbox.call("escalate_to_human", {"reason": "other", "priority": "P3", "summary": "help"}, capped)
    assert res.code is Code.NOT_ALLOWED and "No ticket was opened" in res.note
