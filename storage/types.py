"""Column types and the clock: time is always timezone-aware UTC, money is always integer cents."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every database.

    PostgreSQL stores `timestamptz`; SQLite has no time zones and hands back naive values,
    so we store naive UTC there and re-attach UTC on the way out. A naive value on the way in
    is a bug in the caller and is refused rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # raw SQLite text, e.g. from a server default
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock tests move by hand, so nothing ever sleeps to make time pass."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> datetime:
        self._now += timedelta(**delta)
        return self._now

    def set(self, value: datetime) -> None:
        self._now = value


def to_cents(amount: Decimal | int | float | str) -> int:
    """Convert a decimal amount with at most two places to integer cents, exactly.

    Floats are converted through their shortest repr (`89.99` stays 89.99), never through
    binary arithmetic. More than two places raises ValueError instead of rounding money.
    """
    try:
        value = Decimal(str(amount)) if not isinstance(amount, Decimal) else amount
        if not value.is_finite():
            raise ValueError("amount must be a finite number")
    except InvalidOperation as exc:
        raise ValueError("amount must be a number") from exc
    scaled = value * 100
    if scaled != scaled.to_integral_value():
        raise ValueError("amount must have at most 2 decimal places")
    return int(scaled)


def format_cents(cents: int, currency: str = "USD") -> str:
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    symbol = {"USD": "$", "EUR": "€", "GBP": "£"}.get(currency)
    body = f"{whole:,}.{frac:02d}"
    return f"{sign}{symbol}{body}" if symbol else f"{sign}{body} {currency}"


def no_nul(value: object) -> object:
    """Strings without NUL characters, recursively: PostgreSQL text cannot store them, and no
    customer or model ever means one."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {k: no_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [no_nul(v) for v in value]
    return value


def estimate_tokens(content: Any) -> int:
    """About four characters a token: close enough to budget a history, with no network call."""
    return len(json.dumps(content, ensure_ascii=False)) // 4 + 4
