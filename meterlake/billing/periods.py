"""Billing periods and segments, per DESIGN.md section 3. Pure functions over the catalog.

A customer's periods are anchor-aligned months in the customer's IANA zone: ``calendar``
(the 1st, 00:00 local) or ``anniversary`` (the day of month and local time of the first
subscription's start, clamped to the month's last day). Periods are half-open
``[start, end)`` UTC instants. DST moves the UTC instant, not the local time; a local
anchor time that does not exist on a DST day is read with the offset in force before the
change (zoneinfo's ``fold=0``).

The first period starts at the first subscription's start; the last ends where the last
subscription ends, if that is mid-period. A period is cut into segments by subscription
boundaries; each segment also knows its full anchor-aligned period, the denominator of
proration.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from meterlake.catalog.model import Customer


@dataclass(frozen=True)
class Anchor:
    """Where a customer's months begin, in local terms."""

    zone: ZoneInfo
    day: int
    at: time

    @classmethod
    def of(cls, customer: Customer) -> Anchor:
        zone = ZoneInfo(customer.timezone)
        if customer.billing_anchor == "calendar":
            return cls(zone, 1, time(0, 0))
        first = customer.subscriptions[0].start.astimezone(zone)
        return cls(zone, first.day, first.time().replace(tzinfo=None))

    def boundary(self, year: int, month: int) -> datetime:
        """The UTC instant month ``(year, month)`` begins at.

        >>> Anchor(ZoneInfo("UTC"), 31, time(0)).boundary(2026, 2).isoformat()
        '2026-02-28T00:00:00+00:00'
        """
        day = min(self.day, calendar.monthrange(year, month)[1])
        local = datetime.combine(datetime(year, month, day).date(), self.at, tzinfo=self.zone)
        return local.astimezone(UTC)

    def aligned(self, instant: datetime) -> tuple[datetime, datetime]:
        """The anchor-aligned month ``[start, end)`` that contains ``instant``.

        The boundary of the instant's local month is either at or before it (then that
        month is the one) or later in the same month (then it is the month before).
        """
        local = instant.astimezone(self.zone)
        year, month = local.year, local.month
        if self.boundary(year, month) > instant:
            year, month = _shift(year, month, -1)
        return self.boundary(year, month), self.boundary(*_shift(year, month, 1))


def _shift(year: int, month: int, by: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + by
    return index // 12, index % 12 + 1


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Segment:
    """A stretch of one period under one subscription's plan."""

    plan: str
    start: datetime
    end: datetime
    full_start: datetime
    full_end: datetime

    @property
    def seconds(self) -> int:
        return _seconds(self.start, self.end)

    @property
    def full_seconds(self) -> int:
        return _seconds(self.full_start, self.full_end)


def _seconds(start: datetime, end: datetime) -> int:
    delta = end - start
    return delta.days * 86_400 + delta.seconds


def periods(customer: Customer, until: datetime) -> Iterator[Period]:
    """The customer's periods in order, those starting before ``until``."""
    anchor = Anchor.of(customer)
    last_end = customer.subscriptions[-1].end
    start = customer.subscriptions[0].start
    while start < until and (last_end is None or start < last_end):
        end = anchor.aligned(start)[1]
        if last_end is not None and last_end < end:
            end = last_end
        yield Period(start, end)
        start = end


def segments(customer: Customer, period: Period) -> list[Segment]:
    """The period cut by subscription boundaries; uncovered time has no segment."""
    anchor = Anchor.of(customer)
    found = []
    for subscription in customer.subscriptions:
        start = max(period.start, subscription.start)
        end = period.end if subscription.end is None else min(period.end, subscription.end)
        if start < end:
            full_start, full_end = anchor.aligned(start)
            found.append(Segment(subscription.plan, start, end, full_start, full_end))
    return found
