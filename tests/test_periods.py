from datetime import datetime, timezone

import pytest
from conftest import utc
from hypothesis import given, settings
from hypothesis import strategies as st

from budget_manager import UnknownDurationError
from budget_manager.periods import (
    DAILY,
    MONTHLY,
    WEEKLY,
    YEARLY,
    Period,
    add_months,
    parse_duration,
    period_bounds,
    period_from_record,
)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


@pytest.mark.parametrize(
    ("text", "seconds", "months"),
    [
        ("daily", 86400, 0),
        ("weekly", 604800, 0),
        ("monthly", 0, 1),
        ("yearly", 0, 12),
        ("30s", 30, 0),
        ("15m", 900, 0),
        ("12h", 43200, 0),
        ("7d", 604800, 0),
        ("2w", 1209600, 0),
        ("1mo", 0, 1),
        ("3mo", 0, 3),
        ("1y", 0, 12),
    ],
)
def test_parse_duration(text, seconds, months):
    period = parse_duration(text)
    assert (period.seconds, period.months) == (seconds, months)


@pytest.mark.parametrize(
    "bad", ["Daily", "day", "monthy", "0d", "-1d", "1.5h", "10x", "", " ", 7, 1.0, ["daily"]]
)
def test_unknown_durations_are_rejected_with_the_accepted_ones_named(bad):
    with pytest.raises(UnknownDurationError, match="daily"):
        parse_duration(bad)


def test_none_means_never_resets():
    assert parse_duration(None) is None


def test_litellm_day_counts_map_back_to_named_periods():
    assert period_from_record(1, None) is DAILY
    assert period_from_record(7, None) is WEEKLY
    assert period_from_record(28, None) is MONTHLY  # LiteLLM's DAYS_IN_A_MONTH
    assert period_from_record(30, None) is MONTHLY
    assert period_from_record(365, None) is YEARLY
    assert period_from_record(2, None) == Period("172800s", seconds=172800)
    assert period_from_record(28, "28d").seconds == 28 * 86400  # an explicit name wins


def test_monthly_from_jan_31_clamps_each_month_without_drifting():
    anchor = utc("2024-01-31T09:00:00")
    starts = []
    when = anchor
    for _ in range(5):
        start, end = period_bounds(MONTHLY, anchor, when)
        starts.append(iso(start))
        when = end
    assert starts == [
        "2024-01-31T09:00:00",
        "2024-02-29T09:00:00",  # leap year
        "2024-03-31T09:00:00",  # back to the 31st: counted from the anchor, not from Feb 29
        "2024-04-30T09:00:00",
        "2024-05-31T09:00:00",
    ]


def test_monthly_in_a_common_year_clamps_to_feb_28():
    anchor = utc("2023-01-31T00:00:00")
    start, end = period_bounds(MONTHLY, anchor, utc("2023-02-15T00:00:00"))
    assert (iso(start), iso(end)) == ("2023-01-31T00:00:00", "2023-02-28T00:00:00")


def test_yearly_from_feb_29():
    anchor = utc("2024-02-29T12:00:00")
    assert (
        iso(period_bounds(YEARLY, anchor, utc("2025-03-01T00:00:00"))[0]) == "2025-02-28T12:00:00"
    )
    assert (
        iso(period_bounds(YEARLY, anchor, utc("2028-03-01T00:00:00"))[0]) == "2028-02-29T12:00:00"
    )


def test_fixed_spans_count_from_the_anchor():
    anchor = utc("2024-03-10T01:30:00")  # a US DST change date: irrelevant in UTC
    start, end = period_bounds(DAILY, anchor, utc("2024-03-12T00:00:00"))
    assert (iso(start), iso(end)) == ("2024-03-11T01:30:00", "2024-03-12T01:30:00")
    start, end = period_bounds(parse_duration("12h"), anchor, utc("2024-03-12T00:00:00"))
    assert (iso(start), iso(end)) == ("2024-03-11T13:30:00", "2024-03-12T01:30:00")


def test_a_boundary_instant_belongs_to_the_new_period():
    anchor = utc("2024-01-01T00:00:00")
    assert period_bounds(WEEKLY, anchor, anchor + 604800)[0] == anchor + 604800
    assert period_bounds(MONTHLY, anchor, utc("2024-02-01T00:00:00"))[0] == utc(
        "2024-02-01T00:00:00"
    )


def test_add_months_clamps():
    start = datetime(2024, 1, 31, tzinfo=timezone.utc)
    assert add_months(start, 1).day == 29
    assert add_months(start, 13).day == 28
    assert add_months(start, -2) == datetime(2023, 11, 30, tzinfo=timezone.utc)


periods_strategy = st.sampled_from(
    [
        DAILY,
        WEEKLY,
        MONTHLY,
        YEARLY,
        parse_duration("30s"),
        parse_duration("3mo"),
        parse_duration("2w"),
    ]
)
times = st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False)


@settings(max_examples=400, deadline=None)
@given(period=periods_strategy, anchor=times, when=times)
def test_bounds_contain_the_instant_and_tile_the_timeline(period, anchor, when):
    start, end = period_bounds(period, anchor, when)
    assert start <= when < end
    next_start, _ = period_bounds(period, anchor, end)
    assert next_start == end  # periods tile: no gap, no overlap
    assert period_bounds(period, anchor, start) == (start, end)


@settings(max_examples=400, deadline=None)
@given(period=periods_strategy, anchor=times)
def test_the_anchor_starts_the_first_period_exactly(period, anchor):
    start, end = period_bounds(period, anchor, anchor)
    assert start == anchor and end > anchor


def test_sub_microsecond_anchors_are_not_rounded_into_an_ended_period():
    anchor = 1795559416.4138348  # datetime would round this up to .413835
    assert period_bounds(MONTHLY, anchor, anchor + 1e-6)[0] == anchor
