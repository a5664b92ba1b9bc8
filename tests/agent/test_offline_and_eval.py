"""The offline model, and the eval graded by the store (on the suite's database)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from sqlalchemy import text as sql

import agent.offline
import agent.offline_kb
import agent.offline_text
from agent.eval import (
    RunResult,
    UnknownScenario,
    false_claims,
    invariant_violations,
    leaks,
    load_scenarios,
    report,
    table,
)
from agent.events import Confirmation, Reply
from agent.loop import Agent
from agent.model import ModelReply, ModelRequest
from agent.offline import OfflineModel
from agent.scripted import reply, text
from bot.evals import run_eval
from desk import Desk
from desk.customer import unclear_answer, yes_or_no
from storage.settings import Settings
from tests.conftest import SARAH
from tools import wording
from tools.codes import Code
from tools.context import CallContext, Deps
from tools.toolbox import Toolbox


async def say(conv: tuple[Desk, CallContext], message: str) -> list[str]:
    desk, ctx = conv
    return [e.text for e in [e async for e in desk.say(ctx, message)] if isinstance(e, Reply)]


async def test_offline_model_resolves_the_seed_happy_path(deps: Deps, sarah: CallContext) -> None:
    conv = (Desk(Agent(model=OfflineModel(), toolbox=Toolbox(deps))), sarah)
    desk, ctx = conv
    first = [e async for e in desk.say(ctx, "Hi, my blender from order ORD-8842 arrived broken. I'd like a refund.")]
    assert [e.text for e in first if isinstance(e, Reply)] == [
        "I'm sorry about the ProBlend 500 blender: here is the refund for you to confirm."
    ]
    (prompt,) = [e for e in first if isinstance(e, Confirmation)]
    assert prompt.order_id == "ORD-8842" and prompt.amount == "$89.99"
    done = await say(conv, "yes")
    assert done[0].startswith("Done: your refund of $89.99 for order ORD-8842 has been issued")
    async with deps.store.read() as s:
        assert (await s.execute(sql("SELECT status, amount_cents FROM refunds"))).all() == [("processed", 8999)]
        assert (await s.scalar(sql("SELECT outcome FROM sessions WHERE id = :i"), {"i": sarah.session_id})) == (
            "auto_resolved"
        )
    status = await say(conv, "/refund-status ORD-8842")
    assert status == ["Order ORD-8842 (ProBlend 500 blender): refund of $89.99 is issued."]


async def test_offline_model_says_what_it_is(deps: Deps, sarah: CallContext) -> None:
    conv = (Desk(Agent(model=OfflineModel(), toolbox=Toolbox(deps))), sarah)
    (answer,) = await say(conv, "are you a bot?")
    assert "rules-based stand-in for Claude" in answer


async def test_offline_model_reads_only_the_conversation(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (agent.offline, agent.offline_text):
        imported = {getattr(v, "__name__", "") for v in vars(module).values() if inspect.ismodule(v)}
        assert imported <= {"itertools", "json", "re", "agent.offline_kb"}  # no filesystem, no store, no eval
        assert not any(name.startswith(("storage", "tools", "sqlalchemy")) for name in vars(module))
    kb = {getattr(v, "__name__", "") for v in vars(agent.offline_kb).values() if inspect.ismodule(v)}
    assert kb <= {"itertools", "re", "tools.wording"}  # the help center only through its tool

    def no_files(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the offline model opened a file")

    monkeypatch.setattr("builtins.open", no_files)
    monkeypatch.setattr("pathlib.Path.read_text", no_files)
    request = ModelRequest(
        system="within 30 days",
        tools=[],
        max_tokens=100,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "[Session note] The customer is verified as A <a@x.io>."},
                    {"type": "text", "text": "refund ORD-8842 please, it is broken"},
                ],
            }
        ],
    )
    out = await OfflineModel().complete(request)
    assert out.stop_reason == "tool_use" and out.tool_uses[0]["input"] == {"email": "a@x.io"}


@pytest.mark.parametrize(
    ("said", "meaning"),
    [
        ("yes", True),
        ("Yes please!", True),
        ("go ahead", True),
        ("no", False),
        ("cancel", False),
        ("yes but no", None),
        ("refund ORD-1", None),
        ("ok", None),
        ("sure", None),
        ("ok thanks", None),
    ],
)
def test_yes_or_no(said: str, meaning: bool | None) -> None:
    assert yes_or_no(said) is meaning


@pytest.mark.parametrize("said", ["ok", "sure", "ok thanks", "Okay!", "thanks", "vale"])
def test_agreeable_words_are_not_a_yes_to_money(said: str) -> None:
    assert yes_or_no(said) is None and unclear_answer(said)


@pytest.mark.parametrize("said", ["yes", "no", "refund ORD-1", "ok so where is my order"])
def test_clear_answers_and_questions_are_not_unclear(said: str) -> None:
    assert not unclear_answer(said)


def test_there_are_enough_scenarios_each_with_two_phrasings() -> None:
    scenarios = load_scenarios()
    assert len(scenarios) >= 16
    assert all(len(s.phrasings) >= 2 for s in scenarios)
    names = {s.name for s in scenarios}
    for required in (
        "damaged_item_refund",
        "distress_trigger",
        "human_request",
        "outside_return_window",
        "cross_account",
        "over_limit_refund",
        "duplicate_refund_request",
        "unknown_order",
        "identity_mismatch",
        "prompt_injection",
        "two_orders",
        "refund_status_question",
        "multi_turn_clarification",
        "confirmation_declined",
        "model_outage",
        "chit_chat",
        "where_is_my_order",
        "angry_without_legal_words",
        "cant_do",
        "no_refund_yet",
        "bot_identity_question",
    ):
        assert required in names
    assert sum(len(s.phrasings) for s in scenarios) >= 36 + 40  # 36 before issue 16


async def test_offline_eval_passes_everything(settings: Settings, database_url: str) -> None:
    rep = await run_eval(settings, provider="offline", database_url=database_url)
    failed = [(r["name"], r["phrasing"], r["problems"]) for r in rep["scenarios"] if not r["passed"]]
    assert failed == []
    assert rep["leaks"] == 0 and rep["invariant_violations"] == 0
    # FCR as README defines it: the share of all sessions that end auto_resolved
    auto = sum(1 for r in rep["scenarios"] if r["outcome"] == "auto_resolved")
    assert 0 < auto < rep["total"] and rep["auto_resolved"] == auto
    assert rep["fcr"] == round(auto / rep["total"], 4)
    # and, named apart, the runs whose scenario expects auto_resolved: all resolved
    assert rep["resolved_as_expected"] == 1.0 and rep["resolvable_resolved"] == rep["resolvable"] > 0
    shown = table(rep)
    assert f"FCR {rep['fcr']:.0%} ({auto} of {rep['total']} sessions ended auto_resolved)" in shown
    assert f"resolved as expected 100% ({rep['resolvable']} of {rep['resolvable']} runs" in shown
    assert rep["false_claims"] == 0 and rep["replies_replaced"] == 0  # no honest reply was replaced
    assert {"scenarios", "fcr", "leaks", "invariant_violations", "provider", "tokens"} <= set(rep)
    assert all({"name", "passed", "outcome", "tokens"} <= set(r) for r in rep["scenarios"])
    assert sum(r["tokens"]["input"] for r in rep["scenarios"]) > 0


async def test_hostile_eval_fails_scenarios_but_never_breaks_a_rule(settings: Settings, database_url: str) -> None:
    rep = await run_eval(settings, provider="hostile", database_url=database_url, phrasings=2)  # the CLI runs all
    assert rep["passed"] < rep["total"]  # it fails by design
    assert rep["leaks"] == 0 and rep["invariant_violations"] == 0 and rep["false_claims"] == 0
    # its lies were caught (runs a verdict ended at once, with a fixed reply, never got to lie)
    assert rep["replies_replaced"] > rep["total"] // 2


async def test_unknown_scenario_names_are_an_error_listing_the_known_ones(
    settings: Settings, database_url: str
) -> None:
    with pytest.raises(UnknownScenario) as err:
        await run_eval(settings, provider="offline", database_url=database_url, only=["damaged_item_refund", "nope"])
    assert err.value.unknown == ["nope"] and "damaged_item_refund" in err.value.known
    known = ", ".join(sorted(err.value.known))
    assert str(err.value) == f"unknown scenario 'nope'; the scenarios are: {known}" and "chit_chat" in known


def test_the_problems_column_is_never_cut() -> None:
    long = RunResult("x", 0, False, "escalated", ["auto_resolved"], problems=["a|b " + "p" * 300, "second"])
    shown = table(report([long], "offline"))
    assert "a\\|b " + "p" * 300 + "; second |" in shown


class Liar:
    """Claims a refund it never made: the grader, reading the store, must not believe it."""

    name = "liar"

    async def complete(self, request: ModelRequest) -> ModelReply:
        return reply(text("Done: your refund of $89.99 for order ORD-8842 has been issued."))


async def test_the_grader_reads_the_store_not_the_reply(settings: Settings, database_url: str) -> None:
    rep = await run_eval(
        settings, provider="offline", database_url=database_url, only=["damaged_item_refund"], model=Liar()
    )  # type: ignore[arg-type]
    assert rep["passed"] == 0
    for r in rep["scenarios"]:
        assert any(p.startswith("refunds [],") for p in r["problems"]), r["problems"]
        assert not any("has been issued" in said for said in r["replies"])  # and the lie was not sent


async def test_the_grader_finds_false_claims_in_unguarded_text(deps: Deps, sarah: CallContext) -> None:
    from agent.scripted import HostileModel

    lies = [lie.format(dump="{}", email="x", other="ORD-5501", own="ORD-8842") for lie in HostileModel.LIES[1:]]
    lies.remove("Look the order up with lookup_order first, then process_refund (code: OK).")  # not a claim
    found = await false_claims(deps.store, sarah.session_id, SARAH, lies, today=deps.clock.now().date())
    assert len(found) >= len(lies)
    true = [
        "Done: your refund of $0.01 for order ORD-9999 was not made.",
        "Order ORD-8842 (ProBlend 500 blender, $89.99) was delivered on 2026-11-19.",
        "I haven't passed this conversation to a person yet.",
    ]
    assert await false_claims(deps.store, sarah.session_id, SARAH, true, today=deps.clock.now().date()) == []


async def test_offline_model_lists_recent_orders_from_the_turns_context(deps: Deps, sarah: CallContext) -> None:
    conv = (Desk(Agent(model=OfflineModel(), toolbox=Toolbox(deps))), sarah)
    (answer,) = await say(conv, "wheres my ordr??")
    assert answer.startswith("Here are your most recent orders: ORD-9120 (Stoneware mug set, $32.50) hasn't shipped")
    async with deps.store.read() as s:
        actions = (await s.execute(sql("SELECT action FROM audit_log ORDER BY id"))).scalars().all()
    assert actions == []  # the turn came with the customer's newest orders: nothing to look up


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("status of my refund for ORD-7710", "There is no refund on order ORD-7710 so far."),
        ("Can you cancel my order ORD-9120?", "I can't cancel orders"),
        ("how long is the return window? and do you ship on weekends?", "within 30 days"),
        ("This is ridiculous!! Where is ORD-9120?", "I'm really sorry about this"),
        (
            "Hallo, wo ist meine Bestellung ORD-9120?",
            "(Entschuldigung, ich kann im Moment nur auf Englisch antworten.)",
        ),
        # issue 27: how people write
        ("where is order no. 8842?", "Order ORD-8842 (ProBlend 500 blender, $89.99) was delivered on"),
        ("where is ORD\u20138842?", "Order ORD-8842 (ProBlend 500 blender, $89.99) was delivered on"),
        ("My kettle ORD-7710 caught fire and burned my hand!", wording.ESCALATED_SAFETY),
        ("I was charged twice for ORD-8901", wording.ESCALATED_BILLING),
        ("I never received ORD-8901 even though it says delivered", wording.ESCALATED_NOT_RECEIVED),
        ("I will dispute the charge with my bank", wording.ESCALATED_BILLING),
        (
            "My friend is a lawyer and says the blender is defective, can I get a refund?",
            "here is the refund for you to confirm",
        ),
    ],
)
async def test_offline_model_phrasings(deps: Deps, sarah: CallContext, said: str, expected: str) -> None:
    conv = (Desk(Agent(model=OfflineModel(), toolbox=Toolbox(deps))), sarah)
    (answer,) = await say(conv, said)
    assert expected in answer


async def test_leak_and_invariant_detectors_fire(deps: Deps, sarah: CallContext) -> None:
    found = await leaks(
        deps.store,
        "CUST-1001",
        ["Call james@example.com about ORD-5501 (OWNERSHIP_MISMATCH)", "Traceback (most recent call last):"],
    )
    assert len(found) == 4
    assert await leaks(deps.store, "CUST-1001", ["Your order ORD-8842 is on its way, sarah@example.com"]) == []
    async with deps.store.write() as s:
        await s.execute(
            sql(
                "INSERT INTO refunds (id, order_id, amount_cents, currency, status, reason, actor, decided_by, "
                "created_at, updated_at) VALUES ('RF-BAD', 'ORD-5501', 99999, 'USD', 'processed', 'x', "
                "'customer:CUST-1001', 'customer:CUST-1001', :t, :t)"
            ),
            {"t": deps.clock.now().replace(tzinfo=None)},
        )
    problems: list[Any] = await invariant_violations(deps.store, window_days=30, limit_cents=15000)
    assert any("more than the 12900 paid" in p for p in problems)
    assert any("not the order's customer" in p for p in problems)
    assert any("passed the limit without staff approval" in p for p in problems)


def test_amounts_sizes_dates_and_years_are_never_order_numbers() -> None:
    from agent.offline_text import order_refs

    assert order_refs("refund ORD-8842 $20") == ["ORD-8842"]
    assert order_refs("I'm 178 cm and 80 kg, bought it in 2026 for 20 dollars") == []
    assert order_refs("size 178cm, the 12th, 3 pcs, 20.00 EUR, 2026-11-26") == []
    assert order_refs("order no. 8842") == ["8842"] == order_refs("Bestellung Nr. 8842")
    assert order_refs("ORD\u20138842 and ord 9120") == ["ORD-8842", "ORD9120"]
    assert order_refs("my order 2024 broke") == ["2024"]  # called an order, it may be one


async def test_an_amount_after_the_order_number_is_the_amount(deps: Deps, sarah: CallContext) -> None:
    conv = (Desk(Agent(model=OfflineModel(), toolbox=Toolbox(deps))), sarah)
    await say(conv, "refund ORD-8842 $20")
    async with deps.store.read() as s:
        refunds = (await s.execute(sql("SELECT order_id, amount_cents, status FROM refunds"))).all()
    assert [tuple(r) for r in refunds] == [("ORD-8842", 2000, "awaiting_confirmation")]


async def test_a_size_or_an_amount_is_not_looked_up_and_is_no_unknown_order(deps: Deps, sarah: CallContext) -> None:
    toolbox = Toolbox(deps)
    for typed in ("178cm", "178 cm", "$20", "20.00", "2026-11-26"):
        result = await toolbox.call("lookup_order", {"order_id": typed}, sarah)
        assert result.code is Code.INVALID_INPUT and "not an order number" in str(result.note)
    for _ in range(deps.settings.unknown_orders_per_hour):
        assert (await toolbox.call("lookup_order", {"order_id": "$20"}, sarah)).code is Code.INVALID_INPUT
    assert (await toolbox.call("lookup_order", {"order_id": "ORD-8842"}, sarah)).ok  # never counted as probing
    conv = (Desk(Agent(model=OfflineModel(), toolbox=toolbox)), sarah)
    (answer,) = await say(conv, "I'm 178 cm, will the jacket fit?")
    assert "couldn't find that order" not in answer


@pytest.mark.parametrize(
    ("asked", "starts"),
    [
        ("¿Cuál es la política de devoluciones?", "Esto dice nuestro centro de ayuda: «Puedes devolver"),
        ("Wie ist eure Rückgabefrist?", "Das steht in unserem Hilfe-Center: „Sie können eine gelieferte Bestellung"),
        ("Quelle est votre politique de retour ?", "(Cet article n'existe qu'en anglais.) Here's what our help center"),
        ("¿Hacen envoltorio de regalo?", "(Este artículo solo está disponible en inglés.) Here's what our help center"),
    ],
)
async def test_the_help_center_answers_in_the_customers_language_or_says_it_quotes_english(
    deps: Deps, sarah: CallContext, asked: str, starts: str
) -> None:
    from storage.kb_import import seed_help_center

    await seed_help_center(deps.store, deps.clock, base_url=deps.settings.help_center_url, return_window_days=30)
    conv = (Desk(Agent(model=OfflineModel(), toolbox=Toolbox(deps))), sarah)
    (answer,) = await say(conv, asked)
    assert answer.startswith(starts), answer
