"""The rows several commands print: budget statuses and holds, as text cells."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..records import HoldRecord
from ..status import BudgetStatus
from .output import Output, moment, money

STATUS_COLUMNS = (
    "user",
    "parent",
    "budget",
    "spent",
    "held",
    "holds",
    "remaining",
    "period",
    "next_reset",
)
HOLD_COLUMNS = ("hold_id", "user", "amount", "model", "expires_at", "budgets")


def status_row(found: BudgetStatus) -> list[str]:
    return [
        found.user,
        found.parent or "",
        money(found.total_budget),
        money(found.spent),
        money(found.held),
        str(found.holds),
        money(found.remaining),
        found.period or "",
        moment(found.reset_at),
    ]


def status_data(found: BudgetStatus) -> dict[str, Any]:
    """A status for ``--json``: money as exact strings, times as ISO 8601."""
    return {
        "user": found.user,
        "parent": found.parent,
        "budget": money(found.total_budget),
        "spent": money(found.spent),
        "held": money(found.held),
        "holds": found.holds,
        "remaining": money(found.remaining),
        "period": found.period,
        "period_start": moment(found.period_start) or None,
        "next_reset": moment(found.reset_at) or None,
        "model_cost": {m: money(c) for m, c in found.model_cost.items()},
    }


def print_statuses(out: Output, statuses: Iterable[BudgetStatus], title: str | None) -> None:
    found = list(statuses)
    if out.as_json:
        out.json([status_data(s) for s in found])
    else:
        styles = [_style(s) for s in found]
        out.table(STATUS_COLUMNS, [status_row(s) for s in found], title=title, styles=styles)


def _style(found: BudgetStatus) -> str | None:
    """Red for a budget used up, yellow for one with less than a tenth left."""
    if found.remaining <= 0:
        return "red"
    if found.remaining * 10 < found.total_budget:
        return "yellow"
    return None


def hold_row(hold: HoldRecord) -> list[str]:
    return [
        hold.hold_id,
        hold.user,
        money(hold.amount),
        hold.model or "",
        moment(hold.expires_at),
        ",".join(level for level, _ in hold.levels),
    ]


def print_holds(out: Output, holds: Iterable[HoldRecord], title: str | None) -> None:
    found = list(holds)
    if out.as_json:
        out.json([hold_data(h) for h in found])
    else:
        out.table(HOLD_COLUMNS, [hold_row(h) for h in found], title=title)


def hold_data(hold: HoldRecord) -> dict[str, Any]:
    """A hold for ``--json``."""
    data = dict(zip(HOLD_COLUMNS, hold_row(hold), strict=True))
    return {**data, "model": hold.model, "budgets": [level for level, _ in hold.levels]}
