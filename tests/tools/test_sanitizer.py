"""One sanitizer for every customer-bound text, checked against the store."""

from __future__ import annotations

import pytest

from tests.conftest import SARAH
from tools.context import CallContext, Deps
from tools.sanitizer import cap, sanitize, strip_tool_text
from tools.toolbox import Toolbox
from tools.wording import GENERIC_FALLBACK


async def clean(deps: Deps, text: str, customer: str | None = SARAH) -> str:
    return (await sanitize(text, store=deps.store, customer_id=customer)).text


async def test_own_data_stays(deps: Deps) -> None:
    text = "Sarah, your order ORD-8842 (account CUST-1001, sarah@example.com) is eligible."
    assert await clean(deps, text) == text


async def test_other_customers_data_is_withheld(deps: Deps) -> None:
    out = await clean(deps, "Order ORD-5501 belongs to CUST-1002 (james@example.com), also ord-6610.")
    assert "5501" not in out and "CUST-1002" not in out and "james" not in out and "6610" not in out
    assert out == "Order that order belongs to that account (that email address), also that order."


async def test_unknown_order_reads_exactly_like_another_customers(deps: Deps) -> None:
    other = await clean(deps, "I could not find ORD-5501 on your account.")
    unknown = await clean(deps, "I could not find ORD-5599 on your account.")
    assert other == unknown == "I could not find that order on your account."


async def test_unverified_sessions_see_no_account_data(deps: Deps) -> None:
    out = await clean(deps, "ORD-8842 for sarah@example.com", customer=None)
    assert out == "that order for that email address"


async def test_refund_ids_are_checked_too(toolbox: Toolbox, deps: Deps, sarah: CallContext) -> None:
    assert (await toolbox.call("lookup_order", {"order_id": "ORD-8842"}, sarah)).ok
    rid = (await toolbox.call("process_refund", {"order_id": "ORD-8842", "amount": 5, "reason": "x"}, sarah)).data[
        "refund_id"
    ]
    assert rid in await clean(deps, f"Refund {rid} is waiting.")
    assert rid not in await clean(deps, f"Refund {rid} is waiting.", customer="CUST-1002")


@pytest.mark.parametrize(
    "code_text",
    [
        "Sorry (LIMIT_EXCEEDED), a person will review it.",
        "OWNERSHIP_MISMATCH: Sorry, a person will review it.",
        "Sorry, a person will review it. [IDENTITY_UNVERIFIED]",
    ],
)
async def test_internal_codes_are_removed(deps: Deps, code_text: str) -> None:
    assert await clean(deps, code_text) == "Sorry, a person will review it."


@pytest.mark.parametrize(
    "crash",
    [
        'Traceback (most recent call last):\n  File "x.py", line 3, in <module>',
        "sqlalchemy.exc.IntegrityError: UNIQUE constraint failed",
        "Error: KeyError('order') while processing",
        "ValueError: amount must have at most 2 decimal places",
        "asyncpg.exceptions.UniqueViolationError",
    ],
)
async def test_exception_text_becomes_a_plain_apology(deps: Deps, crash: str) -> None:
    assert await clean(deps, f"Here you go: {crash}") == GENERIC_FALLBACK


async def test_ordinary_words_with_dashes_survive(deps: Deps) -> None:
    text = "Your USB-C cable and the e-mail follow-up are on the way; call 555-0100 if needed."
    assert await clean(deps, text) == text


async def test_internal_identifiers_are_withheld(toolbox: Toolbox, deps: Deps, sarah: CallContext) -> None:
    assert await clean(deps, f"Your conversation is {sarah.session_id}.") == "Your conversation is that reference."
    assert await clean(deps, "Refund RF-0123456789AB is done.") == "Refund that refund is done."  # nobody's
    assert (await toolbox.call("lookup_order", {"order_id": "ORD-8842"}, sarah)).ok
    rid = (await toolbox.call("process_refund", {"order_id": "ORD-8842", "amount": 5, "reason": "x"}, sarah)).data[
        "refund_id"
    ]
    assert await clean(deps, f"Your refund reference is {rid}.") == f"Your refund reference is {rid}."


@pytest.mark.parametrize(
    "pasted",
    [
        '{"code": "OK"}',
        'Sure! {"outcome": "ok", "order_id": "ORD-8842"}',
        "Here: [{'refund_id': 'RF-1'}]",
        "The tool said code: OK, all good.",
        '"code"= "NOT_ELIGIBLE"',
    ],
)
def test_json_and_code_fields_make_a_reply_unusable(pasted: str) -> None:
    assert strip_tool_text(pasted).unusable


def test_notes_and_model_talk_are_dropped_and_internal_names_put_in_plain_words() -> None:
    notes = ["The refund is prepared but not sent. The customer must confirm it with the Confirm button."]
    out = strip_tool_text(
        "Thanks for waiting. I ran lookup_order for you. The refund is prepared but not sent. "
        "Please tell the customer it is ready. Your refund_eligible blender refund is ready to confirm.",
        notes=notes,
        tools={"lookup_order"},
    )
    assert (
        out.text
        == "Thanks for waiting. I ran our system for you. Your refund eligible blender refund is ready to confirm."
    )
    assert not out.unusable and "lookup_order" in out.found and "refund_eligible" in out.found
    untouched = "See https://help.example.com/return_policy for details.\nAnything else?"
    assert strip_tool_text(untouched).text == untouched and not strip_tool_text(untouched).found


def test_redaction_keeps_the_layout_the_customers_ids_and_every_question() -> None:
    reply = (
        "Here are your options:\n\n"
        "| card | balance |\n|---|---|\n| gift_card_7480005 | $6.00 |\n\n"
        "- **Refund to:** credit_card_2929732 (Visa ending 7803)\n"
        "- Your user id anya_garcia_5901 shows payment_history below.\n\n"
        "Should I tell the customer about the tool results?"
    )
    out = strip_tool_text(reply, tools={"get_user_details"})
    assert out.text == reply.replace("payment_history", "payment history")
    assert out.found == ("payment_history",)


def test_a_long_text_is_capped_at_a_sentence() -> None:
    text = "A short sentence. " * 2000
    capped = cap(text, 1000)
    assert len(capped) <= 1000 and capped.endswith(".")
