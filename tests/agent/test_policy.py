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
    ("this is unacceptable!", None),  # anger, no threat
    ("we are considering legal action", "legal"),
    ("a lawsuit is coming", "legal"),
    ("Voy a llamar a mi abogado", "legal"),
    ("Los voy a demandar", "legal"),
    ("Esto es inaceptable", None),
    ("Ich schalte meinen Anwalt ein", "legal"),
    ("Ich werde Sie verklagen", "legal"),
    ("Wir prüfen rechtliche Schritte", "legal"),
    # fraud
    ("this is fraud", "fraud"),
    ("total scam", "fraud"),
    ("I'll file a chargeback", "billing_dispute"),
    ("Esto es una estafa", "fraud"),
    ("Es un fraude", "fraud"),
    ("Das ist Betrug!", "fraud"),
    ("Reine Abzocke", "fraud"),
    ("Ich mache eine Rückbuchung", "billing_dispute"),
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
    # the phrasings: word forms, negation, "someone else", threats that are no threats
    ("I'd like to be transferred to a human agent", "human_request"),
    ("Is there someone else I can speak with?", "human_request"),
    ("If it's possible, I'd appreciate being transferred to a human agent.", "human_request"),
    ("Could you please check with a human agent for me?", "human_request"),
    ("No, please do NOT transfer me to another agent.", None),
    ("I really don't want to be transferred. I just need someone to help me right now.", None),
    ("I'd rather not be transferred, can you try once more?", None),
    ("Before you transfer me, would an upgrade make a difference?", None),
    ("Thank you for transferring me.", None),
    ("Can you transfer me to an earlier flight?", None),
    ("If you still see Silver, I'd like to speak to a supervisor.", None),  # only if the check fails
    ("My friend is a lawyer and says the blender is defective, can I get a refund?", None),
    ("This is completely unacceptable, I'm a loyal customer.", None),
    ("I will take legal action if this isn't fixed", "legal"),
    ("I'm contacting my attorney tomorrow.", "legal"),
    ("No quiero que me transfieran, quiero una solución.", None),
    ("Ich möchte nicht mit einem Mitarbeiter sprechen.", None),
    ("Je voudrais parler à un conseiller, s'il vous plaît.", "human_request"),
    # safety and injury, billing disputes, a delivery the customer disputes
    ("My kettle ORD-7710 caught fire and burned my hand!", "safety"),
    ("The charger sparked and gave me a shock", "safety"),
    ("Mi hervidor se incendió", "safety"),
    ("Der Wasserkocher hat Feuer gefangen", "safety"),
    ("Nobody got hurt, but I want a refund", None),
    ("My cat is really sick and I need to get home sooner.", None),
    ("I was charged twice for ORD-8901", "billing_dispute"),
    ("I will dispute the charge with my bank", "billing_dispute"),
    ("Me cobraron dos veces el pedido", "billing_dispute"),
    ("Mir wurde die Bestellung doppelt abgebucht", "billing_dispute"),
    ("I never received ORD-8901 even though it says delivered", "not_received"),
    ("Tracking shows it was delivered but it never arrived", "not_received"),
    ("El pedido aparece como entregado pero no lo he recibido", "not_received"),
    ("Laut Sendungsverfolgung zugestellt, aber ich habe nichts erhalten", "not_received"),
    ("My order hasn't arrived yet, where is it?", None),  # the bot can look that up
]
# the priority each verdict opens its ticket with (README, "Escalations")
PRIORITY = {"legal": "P1", "fraud": "P1", "safety": "P1", "human_request": "P1"}
PRIORITY |= {"billing_dispute": "P2", "not_received": "P2"}


def test_the_table_is_big_enough() -> None:
    assert len(PHRASINGS) >= 60
    assert {v for _, v in PHRASINGS} == {None, *PRIORITY}


@pytest.mark.parametrize(("text", "verdict"), PHRASINGS)
def test_escalation_verdicts(text: str, verdict: str | None) -> None:
    trigger = classify(text)
    assert (trigger.reason if trigger else None) == verdict, (text, trigger)
    if trigger is not None:
        assert trigger.priority == PRIORITY[trigger.reason]


@pytest.mark.parametrize(
    ("text", "ends"),
    [
        ("Yes, please transfer me to a human agent. Thank you.", True),
        ("Please add one checked bag to my reservation, and transfer me to a human agent.", False),
        ("Issue the $150 certificate, and also transfer me to a human agent.", False),
        ("For NQNU5R, transfer me to a human agent. For M20IZO, please search nonstop flights.", False),
        ("I want to talk to a human", True),
        ("My blender caught fire, please refund it and let me talk to a person", True),  # safety stops the model
    ],
)
def test_a_person_asked_for_with_other_requests_lets_the_model_answer_them(text: str, ends: bool) -> None:
    verdict = classify(text)
    assert verdict is not None and verdict.ends_turn is ends, verdict
    if not ends:
        assert verdict.reason == "human_request" and verdict.notice and verdict.priority == "P1"


def test_failed_round_rule() -> None:
    assert is_failed_round([Code.ORDER_NOT_FOUND])
    assert is_failed_round([Code.ORDER_NOT_FOUND, Code.INVALID_INPUT, Code.TICKET_OPENED])
    assert not is_failed_round([Code.ORDER_NOT_FOUND, Code.OK])
    assert not is_failed_round([])
    assert not is_failed_round([Code.TICKET_OPENED])
    assert not is_failed_round([Code.NOT_ELIGIBLE])
