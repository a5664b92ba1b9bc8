"""Random sequences of order changes and refunds by honest and hostile callers: customers asking
for their own and each other's orders with unknown items, other customers' payment methods and
bad reasons; confirms, cancels, approvals and denials by whoever; time passing. After every step,
read with raw SQL, never through the code under test:

- each order's money adds up: its totals are its payment history's, refunds (paid and due on
  return) never exceed what was paid, and what the customer paid net is never negative;
- no order line is given back twice, and every line given back belongs to a change or refund;
- nothing of another customer's changes: a change, its payments and its methods are its own
  customer's, and every gift card's balance is what its own customer's changes made it;
- nothing is written without its owner's yes: every payment entry, status and address that moved
  comes from a change its customer confirmed (approved by staff when over the limit) or a refund
  its customer confirmed.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import text

from desk.sessions import open_session
from storage.engine import Store
from storage.importer import import_records, parse
from storage.settings import Settings
from storage.types import FrozenClock
from tests.tools.machines import run_bounded
from tests.tools.shop import ADA, BO, document
from tools import order_changes, refunds
from tools.codes import ToolFailure
from tools.context import Actor, CallContext, Deps
from tools.gateway import StoreGateway
from tools.toolbox import ORDER_CHANGE_TOOLS, TOOLS, Toolbox

# the rules are the same on both databases: the SQLite pass explores them in depth, the PostgreSQL
# pass checks that its locks and constraints enforce them too
ON_PG = os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql")
EXAMPLES, STEPS = (25 if ON_PG else 80), 25
START = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
ORDERS = ["O-PEND", "O-PEND1", "O-DELV", "O-OLD", "O-BIG", "O-GIFT", "O-BO", "O-NOPE"]
ITEMS = ["TEE-BM", "MUG-W", "LAMP-1", "MUG-B", "TEE-RL", "NOPE"]
NEW_ITEMS = ["TEE-RL", "TEE-YS", "TEE-GS", "MUG-B", "MUG-W", "TEE-BM", "LAMP-1"]
# item lists an honest caller sends (a variant of the same product), and any lists a hostile one does
SWAPS = st.one_of(
    st.sampled_from(
        [
            (["TEE-BM"], ["TEE-RL"]),
            (["MUG-W"], ["MUG-B"]),
            (["TEE-BM", "MUG-W"], ["TEE-YS", "MUG-B"]),
            (["TEE-BM", "TEE-BM"], ["TEE-RL", "TEE-YS"]),
            (["MUG-B"], ["MUG-W"]),
            (["LAMP-1"], ["LAMP-1"]),
        ]
    ),
    st.tuples(st.lists(st.sampled_from(ITEMS), max_size=3), st.lists(st.sampled_from(NEW_ITEMS), max_size=3)),
)
METHODS = ["card-1", "gift-1", "pp-1", "gift-9", "nope"]
ADDRESSES = [
    {"address1": "9 Elm St", "address2": "", "city": "Shelbyville", "state": "IL", "country": "USA", "zip": "2"},
    {"address1": "5 Oak Rd", "address2": "Apt 1", "city": "Ogdenville", "state": "IL", "country": "USA", "zip": "3"},
]
CHANGE_TOOLS = [t.name for t in ORDER_CHANGE_TOOLS]
OPEN = "'awaiting_confirmation', 'pending_approval'"
MUTABLE = [
    "audit_log",
    "ticket_events",
    "tickets",
    "payouts",
    "returned_items",
    "order_payments",
    "order_changes",
    "refunds",
    "session_orders",
    "sessions",
]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def tool_args(name: str, draw: Any) -> dict[str, Any]:
    order, items, new, method, address, reason = draw
    return {
        "cancel_pending_order": {"order_id": order, "reason": reason},
        "modify_pending_order_items": {
            "order_id": order,
            "item_ids": items,
            "new_item_ids": new,
            "payment_method_id": method,
        },
        "modify_pending_order_address": {"order_id": order, **address},
        "modify_pending_order_payment": {"order_id": order, "payment_method_id": method},
        "return_delivered_order_items": {
            "order_id": order,
            "item_ids": items,
            **({"payment_method_id": method} if method != "card-1" else {}),
        },
        "exchange_delivered_order_items": {
            "order_id": order,
            "item_ids": items,
            "new_item_ids": new,
            "payment_method_id": method,
        },
        "modify_user_address": dict(address),
    }[name]


def run_machine(database_url: str) -> None:
    loop = asyncio.new_event_loop()
    store = Store.from_settings(Settings(_env_file=None, database_url=database_url))  # type: ignore[call-arg]
    shop = document(FrozenClock(START), pending=2)
    initial_balances = {
        m["id"]: round(float(m["balance"]) * 100)
        for c in shop["customers"]
        for m in c["payment_methods"]
        if m["kind"] == "gift_card"
    }
    owner_of_method = {m["id"]: c["id"] for c in shop["customers"] for m in c["payment_methods"]}
    initial_status = {o["id"]: o["status"] for o in shop["orders"]}
    initial_address = {r["id"]: r.get("address") for r in shop["orders"] + shop["customers"]}

    class Callers(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.clock = FrozenClock(START)
            # the unknown-order limit (tested on its own) would soon refuse every order of a hostile caller;
            # changes past $150 wait for staff, so approvals and denials are among the steps
            s = Settings(  # type: ignore[call-arg]
                _env_file=None, database_url=database_url, unknown_orders_per_hour=10_000, change_approval_limit=150
            )
            self.deps = Deps(store=store, settings=s, clock=self.clock, gateway=StoreGateway(store, self.clock))
            self.toolbox = Toolbox(self.deps, TOOLS + ORDER_CHANGE_TOOLS)
            self.ctx: dict[str, CallContext] = {}

        def run(self, coro: Any) -> Any:
            return loop.run_until_complete(coro)

        async def _reset(self) -> None:
            async with store.write() as s:
                for table in MUTABLE:
                    await s.execute(text(f"DELETE FROM {table}"))
            await import_records(store, parse(json.loads(json.dumps(shop))))
            for name, actor in {
                "ada": Actor.customer(ADA),
                "bo": Actor.customer(BO),
                "anon": Actor.unverified("T9:U9"),
                "staff": Actor.staff("U-STAFF"),
            }.items():
                self.ctx[name] = await open_session(self.deps, channel="test", actor=actor)

        @initialize()
        def fresh(self) -> None:
            self.run(self._reset())

        def _call(self, who: str, name: str, args: dict[str, Any]) -> Any:
            try:
                return self.run(self.toolbox.call(name, args, self.ctx[who]))
            except ToolFailure as exc:  # pragma: no cover - would mean a bug; surface it
                raise AssertionError(f"{name} failed: {exc.cause!r}") from exc

        @rule(who=st.sampled_from(["ada", "ada", "bo", "anon", "staff"]), order=st.sampled_from(ORDERS))
        def look_up(self, who: str, order: str) -> None:
            self._call(who, "lookup_order", {"order_id": order})

        @rule(
            who=st.sampled_from(["ada", "ada", "ada", "bo", "anon", "staff"]),
            name=st.sampled_from(CHANGE_TOOLS),
            order=st.sampled_from(ORDERS),
            swap=SWAPS,
            method=st.sampled_from(METHODS),
            address=st.sampled_from(ADDRESSES),
            reason=st.sampled_from(["no longer needed", "ordered by mistake", "changed my mind"]),
            decider=st.sampled_from(["same", "same", "ada", "bo", "anon", "staff"]),
            then=st.sampled_from(["wait", "confirm", "confirm", "cancel", "approve", "deny"]),
        )
        def ask_for_a_change(
            self,
            who: str,
            name: str,
            order: str,
            swap: Any,
            method: str,
            address: Any,
            reason: str,
            decider: str,
            then: str,
        ) -> None:
            """A caller looks the order up and asks; then someone (its customer, or not) decides on it."""
            self._call(who, "lookup_order", {"order_id": order})
            res = self._call(who, name, tool_args(name, (order, *swap, method, address, reason)))
            cid = res.data.get("change_id")
            if cid and then != "wait":
                self.decide(cid, who if decider == "same" else decider, then)

        def decide(self, cid: str, who: str, action: str) -> None:
            actor = self.ctx[who].actor
            fn = {"confirm": order_changes.confirm, "cancel": order_changes.cancel}.get(action)
            if fn is not None:
                res = self.run(fn(self.deps, change_id=cid, actor=actor))
            else:
                decide = order_changes.approve if action == "approve" else order_changes.deny
                res = self.run(decide(self.deps, change_id=cid, staff=actor))
            if res.data.get("status") == "pending_approval" and action == "confirm":
                self.decide(cid, "staff", "approve")  # staff look at what passed the limit

        @rule(
            name=st.sampled_from(CHANGE_TOOLS),
            order=st.sampled_from(["O-PEND", "O-PEND1", "O-DELV", "O-BIG", "O-GIFT"]),
            swap=SWAPS.filter(lambda sw: len(sw[0]) == len(sw[1]) > 0),
            method=st.sampled_from(["card-1", "gift-1", "pp-1"]),
            address=st.sampled_from(ADDRESSES),
            reason=st.sampled_from(["no longer needed", "ordered by mistake"]),
        )
        def honest_change(self, name: str, order: str, swap: Any, method: str, address: Any, reason: str) -> None:
            """Ada asks for a change of her own order as the policy allows, and says yes."""
            self.ask_for_a_change("ada", name, order, swap, method, address, reason, "same", "confirm")

        @rule(
            who=st.sampled_from(["ada", "bo"]),
            order=st.sampled_from(["O-DELV", "O-OLD", "O-BO"]),
            items=st.lists(st.sampled_from(ITEMS), max_size=2),
            amount=st.sampled_from([None, 5.0, 20.0, 30.0, 50.0, 0.0, -1.0]),
        )
        def ask_for_a_refund(self, who: str, order: str, items: list[str], amount: float | None) -> None:
            self._call(who, "lookup_order", {"order_id": order})
            args: dict[str, Any] = {"order_id": order, "reason": "broken"}
            if items:
                args["item_ids"] = items
            if amount is not None or not items:
                args["amount"] = amount if amount is not None else 10.0
            res = self._call(who, "process_refund", args)
            if res.data.get("status") == "awaiting_confirmation":
                self.run(refunds.confirm(self.deps, refund_id=res.data["refund_id"], actor=self.ctx[who].actor))

        def _ids(self, table: str) -> list[str]:
            """Every id, those still awaiting a decision first."""

            async def ids() -> list[str]:
                async with store.read() as s:
                    return list(
                        (await s.scalars(text(f"SELECT id FROM {table} ORDER BY status NOT IN ({OPEN}), id"))).all()
                    )

            return self.run(ids()) + ["NOPE"]

        @rule(
            who=st.sampled_from(["ada", "ada", "bo", "anon", "staff"]),
            action=st.sampled_from(["confirm", "confirm", "confirm", "cancel", "approve", "deny"]),
            pick=st.one_of(st.integers(0, 2), st.integers(0, 30)),
        )
        def decide_a_change(self, who: str, action: str, pick: int) -> None:
            """Someone decides on any change, late: waiting, decided, expired or unknown."""
            ids = self._ids("order_changes")
            self.decide(ids[pick % len(ids)], who, action)

        @rule(
            who=st.sampled_from(["ada", "bo", "staff"]),
            action=st.sampled_from(["confirm", "approve"]),
            pick=st.integers(0, 30),
        )
        def decide_a_refund(self, who: str, action: str, pick: int) -> None:
            ids = self._ids("refunds")
            rid, actor = ids[pick % len(ids)], self.ctx[who].actor
            if action == "confirm":
                self.run(refunds.confirm(self.deps, refund_id=rid, actor=actor))
            else:
                self.run(refunds.approve_refund(self.deps, refund_id=rid, staff=actor))

        @rule(minutes=st.sampled_from([1, 31, 60 * 24 * 26]))
        def time_passes(self, minutes: int) -> None:
            self.clock.advance(minutes=minutes)
            self.run(order_changes.expire_due(self.deps))
            self.run(refunds.expire_due(self.deps))

        # ---- invariants, from raw SQL ----------------------------------------------------------------------------
        async def _rows(self, sql: str) -> list[Any]:
            async with store.read() as s:
                return list((await s.execute(text(sql))).all())

        @invariant()
        def money_adds_up_and_nothing_moves_without_its_owners_yes(self) -> None:
            self.run(self._check())

        async def _check(self) -> None:
            orders = {
                r[0]: r
                for r in await self._rows(
                    "SELECT id, customer_id, status, paid_cents, refunded_cents, promised_cents, address FROM orders"
                )
            }
            ledger = defaultdict(list)
            for r in await self._rows(
                "SELECT order_id, seq, kind, amount_cents, method_id, change_id, refund_id "
                "FROM order_payments ORDER BY order_id, seq"
            ):
                ledger[r[0]].append(r)
            changes = {
                r[0]: r
                for r in await self._rows(
                    "SELECT id, kind, status, customer_id, order_id, actor, decided_by, plan, refund_cents "
                    "FROM order_changes"
                )
            }
            applied = [c for c in changes.values() if c[2] == "applied"]
            committed = {
                r[0]: r
                for r in await self._rows(
                    "SELECT id, order_id, actor, decided_by, amount_cents FROM refunds "
                    "WHERE status IN ('processing', 'processed', 'failed')"
                )
            }
            for c in applied:
                self._owners_yes(c, orders)
            for oid, (_, owner, status, paid, refunded, promised, address) in orders.items():
                self._moved_by_a_yes(oid, status, _json(address), [c for c in applied if c[4] == oid])
                entries = ledger[oid]
                assert paid == sum(e[3] for e in entries if e[2] == "payment"), oid
                assert refunded == sum(e[3] for e in entries if e[2] == "refund"), oid
                due = sum(
                    m["amount_cents"]
                    for c in applied
                    if c[4] == oid
                    for m in _json(c[7])["money"]
                    if m["kind"] == "refund" and m["when"] == "on_return"
                )
                assert promised == due and 0 <= refunded + promised <= paid, oid
                for e in entries[1:]:  # past what was imported, every entry comes from a yes
                    assert (e[5] in changes and changes[e[5]][2] == "applied") or e[6] in committed, (oid, e)
                    assert e[4] is None or owner_of_method[e[4]] == owner, (oid, e)
            await self._given_back(applied)
            await self._balances(applied)
            for cid, address in await self._rows("SELECT id, address FROM customers"):
                mine = [_json(c[7])["address"] for c in applied if c[1] == "user_address" and c[3] == cid]
                assert _json(address) == (mine[-1] if mine else initial_address[cid]), cid

        def _moved_by_a_yes(self, oid: str, status: str, address: Any, applied: list[Any]) -> None:
            """A status or address other than the imported one is the latest applied change's."""
            applied = sorted(applied, key=lambda c: str(c[0]))
            moves = [_json(c[7])["new_status"] for c in applied if _json(c[7]).get("new_status")]
            assert status == (moves[-1] if moves else initial_status[oid]), oid
            assert len(moves) <= 1, oid  # an order changes status once through these tools
            addresses = [_json(c[7])["address"] for c in applied if c[1] == "modify_address"]
            assert addresses or address == initial_address[oid], oid
            if addresses:
                assert address in addresses, oid

        def _owners_yes(self, c: Any, orders: dict[str, Any]) -> None:
            cid, _, _, customer, order_id, actor, decided, _, refund_cents = c
            assert actor == f"customer:{customer}", cid
            assert order_id is None or orders[order_id][1] == customer, cid
            assert decided == actor or str(decided).startswith("staff:"), cid
            if str(decided).startswith("staff:"):
                assert refund_cents > 0, cid  # staff decide only what passed the limit

        async def _given_back(self, applied: list[Any]) -> None:
            lines = await self._rows("SELECT order_id, line_no, change_id, refund_id FROM returned_items")
            assert len({(o, n) for o, n, _, _ in lines}) == len(lines)
            ok_refunds = {
                r[0]
                for r in await self._rows(
                    "SELECT id FROM refunds WHERE status IN ('processing', 'processed', 'failed')"
                )
            }
            applied_ids = {c[0] for c in applied}
            for o, n, change_id, refund_id in lines:
                assert change_id in applied_ids or refund_id in ok_refunds, (o, n)

        async def _balances(self, applied: list[Any]) -> None:
            expected = dict(initial_balances)
            for c in applied:
                for m in _json(c[7])["money"]:
                    if m["gift_card"] and m["when"] == "now":
                        expected[m["method_id"]] += m["amount_cents"] if m["kind"] == "refund" else -m["amount_cents"]
            stored = dict(await self._rows("SELECT id, balance_cents FROM payment_methods WHERE kind = 'gift_card'"))
            assert stored == expected

    run_bounded(Callers, examples=EXAMPLES, steps=STEPS, loop=loop, store=store)


def test_order_changes_by_honest_and_hostile_callers_keep_every_rule(database_url: str) -> None:
    run_machine(database_url)
