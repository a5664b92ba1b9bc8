"""The evals' runs: `supportbot eval` drives the desk like any face, one scenario (or question) at a
time on a scratch database seeded with the demo store; the grading and the reports are the
agent's (`agent.eval`, `agent.kb_eval`)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from agent.eval import RunResult, Scenario, check_names, grade, load_scenarios
from agent.eval import report as eval_report
from agent.events import Confirmation, Reply
from agent.kb_eval import Outcome, Question, article_of, load_questions
from agent.kb_eval import report as kb_report
from agent.loop import Agent
from agent.model import Model
from agent.offline import OfflineModel
from agent.providers import build_model, close_model
from agent.scripted import OutageModel
from desk import Desk
from desk.sessions import customer_by_email, open_session
from storage.demo import empty, past_refund
from storage.engine import Store
from storage.importer import seed
from storage.kb_import import seed_help_center
from storage.migrate import upgrade
from storage.search import index_for
from storage.settings import Settings
from storage.types import FrozenClock, to_cents
from tools.context import Actor
from tools.search_help_center import choose_language
from tools.toolbox import Toolbox, make_deps

RANKED = 10  # articles ranked per question for MRR


# --- the scenario eval ------------------------------------------------------------------------------
async def reset(store: Store, clock: FrozenClock, settings: Settings) -> None:
    await empty(store)
    await seed(store, clock)
    await seed_help_center(
        store, clock, base_url=settings.help_center_url, return_window_days=settings.return_window_days
    )


async def run_one(
    store: Store, settings: Settings, scenario: Scenario, phrasing: int, *, provider: str, model: Model | None = None
) -> RunResult:
    clock = FrozenClock()
    await reset(store, clock, settings)
    deps = make_deps(store, settings, clock)
    for spec in scenario.setup.refunds:
        await past_refund(store, clock, order_id=spec.order_id, amount_cents=to_cents(spec.amount), status=spec.status)
    if scenario.inject == "model_outage":
        model = OutageModel()
    agent = Agent(model=model or build_model(settings, provider), toolbox=Toolbox(deps))
    customer = await customer_by_email(deps, scenario.customer)
    actor = Actor.customer(customer.id) if customer else Actor.unverified(f"eval:{scenario.customer}")
    ctx = await open_session(deps, channel="eval", actor=actor)
    front = Desk(agent)
    visible: list[str] = []
    for message in scenario.phrasings[phrasing]:
        async for event in front.say(ctx, message):
            if isinstance(event, Reply | Confirmation):
                visible.append(event.text)
    result = RunResult(scenario.name, phrasing, False, None, scenario.expect.outcome, replies=visible)
    await grade(store, settings, scenario, ctx.session_id, actor.customer_id, visible, result, today=clock.now().date())
    return result


async def run_eval(
    settings: Settings,
    *,
    provider: str,
    database_url: str | None = None,
    only: list[str] | None = None,
    model: Model | None = None,
    phrasings: int | None = None,
) -> dict[str, Any]:
    """Every scenario (or `only` these), every phrasing (or the first `phrasings` of each)."""
    with tempfile.TemporaryDirectory(prefix="supportbot-eval-") as tmp:
        url = database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'eval.db'}"
        store = Store.from_settings(settings, url=url)
        built = None if model is not None or provider != "claude" else build_model(settings, provider)
        model = model or built
        try:
            await upgrade(store)
            results = []
            scenarios = load_scenarios()
            check_names(only or [], scenarios)
            for scenario in scenarios:
                if only and scenario.name not in only:
                    continue
                for n in range(min(len(scenario.phrasings), phrasings or len(scenario.phrasings))):
                    results.append(await run_one(store, settings, scenario, n, provider=provider, model=model))
        finally:
            if built is not None:
                await close_model(built)
            await store.dispose()
    return eval_report(results, provider)


# --- the help-center eval ---------------------------------------------------------------------------
async def _one(store: Store, deps: Any, desk: Desk, q: Question) -> Outcome:
    ctx = await open_session(deps, channel="eval", actor=Actor.customer("CUST-1001"))
    language = await choose_language(deps, ctx, q.question, None)
    ranked = await index_for(store).search(q.question, language=language, limit=RANKED)
    found = [article_of(h.url) for h in ranked.hits]
    rank = next((i + 1 for i, a in enumerate(found) if a in q.articles), None)
    replies = [e async for e in desk.say(ctx, q.question) if isinstance(e, Reply)]
    cited = [article_of(c.url) for r in replies for c in r.citations]
    return Outcome(
        question=q.question,
        kind=q.kind,
        expected=q.articles,
        language=language,
        found=found,
        rank=rank,
        rule_answered=ranked.answered,
        coverage=round(ranked.hits[0].coverage, 3) if ranked.hits else 0.0,
        offline_cited=cited,
        offline_reply=" ".join(r.text for r in replies)[:300],
    )


async def run_kb_eval(settings: Settings, *, database_url: str | None = None) -> dict[str, Any]:
    """Everything in the scratch database is deleted first."""
    with tempfile.TemporaryDirectory(prefix="supportbot-kb-eval-") as tmp:
        url = database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'kb-eval.db'}"
        store = Store.from_settings(settings, url=url)
        try:
            await upgrade(store)
            clock = FrozenClock()
            await reset(store, clock, settings)
            deps = make_deps(store, settings, clock)
            desk = Desk(Agent(model=OfflineModel(), toolbox=Toolbox(deps)))
            outcomes = [await _one(store, deps, desk, q) for q in load_questions()]
        finally:
            await store.dispose()
    return kb_report(outcomes, store.dialect)
