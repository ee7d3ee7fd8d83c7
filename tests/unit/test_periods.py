"""Billing periods: anchors, month-end clamping, DST, short first and last periods, segments."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from meterlake.billing.periods import Anchor, periods, segments
from meterlake.billing.schedule import bands, schedule
from meterlake.catalog.model import Customer, Subscription

ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kolkata"]


def customer(
    anchor: str, zone: str, *subscriptions: tuple[str, datetime, datetime | None]
) -> Customer:
    return Customer(
        id="c",
        tenant="default",
        timezone=zone,
        billing_anchor=anchor,
        subscriptions=tuple(Subscription(*s) for s in subscriptions),
    )


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_anniversary_clamps_to_month_end_and_comes_back() -> None:
    acme = customer("anniversary", "America/New_York", ("pro", utc(2026, 1, 31, 5), None))
    starts = [p.start for p in periods(acme, utc(2026, 5, 1))]
    local = [s.astimezone(ZoneInfo("America/New_York")).isoformat() for s in starts]
    assert local == [
        "2026-01-31T00:00:00-05:00",
        "2026-02-28T00:00:00-05:00",
        "2026-03-31T00:00:00-04:00",  # DST moved the UTC instant, not the local time
        "2026-04-30T00:00:00-04:00",
    ]


def test_calendar_customer_starting_mid_month_has_a_short_first_period() -> None:
    globex = customer("calendar", "Europe/Berlin", ("scale", utc(2026, 2, 10, 9), None))
    first, second = list(periods(globex, utc(2026, 3, 15)))
    assert (first.start, first.end) == (utc(2026, 2, 10, 9), utc(2026, 2, 28, 23))
    assert (second.start, second.end) == (utc(2026, 2, 28, 23), utc(2026, 3, 31, 22))
    (segment,) = segments(globex, first)
    assert (segment.full_start, segment.full_end) == (utc(2026, 1, 31, 23), utc(2026, 2, 28, 23))
    assert segment.seconds == 1_605_600 and segment.full_seconds == 2_419_200


def test_plan_change_cuts_segments_and_churn_ends_the_last_period() -> None:
    acme = customer(
        "anniversary",
        "UTC",
        ("pro", utc(2026, 1, 15), utc(2026, 2, 20, 12)),
        ("scale", utc(2026, 2, 20, 12), utc(2026, 3, 1)),
    )
    found = list(periods(acme, utc(2027, 1, 1)))
    assert [(p.start, p.end) for p in found] == [
        (utc(2026, 1, 15), utc(2026, 2, 15)),
        (utc(2026, 2, 15), utc(2026, 3, 1)),
    ]
    assert [(s.plan, s.start, s.end) for s in segments(acme, found[1])] == [
        ("pro", utc(2026, 2, 15), utc(2026, 2, 20, 12)),
        ("scale", utc(2026, 2, 20, 12), utc(2026, 3, 1)),
    ]
    assert all(s.full_end == utc(2026, 3, 15) for s in segments(acme, found[1]))


def test_nonexistent_local_anchor_uses_the_offset_before_the_change() -> None:
    # 02:30 on 2026-03-08 does not exist in New York; fold=0 reads it as EST (-05:00).
    anchor = Anchor(ZoneInfo("America/New_York"), 8, datetime(2026, 1, 1, 2, 30).time())
    assert anchor.boundary(2026, 3) == utc(2026, 3, 8, 7, 30)
    assert anchor.boundary(2026, 4) == utc(2026, 4, 8, 6, 30)


@given(
    zone=st.sampled_from(ZONES),
    anchor=st.sampled_from(["calendar", "anniversary"]),
    start=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
    months=st.integers(1, 30),
)
def test_periods_tile_time_and_last_about_a_month(zone, anchor, start, months) -> None:
    begin = start.replace(tzinfo=UTC)
    who = customer(anchor, zone, ("p", begin, None))
    found = list(periods(who, begin + timedelta(days=31 * months)))
    assert found[0].start == begin
    for before, after in itertools.pairwise(found):
        assert before.end == after.start
    for period in found[1:]:
        assert timedelta(days=28) - timedelta(hours=3) <= period.end - period.start
        assert period.end - period.start <= timedelta(days=31) + timedelta(hours=3)
        assert Anchor.of(who).aligned(period.start) == (period.start, period.end)
    for period in found:
        (segment,) = segments(who, period)
        assert 0 < segment.seconds <= segment.full_seconds


@given(
    zone=st.sampled_from(["UTC", "Asia/Kolkata", "Pacific/Chatham", "America/New_York"]),
    start=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2028, 1, 1)),
    grace_hours=st.integers(0, 24 * 20),
)
def test_carrier_bands_tile_arrivals_after_the_first_close(zone, start, grace_hours) -> None:
    """Every arrival after a period's close falls in exactly one later band (+05:30 and
    +12:45 zones included); the first band is open below."""
    begin = start.replace(tzinfo=UTC)
    who = customer("anniversary", zone, ("p", begin, None))
    found = bands(schedule(who, timedelta(hours=grace_hours), begin + timedelta(days=200)))
    assert found[0][1] is None
    for (before, _, upper), (after, lower, _) in itertools.pairwise(found):
        assert upper == lower == before.close < after.close
