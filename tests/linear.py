"""Fail a test when work on untrusted text grows faster than the text.

    from tests.linear import HOSTILE, assert_linear

    assert_linear(sanitize_text, HOSTILE["no_at"])          # one input shape
    for name, make in HOSTILE.items():                        # every shape in the battery
        assert_linear(sanitize_text, make, label=name)

`assert_linear(fn, make_input)` times `fn(make_input(n))` at n = 25,000, 50,000 and 1,000,000
characters, and fails when

- the 1 MB time is more than `slack` × (1 MB / 25 KB) = 4 × 40 = 160 times the 25 KB time. (The
  issue's "less than 40×" is the ratio of the sizes itself: code that is exactly linear sits on
  that line, so timing noise alone would fail it half the time. Linear code measures about 40×,
  quadratic about 1,600×, n^1.5 about 250×. Linear code measured 20× to 77× here (a 1 MB string
  falls out of the CPU caches a 25 KB one stays in), so the slack keeps all of it and fails the
  others);
- or any size takes longer than `budget_s` (an absolute bound, generous so a loaded machine
  passes: linear work on 1 MB of text takes milliseconds);
- or the first two sizes already grow so fast that 1 MB would blow the budget, which stops a
  quadratic pattern after a second or two instead of minutes at 1 MB.

Each time is the best of three runs (a first single call, then two runs each calling `fn` enough times to last at least
20 ms), so timer resolution and a stray preemption do not decide the outcome. `make_input(n)`
returns a str (or bytes) of about n characters; HOSTILE holds inputs that make backtracking
patterns slow (long runs of one character class, separators that almost match).
This is a test helper, not a benchmark: the figures it returns are printed by
`python -m tests.test_linear_time`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
SMALL, LARGE = 25_000, 1_000_000


@dataclass(frozen=True, slots=True)
class Growth:
    label: str
    sizes: tuple[int, ...]
    seconds: tuple[float, ...]  # best per-call time at each size

    @property
    def small_s(self) -> float:
        return self.seconds[0]

    @property
    def large_s(self) -> float:
        return self.seconds[-1]

    @property
    def ratio(self) -> float:
        return self.large_s / self.small_s if self.small_s else math.inf

    def exponent(self) -> float:
        """Growth as n^k between the first and last size measured."""
        if len(self.sizes) < 2 or not self.small_s:
            return 1.0
        return math.log(self.large_s / self.small_s) / math.log(self.sizes[-1] / self.sizes[0])

    def __str__(self) -> str:
        return (
            f"{self.label}: {self.sizes[0]:,} chars {self.small_s * 1000:.3f} ms, {self.sizes[-1]:,} chars "
            f"{self.large_s * 1000:.3f} ms (x{self.ratio:.1f}, ~n^{self.exponent():.2f})"
        )


class SuperLinear(AssertionError):
    pass


def best_time(fn: Callable[[T], Any], arg: T, *, repeat: int = 2, min_run_s: float = 0.02, cap_s: float) -> float:
    """Best per-call seconds of `repeat` runs; one call when a single call already takes `cap_s`."""
    started = time.perf_counter()
    fn(arg)
    once = time.perf_counter() - started
    if once >= cap_s:
        return once
    number = max(1, math.ceil(min_run_s / once)) if once > 0 else 1000
    best = once
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(number):
            fn(arg)
        best = min(best, (time.perf_counter() - started) / number)
    return best


def sizes(small: int, large: int) -> list[int]:
    """The small size, twice it (enough to see quadratic growth and stop early), the large one."""
    return [small, 2 * small, large] if 2 * small < large else [small, large]


def assert_linear(
    fn: Callable[[T], Any],
    make_input: Callable[[int], T],
    *,
    label: str = "",
    small: int = SMALL,
    large: int = LARGE,
    slack: float = 4.0,
    budget_s: float = 2.0,
) -> Growth:
    """Fails (SuperLinear) when `fn` grows faster than linearly in its input; returns the figures."""
    label = label or getattr(fn, "__qualname__", repr(fn))
    done: list[tuple[int, float]] = []
    for n in sizes(small, large):
        arg = make_input(n)
        if done and _too_fast(done, n, budget_s):  # a busy machine can fake that: time them again first
            done = [(m, min(t, best_time(fn, make_input(m), cap_s=budget_s))) for m, t in done]
            _predict(label, done, n, budget_s)
        seconds = best_time(fn, arg, cap_s=budget_s)
        done.append((n, seconds))
        if seconds > budget_s:
            raise SuperLinear(f"{label}: {n:,} characters took {seconds:.2f} s (budget {budget_s} s)")
    growth = Growth(label, tuple(n for n, _ in done), tuple(s for _, s in done))
    allowed = slack * large / small
    if growth.ratio > allowed:
        raise SuperLinear(f"{growth}: more than x{allowed:.0f}, so it grows faster than its input")
    return growth


def _growth(done: list[tuple[int, float]], n: int) -> tuple[float, float] | None:
    """(exponent so far, predicted seconds at n), or None with fewer than two usable points."""
    (n0, t0), (n1, t1) = done[0], done[-1]
    if len(done) < 2 or t0 <= 0 or t1 <= 0:
        return None
    k = math.log(t1 / t0) / math.log(n1 / n0)
    return k, t1 * (n / n1) ** max(k, 1.0)


def _too_fast(done: list[tuple[int, float]], n: int, budget_s: float) -> bool:
    grown = _growth(done, n)
    return grown is not None and grown[0] > 1.5 and grown[1] > budget_s * 4


def _predict(label: str, done: list[tuple[int, float]], n: int, budget_s: float) -> None:
    """Stop before a size that the growth so far says would take far past the budget."""
    if _too_fast(done, n, budget_s):
        k, predicted = _growth(done, n) or (0.0, 0.0)
        n1, t1 = done[-1]
        raise SuperLinear(
            f"{label}: {n1:,} characters took {t1:.3f} s, growing like n^{k:.2f}; {n:,} would take ~{predicted:.0f} s"
        )


# --- inputs that make backtracking patterns slow ---------------------------------------------------------
def _repeat(unit: str) -> Callable[[int], str]:
    return lambda n: (unit * (n // len(unit) + 1))[:n]


HOSTILE: dict[str, Callable[[int], str]] = {
    "letters": _repeat("a"),  # one long word: every "[a-z]+X" pattern rescans it from each start
    "upper": _repeat("A"),
    "digits": _repeat("7"),
    "no_at": _repeat("a.b-c_d+e%"),  # email-local characters with no @
    "at_no_dot": lambda n: "a@" + _repeat("b")(n - 2),  # an @ and then a domain that never ends
    "many_at": _repeat("a@"),
    "dots": lambda n: "a@" + _repeat("b.")(n - 3) + "1",  # a domain with a dot at every step, no TLD
    "underscores": _repeat("A_"),  # SHOUTY_CODE-like runs
    "mentions": _repeat("<@U"),  # an unclosed Slack mention again and again
    "spaces": _repeat(" "),
    "punctuation": _repeat(".!? "),
    "words": _repeat("please thanks go ahead lawyer sue fraud human "),
    "errors": _repeat("ValueErrorX"),  # "…Error" without the colon
    "json_strings": _repeat('"\\"'),
    "brackets": _repeat("[{"),
}
