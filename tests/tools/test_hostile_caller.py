"""A hostile caller mixing random tool calls, confirmations, approvals, cancellations, claims and
time jumps, with other customers' emails and orders and huge, negative and repeated amounts.

The invariants are read with raw SQL, never through the code under test. Hypothesis settings:
200 examples x 30 steps (6,000 steps per database).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import text

from desk import staff as staff_acts
from desk.sessions import open_session
from storage.engine import Store
from storage.importer import seed
from storage.settings import Settings
from storage.types import FrozenClock
from tests.tools.machines import run_bounded
from tools import refunds
from tools.codes import ToolFailure
from tools.context import Actor, CallContext, Deps
from tools.gateway import StoreGateway
from tools.sanitizer import sanitize
from tools.toolbox import TOOLS, Toolbox
from tools.wording import BY_CODE

# the rules are the same on both databases: the SQLite pass explores them in depth, the PostgreSQL
# pass checks that its locks and indexes enforce them too (200 examples there took 2 minutes of CI)
EXAMPLES, STEPS = (60 if os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql") else 200), 30
ORDERS = ["ORD-8842", "ORD-8901", "ORD-7710", "ORD-9120", "ORD-5501", "ORD-5502", "ORD-6610", "ORD-0000", "ord-8842"]
EMAILS = ["sarah@example.com", "james@example.com", "priya@example.com", "nobody@example.com", "SARAH@EXAMPLE.COM"]
AMOUNTS = st.one_of(
    st.sampled_from([89.99, 90.0, 349.0, 150.0, 150.01, 149.99, 45.0, 129.0, 0.0, -1.0, 0.01, 1e12, 1.005]),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
)
WINDOW = 30
LIMIT_CENTS = 15000
MUTABLE = ["audit_log", "tickets", "payouts", "refunds", "session_orders", "sessions", "customer_links"]


def run_machine(database_url: str) -> None:
    loop = asyncio.new_event_loop()
    store = Store.from_settings(Settings(_env_file=None, database_url=database_url))  # type: ignore[call-arg]
    start = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    loop.run_until_complete(seed(store, FrozenClock(start)))

    async def catalog() -> tuple[list[Any], list[Any]]:  # read once: the tools never change these
        async with store.read() as s:
            return (
                list((await s.execute(text("SELECT id, email FROM customers"))).all()),
                list((await s.execute(text("SELECT id, customer_id FROM orders"))).all()),
            )

    customers, orders = loop.run_until_complete(catalog())

    class HostileCaller(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.clock = FrozenClock(start)
            s = Settings(_env_file=None, database_url=database_url, return_window_days=WINDOW)  # type: ignore[call-arg]
            self.deps = Deps(store=store, settings=s, clock=self.clock, gateway=StoreGateway(store, self.clock))
            self.toolbox = Toolbox(self.deps)
            self.texts: list[tuple[str | None, str]] = []  # (customer the text was for, text)
            self.ctx: dict[str, CallContext] = {}

        def run(self, coro: Any) -> Any:
            return loop.run_until_complete(coro)

        async def _reset(self) -> None:
            async with store.write() as s:
                for table in MUTABLE:
                    await s.execute(text(f"DELETE FROM {table}"))
            for name, actor in {
                "sarah": Actor.customer("CUST-1001"),
                "james": Actor.customer("CUST-1002"),
                "anon": Actor.unverified("T9:U9"),
                "staff": Actor.staff("U-STAFF"),
            }.items():
                self.ctx[name] = await open_session(self.deps, channel="test", actor=actor)

        @initialize()
        def fresh(self) -> None:
            self.run(self._reset())

        async def _say(self, ctx: CallContext, payload: Any) -> None:
            # worst case: a model repeats a tool result to the customer verbatim
            raw = payload if isinstance(payload, str) else json.dumps(payload)
            out = await sanitize(raw, store=store, customer_id=ctx.actor.customer_id)
            self.texts.append((ctx.actor.customer_id, out.text))

        @rule(
            who=st.sampled_from(["sarah", "james", "anon", "staff"]),
            tool=st.sampled_from([t.name for t in TOOLS]),
            order=st.sampled_from(ORDERS),
            email=st.sampled_from(EMAILS),
            amount=AMOUNTS,
            reason=st.text(max_size=20),
            prio=st.sampled_from(["P1", "P2", "P3", "P9"]),
        )
        def call_tool(self, who: str, tool: str, order: str, email: str, amount: float, reason: str, prio: str) -> None:
            ctx = self.ctx[who]
            args = {
                "get_customer": {"email": email},
                "lookup_order": {"order_id": order},
                "list_orders": {"limit": 5},
                "process_refund": {"order_id": order, "amount": amount, "reason": reason},
                "escalate_to_human": {"reason": "other", "priority": prio, "summary": reason},
                "get_refund_status": {"order_id": order} if reason else {},
                "search_help_center": {"query": f"{reason} refund for {order} or {email}"},
                "get_product_details": {"product_id": reason or "BLND-500"},
                "get_order_changes": {"order_id": order} if reason else {},
            }[tool]

            async def go() -> None:
                try:
                    res = await self.toolbox.call(tool, args, ctx)
                except ToolFailure as exc:  # pragma: no cover - would mean a bug; surface it
                    raise AssertionError(f"tool failed: {exc.cause!r}") from exc
                await self._say(ctx, res.for_model())
                await self._say(ctx, BY_CODE.get(res.code, ""))

            self.run(go())

        def _refund_ids(self) -> list[str]:
            async def ids() -> list[str]:
                async with store.read() as s:
                    return list((await s.scalars(text("SELECT id FROM refunds ORDER BY id"))).all())

            return self.run(ids()) + ["RF-NOPE"]

        @rule(
            who=st.sampled_from(["sarah", "james", "anon", "staff"]),
            action=st.sampled_from(["confirm", "confirm", "cancel", "approve", "deny"]),
            pick=st.integers(0, 50),
        )
        def click(self, who: str, action: str, pick: int) -> None:
            ids = self._refund_ids()
            rid = ids[pick % len(ids)]
            ctx = self.ctx[who]
            fn = {"confirm": refunds.confirm, "cancel": refunds.cancel}.get(action)

            async def go() -> None:
                if fn is not None:
                    res = await fn(self.deps, refund_id=rid, actor=ctx.actor)
                else:
                    decide = refunds.approve_refund if action == "approve" else refunds.deny
                    res = await decide(self.deps, refund_id=rid, staff=ctx.actor)
                await self._say(ctx, res.for_model())

            self.run(go())

        @rule(
            who=st.sampled_from(["sarah", "staff"]),
            action=st.sampled_from(["claim", "release", "resolve"]),
            ticket=st.integers(0, 5),
        )
        def ticket_action(self, who: str, action: str, ticket: int) -> None:
            fn = {"claim": staff_acts.claim, "release": staff_acts.release, "resolve": staff_acts.resolve}[action]
            self.run(fn(self.deps, ticket_id=ticket, staff=self.ctx[who].actor))

        @rule(days=st.sampled_from([0.01, 1, 10, 26]))
        def time_passes(self, days: float) -> None:
            self.clock.advance(days=days)
            self.run(refunds.expire_due(self.deps))

        # ---- invariants, from raw SQL ---------------------------------------------------------------------
        async def _rows(self, sql: str) -> list[Any]:
            async with store.read() as s:
                return list((await s.execute(text(sql))).all())

        @invariant()
        def no_refund_breaks_a_rule(self) -> None:
            async def check() -> None:
                live = await self._rows(
                    "SELECT order_id, count(*) FROM refunds WHERE status IN "
                    "('awaiting_confirmation','pending_approval','processing') "
                    "GROUP BY order_id HAVING count(*) > 1"
                )
                assert live == [], f"two refunds in progress for one order: {live}"
                moved = await self._rows(
                    "SELECT r.id, r.order_id, r.amount_cents, r.actor, r.decided_by, r.updated_at, o.customer_id, "
                    "o.status, o.paid_cents, o.delivered_at FROM refunds r JOIN orders o ON o.id = r.order_id "
                    "WHERE r.status IN ('processing', 'processed') ORDER BY r.updated_at, r.id"
                )
                so_far: dict[str, int] = {}
                for rid, oid, amount, actor, decided_by, updated, owner, ostatus, paid, delivered in moved:
                    so_far[oid] = so_far.get(oid, 0) + amount
                    assert 0 < so_far[oid] <= paid, rid  # an order's refunds never pass what was paid
                    assert actor == f"customer:{owner}", rid  # asked for by the order's own customer
                    assert ostatus == "delivered", rid
                    delivered = delivered if isinstance(delivered, datetime) else datetime.fromisoformat(delivered)
                    updated = updated if isinstance(updated, datetime) else datetime.fromisoformat(updated)
                    assert updated.replace(tzinfo=None) <= (delivered + timedelta(days=WINDOW)).replace(tzinfo=None), (
                        rid
                    )
                    if so_far[oid] > LIMIT_CENTS:  # the order's refunds in all passed the limit
                        assert (decided_by or "").startswith("staff:"), rid
                    else:
                        assert decided_by == actor, rid  # the customer confirmed it themselves
                payouts = await self._rows(
                    "SELECT p.idempotency_key, p.amount_cents, r.amount_cents, r.status FROM payouts p "
                    "LEFT JOIN refunds r ON r.id = p.idempotency_key"
                )
                for key, paid, asked, status in payouts:
                    assert paid == asked and status in ("processing", "processed"), key
                over = await self._rows(
                    "SELECT p.order_id FROM payouts p JOIN orders o ON o.id = p.order_id "
                    "GROUP BY p.order_id, o.paid_cents HAVING sum(p.amount_cents) > o.paid_cents"
                )
                assert over == [], over

            self.run(check())

        @invariant()
        def no_other_customers_data_in_customer_text(self) -> None:
            async def check() -> None:
                for owner, said in self.texts:
                    assert not re.search(r"\b[A-Z]+_[A-Z_]+\b", said), said
                    for cid, email in customers:
                        if cid != owner:
                            assert cid not in said and email not in said.lower(), (owner, said)
                    for oid, ocust in orders:
                        if ocust != owner:
                            assert oid not in said.upper(), (owner, said)
                self.texts.clear()

            self.run(check())

    run_bounded(HostileCaller, examples=EXAMPLES, steps=STEPS, loop=loop, store=store)


def test_hostile_caller_never_breaks_a_rule_or_leaks(database_url: str) -> None:
    run_machine(database_url)
