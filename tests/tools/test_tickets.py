"""Tickets: one unresolved per session, staff-only transitions, audit, links."""

from __future__ import annotations

from sqlalchemy import text

from tests.conftest import ticket_by_ref
from tools import tickets
from tools.codes import Code
from tools.context import Actor, CallContext, Deps
from tools.sessions import load_context, open_session
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
    await tickets.resolve(deps, ticket_id=first, staff=STAFF_A)
    assert await escalate(toolbox, sarah) != first  # after resolution a new ticket opens


async def test_claim_release_resolve(toolbox: Toolbox, deps: Deps, sarah: CallContext) -> None:
    tid = await escalate(toolbox, sarah)
    assert (await tickets.claim(deps, ticket_id=tid, staff=sarah.actor)).code is Code.NOT_ALLOWED
    assert (await tickets.claim(deps, ticket_id=tid, staff=STAFF_A)).code is Code.OK
    lost = await tickets.claim(deps, ticket_id=tid, staff=STAFF_B)
    assert lost.code is Code.ALREADY_CLAIMED and lost.data["claimed_by"] == "U-A"
    assert (await tickets.release(deps, ticket_id=tid, staff=STAFF_B)).code is Code.ALREADY_CLAIMED
    assert (await tickets.resolve(deps, ticket_id=tid, staff=STAFF_B)).code is Code.ALREADY_CLAIMED
    assert (await tickets.release(deps, ticket_id=tid, staff=STAFF_A)).code is Code.OK
    assert (await tickets.claim(deps, ticket_id=tid, staff=STAFF_B)).code is Code.OK
    assert (await tickets.resolve(deps, ticket_id=tid, staff=STAFF_B)).code is Code.OK
    assert (await tickets.claim(deps, ticket_id=tid, staff=STAFF_A)).code is Code.INVALID_STATE
    assert (await tickets.claim(deps, ticket_id=99999, staff=STAFF_A)).code is Code.NOT_FOUND
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
    refused = await tickets.link_customer(
        deps, staff=Actor.customer("CUST-1002"), channel="slack", subject="T2:U7", customer="sarah@example.com"
    )
    assert refused.code is Code.NOT_ALLOWED
    assert (
        await tickets.link_customer(
            deps, staff=STAFF_A, channel="slack", subject="T2:U7", customer="nobody@example.com"
        )
    ).code is Code.NOT_FOUND
    res = await tickets.link_customer(
        deps, staff=STAFF_A, channel="slack", subject="T2:U7", customer="sarah@example.com"
    )
    assert res.code is Code.OK and res.data["customer_id"] == "CUST-1001"
    ctx2 = await load_context(deps, ctx.session_id)
    assert ctx2 is not None and ctx2.actor == Actor.customer("CUST-1001", subject="T2:U7")
    assert (await toolbox.call("lookup_order", {"order_id": "ORD-8842"}, ctx2)).ok
    # the same thread reopened later keeps its session and now its verified actor
    again = await open_session(deps, channel="slack", actor=Actor.unverified("T2:U7"), external_key="slack:C1:1.0")
    assert again == ctx2
