"""Off-peak windows (``off_peak_pricing`` in the table): is a moment inside one of them?"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_WEEKDAYS = {
    name: number
    for number, names in enumerate(
        (
            ("mon", "monday"),
            ("tue", "tues", "tuesday"),
            ("wed", "wednesday"),
            ("thu", "thur", "thurs", "thursday"),
            ("fri", "friday"),
            ("sat", "saturday"),
            ("sun", "sunday"),
        ),
        start=1,
    )
    for name in names
}


def is_off_peak(block: Mapping[str, object], now: float) -> bool:
    """Whether the UNIX time ``now`` falls in the block's every-day ``hours_utc`` windows or in one
    of its ``windows`` rules (hours on given ISO weekdays, read in ``weekday_timezone``, UTC by
    default). A window ``"HH:MM-HH:MM"`` includes its start, excludes its end, may wrap past
    midnight, and covers the whole day when start equals end; malformed windows never match.
    """
    moment = dt.datetime.fromtimestamp(now, dt.timezone.utc)
    if _within(_window_strings(block.get("hours_utc")), moment.time()):
        return True
    rules = block.get("windows")
    if isinstance(rules, str) or not isinstance(rules, Sequence):
        return False
    calendar = _calendar(block.get("weekday_timezone"))
    for rule in rules:
        if not isinstance(rule, Mapping):
            continue
        windows = _window_strings(rule.get("hours_utc"))
        on_day = windows and _on_weekday(moment, rule.get("weekdays"), calendar)
        if on_day and _within(windows, moment.time()):
            return True
    return False


def _window_strings(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence):
        return tuple(item for item in value if isinstance(item, str))
    return ()


def _within(windows: tuple[str, ...], time: dt.time) -> bool:
    for window in windows:
        try:
            start_text, end_text = window.split("-")
            start = dt.datetime.strptime(start_text.strip(), "%H:%M").time()
            end = dt.datetime.strptime(end_text.strip(), "%H:%M").time()
        except ValueError:
            continue
        if start < end:
            if start <= time < end:
                return True
        elif time >= start or time < end:
            return True
    return False


def _calendar(name: object) -> dt.tzinfo:
    if isinstance(name, str) and name.strip():
        try:
            return ZoneInfo(name.strip())
        except (ValueError, ZoneInfoNotFoundError):
            pass
    return dt.timezone.utc


def _weekday(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 1 <= value <= 7 else None
    if isinstance(value, str):
        return _WEEKDAYS.get(value.strip().lower())
    return None


def _on_weekday(moment: dt.datetime, weekdays: object, calendar: dt.tzinfo) -> bool:
    if weekdays is None:
        return True
    if isinstance(weekdays, str) or not isinstance(weekdays, Sequence):
        return False
    allowed = {day for day in map(_weekday, weekdays) if day is not None}
    return moment.astimezone(calendar).isoweekday() in allowed
