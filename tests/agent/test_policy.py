from __future__ import annotations

import pytest

from agent.policy import classify, is_failed_round
from tools.codes import Code

# (what the customer wrote, the verdict: legal | fraud | human_request | None) in English, Spanish, German
PHRASINGS: list[tuple[str, str | None]] = [
    # questions about the bot are not requests for a person
    ("are you a real person or an AI?", None),
    ("is this a bot?", None),
    ("Am I talking to a human?", None),
    ("are you human?", None),
    ("Is this automated or a real person?", None),
    ("are you an agent or a bot?", None),
    ("¿Eres un bot?", None),
    ("¿Hablo con una persona real?", None),
    ("¿Eres humano o una IA?", None),
    ("Bist du ein Bot?", None),
    ("Sind Sie ein Mensch?", None),
    ("Rede ich mit einem Menschen?", None),
    # requests for a person
    ("I want to talk to a human", "human_request"),
    ("get me a manager", "human_request"),
    ("can I talk to a human?", "human_request"),
    ("get me your manager", "human_request"),
    ("supervisor please", "human_request"),
    ("I want a real person", "human_request"),
    ("let me speak to someone", "human_request"),
    ("transfer me to an agent", "human_request"),
    ("Can I please speak to a real person?", "human_request"),
    ("I need a human to look at this", "human_request"),
    ("human", "human_request"),
    ("Is there a person I can talk to?", "human_request"),
    ("Is a real person available?", "human_request"),
    ("Please escalate this.", "human_request"),
    ("connect me with a representative", "human_request"),
    ("Are you a bot? I'd rather speak to a person.", "human_request"),
    ("Quiero hablar con una persona", "human_request"),
    ("Quiero hablar con un humano, por favor", "human_request"),
    ("Páseme con un responsable", "human_request"),
    ("¿Puedo hablar con un agente?", "human_request"),
    ("Ich möchte mit einem Menschen sprechen", "human_request"),
    ("Kann ich bitte mit einem Mitarbeiter sprechen?", "human_request"),
    ("Verbinden Sie mich mit Ihrem Vorgesetzten", "human_request"),
    ("Einen Menschen bitte!", "human_request"),
    # legal
    ("I'll sue", "legal"),
    ("I'm calling my LAWYER about this", "legal"),
    ("my attorney will hear about it", "legal"),
    ("this is unacceptable!", "legal"),
    ("we are considering legal action", "legal"),
    ("a lawsuit is coming", "legal"),
    ("Voy a llamar a mi abogado", "legal"),
    ("Los voy a demandar", "legal"),
    ("Esto es inaceptable", "legal"),
    ("Ich schalte meinen Anwalt ein", "legal"),
    ("Ich werde Sie verklagen", "legal"),
    ("Wir prüfen rechtliche Schritte", "legal"),
    # fraud
    ("this is fraud", "fraud"),
    ("total scam", "fraud"),
    ("I'll file a chargeback", "fraud"),
    ("Esto es una estafa", "fraud"),
    ("Es un fraude", "fraud"),
    ("Das ist Betrug!", "fraud"),
    ("Reine Abzocke", "fraud"),
    ("Ich mache eine Rückbuchung", "fraud"),
    # anger without legal words: empathy from the model, no escalation
    ("This is ridiculous, I've waited two weeks!", None),
    ("I'm so angry right now", None),
    ("worst service ever!!!", None),
    ("Estoy muy enfadado con este pedido", None),
    ("Das ist eine Frechheit", None),
    # near misses
    ("I will pursue a refund", None),
    ("there is an issue with my order", None),
    ("is the packaging humane?", None),
    ("agentic AI is cool", None),
    ("the tissue box was crushed", None),
    ("my suede shoes", None),
    ("managerial stuff aside, where is my blender?", None),
    ("my travel agent ordered it for me", None),
    ("human error on your side, I think", None),
    ("the manager of my building signed for the parcel", None),
    ("hello, my blender arrived broken", None),
    ("", None),
]


def test_the_table_is_big_enough() -> None:
    assert len(PHRASINGS) >= 60
    assert {v for _, v in PHRASINGS} == {None, "legal", "fraud", "human_request"}


@pytest.mark.parametrize(("text", "verdict"), PHRASINGS)
def test_escalation_verdicts(text: str, verdict: str | None) -> None:
    trigger = classify(text)
    assert (trigger.reason if trigger else None) == verdict, (text, trigger)
    if trigger is not None:
        assert trigger.priority == "P1"


def test_failed_round_rule() -> None:
    assert is_failed_round([Code.ORDER_NOT_FOUND])
    assert is_failed_round([Code.ORDER_NOT_FOUND, Code.INVALID_INPUT, Code.TICKET_OPENED])
    assert not is_failed_round([Code.ORDER_NOT_FOUND, Code.OK])
    assert not is_failed_round([])
    assert not is_failed_round([Code.TICKET_OPENED])
    assert not is_failed_round([Code.NOT_ELIGIBLE])
