"""The claims check: the issue's verbatim table, then each kind of claim against the real store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text as sql

from agent import claims, facts
from agent.facts import Evidence
from agent.policy import guard
from storage.engine import Store
from storage.importer import seed
from storage.settings import Settings
from storage.types import FrozenClock
from tests.conftest import SARAH, session_for
from tools import wording
from tools.context import Actor, CallContext, Deps
from tools.gateway import StoreGateway
from tools.toolbox import Toolbox

# ORD-8842 (the blender) was delivered five days before this: on 2026-11-26
TODAY = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

TABLE = [
    ("Your refund of $89.99 has been processed.", "replaced"),
    ("Once you confirm, your refund of $89.99 will be processed.", "kept"),
    ("I've refunded ORD-7710.", "replaced"),
    ("I have not refunded anything yet.", "kept"),
    ("A colleague will call you tomorrow.", "replaced"),
    ("I've passed this to our team.", "replaced"),
    ("Your order ORD-8842 was delivered on 2026-11-26.", "kept"),
    ("Your order ORD-8842 was delivered yesterday.", "replaced"),
    ("Te hemos devuelto 89,99 €.", "replaced"),
    ("Wir haben Ihnen 89,99 $ erstattet.", "replaced"),
    ("Su reembolso se procesará cuando lo confirme.", "kept"),
    ("The refund is waiting for your confirmation.", "kept"),
    ("Refund status: processed", "replaced"),
    ('{"code": "OK"}', "replaced"),
    ("Look the order up with lookup_order first.", "redacted"),
]


@pytest.fixture
async def waiting(store: Store, settings: Settings) -> AsyncIterator[tuple[Deps, CallContext]]:
    """The table's store: ORD-8842's refund of $89.99 waits for confirmation, nothing else."""
    clock = FrozenClock(TODAY)
    await seed(store, clock)
    deps = Deps(store=store, settings=settings, clock=clock, gateway=StoreGateway(store, clock))
    ctx = await session_for(deps, Actor.customer(SARAH))
    toolbox = Toolbox(deps)
    assert (await toolbox.call("lookup_order", {"order_id": "ORD-8842"}, ctx)).ok
    made = await toolbox.call("process_refund", {"order_id": "ORD-8842", "amount": 89.99, "reason": "broken"}, ctx)
    assert made.data["status"] == "awaiting_confirmation"
    yield deps, ctx


@pytest.mark.parametrize(("said", "verdict"), TABLE)
async def test_the_issue_table(waiting: tuple[Deps, CallContext], said: str, verdict: str) -> None:
    deps, ctx = waiting
    out = await guard(said, deps=deps, ctx=ctx)
    got = "redacted" if out.reason == "tool_text_removed" else "replaced" if out.replaced else "kept"
    assert got == verdict, (said, out)
    if got == "replaced":
        assert said not in out.text and out.text.startswith(("Here's exactly", "Sorry, my answer"))
    if got == "redacted":  # the tool's name in plain words, the sentence kept
        assert out.text == "Look the order up with our system first."


async def test_a_replacement_is_true_and_from_the_store(waiting: tuple[Deps, CallContext]) -> None:
    deps, ctx = waiting
    money = await guard("Your refund of $89.99 has been processed.", deps=deps, ctx=ctx)
    assert money.reason == "false_refund"
    assert money.text == (
        f"{wording.CORRECTION_LEAD} Order ORD-8842 (ProBlend 500 blender): refund of $89.99 is waiting for your "
        "confirmation."
    )
    other = await guard("I've refunded ORD-7710.", deps=deps, ctx=ctx)
    assert other.text == f"{wording.CORRECTION_LEAD} There is no refund on order ORD-7710 so far."
    call = await guard("A colleague will call you tomorrow.", deps=deps, ctx=ctx)
    assert call.reason == "false_handoff" and wording.NO_HANDOFF in call.text and wording.NO_CALLS in call.text
    day = await guard("Your order ORD-8842 was delivered yesterday.", deps=deps, ctx=ctx)
    assert day.reason == "false_order"
    assert day.text.endswith("Order ORD-8842 (ProBlend 500 blender, $89.99) was delivered on 2026-11-26.")
    for replaced in (money, other, call, day):  # every fixed sentence passes the check it came from
        again = await guard(replaced.text, deps=deps, ctx=ctx)
        assert not again.replaced, (replaced.text, again)


async def test_a_true_refund_sentence_is_rendered_from_the_row(waiting: tuple[Deps, CallContext]) -> None:
    deps, ctx = waiting
    out = await guard(
        "Sorry about that! I've prepared a refund of $89.99 for ORD-8842, just confirm.", deps=deps, ctx=ctx
    )
    assert not out.replaced
    assert (
        out.text
        == "Sorry about that! Order ORD-8842 (ProBlend 500 blender): refund of $89.99 is waiting for your confirmation."
    )


async def test_a_ticket_makes_a_handoff_true(waiting: tuple[Deps, CallContext]) -> None:
    deps, ctx = waiting
    await Toolbox(deps).call(
        "escalate_to_human", {"reason": "other", "priority": "P3", "summary": "asked for help"}, ctx
    )
    for said in ("I've passed this to our team.", "A member of our support team will follow up here."):
        out = await guard(said, deps=deps, ctx=ctx)
        assert not out.replaced and out.text == said
    phone = await guard("A colleague will call you tomorrow.", deps=deps, ctx=ctx)
    assert phone.replaced and wording.HANDOFF_OPEN in phone.text  # a ticket, but nobody phones


@pytest.mark.parametrize(
    "said",
    [
        "Refunded the headphones.",  # an item the customer never bought
        "I've refunded ORD-5501 for you.",  # another customer's order
        "Your refund of $129.00 has been issued.",  # a wrong amount
        "Good news, your money has been credited to your card.",
        "Hemos reembolsado su pedido ORD-8842.",
        "Ihre Erstattung wurde bereits veranlasst.",
        "Your refund went through this morning.",
        "Refund status: denied",
        "Your refund is pending approval by a supervisor.",
        "Un compañero le llamará mañana.",
        "Ein Kollege wird Sie morgen anrufen.",
        "I've opened a ticket for you.",
        "He pasado su caso a nuestro equipo.",
        "Ich habe Ihre Anfrage an unser Team weitergeleitet.",
        "Your order ORD-9120 was delivered on 2026-11-30.",
        "Your order ORD-8842 is on its way.",
        "Order ORD-8842 came to $12.00.",
        "Your order ORD-5599 has been delivered.",
        "ORD-7710 hasn't been delivered yet.",
    ],
)
async def test_false_claims_are_replaced(waiting: tuple[Deps, CallContext], said: str) -> None:
    deps, ctx = waiting
    out = await guard(said, deps=deps, ctx=ctx)
    assert out.replaced, said
    async with deps.store.read() as s:
        (original,) = (await s.execute(sql("SELECT input FROM audit_log WHERE action = 'lookup_order'"))).one()
    assert "5501" not in out.text and "5599" not in out.text and original  # nothing of the false claim's ids


@pytest.mark.parametrize(
    "said",
    [
        "I haven't refunded anything yet, and nothing has been credited.",
        "If you confirm, we'll refund $89.99 to your card.",
        "Your order is eligible to be refunded within 30 days of delivery.",
        "Would you like me to pass this to a colleague?",
        "If you'd prefer, a member of our team can help.",
        "I can't phone you, but I'm happy to help here.",
        "No refund has been made for order ORD-7710.",
        "Your ProBlend 500 blender (order ORD-8842, $89.99) was delivered on November 26.",
        "ORD-9120 hasn't shipped yet.",
        "Order ORD-8901 (Barista Pro espresso machine) was delivered on 2026-11-28.",
        "Sobald Sie bestätigen, wird Ihnen der Betrag erstattet.",
        "Una vez que lo confirme, le devolveremos 89,99 $.",
        "Your refund of $89.99 is waiting for your confirmation.",
        "Hi! How can I help you today?",
        "Our return window is 30 days from delivery.",
    ],
)
async def test_true_future_negated_and_asked_sentences_pass(waiting: tuple[Deps, CallContext], said: str) -> None:
    deps, ctx = waiting
    out = await guard(said, deps=deps, ctx=ctx)
    assert not out.replaced, (said, out)


async def test_a_refund_made_elsewhere_does_not_support_an_unspecific_claim(deps: Deps, sarah: CallContext) -> None:
    async with deps.store.write() as s:  # ORD-8842 refunded in another conversation
        await s.execute(
            sql(
                "INSERT INTO refunds (id, order_id, amount_cents, currency, status, reason, actor, decided_by, "
                "created_at, updated_at) VALUES ('RF-OLD', 'ORD-8842', 8999, 'USD', 'processed', 'x', "
                "'customer:CUST-1001', 'customer:CUST-1001', :t, :t)"
            ),
            {"t": deps.clock.now().replace(tzinfo=None)},
        )
    assert (await guard("I've refunded you.", deps=deps, ctx=sarah)).replaced  # not in this conversation
    assert (await guard("I've refunded the kettle.", deps=deps, ctx=sarah)).replaced  # another order
    named = await guard("Your refund for ORD-8842 has been issued.", deps=deps, ctx=sarah)
    assert not named.replaced and named.text == "Order ORD-8842 (ProBlend 500 blender): refund of $89.99 is issued."


def test_amounts_and_dates_are_read_in_every_format() -> None:
    from agent.claim_patterns import money, when

    assert money("$89.99, 89,99 €, 1,299.00 USD, 1.299,50 € and £5") == (
        (8999, "USD"),
        (8999, "EUR"),
        (129900, "USD"),
        (129950, "EUR"),
        (500, "GBP"),
    )
    today = TODAY.date()
    for phrase, day in [
        ("on 2026-11-26", "2026-11-26"),
        ("on November 26", "2026-11-26"),
        ("on 26 de noviembre", "2026-11-26"),
        ("am 26.11.2026", "2026-11-26"),
        ("yesterday", "2026-11-30"),
        ("vor 5 Tagen", "2026-11-26"),
    ]:
        assert str(when(phrase, today)) == day, phrase


def test_review_without_claims_changes_nothing() -> None:
    empty = facts.Facts(orders={}, refunds=(), ticket_open=False, looked_up=(), today=TODAY.date())
    text = "Standard delivery takes 3-5 business days.\n\nAnything else?"
    assert claims.review(text, empty).text == text


async def _state(deps: Deps, ctx: CallContext, state: str) -> None:
    """Bring the session to a state with the real tools (and the refund state machine)."""
    from tools import refunds

    toolbox = Toolbox(deps)
    for oid in ("ORD-8842", "ORD-8901", "ORD-7710", "ORD-9120"):
        assert (await toolbox.call("lookup_order", {"order_id": oid}, ctx)).ok
    if state in ("awaiting", "processed"):
        made = await toolbox.call("process_refund", {"order_id": "ORD-8842", "amount": 89.99, "reason": "x"}, ctx)
        if state == "processed":
            await refunds.confirm(deps, refund_id=made.data["refund_id"], actor=ctx.actor, session_id=ctx.session_id)
    if state == "approval":
        await toolbox.call("process_refund", {"order_id": "ORD-8901", "amount": 349, "reason": "leaks"}, ctx)
    if state == "escalated":
        await toolbox.call("escalate_to_human", {"reason": "other", "priority": "P3", "summary": "help"}, ctx)


# what an honest model says in each state: none of it may be replaced (false positives)
HONEST = [
    (
        "looked",
        "Your ProBlend 500 blender (order ORD-8842) was delivered on November 19 and is still within the "
        "30-day return window, so it's eligible for a full refund of $89.99. Would you like me to go ahead?",
    ),
    (
        "looked",
        "I'm sorry, your kettle (ORD-7710) was delivered on October 10, which is outside our 30-day return "
        "window, so I can't refund it.",
    ),
    ("looked", "Your mug set (ORD-9120) hasn't shipped yet, so it can't be refunded until it's delivered."),
    ("looked", "I couldn't find an order with that number on your account. Could you double-check it?"),
    ("looked", "Your espresso machine, order ORD-8901, came to $349.00 and was delivered on 2026-11-21."),
    (
        "awaiting",
        "I've set up a refund of $89.99 for your blender (ORD-8842). Just press Confirm and it'll be on its way!",
    ),
    ("awaiting", "Your refund is still waiting for your confirmation. Press Confirm when you're ready."),
    ("awaiting", "Once you confirm, the $89.99 will be refunded to your original payment method."),
    (
        "approval",
        "Because this refund is over our automatic limit, a supervisor needs to approve it. I've passed it "
        "to our team for approval and they'll follow up here.",
    ),
    ("approval", "Your refund of $349.00 for order ORD-8901 is pending approval by our team."),
    ("processed", "Done! Your refund of $89.99 has been issued and should appear in 3-5 business days."),
    ("processed", "Your refund of $89.99 for order ORD-8842 was processed today."),
    ("escalated", "I've escalated this to our team and someone will follow up here shortly."),
    ("escalated", "A member of our support team will reply in this thread."),
    ("looked", "Hemos recibido tu mensaje. Tu pedido ORD-9120 todavía no ha sido enviado."),
    ("looked", "Ihre Bestellung ORD-8842 wurde am 19.11.2026 zugestellt."),
    ("looked", "Standard delivery takes 3-5 business days once it has been shipped."),
    ("looked", "Your mug set should have been delivered by now, so let me check: ORD-9120 hasn't shipped yet."),
    ("processed", "Note: it can take 3-5 business days for the refund of $89.99 to appear."),
    ("awaiting", "If your refund is pending approval, a supervisor decides; yours just needs your confirmation."),
]


@pytest.mark.parametrize(("state", "said"), HONEST)
async def test_honest_replies_are_never_replaced(deps: Deps, sarah: CallContext, state: str, said: str) -> None:
    await _state(deps, sarah, state)
    out = await guard(said, deps=deps, ctx=sarah)
    assert not out.replaced, (said, out)


async def test_refunded_the_headphones_is_false_even_after_a_real_refund(deps: Deps, sarah: CallContext) -> None:
    await _state(deps, sarah, "processed")
    assert (await guard("Refunded the headphones.", deps=deps, ctx=sarah)).reason == "false_refund"
    blender = await guard("I've refunded your blender.", deps=deps, ctx=sarah)
    assert not blender.replaced and blender.text == "Order ORD-8842 (ProBlend 500 blender): refund of $89.99 is issued."


# --- what a sentence asserts, not the words in it (issue 27) ----------------------------------------------
ASSERT_NOTHING = [
    "For a damaged item, the compensation is $50 per order.",  # a rule, with an amount
    "A refund can be issued only if the order was delivered within the last 30 days:",
    "Refunds are issued to the original payment method within 5 business days.",
    "This is issued as a voucher, not as a refund.",  # the negation after the verb
    "I can refund $89.99 to your card if you'd like.",  # an offer
    "Would you like me to refund the blender?",
    "If your refund had been processed, you would see it on your statement.",
    "The ProBlend 700 costs $129.99, $40.00 more than your blender.",  # another product, a difference
    "Refund amount: $89.99 - $10.00 = $79.99, refunded to your card. Shall I go ahead?",  # a proposal
    "Let me recalculate with the refunded balance.",  # a participle as an adjective
    "No refund has been issued for ORD-8842, and none is pending.",
    "Per our policy, a delayed refund is escalated to a supervisor.",
    "You could be transferred to a colleague if the check fails.",
]


@pytest.mark.parametrize("said", ASSERT_NOTHING)
async def test_conditions_rules_offers_questions_and_negations_assert_nothing(
    deps: Deps, sarah: CallContext, said: str
) -> None:
    await _state(deps, sarah, "looked")
    out = await guard(said, deps=deps, ctx=sarah)
    assert out.reason is None and out.text == said, (said, out)


async def test_an_amount_the_customer_wrote_or_a_tool_showed_is_grounded(deps: Deps, sarah: CallContext) -> None:
    await _state(deps, sarah, "looked")
    said = "You mentioned a charge of $95.00 on ORD-8842; let me look into it."
    assert (await guard(said, deps=deps, ctx=sarah)).reason == "false_order"  # not the order's amount
    customer = Evidence(customer=("I was charged $95.00 for ORD-8842!",))
    assert (await guard(said, deps=deps, ctx=sarah, evidence=customer)).reason is None
    history = '{"order_id": "ORD-8842", "payment_history": [{"transaction_type": "refund", "amount": 89.99}]}'
    refunded = "ORD-8842 was already refunded $89.99."
    assert (await guard(refunded, deps=deps, ctx=sarah)).reason == "false_refund"
    assert (await guard(refunded, deps=deps, ctx=sarah, evidence=Evidence(tool_results=(history,)))).reason is None
    total = '{"order_id": "ORD-8842", "total": "$89.99", "status": "delivered"}'  # a total is no refund
    lie = await guard("I've refunded $89.99 to your card.", deps=deps, ctx=sarah, evidence=Evidence((total,)))
    assert lie.reason == "false_refund"


async def test_a_contradicted_reply_says_which_sentence_and_what_the_store_holds(
    deps: Deps, sarah: CallContext
) -> None:
    await _state(deps, sarah, "looked")
    out = await guard("Thanks for waiting!\nYour refund for ORD-8842 has been issued.", deps=deps, ctx=sarah)
    assert out.reason == "false_refund" and out.contradicted
    assert out.corrections == (
        ("Your refund for ORD-8842 has been issued.", "There is no refund on order ORD-8842 so far."),
    )


async def test_the_layout_and_the_customers_own_ids_survive(deps: Deps, sarah: CallContext) -> None:
    await _state(deps, sarah, "looked")
    said = (
        "Here is your order ORD-8842:\n\n| item | price |\n|---|---|\n| ProBlend 500 blender | $89.99 |\n\n"
        "- Your refund_eligible flag says yes\n- Refund to: visa_4242 (your card)\n\nShall I prepare the refund?"
    )
    out = await guard(said, deps=deps, ctx=sarah)
    assert out.text == said.replace("refund_eligible", "refund eligible")
    assert out.reason == "tool_text_removed" and out.found == ("refund_eligible",)
