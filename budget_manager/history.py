"""Spend history: one :class:`HistoryEvent` per change a store records, kept by the store in the
same atomic step as the change, and the pure functions that filter and sum them."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Literal, NamedTuple

from .errors import InvalidInputError
from .money import ZERO, add, to_float

#: How long stores keep events unless told otherwise (seconds): 90 days.
DEFAULT_RETENTION = 90 * 86_400.0
#: The kinds of change whose ``cost`` is spend.
SPEND_KINDS = frozenset({"charge", "settle"})
ReportBy = Literal["user", "model", "day"]
_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


class HistoryEvent(NamedTuple):
    """One change: when, of which kind, to whose budget, and what it spent.

    ``cost`` is the spend a ``charge`` or ``settle`` recorded (0 for other kinds); ``amount`` what
    a ``hold`` set aside or a ``release`` freed, or the budget a ``create`` set; ``tokens`` the
    usage the call reported, where known; ``window_start`` / ``window_end`` the user's period the
    change counted in (None: a budget that never resets)."""

    time: float
    kind: str
    user: str
    model: str | None = None
    cost: Decimal = ZERO
    amount: Decimal | None = None
    tokens: dict[str, int] | None = None
    hold_id: str | None = None
    window_start: float | None = None
    window_end: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready values (money as floats)."""
        return {
            "time": self.time,
            "kind": self.kind,
            "user": self.user,
            "model": self.model,
            "cost": to_float(self.cost),
            "amount": None if self.amount is None else to_float(self.amount),
            "tokens": self.tokens,
            "hold_id": self.hold_id,
            "window_start": self.window_start,
            "window_end": self.window_end,
        }


def encode(event: HistoryEvent) -> str:
    """One line of JSON, money written exactly (for files and streams)."""
    return _ENCODER.encode(
        [
            event.time,
            event.kind,
            event.user,
            event.model,
            str(event.cost),
            None if event.amount is None else str(event.amount),
            event.tokens,
            event.hold_id,
            event.window_start,
            event.window_end,
        ]
    )


# One encoder made once: json.dumps with options builds a new one per call (most of its cost).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def decode(line: str | bytes) -> HistoryEvent:
    """The event :func:`encode` wrote."""
    at, kind, user, model, cost, amount, tokens, hold_id, start, end = json.loads(line)
    return HistoryEvent(
        float(at),
        kind,
        user,
        model,
        Decimal(cost),
        None if amount is None else Decimal(amount),
        tokens,
        hold_id,
        start,
        end,
    )


def when(value: object, now: float, what: str = "since") -> float | None:
    """Epoch seconds of a ``since`` / ``until`` bound: a ``datetime`` (naive: UTC), epoch
    seconds, or a span back from ``now`` such as ``"7d"``, ``"12h"``, ``"30m"``, ``"2w"``."""
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    if isinstance(value, str):
        return now - span(value, what)
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        number = float(value)
        if math.isfinite(number):
            return number
    raise InvalidInputError(
        f"{what} must be a datetime, epoch seconds or a span such as '7d', got {value!r}",
        field=what,
    )


def span(value: object, what: str = "history_retention") -> float:
    """Seconds of a duration given as seconds or as a span such as ``"90d"``, ``"12h"``."""
    seconds: float | None = None
    if isinstance(value, str):
        match = _SPAN.match(value)
        if match:
            seconds = float(match.group(1)) * _UNIT[match.group(2)]
    elif isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        seconds = float(value)
    if seconds is None or not 0 < seconds < math.inf:
        raise InvalidInputError(
            f"{what} must be a positive number of seconds or a span such as '90d', got {value!r}",
            field=what,
        )
    return seconds


def selected(
    events: Iterable[HistoryEvent],
    user: str | None = None,
    model: str | None = None,
    since: float | None = None,
    until: float | None = None,
) -> list[HistoryEvent]:
    """The events that match every filter given (``until`` excluded), oldest first."""
    found = [
        e
        for e in events
        if (user is None or e.user == user)
        and (model is None or e.model == model)
        and (since is None or e.time >= since)
        and (until is None or e.time < until)
    ]
    found.sort(key=lambda e: e.time)
    return found


def latest(events: list[HistoryEvent], limit: int | None) -> list[HistoryEvent]:
    """The last ``limit`` events (all with None), oldest first."""
    if limit is None:
        return events
    return events[-limit:] if limit else []


def check_limit(limit: object) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidInputError(f"limit must be a whole number >= 0, got {limit!r}", field="limit")
    return limit


def report(events: Iterable[HistoryEvent], by: ReportBy = "user") -> dict[str, float]:
    """``{key: spend}`` over the events' charges and settles, by user, model, or UTC day
    (``YYYY-MM-DD``), in the order the keys first appear."""
    return {key: to_float(total) for key, total in totals(events, by).items()}


def totals(events: Iterable[HistoryEvent], by: ReportBy = "user") -> dict[str, Decimal]:
    """:func:`report`, exact."""
    if by not in ("user", "model", "day"):
        raise InvalidInputError(f'by must be "user", "model" or "day", got {by!r}', field="by")
    found: dict[str, Decimal] = {}
    for event in events:
        if event.kind not in SPEND_KINDS:
            continue
        if by == "user":
            key = event.user
        elif by == "model":
            key = event.model or "(none)"
        else:
            key = datetime.fromtimestamp(event.time, timezone.utc).strftime("%Y-%m-%d")
        found[key] = add(found.get(key, ZERO), event.cost)
    return found
