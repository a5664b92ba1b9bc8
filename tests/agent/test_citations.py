"""Citations: only this turn's search results may be linked; invented URLs and article numbers
are removed; help answers are recorded per session with what happened next."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from agent.citations import TurnSources, check
from agent.events import Citation, Done, Event, Reply
from agent.loop import Agent
from agent.offline import OfflineModel
from agent.scripted import ScriptedModel, reply, text, tool_results, tool_use
from desk import Desk
from storage.kb_import import seed_help_center
from storage.models import HelpAnswer, Ticket
from tools.codes import Code, ToolResult
from tools.context import CallContext, Deps
from tools.toolbox import Toolbox

RETURNS = Citation(7, "Returning an item", "https://help.example.com/returns-policy#how-to-start-a-return")
SHIPPING = Citation(3, "Shipping times and costs", "https://help.example.com/shipping-times#delivery-times")


def sources(*cites: Citation) -> TurnSources:
    found = TurnSources()
    results = [{"article_id": c.article_id, "title": c.title, "url": c.url} for c in cites]
    found.add("search_help_center", ToolResult(Code.OK, data={"answered": True, "results": results}))
    found.add("lookup_order", ToolResult(Code.OK, data={"results": [{"article_id": 99, "title": "x", "url": "y"}]}))
    return found


@pytest.mark.parametrize(
    ("said", "shown", "cited"),
    [
        (
            "Start a return here: https://help.example.com/returns-policy#how-to-start-a-return.",
            "Start a return here: https://help.example.com/returns-policy#how-to-start-a-return.",
            [RETURNS],
        ),
        (  # the article's URL without the anchor is the same article
            "See https://help.example.com/returns-policy and https://help.example.com/shipping-times#delivery-times",
            "See https://help.example.com/returns-policy and https://help.example.com/shipping-times#delivery-times",
            [RETURNS, SHIPPING],
        ),
        ("Full details: https://help.example.com/secret-refund-hack.", "Full details:.", []),
        ("Read [our policy](https://evil.example/x) first.", "Read our policy first.", []),
        (
            "Read [the returns guide](https://help.example.com/returns-policy).",
            "Read [the returns guide](https://help.example.com/returns-policy).",
            [RETURNS],
        ),
        ("As article #42 explains, we refund twice.", "As article explains, we refund twice.", []),
        ("As article 7 explains, start in the chat.", "As article 7 explains, start in the chat.", [RETURNS]),
        ('Our guide "Returning an item" has the steps.', 'Our guide "Returning an item" has the steps.', [RETURNS]),
        ("Visit (https://help.example.com/made-up) now", "Visit now", []),
    ],
)
def test_check_keeps_only_what_the_search_returned(said: str, shown: str, cited: list[Citation]) -> None:
    out, found = check(said, sources(RETURNS, SHIPPING))
    assert out == shown
    assert list(found) == cited


def test_nothing_can_be_cited_without_a_search() -> None:
    out, found = check("See https://help.example.com/returns-policy", TurnSources())
    assert out == "See" and found == ()


async def run(agent: Agent, ctx: CallContext, message: str) -> list[Event]:
    return [e async for e in Desk(agent).say(ctx, message)]


@pytest.fixture
async def kb(deps: Deps) -> Deps:
    await seed_help_center(deps.store, deps.clock, base_url="https://help.example.com", return_window_days=30)
    return deps


def answer_from_results(request: Any) -> Any:
    import json

    found = json.loads(tool_results(request)[-1])["results"][0]
    return reply(
        text(
            f"Standard delivery takes 3 to 5 business days ({found['url']}). "
            "Also see https://help.example.com/free-money and article 999."
        )
    )


async def test_the_loop_cites_results_and_removes_invented_links(kb: Deps, anon: CallContext) -> None:
    model = ScriptedModel(
        [reply(tool_use("search_help_center", query="How long does standard shipping take?")), answer_from_results]
    )
    events = await run(Agent(model=model, toolbox=Toolbox(kb)), anon, "How long does shipping take?")
    (answer,) = [e for e in events if isinstance(e, Reply)]
    assert "free-money" not in answer.text and "999" not in answer.text
    assert [c.url for c in answer.citations] == ["https://help.example.com/shipping-times#delivery-times"]
    assert answer.citations[0].title == "Shipping times and costs"
    async with kb.store.read() as s:
        (row,) = (await s.scalars(select(HelpAnswer).where(HelpAnswer.session_id == anon.session_id))).all()
    assert row.answered and row.article_ids == [answer.citations[0].article_id] and row.escalated_at is None


async def test_a_link_from_an_earlier_turn_is_not_this_turns_source(kb: Deps, anon: CallContext) -> None:
    model = ScriptedModel([reply(text("Details: https://help.example.com/shipping-times#delivery-times"))])
    events = await run(Agent(model=model, toolbox=Toolbox(kb)), anon, "Thanks, that helps.")
    (answer,) = [e for e in events if isinstance(e, Reply)]
    assert answer.text == "Details:" and answer.citations == ()
    async with kb.store.read() as s:  # no search, no help answer recorded
        assert (await s.scalars(select(HelpAnswer))).all() == []


async def test_offline_model_quotes_the_best_passage_with_its_link(kb: Deps, anon: CallContext) -> None:
    agent = Agent(model=OfflineModel(), toolbox=Toolbox(kb))
    events = await run(agent, anon, "Which payment methods do you accept?")
    (answer,) = [e for e in events if isinstance(e, Reply)]
    assert answer.text.startswith("Here's what our help center says:")
    assert answer.citations and answer.citations[0].url in answer.text
    assert answer.citations[0].title == "Payment methods"


async def test_no_answer_offers_a_person_and_yes_opens_a_p3(kb: Deps, sarah: CallContext) -> None:
    agent = Agent(model=OfflineModel(), toolbox=Toolbox(kb))
    first = [e for e in await run(agent, sarah, "Do you sell gift cards?") if isinstance(e, Reply)]
    assert "couldn't find an answer" in first[0].text and first[0].text.endswith("team?")
    assert first[0].citations == () and "http" not in first[0].text
    async with kb.store.read() as s:
        assert (await s.scalars(select(Ticket))).all() == []
        (row,) = (await s.scalars(select(HelpAnswer))).all()
    assert not row.answered and row.escalated_at is None
    second = [e for e in await run(agent, sarah, "yes please") if isinstance(e, Reply)]
    assert "member of our support team" in second[0].text
    async with kb.store.read() as s:
        (ticket,) = (await s.scalars(select(Ticket))).all()
        (row,) = (await s.scalars(select(HelpAnswer))).all()
    assert (ticket.priority, ticket.reason) == ("P3", "question")
    assert row.escalated_at is not None  # the help answer did not settle it


async def test_no_answer_about_the_return_window_states_the_setting(kb: Deps, sarah: CallContext) -> None:
    agent = Agent(model=OfflineModel(), toolbox=Toolbox(kb))
    events = await run(agent, sarah, "What is the return window for gift cards?")
    (answer,) = [e for e in events if isinstance(e, Reply)]
    assert answer.citations == ()
    assert "couldn't find an answer" in answer.text and "within 30 days of delivery" in answer.text


def repeat_the_passage(extra: str) -> Any:
    def write(request: Any) -> Any:
        import json

        found = json.loads(tool_results(request)[-1])["results"][0]
        return reply(text(f"Our help center says: {found['snippet']} {extra}".strip()))

    return write


@pytest.mark.parametrize(
    ("extra", "sent_as_written"),
    [
        ("", True),  # the shop's own words about refunds are policy, not a claim about this customer
        ("Your refund of $89.99 has been issued.", False),  # what the reply adds is still checked
    ],
)
async def test_repeating_a_passage_claims_nothing_but_what_the_reply_adds(
    kb: Deps, sarah: CallContext, extra: str, sent_as_written: bool
) -> None:
    question = "How do I see whether my refund is being processed or issued?"
    model = ScriptedModel([reply(tool_use("search_help_center", query=question)), repeat_the_passage(extra)])
    events = await run(Agent(model=model, toolbox=Toolbox(kb)), sarah, question)
    (answer,) = [e for e in events if isinstance(e, Reply)]
    assert ("being processed or issued" in answer.text) is sent_as_written
    assert ("has been issued" in answer.text) is False


async def test_a_general_question_arrives_with_its_passages_and_takes_one_model_call(
    kb: Deps, anon: CallContext
) -> None:
    model = ScriptedModel([answer_from_results])
    events = await run(Agent(model=model, toolbox=Toolbox(kb)), anon, "How long does shipping take?")
    (first,) = model.requests  # one call, with the search's passages already in it
    results = [b for m in first.messages for b in m["content"] if b.get("type") == "tool_result"]
    assert len(results) == 1 and "shipping-times" in str(results[0]["content"])
    (answer,) = [e for e in events if isinstance(e, Reply)]
    assert [c.url for c in answer.citations] == ["https://help.example.com/shipping-times#delivery-times"]
    assert [e for e in events if isinstance(e, Done)][0].model_calls == 1


async def test_a_question_about_the_bot_or_an_own_order_is_not_searched_first(kb: Deps, sarah: CallContext) -> None:
    for said in ("are you a bot?", "where is my order ORD-8842?"):
        model = ScriptedModel([reply(text("ok"))])
        await run(Agent(model=model, toolbox=Toolbox(kb)), sarah, said)
        assert not [b for m in model.requests[0].messages for b in m["content"] if b.get("type") == "tool_result"]
