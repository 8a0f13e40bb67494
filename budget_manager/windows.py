"""The period a change applies in, computed in Python and handed to the store, so that no store
(SQL, Lua) needs calendar arithmetic: pure functions of a budget and a time."""

from __future__ import annotations

from typing import NamedTuple

from .periods import period_bounds
from .records import UserRecord


class Window(NamedTuple):
    """The period of one budget that contains a moment.

    ``period`` and ``anchor`` say which budget definition it was computed for (the store refuses a
    window whose budget has since been redefined); ``start``/``end`` bound the period. All four are
    None for a budget that never resets.
    """

    period: str | None
    anchor: float | None
    start: float | None
    end: float | None

    def contains(self, now: float) -> bool:
        """Whether ``now`` falls in this window (always, for budgets that never reset)."""
        return self.start is None or (self.start <= now < self.end)  # type: ignore[operator]

    def describes(self, record: UserRecord) -> bool:
        """Whether it was computed for ``record``'s current definition (period and anchor)."""
        if record.period is None:
            return self.period is None
        return self.period == record.period.name and self.anchor == record.anchor


FOREVER = Window(None, None, None, None)


def window_of(record: UserRecord, now: float) -> Window:
    """The window of ``record``'s budget that contains ``now``. A period already started later
    (by a process whose clock is ahead) is kept: periods never move back."""
    period = record.period
    if period is None:
        return FOREVER
    if not record.is_due(now):
        return Window(period.name, record.anchor, record.last_updated_at, record.period_end())
    start, end = period_bounds(period, record.anchor, now)
    return Window(period.name, record.anchor, start, end)
