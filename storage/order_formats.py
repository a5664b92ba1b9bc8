"""How this shop's order numbers look, derived from the stored ids.

Shops number orders their own way: `ORD-8842`, Shopify's `#1001`, a bare `1234`, `#W7678072`,
`SO-2026-000123`. The import records the *shape* of every id it stores (`shape`, e.g.
`ORD-<d4>`, `<d4>`, `W<d7>`, `SO-<d4>-<d6>`) in the `order_formats` table; `Formats` is those
shapes plus the optional ORDER_NUMBER_PATTERN setting. Readers:

- `key(text)`: how two spellings of one number compare: case-insensitive, a leading `#`, spaces
  and hyphens ignored (`ord 8842`, `ORD8842` and `#ORD-8842` share a key);
- `Formats.spellings`: the ways a typed number may be stored (`ORD8842` laid onto `ORD-<d4>`);
- `Formats.matches`: whether a token is shaped like one of this shop's order numbers (the
  sanitizer withholds such a token unless it is the customer's own, whether or not it exists).

Everything works on bounded tokens (at most `MAX_ID` characters), so even a user-supplied pattern
cannot make matching slower than the token is long.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import OrderFormat

MAX_ID = 32  # the orders.id column
MAX_SHAPES = 64  # more distinct shapes than this means ids without a format: stop recording them
_RUN = re.compile(r"[A-Z]+|\d+|[^A-Z\d]")
Segment = tuple[str, int | str]  # ("d", digits) | ("a", letters) | ("=", a literal run)


def compact(text: str) -> str:
    """Upper case, no leading `#`, no whitespace: the form shapes and keys are built from."""
    return "".join(text.split()).upper().lstrip("#")


def key(text: str) -> str:
    return "".join(ch for ch in compact(text) if ch.isalnum())


def digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def segments(text: str) -> tuple[Segment, ...] | None:
    """A token's runs: digit runs by length, short letter runs literally (a prefix such as ORD or
    W), long letter runs by length, separators literally. None if it cannot be an order number."""
    s = compact(text)
    if not s or len(s) > MAX_ID or not any(ch.isdigit() for ch in s):
        return None
    out: list[Segment] = []
    for m in _RUN.finditer(s):
        run = m.group(0)
        if run.isdigit():
            out.append(("d", len(run)))
        elif run.isascii() and run.isalpha():
            out.append(("=", run) if len(run) <= 6 else ("a", len(run)))
        else:
            out.append(("=", run))
    return tuple(out)


def shape(order_id: str) -> str | None:
    """The stored form of a shape, e.g. `ORD-<d4>`, `<d4>`, `W<d7>`, `SO-<d4>-<d6>`."""
    segs = segments(order_id)
    if segs is None:
        return None
    return "".join(f"<{k}{v}>" if k in ("d", "a") else str(v) for k, v in segs)


def parse_shape(text: str) -> tuple[Segment, ...]:
    """The stored form back into runs, split exactly as `segments` splits a token."""
    out: list[Segment] = []
    for m in re.finditer(r"<([da])(\d{1,2})>|[^<]+", text[:200]):
        if m.group(1):
            out.append((m.group(1), int(m.group(2))))
        else:
            out += [("=", run.group(0)) for run in _RUN.finditer(m.group(0))]
    return tuple(out)


def _fits(token: tuple[Segment, ...], model: tuple[Segment, ...]) -> bool:
    """Same runs in the same order; a digit or letter run may be up to two longer or shorter (numbers grow)."""
    if len(token) != len(model):
        return False
    for (tk, tv), (mk, mv) in zip(token, model, strict=True):
        if tk != mk:
            return False
        if tk == "=" and tv != mv:
            return False
        if tk in ("d", "a") and abs(int(tv) - int(mv)) > 2:
            return False
    return True


@dataclass(frozen=True, slots=True)
class Formats:
    """How this shop's order numbers look: the recorded shapes, and ORDER_NUMBER_PATTERN if set."""

    shapes: tuple[tuple[Segment, ...], ...] = ()
    pattern: re.Pattern[str] | None = None

    def matches(self, token: str) -> bool:
        token = token.strip()
        if not token or len(token) > MAX_ID + 1:
            return False
        segs = segments(token)
        if segs is not None and any(_fits(segs, s) for s in self.shapes):
            return True
        if self.pattern is not None:
            bare = token.lstrip("#")
            return bool(self.pattern.fullmatch(token) or self.pattern.fullmatch(bare))
        return False

    def spellings(self, typed: str) -> list[str]:
        """The ways this typed number may be stored: as typed, upper-cased, with and without `#`,
        and laid onto each known shape (`ORD8842` onto `ORD-<d4>` gives `ORD-8842`)."""
        raw = " ".join(typed.split())[: MAX_ID + 8]
        bare = compact(raw)
        out = [raw, raw.upper(), bare, f"#{bare}"]
        k = key(raw)
        for model in self.shapes:
            laid = _lay(k, model)
            if laid is not None:
                out += [laid, f"#{laid}"]
        seen: dict[str, None] = {}
        for s in out:
            if s and len(s) <= MAX_ID:
                seen.setdefault(s, None)
        return list(seen)

    def example(self) -> str:
        """A made-up number of the shop's first shape, for prompts (never a real order)."""
        if not self.shapes:
            return "ORD-1234"
        out = []
        for k, v in self.shapes[0]:
            out.append("123456789"[: int(v)] if k == "d" else "ABCDEFGH"[: int(v)] if k == "a" else str(v))
        return "".join(out)


