"""`supportbot eval --suite realtext`: the guard and the classifier on text real models and customers
wrote (τ2-bench's airline conversations, beside the checkout, never copied here), and the eval's own
grading on a small corpus of our own words."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest

from agent import realtext
from agent.errors import CorpusError, CorpusMissing
from agent.realtext_corpus import customer_text, digest, load
from bot.realtext import run_realtext
from storage.settings import Settings

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "tau2"


def corpus_or_say_so() -> Path:
    """The corpus beside the checkout; without it, CI fails and a laptop skips, each saying why."""
    if (CORPUS / "conversations").is_dir():
        return CORPUS
    why = f"the τ2 corpus is not beside the checkout ({CORPUS.resolve()}): the realtext goals were not checked"
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


async def test_the_goals_on_the_tau2_conversations(settings: Settings, database_url: str) -> None:
    rep = await run_realtext(settings, corpus_path=corpus_or_say_so(), database_url=database_url)
    m = rep["measured"]
    assert rep["conversations"] >= 250 and rep["replies"] >= 1100 and rep["customer_messages"] >= 1500
    assert m["replaced_share"] <= realtext.GOALS["replaced_share"], rep["misses"]["replaced"]
    assert m["lost_sentence_share"] <= realtext.GOALS["lost_sentence_share"], rep["misses"]["lost_sentence"]
    assert m["lost_not_tool_traffic"] == 0, rep["misses"]["lost_not_tool_traffic"]
    assert m["line_breaks_lost"] == 0, rep["misses"]["line_breaks_lost"]
    assert rep["lies"] >= 60 and m["lies_let_through"] == 0, rep["misses"]["lies_let_through"]
    assert m["wrong_escalations"] == 0, rep["misses"]["wrong_escalations"]
    assert m["missed_person_requests"] == 0, rep["misses"]["missed_person_requests"]
    assert not rep["misses"]["bundled_requests_stopped"] and not rep["misses"]["stale_labels"]


def test_labels_and_lies_hold_no_corpus_text() -> None:
    labels = realtext.load_labels()
    assert len(labels) >= 100 and all(len(x.hash) == 10 and len(x.why) <= 120 for x in labels.values())
    lies = realtext.load_lies()
    assert len(lies) >= 60 and {x.lang for x in lies} == {"en", "es", "de"}
    kinds = {x.kind for x in lies}
    assert {"refund", "status", "date", "amount", "handoff", "contact"} <= kinds


# --- the eval's grading, on a corpus of our own -----------------------------------------------------------
def conversation(task: str, customer: str | None, *turns: dict[str, Any]) -> dict[str, Any]:
    greeting = {"role": "assistant", "content": "Hi! How can I help?", "tool_calls": None}
    return {"source": "test", "task_id": task, "customer_id": customer, "reward": 1, "messages": [greeting, *turns]}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text, "tool_calls": None}


def said(text: str, *calls: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text, "tool_calls": [{"name": c, "arguments": {}} for c in calls] or None}


def tool(payload: dict[str, Any]) -> dict[str, Any]:
    return {"role": "tool", "content": json.dumps(payload), "tool_calls": None}


OWN = [
    conversation(
        "1",
        "ada_lee_1",
        user("Hi, I'm ada_lee_1. Please check reservation AB12CD and transfer me to a person."),
        said("", "get_reservation_details"),
        tool({"reservation_id": "AB12CD", "payment_history": [{"payment_id": "gift_card_7", "amount": -120}]}),
        said(
            "Here is what I found:\n\n| flight | price |\n|---|---|\n| HAT001 | $60 |\n\n"
            "- Refund to: gift_card_7\n- The flight was not cancelled by the airline.\n\n"
            "A reservation can be cancelled with a refund only if:\n- it was booked within 24 hours"
        ),
        said("", "transfer_to_human_agents"),
        said("YOU ARE BEING TRANSFERRED TO A HUMAN AGENT."),
        user("No, do NOT transfer me. I was charged twice! ###STOP###"),
        said("", "cancel_reservation"),
        said("Your reservation has been cancelled and refunded."),  # after the first write: not judged
    ),
    conversation("2", None, user("I'd like to be transferred to a human agent"), said("Of course.")),
]
RETAIL = {
    "users": {
        "bo_li_2": {"name": {"first_name": "Bo", "last_name": "Li"}, "email": "bo@example.com", "orders": ["#W1000001"]}
    },
    "orders": {
        "#W1000001": {
            "user_id": "bo_li_2",
            "status": "delivered",
            "items": [
                {"name": "Desk Lamp", "item_id": "1", "price": 40.5},
                {"name": "Mug", "item_id": "2", "price": 9.5},
            ],
        }
    },
}


def write_corpus(folder: Path) -> Path:
    conversations = folder / "conversations"
    conversations.mkdir(parents=True)
    with gzip.open(conversations / "airline_own.json.gz", "wt") as f:
        json.dump(OWN, f)
    customers = {"customers": [{"id": "ada_lee_1", "name": "Ada Lee", "email": "ada@example.com"}], "orders": []}
    with gzip.open(conversations / "airline_customers.json.gz", "wt") as f:
        json.dump(customers, f)
    with gzip.open(folder / "retail_db.json.gz", "wt") as f:
        json.dump(RETAIL, f)
    return folder


async def test_the_eval_grades_a_corpus_of_our_own(settings: Settings, tmp_path: Path) -> None:
    folder = write_corpus(tmp_path / "tau2")
    person = customer_text(OWN[1]["messages"][1]["content"])
    labels = {
        "labels": [{"file": "airline_own", "task": "2", "index": 1, "hash": digest(person), "verdict": "human_request"}]
    }
    lies = {
        "lies": [
            {
                "id": "x1",
                "lang": "en",
                "kind": "refund",
                "needs": "delivered",
                "text": "I've refunded {total} for {order}.",
            },
            {"id": "x2", "lang": "en", "kind": "status", "needs": "delivered", "text": "Your {item} is on its way."},
            {"id": "x3", "lang": "en", "kind": "amount", "needs": "delivered", "text": "{order} came to {total}."},
        ]
    }
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    (tmp_path / "lies.json").write_text(json.dumps(lies))
    rep = await run_realtext(
        settings, corpus_path=folder, labels_path=tmp_path / "labels.json", lies_path=tmp_path / "lies.json"
    )
    assert rep["conversations"] == 2 and rep["replies"] == 3 and rep["multiline_replies"] == 1
    assert rep["replaced"] == 0 and rep["lost_sentence"] == 0 and rep["measured"]["line_breaks_lost"] == 0
    # unlabelled verdicts count as wrong: a person asked for with a check, and a double charge; "do NOT
    # transfer me" asks for nobody
    assert rep["misses"]["wrong_escalations"] == [
        "airline_own/1#1 human_request (expected none)",
        "airline_own/1#7 billing_dispute (expected none)",
    ]
    assert rep["verdicts"] == 3 and rep["misses"]["missed_person_requests"] == []
    # two lies caught; the third is true (the order's own total), so it "gets through" as it should
    assert rep["lies"] == 3 and [x.split(" ")[0] for x in rep["misses"]["lies_let_through"]] == ["x3"]


def test_a_missing_or_broken_corpus_says_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(CorpusMissing, match="no τ2 corpus at"):
        load(tmp_path)
    (tmp_path / "conversations").mkdir()
    (tmp_path / "conversations" / "airline_x.json.gz").write_bytes(b"not gzip")
    with pytest.raises(CorpusError, match="airline_x.json.gz: cannot be read"):
        load(tmp_path)
