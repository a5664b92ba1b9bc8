"""Every pattern that reads untrusted text runs in linear time, and the guard caps what it reads.

A pattern that backtracks (nested quantifiers, overlapping alternatives) takes quadratic time or
worse on some input: 16 times the text then costs 256 times as long. Each pattern here is run, with
no cap, on hostile inputs of 5,000 and 80,000 characters; the growth must stay near 16, far from
256. The bound is loose on purpose (a slow machine or a noisy neighbour does not fail it, a
backtracking pattern does). The guard's own entry points cap their input first, so a 1 MB reply
costs no more than a 25 KB one.
"""

from __future__ import annotations

import gc
import re
import time
from collections.abc import Callable, Iterator
from datetime import date

import pytest

import agent.citations
import agent.claim_patterns
import agent.offline
import agent.offline_kb
import agent.offline_text
import agent.policy
import agent.verdict_patterns
import storage.order_formats
import tools.patterns
import tools.sanitizer
from agent import claims
from agent.facts import Facts
from agent.offline_text import fix_typos, order_refs, tasks
from tools.sanitizer import split_sentences, strip_tool_text

NO_FACTS = Facts({}, (), False, (), date(2026, 1, 1))
HOSTILE = ["a", "a ", "1-", "1.", "a@", "#1", "refund has been ", "Aa-1_"]


def patterns() -> Iterator[tuple[str, re.Pattern[str]]]:
    modules = (
        agent.claim_patterns,
        tools.patterns,
        tools.sanitizer,
        agent.offline,
        agent.offline_text,
        agent.offline_kb,
        agent.citations,
        agent.verdict_patterns,
        storage.order_formats,
    )
    for module in modules:
        for name, value in vars(module).items():
            if isinstance(value, re.Pattern):
                yield f"{module.__name__}.{name}", value
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    found = [x for x in (item if isinstance(item, tuple) else (item,)) if isinstance(x, re.Pattern)]
                    for p in found:
                        yield f"{module.__name__}.{name}[{i}]", p


def cost(run: Callable[[str], object], unit: str, size: int, repeats: int) -> float:
    """CPU time (not wall time: other processes share the machine), the best of a few runs, without
    the garbage collector (its pauses are not the pattern's)."""
    text = (unit * (size // len(unit) + 1))[:size]
    best = float("inf")
    gc.disable()
    try:
        for _ in range(repeats):
            started = time.process_time()
            run(text)
            best = min(best, time.process_time() - started)
    finally:
        gc.enable()
    return best


def growth(run: Callable[[str], object], unit: str, small: int, large: int) -> float:
    return cost(run, unit, large, 2) / max(cost(run, unit, small, 5), 1e-5)


ALL = list({id(p): (n, p) for n, p in reversed(list(patterns()))}.values())[::-1]  # each pattern once


def test_every_pattern_is_collected() -> None:
    names = {n for n, _ in ALL}
    assert len(ALL) > 60
    assert {"tools.patterns.EMAIL", "tools.sanitizer.TOKEN", "agent.claim_patterns.MONEY"} <= names


@pytest.mark.parametrize(("name", "pattern"), ALL, ids=[n for n, _ in ALL])
def test_pattern_is_linear(name: str, pattern: re.Pattern[str]) -> None:
    worst = max(growth(lambda t: sum(1 for _ in pattern.finditer(t)), unit, 5_000, 80_000) for unit in HOSTILE)
    assert worst < 100, (name, worst)  # linear: about 16 (up to 40 with cache effects); quadratic: about 256


@pytest.mark.parametrize(
    "run",
    [
        lambda t: strip_tool_text(t),
        lambda t: claims.has_claims(t[:12_000]),
        lambda t: [claims.extract(s, NO_FACTS) for s in split_sentences(tools.sanitizer.cap(t, 12_000))],
        lambda t: agent.policy.classify(t),
        lambda t: tasks(fix_typos(t), carried=None, answering=False),
        lambda t: order_refs(t),
    ],
    ids=["strip_tool_text", "has_claims", "extract", "classify", "offline tasks", "order_refs"],
)
def test_the_guard_caps_before_it_reads(run: Callable[[str], object]) -> None:
    for unit in ("refund has been processed. ", "a", "ORD-1 "):
        assert growth(run, unit, 25_000, 1_000_000) < 40
