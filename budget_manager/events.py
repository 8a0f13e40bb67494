"""What the operations layer announces: one :class:`Event` per change, and an :class:`Alert`
when spend crosses a threshold of a budget."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

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
