"""What the operations layer announces: one :class:`Event` per change, and an :class:`Alert`
when spend crosses a threshold of a budget."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from .errors import InvalidInputError

EventKind = Literal[
    "create", "delete", "charge", "hold", "settle", "release", "reset", "roll", "replace"
]


@dataclass(frozen=True, slots=True)
class Alert:
    """Spend of ``user``'s budget reached ``fraction`` of it in the period starting at
    ``period_start`` (None: a budget that never resets). Each fraction is announced once per
    period, whichever process or machine made the change."""

    user: str
    fraction: float
    spent: float
    budget: float
    period_start: float | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alert:
        """The alert a service answered with (InvalidInputError if it is not one)."""
        try:
            start = data["period_start"]
            return cls(
                str(data["user"]),
                float(data["fraction"]),
                float(data["spent"]),
                float(data["budget"]),
                None if start is None else float(start),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"not an alert: {data!r}") from exc


@dataclass(frozen=True, slots=True)
class Event:
    """One change: who, what, how much, in which period, and whether a period rolled."""

    kind: EventKind
    user: str
    time: float
    amount: Decimal | None = None
    model: str | None = None
    hold_id: str | None = None
    window: tuple[float | None, float | None] = (None, None)
    rolled: tuple[str, ...] = ()
    alerts: tuple[Alert, ...] = ()
    tokens: dict[str, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Listener = Callable[[Event], None]
AlertCallback = Callable[[Alert], object]

#: The fractions of a budget that alert when no others are given.
DEFAULT_FRACTIONS = (0.5, 0.8, 1.0)
#: The largest fraction an alert may watch for (spend may exceed a budget charged without a check).
MAX_FRACTION = Decimal(100)


def alert_fractions(values: Iterable[object], what: str = "fractions") -> tuple[Decimal, ...]:
    """``values`` as the distinct fractions of a budget to alert at, smallest first
    (InvalidInputError naming the bad one: each must be a number above 0, at most 100)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise InvalidInputError(f"{what} must be a list of numbers such as (0.5, 0.8, 1.0)")
    found = set()
    for value in values:
        try:
            if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
                raise InvalidOperation
            fraction = Decimal(str(value).strip())
        except InvalidOperation:
            raise InvalidInputError(f"{what}: {value!r} is not a number") from None
        if not fraction.is_finite() or not 0 < fraction <= MAX_FRACTION:
            raise InvalidInputError(
                f"{what}: {value!r} must be above 0 and at most {MAX_FRACTION} (1 is the budget)"
            )
        found.add(fraction.normalize())
    if not found:
        raise InvalidInputError(f"{what} must name at least one fraction, such as 0.8")
    return tuple(sorted(found))