def _lay(k: str, model: tuple[Segment, ...]) -> str | None:
    """Put a separator-free key into a shape exactly (digit runs of exactly the shape's length)."""
    out, pos = [], 0
    for kind, value in model:
        if kind == "=":
            literal = str(value)
            if literal.isalnum():
                if k[pos : pos + len(literal)] != literal:
                    return None
                pos += len(literal)
            out.append(literal)
            continue
        run = k[pos : pos + int(value)]
        ok = run.isdigit() if kind == "d" else run.isalpha()
        if len(run) != int(value) or not ok:
            return None
        out.append(run)
        pos += int(value)
    return "".join(out) if pos == len(k) else None


def compile_pattern(pattern: str | None) -> re.Pattern[str] | None:
    if not pattern:
        return None
    return re.compile(pattern, re.IGNORECASE)


async def load_formats(s: AsyncSession, pattern: str | None = None) -> Formats:
    """The known shapes, read once per transaction (kept in the session's `info` until it ends)."""
    cached = s.info.get(("order_formats", pattern))
    if isinstance(cached, Formats):
        return cached
    rows = (await s.scalars(select(OrderFormat.shape).order_by(OrderFormat.shape).limit(MAX_SHAPES))).all()
    return formats_from(s, list(rows), pattern)


def formats_from(s: AsyncSession, shapes: list[str], pattern: str | None = None) -> Formats:
    """Formats from shapes read by the caller, kept for the rest of `s`'s transaction."""
    formats = Formats(tuple(parse_shape(r) for r in sorted(shapes)[:MAX_SHAPES]), compile_pattern(pattern))
    s.info[("order_formats", pattern)] = formats
    return formats


def shapes_of(order_ids: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for oid in order_ids:
        s = shape(oid)
        if s is not None:
            out.add(s)
    return out


async def record_shapes(s: AsyncSession, order_ids: Iterable[str]) -> None:
    """Remember the shapes of these ids (inside the caller's transaction), up to MAX_SHAPES in all."""
    known = set((await s.scalars(select(OrderFormat.shape))).all())
    new = sorted(shapes_of(order_ids) - known)[: max(MAX_SHAPES - len(known), 0)]
    s.add_all(OrderFormat(shape=x) for x in new)
    await s.flush()
    for key in [k for k in s.info if isinstance(k, tuple) and k[:1] == ("order_formats",)]:
        del s.info[key]
