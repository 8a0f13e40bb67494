"""Budget durations and their reset boundaries: pure functions of (period, anchor, time).

A period is either a fixed number of seconds (``daily``, ``weekly``, ``"30s"``, ``"12h"``,
``"2w"``) or a number of calendar months (``monthly``, ``yearly``, ``"1mo"``, ``"1y"``).
Boundaries are always computed from the budget's anchor (its ``created_at``), never chained from
the previous reset, so they cannot drift. Calendar arithmetic is done in UTC; a month boundary that
falls on a day the month lacks is clamped to the month's last day (Jan 31 -> Feb 28/29 -> Mar 31).
"""

from __future__ import annotations

import calendar
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from .errors import InvalidInputError, UnknownDurationError

SECONDS_PER_DAY = 86_400

# LiteLLM's BudgetManager writes `duration` in days with these values; files written here keep them
# so LiteLLM can read them, and files written by LiteLLM map back to the named period.
_NAMED_DAYS = {"daily": 1, "weekly": 7, "monthly": 28, "yearly": 365}
_DAYS_TO_NAME = {1: "daily", 7: "weekly", 28: "monthly", 30: "monthly", 31: "monthly"}
_DAYS_TO_NAME.update({365: "yearly", 366: "yearly"})

_SPAN = re.compile(r"^([1-9][0-9]{0,8})(s|m|h|d|w|mo|y)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": SECONDS_PER_DAY, "w": 7 * SECONDS_PER_DAY}

DURATION_HELP = (
    '"daily", "weekly", "monthly", "yearly", None, or a span such as '
    '"30s", "15m", "12h", "7d", "2w", "1mo", "1y"'
)


@dataclass(frozen=True)
class Period:
    """How often a budget resets: every ``seconds`` seconds, or every ``months`` calendar months."""

    name: str
    seconds: int = 0
    months: int = 0

    @property
    def days(self) -> float | int:
        """The length in days, as LiteLLM's ``duration`` field stores it."""
        if self.name in _NAMED_DAYS:
            return _NAMED_DAYS[self.name]
        if self.months:
            return self.months // 12 * 365 if self.months % 12 == 0 else self.months * 30
        days = self.seconds / SECONDS_PER_DAY
        return int(days) if days.is_integer() else days


DAILY = Period("daily", seconds=SECONDS_PER_DAY)
WEEKLY = Period("weekly", seconds=7 * SECONDS_PER_DAY)
MONTHLY = Period("monthly", months=1)
YEARLY = Period("yearly", months=12)
_NAMED = {p.name: p for p in (DAILY, WEEKLY, MONTHLY, YEARLY)}


def parse_duration(value: object) -> Period | None:
    """The :class:`Period` for a duration argument; ``None`` means the budget never resets."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise UnknownDurationError(f"duration must be {DURATION_HELP}; got {value!r}")
    named = _NAMED.get(value)
    if named is not None:
        return named
    match = _SPAN.match(value.strip())
    if match is None:
        raise UnknownDurationError(f"unknown duration {value!r}; use {DURATION_HELP}")
    count, unit = int(match.group(1)), match.group(2)
    if unit == "mo":
        return Period(value.strip(), months=count)
    if unit == "y":
        return Period(value.strip(), months=12 * count)
    return Period(value.strip(), seconds=count * _UNIT_SECONDS[unit])


def period_from_record(duration_days: object, name: object) -> Period | None:
    """The period of a stored record: its ``period`` name if present, else LiteLLM's day count."""
    if name is not None:
        return parse_duration(name)
    if duration_days is None:
        return None
    if isinstance(duration_days, bool) or not isinstance(duration_days, (int, float)):
        raise UnknownDurationError(f"duration must be a number of days, got {duration_days!r}")
    days = float(duration_days)
    if not math.isfinite(days) or days <= 0:
        raise UnknownDurationError(f"duration must be a positive number of days, got {days!r}")
    if days.is_integer() and int(days) in _DAYS_TO_NAME:
        return _NAMED[_DAYS_TO_NAME[int(days)]]
    seconds = round(days * SECONDS_PER_DAY)
    if seconds <= 0:
        raise UnknownDurationError(f"duration of {days!r} days is shorter than a second")
    return Period(f"{seconds}s", seconds=seconds)


def to_datetime(timestamp: float) -> datetime:
    """UTC datetime of an epoch timestamp, or InvalidInputError if it is out of range."""
    try:
        return datetime.fromtimestamp(timestamp, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise InvalidInputError(f"timestamp {timestamp!r} is out of range") from None


def add_months(start: datetime, months: int) -> datetime:
    """``start`` moved by whole calendar months, the day clamped to the target month's length."""
    index = start.year * 12 + (start.month - 1) + months
    year, month = divmod(index, 12)
    day = min(start.day, calendar.monthrange(year, month + 1)[1])
    return start.replace(year=year, month=month + 1, day=day)


def period_bounds(period: Period, anchor: float, when: float) -> tuple[float, float]:
    """``(start, end)`` epoch seconds of the period counted from ``anchor`` that contains ``when``."""
    if period.seconds:
        k = math.floor((when - anchor) / period.seconds)
        start = anchor + k * period.seconds
        # Guard against float rounding putting `when` just outside [start, end).
        if start > when:
            k -= 1
        elif anchor + (k + 1) * period.seconds <= when:
            k += 1
        return anchor + k * period.seconds, anchor + (k + 1) * period.seconds
    # Month arithmetic happens on dates; the result is the anchor moved by whole days, so the
    # anchor's sub-microsecond digits (lost in a datetime) are kept exactly.
    origin = to_datetime(anchor)
    target = to_datetime(when)
    k = ((target.year - origin.year) * 12 + (target.month - origin.month)) // period.months
    # Each boundary is computed once (this runs for every new monthly budget).
    start = _month_boundary(origin, anchor, k * period.months)
    if start > when:
        return _month_boundary(origin, anchor, (k - 1) * period.months), start
    end = _month_boundary(origin, anchor, (k + 1) * period.months)
    if end <= when:
        return end, _month_boundary(origin, anchor, (k + 2) * period.months)
    return start, end


def _month_boundary(origin: datetime, anchor: float, months: int) -> float:
    days = (_shift(origin, months).date() - origin.date()).days
    return anchor + days * SECONDS_PER_DAY


def _shift(origin: datetime, months: int) -> datetime:
    try:
        return add_months(origin, months)
    except (OverflowError, ValueError):
        raise InvalidInputError("period boundary is out of the supported date range") from None


def next_reset(period: Period, anchor: float, current_start: float) -> float:
    """When the period that started at (or contains) ``current_start`` ends."""
    return period_bounds(period, anchor, current_start)[1]


__all__ = [
    "DAILY",
    "MONTHLY",
    "WEEKLY",
    "YEARLY",
    "Period",
    "add_months",
    "next_reset",
    "parse_duration",
    "period_bounds",
    "period_from_record",
]
