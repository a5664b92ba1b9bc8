from __future__ import annotations

import pytest

from agent.policy import classify, is_failed_round
from tools.codes import Code


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("I'm calling my LAWYER about this", "legal"),
        ("my attorney will hear about it", "legal"),
        ("I will sue you", "legal"),
        ("this is unacceptable!", "legal"),
        ("we are considering legal action", "legal"),
        ("a lawsuit is coming", "legal"),
        ("this is FRAUD", "fraud"),
        ("total scam", "fraud"),
        ("I'll file a chargeback", "fraud"),
        ("can I talk to a human?", "human_request"),
        ("get me your manager", "human_request"),
        ("supervisor please", "human_request"),
        ("I want a real person", "human_request"),
        ("let me speak to someone", "human_request"),
        ("transfer me to an agent", "human_request"),
    ],
)
def test_triggers(text: str, reason: str) -> None:
    verdict = classify(text)
    assert verdict is not None and verdict.reason == reason and verdict.priority == "P1"


@pytest.mark.parametrize(
    "text",
    [
        "I will pursue a refund",
        "there is an issue with my order",
        "is the packaging humane?",
        "agentic AI is cool",
        "the tissue box was crushed",
        "my suede shoes",
        "managerial stuff aside, where is my blender?",
        "hello, my blender arrived broken",
        "",
    ],
)
def test_near_misses_do_not_trigger(text: str) -> None:
    assert classify(text) is None


def test_failed_round_rule() -> None:
    assert is_failed_round([Code.ORDER_NOT_FOUND])
    assert is_failed_round([Code.ORDER_NOT_FOUND, Code.INVALID_INPUT, Code.TICKET_OPENED])
    assert not is_failed_round([Code.ORDER_NOT_FOUND, Code.OK])
    assert not is_failed_round([])
    assert not is_failed_round([Code.TICKET_OPENED])
    assert not is_failed_round([Code.NOT_ELIGIBLE])
