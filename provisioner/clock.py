"""Time, injectable.

Services never call ``datetime.now()``; they ask a :class:`Clock`, so tests can
stand exactly at a copy key's 24-hour expiry. Instants are timezone-aware UTC.

    >>> clock = FrozenClock(parse_instant("2026-11-23T09:00:00Z"))
    >>> clock.advance(hours=24); format_instant(clock.now())
    '2026-11-24T09:00:00Z'
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC).replace(microsecond=0)


class FrozenClock:
    """A clock that moves only when told to (tests and simulations)."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> None:
        self._now += timedelta(**delta)

    def set(self, instant: datetime) -> None:
        self._now = instant


def format_instant(value: datetime) -> str:
    """``2026-11-23T09:00:00Z`` (UTC, whole seconds; naive values are taken as UTC)."""
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_instant(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def as_utc(value: datetime) -> datetime:
    """Database drivers may hand back naive datetimes (SQLite): they are UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: Japan Standard Time (no daylight saving): the calendar the tenants' dates are in
JST = timezone(timedelta(hours=9), "JST")


def local_today(clock: Clock) -> date:
    """Today's date in Japan (a follow-up "in 3 days", a birthday, a date trigger)."""
    return clock.now().astimezone(JST).date()
