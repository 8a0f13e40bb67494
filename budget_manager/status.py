"""Where a budget stands at a moment: spend, open holds, what is left and when it resets, read
from a record and the open holds in one pass (for one user or for all of them)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .money import ZERO, add, to_float
from .records import HoldRecord, UserRecord
from .windows import window_of


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """One budget as of a moment, amounts exact.

    ``held`` is what open holds set aside on it (a parent's includes those of the users below
    it) and ``holds`` how many there are; ``remaining`` is the budget minus settled spend minus
    ``held``. ``period_start`` / ``reset_at`` bound the current period (None for a budget that
    never resets)."""

    user: str
    parent: str | None
    total_budget: Decimal
    spent: Decimal
    held: Decimal
    holds: int
    remaining: Decimal
    period: str | None
    period_start: float | None
    reset_at: float | None
    model_cost: dict[str, Decimal]

    def to_dict(self) -> dict[str, Any]:
        """The status as JSON-ready values (money as floats, as the rest of the API gives it)."""
        return {
            "user": self.user,
            "parent": self.parent,
            "total_budget": to_float(self.total_budget),
            "spent": to_float(self.spent),
            "held": to_float(self.held),
            "holds": self.holds,
            "remaining": to_float(self.remaining),
            "period": self.period,
            "period_start": self.period_start,
            "reset_at": self.reset_at,
            "model_cost": {m: to_float(c) for m, c in self.model_cost.items()},
        }


def status_of(
    user: str, record: UserRecord, open_holds: Iterable[HoldRecord], now: float
) -> BudgetStatus:
    """``user``'s status at ``now`` from its record and the open holds touching it."""
    held, count = ZERO, 0
    for hold in open_holds:
        held = add(held, hold.amount)
        count += 1
    window = window_of(record, now)
    return BudgetStatus(
        user=user,
        parent=record.parent,
        total_budget=record.total_budget,
        spent=record.spent(now),
        held=held,
        holds=count,
        remaining=record.remaining(now) - held,
        period=record.period.name if record.period is not None else None,
        period_start=window.start,
        reset_at=window.end,
        model_cost=record.spent_by_model(now),
    )


def statuses(
    found: dict[str, UserRecord], open_holds: Iterable[HoldRecord], now: float
) -> dict[str, BudgetStatus]:
    """Every user's status at ``now``, each hold counted on every budget it holds against."""
    touching: dict[str, list[HoldRecord]] = {}
    for hold in open_holds:
        for level, _ in hold.levels:
            touching.setdefault(level, []).append(hold)
    return {u: status_of(u, r, touching.get(u, ()), now) for u, r in found.items()}
