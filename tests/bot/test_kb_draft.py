"""`supportbot kb draft`: a resolved ticket's answer saved as a draft article keeps no one's details
(names, phone numbers, street addresses, card-like numbers, links, emails, order numbers), and the
command lists what it took out so staff can check the draft before publishing it."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from agent.history import append
from desk import staff as staff_acts
from desk.sessions import open_session
from storage.models import Article, InboxItem
from tests.bot.test_kb_cli import env, run  # noqa: F401 - env is a fixture
from tests.linear import HOSTILE, _repeat, assert_linear
from tests.tau2 import assistant_replies, retail_users
from tools import tickets
from tools.context import Actor, Deps
from tools.redaction import redact

ASKED = (
    "Hi, this is Sarah Chen. My kettle from ORD-8842 leaks. Call me on +1 (415) 555-0199 or 415.555.0123; "
    "I live at 742 Evergreen Terrace, Apt 4B, Springfield, IL 62704. I paid with 4242 4242 4242 4242. "
    "Photos: https://photos.example.net/sarah/kettle and www.imgshare.example/k1"
)
ANSWERED = (
    "Thanks Sarah! A leaking lid seal is covered by the warranty: send it to 1600 Amphitheatre Parkway "
    "and we ship a new kettle within 5 days. Best, Ana"
)
GONE = [
    "Sarah",
    "Chen",
    "555-0199",
    "555.0123",
    "742 Evergreen",
    "Amphitheatre",
    "4242",
    "photos.example",
    "imgshare",
    "Ana",
]


async def ticket_with(deps: Deps, *, asked: str, answered: str) -> int:
    """An open ticket on a Slack conversation where the customer asked `asked` and staff answered
    `answered` in the thread."""
    ctx = await open_session(
        deps, channel="slack", actor=Actor.customer("CUST-1001", subject="T1:U1"), external_key="slack:C1:100.1"
    )
    content = [{"type": "text", "text": asked}]
    await append(deps.store, deps.clock, session_id=ctx.session_id, role="user", content=content, customer_text=True)
    async with deps.store.write() as s:
        s.add(
            InboxItem(
                face="slack",
                kind="message",
                conversation="slack:C1:100.1",
                channel="C1",
                ts="100.2",
                thread_ts="100.1",
                user_id="USTAFF",
                text=answered,
                payload={},
                status="done",
                received_at=deps.clock.now(),
            )
        )
        ticket, _ = await tickets.open_or_update(
            s, deps, session_id=ctx.session_id, priority="P3", reason="handoff", summary="a question"
        )
    return ticket.id


@pytest.mark.usefixtures("env")
async def test_a_draft_keeps_no_ones_details_and_says_what_it_took_out(
    capsys: pytest.CaptureFixture[str], deps: Deps
) -> None:
    ticket_id = await ticket_with(deps, asked=ASKED, answered=ANSWERED)
    await staff_acts.resolve(deps, ticket_id=ticket_id, staff=Actor.staff("USTAFF"))
    code, out, _ = await run(capsys, "kb", "draft", str(ticket_id))
    assert code == 0 and "Saved as draft article" in out
    async with deps.store.read() as s:
        article = (await s.scalars(select(Article).where(Article.ticket_id == ticket_id))).one()
    draft = f"{article.title}\n{article.body}"
    assert [g for g in GONE if g in draft] == [], draft
    assert "leaking lid seal is covered by the warranty" in draft and "within 5 days" in draft
    listed = out.split("redacted", 1)[1]
    for kind in ("name", "phone number", "street address", "card number", "link", "order number"):
        assert kind in listed, (kind, out)
    assert "4242 4242 4242 4242" not in out and "ending 4242" in out  # a card is named by its last digits only


def test_redaction_finds_the_addresses_and_names_of_real_customers() -> None:
    """τ2's retail store: 500 real-looking customers' names and street addresses, written the way
    a customer would; redaction finds nearly all of them."""
    users = retail_users()
    missed = []
    for user in users:
        name, address = user["name"], user["address"]
        said = (
            f"Hi, my name is {name['first_name']} {name['last_name']}. Please ship it to {address['address1']}, "
            f"{address['address2'] + ', ' if address['address2'] else ''}{address['city']}, "
            f"{address['state']} {address['zip']}."
        )
        text, _ = redact(said)
        if any(part in text for part in (name["first_name"], name["last_name"], address["address1"], address["zip"])):
            missed.append(text)
    assert len(users) == 500 and len(missed) <= 5, missed[:5]


def test_redaction_leaves_support_answers_readable() -> None:
    """Answers Claude models gave τ2's customers (flight numbers, dates and times, prices,
    reservation codes, and no phone, card or street address): redaction takes none of those for a
    phone, a card or an address, and takes out few words at all (the customers' own names)."""
    answers = assistant_replies()
    words = sum(len(a.split()) for a in answers)
    taken = [item for a in answers for item in redact(a)[1]]
    assert words > 100_000 and [t for t in taken if t[0] in ("street address", "phone number", "card number")] == []
    assert len(taken) <= words / 2000, taken


@pytest.mark.parametrize("name", [*HOSTILE, "greetings", "phones", "streets"])
def test_redaction_is_linear(name: str) -> None:
    make = (
        HOSTILE.get(name)
        or {
            "greetings": lambda n: "".join(f"Hi A{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}. " for i in range(n // 8)),
            "phones": _repeat("+1 (415) 555-01 "),
            "streets": _repeat("12 Main Oak Elm Pine "),
        }[name]
    )
    assert_linear(lambda t: redact(t, names=["Sarah Chen"]), make, label=name, large=400_000)
