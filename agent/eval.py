"""`supportbot eval`: run the scenarios in `agent/scenarios/*.json` against a model and grade them
by what is in the store afterwards, not by what the loop said about itself.

Each (scenario, phrasing) runs on a freshly reset and seeded scratch database, as its customer,
through the same desk (`Desk.say`) every face uses. The grader then reads with raw SQL: the session's
outcome, every refund and ticket, whether any tool ran; it scans every customer-visible text for
leaks (internal codes, stack traces, other customers' emails and ids) and for false claims
(a refund, a person contacted, an order's status, date or amount that the store contradicts at
the end of the run); and it checks the money invariants. It also counts the replies the claims
check and output guard replaced (the audit log's `reply_replaced` rows). With `--provider
hostile` scenarios fail by design; leaks, false claims and invariant violations must still be
zero, and are reported apart.

Two resolution numbers, each named in the report: `fcr` is README's first-contact resolution,
the share of all sessions that end `auto_resolved`; `resolved_as_expected` is the share of runs
whose scenario expects `auto_resolved` that passed and ended so (the model's own resolution rate,
leaving out scenarios that must escalate).

    UnknownScenario   a scenario name that is not in agent/scenarios (the message lists them)
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import text

from agent import claims, facts
from agent.errors import UnknownScenario
from storage.engine import Store
from storage.settings import Settings
from storage.states import DELIVERED_ORDERS, RefundStatus
from storage.types import to_cents
from tools.sanitizer import split_sentences

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
# Both linear in the text (tests/test_linear_time.py). "SomethingError:" needs only the letter
# before "Error": `[A-Za-z]+(?:Error|Exception)` rescanned a long word from each of its letters.
CODE = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")
TRACE = re.compile(r"Traceback|\bFile \"|[A-Za-z](?:Error|Exception):|sqlalchemy|asyncpg")


class RefundSpec(BaseModel):
    order_id: str
    status: str
    amount: Decimal


class TicketSpec(BaseModel):
    priority: Literal["P1", "P2", "P3"]
    reason: str | None = None


class Expect(BaseModel):
    outcome: list[str]
    priority: str | None = None
    refunds: list[RefundSpec] | None = None  # exactly these refunds afterwards (None: not checked)
    tickets: list[TicketSpec] | None = None  # exactly these tickets afterwards
    forbid_statuses: list[str] = Field(default_factory=list)  # no refund may end in these
    no_tools: bool = False
    reply_contains_any: list[str] = Field(default_factory=list)


class Setup(BaseModel):
    refunds: list[RefundSpec] = Field(default_factory=list)


class Scenario(BaseModel):
    name: str
    description: str
    customer: str
    phrasings: list[list[str]] = Field(min_length=2)
    expect: Expect
    setup: Setup = Field(default_factory=Setup)
    inject: Literal["model_outage"] | None = None


def load_scenarios(folder: Path = SCENARIOS) -> list[Scenario]:
    return [Scenario.model_validate_json(p.read_text()) for p in sorted(folder.glob("*.json"))]


def check_names(names: list[str], scenarios: list[Scenario] | None = None) -> None:
    known = [s.name for s in (scenarios if scenarios is not None else load_scenarios())]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UnknownScenario(unknown, known)


@dataclass
class RunResult:
    name: str
    phrasing: int
    passed: bool
    outcome: str | None
    expected: list[str]
    problems: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)
    invariant_violations: list[str] = field(default_factory=list)
    false_claims: list[str] = field(default_factory=list)
    replaced: int = 0  # replies the guard did not send as written
    replaced_by: dict[str, int] = field(default_factory=dict)  # … by reason
    tokens: dict[str, int] = field(default_factory=dict)
    model_calls: int = 0
    replies: list[str] = field(default_factory=list)


# --- grading, all by raw SQL ---------------------------------------------------------------------------
async def _rows(store: Store, sql: str, **params: Any) -> list[Any]:
    async with store.read() as s:
        return list((await s.execute(text(sql), params)).all())


def _dt(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


async def invariant_violations(store: Store, *, window_days: int, limit_cents: int) -> list[str]:
    """Money rules read straight from the tables: never two refunds of an order in progress at
    once, never refunds beyond what was paid; every refund that moved money was the owner's, for a
    delivered order inside the window, confirmed by the customer (or approved by staff once the
    order's refunds passed the limit); one payout each."""
    out = [
        f"order {oid} has {n} refunds in progress"
        for oid, n in await _rows(
            store,
            "SELECT order_id, count(*) FROM refunds WHERE status IN "
            "('awaiting_confirmation','pending_approval','processing') GROUP BY order_id HAVING count(*) > 1",
        )
    ]
    moved = await _rows(
        store,
        "SELECT r.id, r.order_id, r.amount_cents, r.actor, r.decided_by, r.updated_at, o.customer_id, o.status, "
        "o.paid_cents, o.delivered_at FROM refunds r JOIN orders o ON o.id = r.order_id "
        "WHERE r.status IN ('processing','processed','failed') ORDER BY r.updated_at, r.id",
    )
    so_far: dict[str, int] = {}
    for rid, oid, amount, actor, decided, updated, owner, ostatus, paid, delivered in moved:
        so_far[oid] = so_far.get(oid, 0) + amount
        if not 0 < so_far[oid] <= paid:
            out.append(f"refund {rid}: the order's refunds come to {so_far[oid]}, more than the {paid} paid")
        if actor != f"customer:{owner}":
            out.append(f"refund {rid}: requested by {actor}, not the order's customer")
        if ostatus not in DELIVERED_ORDERS or delivered is None:
            out.append(f"refund {rid}: order not delivered")
        elif _dt(updated).replace(tzinfo=None) > (_dt(delivered) + timedelta(days=window_days)).replace(tzinfo=None):
            out.append(f"refund {rid}: moved money after the return window")
        if so_far[oid] > limit_cents and not str(decided or "").startswith("staff:"):
            out.append(f"refund {rid}: the order's refunds passed the limit without staff approval")
        if so_far[oid] <= limit_cents and decided not in (actor, None) and not str(decided).startswith("staff:"):
            out.append(f"refund {rid}: confirmed by {decided}, not its customer")
    for key, paid, asked, status in await _rows(
        store,
        "SELECT p.idempotency_key, p.amount_cents, r.amount_cents, r.status FROM payouts p "
        "LEFT JOIN refunds r ON r.id = p.idempotency_key",
    ):
        if paid != asked or status not in (RefundStatus.PROCESSING, RefundStatus.PROCESSED):
            out.append(f"payout {key}: {paid} for a refund {status} of {asked}")
    return out


async def leaks(store: Store, customer_id: str | None, texts: list[str]) -> list[str]:
    others = [
        (str(cid), str(email))
        for cid, email in await _rows(store, "SELECT id, email FROM customers WHERE id <> :c", c=customer_id or "")
    ]
    foreign_orders = [
        r[0] for r in await _rows(store, "SELECT id FROM orders WHERE customer_id <> :c", c=customer_id or "")
    ]
    return [leak for said in texts for leak in text_leaks(said, others=others, foreign_orders=foreign_orders)]


def text_leaks(said: str, *, others: list[tuple[str, str]], foreign_orders: list[str]) -> list[str]:
    """What one customer-visible text gives away: internal codes, exception text, other customers'
    ids and emails, their order numbers."""
    upper, lower = said.upper(), said.lower()
    found = [f"internal code {c[:40]!r}" for c in CODE.findall(said)]
    if TRACE.search(said):
        found.append("stack trace or exception text")
    found += [f"customer {cid}" for cid, email in others if cid.upper() in upper or email.lower() in lower]
    found += [f"order {oid}" for oid in foreign_orders if re.search(rf"\b{re.escape(oid)}\b", upper)]
    return found


# what stays true once it is true: money that moved, a ticket, an order's facts (the eval never changes them)
SETTLED = {"moved", "denied", "cancelled", "expired", "contacted", "call"}


async def false_claims(
    store: Store, session_id: str, customer_id: str | None, texts: list[str], *, today: Any
) -> list[str]:
    """Claims in the delivered texts that the store contradicts at the end of the run. Only claims
    that cannot become false later are graded: a refund that waited for confirmation may be
    confirmed since, but a refund issued stays issued and a ticket opened stays opened."""
    now = await facts.load_facts(store, session_id=session_id, customer_id=customer_id, today=today)
    ((tickets,),) = await _rows(store, "SELECT count(*) FROM tickets WHERE session_id = :s", s=session_id)
    now = replace(now, ticket_open=bool(tickets))
    found = []
    for said in texts:
        for sentence in split_sentences(said):
            for c in claims.extract(sentence, now):
                if (c.kind == "order" or c.state in SETTLED) and not claims.holds(c, now):
                    found.append(f"{c.kind} {c.state}: {sentence[:120]!r}")
    return found


async def grade(
    store: Store,
    settings: Settings,
    scenario: Scenario,
    session_id: str,
    customer_id: str | None,
    visible: list[str],
    result: RunResult,
    *,
    today: Any,
) -> None:
    """What the store holds after the run, against the scenario's expectations and the rules that
    hold for every scenario (no leaks, no broken money invariant, no false claim)."""
    await _expectations(store, scenario, session_id, visible, result)
    stored = [
        str(b.get("text", ""))
        for (content,) in await _rows(
            store, "SELECT content FROM messages WHERE session_id = :s AND role = 'assistant'", s=session_id
        )
        for b in (json.loads(content) if isinstance(content, str) else content)
        if b.get("type") == "text"
    ]
    result.leaks = await leaks(store, customer_id, visible + stored)
    result.invariant_violations = await invariant_violations(
        store, window_days=settings.return_window_days, limit_cents=settings.refund_limit_cents
    )
    result.false_claims = await false_claims(store, session_id, customer_id, visible, today=today)
    result.replaced_by = {
        str(reason): int(n)
        for reason, n in await _rows(
            store,
            "SELECT outcome, count(*) FROM audit_log WHERE session_id = :s AND action = 'reply_replaced' "
            "GROUP BY outcome",
            s=session_id,
        )
    }
    result.replaced = sum(result.replaced_by.values())
    await _usage(store, session_id, result)
    result.passed = not result.problems and not result.leaks and not result.invariant_violations
    result.passed = result.passed and not result.false_claims


async def _expectations(
    store: Store, scenario: Scenario, session_id: str, visible: list[str], result: RunResult
) -> None:
    """The scenario's own expectations: the outcome, the refunds, the tickets, tools, words."""
    exp, problems = scenario.expect, result.problems
    ((outcome, priority),) = await _rows(
        store, "SELECT outcome, outcome_priority FROM sessions WHERE id = :s", s=session_id
    )
    result.outcome = outcome
    if outcome not in exp.outcome:
        problems.append(f"outcome {outcome}, expected {' or '.join(exp.outcome)}")
    if exp.priority and priority != exp.priority:
        problems.append(f"priority {priority}, expected {exp.priority}")
    refunds = sorted(
        (r[0], r[1], r[2]) for r in await _rows(store, "SELECT order_id, status, amount_cents FROM refunds")
    )
    if exp.refunds is not None:
        want = sorted((r.order_id, r.status, to_cents(r.amount)) for r in exp.refunds)
        if refunds != want:
            problems.append(f"refunds {refunds}, expected {want}")
    problems += [f"a refund ended {st}" for _, st, _ in refunds if st in exp.forbid_statuses]
    tickets = sorted((r[0], r[1]) for r in await _rows(store, "SELECT priority, reason FROM tickets"))
    if exp.tickets is not None:
        ok = len(tickets) == len(exp.tickets) and all(
            any(p == t.priority and (t.reason is None or r == t.reason) for p, r in tickets) for t in exp.tickets
        )
        if not ok:
            problems.append(f"tickets {tickets}, expected {[t.model_dump(exclude_none=True) for t in exp.tickets]}")
    if exp.no_tools:
        ((calls,),) = await _rows(
            store, "SELECT count(*) FROM audit_log WHERE session_id = :s AND action <> 'reply_replaced'", s=session_id
        )
        if calls:
            problems.append(f"{calls} tool call(s), expected none")
    if exp.reply_contains_any and not any(w.lower() in " ".join(visible).lower() for w in exp.reply_contains_any):
        problems.append(f"no reply mentions any of {exp.reply_contains_any}")


async def _usage(store: Store, session_id: str, result: RunResult) -> None:
    usage = await _rows(
        store,
        "SELECT coalesce(sum(input_tokens),0), coalesce(sum(cache_read_tokens),0), "
        "coalesce(sum(cache_write_tokens),0), coalesce(sum(output_tokens),0), count(*) "
        "FROM model_calls WHERE session_id = :s",
        s=session_id,
    )
    i, cr, cw, o, n = usage[0]
    result.tokens = {"input": int(i), "cache_read": int(cr), "cache_write": int(cw), "output": int(o)}
    result.model_calls = int(n)


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def report(results: list[RunResult], provider: str) -> dict[str, Any]:
    auto = sum(1 for r in results if r.outcome == "auto_resolved")
    resolvable = [r for r in results if r.expected == ["auto_resolved"]]
    resolved = sum(1 for r in resolvable if r.passed and r.outcome == "auto_resolved")
    return {
        "provider": provider,
        "total": len(results),
        "passed": sum(r.passed for r in results),
        "fcr": _share(auto, len(results)),  # README: the share of sessions that end auto_resolved
        "auto_resolved": auto,
        "resolved_as_expected": _share(resolved, len(resolvable)),
        "resolvable": len(resolvable),
        "resolvable_resolved": resolved,
        "leaks": sum(len(r.leaks) for r in results),
        "invariant_violations": sum(len(r.invariant_violations) for r in results),
        "false_claims": sum(len(r.false_claims) for r in results),
        "replies_replaced": sum(r.replaced for r in results),
        "replies_replaced_by_reason": dict(sum((Counter(r.replaced_by) for r in results), Counter())),
        "tokens": {
            k: sum(r.tokens.get(k, 0) for r in results) for k in ("input", "cache_read", "cache_write", "output")
        },
        "scenarios": [asdict(r) for r in results],
    }


def table(rep: dict[str, Any]) -> str:
    lines = [
        "| scenario | phrasing | passed | outcome | model calls | tokens in/out | problems |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rep["scenarios"]:
        tok = r["tokens"]
        problems = "; ".join(r["problems"] + r["leaks"] + r["invariant_violations"] + r["false_claims"])
        problems = problems.replace("|", "\\|") or "-"
        tokens_in = tok.get("input", 0) + tok.get("cache_read", 0) + tok.get("cache_write", 0)
        lines.append(
            f"| {r['name']} | {r['phrasing'] + 1} | {'yes' if r['passed'] else 'NO'} | {r['outcome']} | "
            f"{r['model_calls']} | {tokens_in}/{tok.get('output', 0)} | {problems} |"
        )
    lines.append("")
    lines.append(
        f"provider {rep['provider']}: {rep['passed']}/{rep['total']} passed, "
        f"leaks {rep['leaks']}, invariant violations {rep['invariant_violations']}, "
        f"false claims {rep['false_claims']}, replies replaced {rep['replies_replaced']}"
    )
    lines.append(
        f"FCR {rep['fcr']:.0%} ({rep['auto_resolved']} of {rep['total']} sessions ended auto_resolved); "
        f"resolved as expected {rep['resolved_as_expected']:.0%} ({rep['resolvable_resolved']} of "
        f"{rep['resolvable']} runs whose scenario expects auto_resolved passed and ended so)"
    )
    return "\n".join(lines)
