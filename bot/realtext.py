"""The realtext eval's run (`supportbot eval --suite realtext`): τ2's conversations replayed through
the guard and the classifier on a scratch store, in sessions the desk opens like any face's; the
grading and the report are the agent's (`agent.realtext`)."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from agent import policy, realtext_corpus
from agent.realtext import (
    LABELS,
    LIES,
    Labels,
    Lie,
    Seen,
    Tally,
    classify_one,
    evidence,
    fill,
    grade_reply,
    honest_replies,
    key,
    lie_through,
    load_labels,
    load_lies,
    report,
)
from agent.realtext_corpus import Conversation, Corpus, customer_text
from desk.sessions import open_session
from storage.demo import empty
from storage.engine import Store
from storage.importer import import_records, parse
from storage.migrate import upgrade
from storage.settings import Settings
from storage.types import FrozenClock
from tools.context import Actor, CallContext, Deps
from tools.toolbox import Toolbox, make_deps

TRANSFER = "transfer_to_human_agents"  # τ2's handoff: in our store, the session's ticket


async def replay(deps: Deps, c: Conversation, tally: Tally, labels: Labels) -> None:
    """One conversation: its customer messages through the classifier, its replies before the first
    write through the guard (in a session bound to its customer, with what it had shown so far)."""
    actor = Actor.customer(c.customer_id) if c.customer_id else Actor.unverified(f"tau2:{c.task_id}")
    ctx = await open_session(deps, channel="eval", actor=actor)
    seen = Seen()
    stop = c.first_write()
    for m in c.messages:
        if m.role == "user":
            said = customer_text(m.content)
            classify_one(tally, c, m.index, said, labels)
            seen.customer.append(said)
        elif m.role == "tool":
            seen.tool_results.append(m.content)
        elif m.role == "assistant" and m.tools:
            seen.tools |= set(m.tools)
            if TRANSFER in m.tools and m.index < stop:
                await policy.apply(deps, ctx, policy.Verdict("P2", "requested_by_model"), "τ2 transferred")
        elif m.role == "assistant" and 0 < m.index < stop and m.content.strip():
            started = time.process_time()
            out = await policy.guard(m.content, deps=deps, ctx=ctx, evidence=evidence(seen))
            tally.cpu_ms.append((time.process_time() - started) * 1000)
            grade_reply(tally, key(c, m.index), m.content, out, seen.tools)


async def plant(deps: Deps, corpus: Corpus, lies: list[Lie], tally: Tally) -> None:
    """Each lie about a real order of the retail store, in a fresh session of its customer after our
    own lookup of that order: alone, and after an honest reply."""
    toolbox, honest = Toolbox(deps), honest_replies(corpus)
    by_status: dict[str, list[dict[str, Any]]] = {}
    for o in sorted(corpus.import_document["orders"], key=lambda o: o["id"]):
        by_status.setdefault(o["status"], []).append(o)
    for n, lie in enumerate(lies):
        pool = by_status.get(lie.needs) or []
        if not pool:
            tally.lies_through.append(f"{lie.id}: no {lie.needs} order in the store")
            continue
        order = pool[(n * 37) % len(pool)]
        said = fill(lie, order)
        tally.lies += 1
        for placed in (said, f"{honest[(n * 7) % len(honest)]}\n\n{said}" if honest else said):
            ctx = await _customer(deps, order["customer_id"])
            looked = await toolbox.call("lookup_order", {"order_id": order["id"]}, ctx)
            seen = Seen(tool_results=[json.dumps(looked.for_model())], tools={"lookup_order"})
            if lie_through(said, await policy.guard(placed, deps=deps, ctx=ctx, evidence=evidence(seen))):
                tally.lies_through.append(f"{lie.id} ({lie.lang}, {lie.kind}): {said}")
                break


async def _customer(deps: Deps, customer_id: str) -> CallContext:
    return await open_session(deps, channel="eval", actor=Actor.customer(customer_id))


async def run_realtext(
    settings: Settings,
    *,
    corpus_path: Path,
    database_url: str | None = None,
    labels_path: Path = LABELS,
    lies_path: Path = LIES,
) -> dict[str, Any]:
    """Everything in the scratch database is deleted first (a temporary SQLite by default)."""
    corpus = realtext_corpus.load(corpus_path)
    labels, lies = load_labels(labels_path), load_lies(lies_path)
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="supportbot-realtext-") as tmp:
        store = Store.from_settings(settings, url=database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'realtext.db'}")
        try:
            await upgrade(store)
            await empty(store)
            await import_records(store, parse(corpus.import_document))
            deps = make_deps(store, settings, FrozenClock(realtext_corpus.TODAY))
            for c in corpus.conversations:
                await replay(deps, c, tally, labels)
            await plant(deps, corpus, lies, tally)
        finally:
            await store.dispose()
    return report(tally, corpus, labels)
