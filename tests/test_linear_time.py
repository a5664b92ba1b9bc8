"""Every pattern we run on customer or model text takes time linear in the text (tests/linear.py
says how it is measured), outside `tools/sanitizer.py` and `agent/offline.py`, which test their
own. Each target runs against the inputs that stress its patterns.

    python -m tests.test_linear_time      prints the figures (25 KB and 1 MB per target and input)
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agent.eval import text_leaks
from agent.events import Reply
from agent.policy import classify
from bot.slack.blocks import TicketView, as_dicts, confirmation_blocks, result_blocks, slack_text, ticket_blocks
from bot.slack.routing import clean_text, parse
from bot.web.identity import ANON_ID, check_token
from bot.web.limits import parse_json
from bot.web.schemas import ChatRequest
from desk.customer import yes_or_no
from tests.linear import HOSTILE, SuperLinear, assert_linear
from tools import emails

EMAILISH = ("letters", "no_at", "at_no_dot", "many_at", "dots", "underscores", "errors")
WORDS = ("upper", "spaces", "punctuation", "words")


def _ticket(text: str) -> list[dict[str, object]]:
    view = TicketView(
        id=7,
        priority="P1",
        reason="legal",
        status="open",
        summary=text,
        customer="Sarah Chen (CUST-1001)",
        order_id="ORD-8842",
        claimed_by=None,
        permalink=None,
        refund_pending=None,
        unverified_user=None,
    )
    return as_dicts(ticket_blocks(view))


def _slack_event(text: str) -> object:
    body = {
        "event": {"type": "message", "user": "U1", "channel": "C1", "ts": "1.1", "text": text},
        "authorizations": [{"team_id": "T1", "user_id": "U_BOT", "is_bot": True}],
    }
    incoming = parse(body)
    return clean_text(incoming.text) if incoming else None


def _chat_request(text: str) -> object:
    try:
        return ChatRequest.model_validate({"message": text})
    except ValidationError:
        return None


def _leaks(text: str) -> list[str]:
    return text_leaks(
        text, others=[("CUST-1002", "james@example.com")] * 3, foreign_orders=["ORD-5501", "ORD-6610", "ORD-7001"]
    )


TARGETS: dict[str, tuple[Callable[[str], Any], tuple[str, ...]]] = {
    "emails.hide": (emails.hide, EMAILISH),
    "blocks.slack_text": (slack_text, ("letters", "no_at", "dots")),
    "blocks.confirmation_blocks": (
        lambda t: as_dicts(confirmation_blocks(refund_id="RF-1", text=t, lead=t)),
        ("no_at", "mentions"),
    ),
    "blocks.result_blocks": (lambda t: as_dicts(result_blocks(t)), ("at_no_dot",)),
    "blocks.ticket_blocks": (_ticket, ("letters", "json_strings")),
    "routing.parse+clean_text": (_slack_event, ("mentions", "upper")),
    "web.ChatRequest": (_chat_request, ("spaces",)),
    "web.parse_json": (lambda t: _swallow(parse_json, t.encode()), ("brackets", "json_strings")),
    "web.check_token": (lambda t: check_token(t, secret=b"k", now=0), ("digits",)),
    "web.anonymous_id": (ANON_ID.fullmatch, ("underscores",)),
    "eval.text_leaks": (_leaks, ("letters", "upper", "underscores", "errors", "digits")),
    "policy.classify": (classify, WORDS),
    "chat.yes_or_no": (yes_or_no, WORDS),
    "events.Reply.sentences": (lambda t: Reply(t).sentences(), ("punctuation", "spaces")),
}


def _swallow(fn: Callable[[Any], Any], arg: Any) -> object:
    try:
        return fn(arg)
    except ValueError:
        return None


CASES = [(name, shape) for name, (_, shapes) in TARGETS.items() for shape in shapes]


@pytest.mark.parametrize(("target", "shape"), CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_linear_in_the_text(target: str, shape: str) -> None:
    fn, _ = TARGETS[target]
    assert_linear(fn, HOSTILE[shape], label=f"{target} / {shape}")


# --- the helper itself ---------------------------------------------------------------------------------
def test_the_helper_fails_quadratic_work_quickly() -> None:
    quadratic = re.compile(r"[a-z]+@")  # rescans the word from each of its letters
    with pytest.raises(SuperLinear):
        assert_linear(quadratic.search, HOSTILE["letters"], small=2_000, large=200_000, budget_s=0.5)


def test_the_helper_passes_linear_work() -> None:
    growth = assert_linear(lambda t: t.count("@"), HOSTILE["letters"])
    assert growth.sizes == (25_000, 50_000, 1_000_000) and growth.large_s < 2.0


# --- the linear email finder is the old pattern, match for match --------------------------------------------
OLD_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab.-_+@ 9X", max_size=40))
def test_emails_match_the_old_pattern(text: str) -> None:
    assert emails.spans(text) == [m.span() for m in OLD_EMAIL.finditer(text)]
    assert emails.hide(text) == OLD_EMAIL.sub("(email hidden)", text)


def test_emails_are_hidden() -> None:
    said = "Write to james@example.com or a.b-c@mail.co.uk.x; not @nobody or me@home (ok) 9x@c.com"
    assert emails.hide(said) == (
        "Write to (email hidden) or (email hidden).x; not @nobody or me@home (ok) (email hidden)"
    )
    assert slack_text("<!channel> mail x@y.io & go") == "&lt;!channel&gt; mail (email hidden) &amp; go"


def test_long_texts_fit_in_their_blocks() -> None:
    lead = "&" * 10_000  # escaping makes it five times longer
    rendered = json.dumps(as_dicts(confirmation_blocks(refund_id="RF-1", text="Refund $5?", lead=lead)))
    section = json.loads(rendered)[0]["text"]["text"]
    assert len(section) <= 3000 and section.endswith("&amp;…")
    assert len(_ticket("<" * 5000)[2]["text"]["text"]) <= 3000  # type: ignore[index]


def figures() -> list[str]:
    out = []
    for target, shape in CASES:
        fn, _ = TARGETS[target]
        out.append(str(assert_linear(fn, HOSTILE[shape], label=f"{target} / {shape}")))
    return out


if __name__ == "__main__":
    print("\n".join(figures()))
