"""A meter's quantity from gold rows: how each aggregation combines across carriers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from meterlake.clock import from_table


@dataclass(frozen=True)
class UsageRow:
    """One ``gold.period_usage`` row, as billing needs it."""

    period_start: datetime
    segment_start: datetime
    meter: str
    carrier: datetime | None
    events: int
    sum_value: Decimal | None
    min_value: Decimal | None
    max_value: Decimal | None
    latest_value: Decimal | None
    latest_time: datetime
    latest_event_id: str
    new_unique: int


def usage_row(row) -> UsageRow:
    """A `UsageRow` from a collected ``gold.period_usage`` row."""
    utc = from_table
    return UsageRow(
        utc(row.period_start),
        utc(row.segment_start),
        row.meter_key,
        utc(row.carrier_period_start),
        row.events,
        row.sum_value,
        row.min_value,
        row.max_value,
        row.latest_value,
        utc(row.latest_time),
        row.latest_event_id,
        row.new_unique,
    )


def quantity(aggregation: str, rows: Iterable[UsageRow]) -> Decimal:
    """The meter's quantity over ``rows`` (one segment, any set of carriers); 0 when empty.

    ``latest`` is the value of the event with the greatest billing time, ties broken by
    the greater event id; ``unique_count`` adds each row's first arrivals.
    """
    rows = list(rows)
    if not rows:
        return Decimal(0)
    if aggregation == "count":
        return Decimal(sum(r.events for r in rows))
    if aggregation == "unique_count":
        return Decimal(sum(r.new_unique for r in rows))
    if aggregation == "latest":
        last = max(rows, key=lambda r: (r.latest_time, r.latest_event_id))
        return _plain(last.latest_value)
    column = {"sum": "sum_value", "max": "max_value", "min": "min_value"}[aggregation]
    values = [getattr(r, column) for r in rows if getattr(r, column) is not None]
    if not values:
        return Decimal(0)
    combine = {"sum": sum, "max": max, "min": min}[aggregation]
    return _plain(combine(values))


def _plain(value: Decimal | None) -> Decimal:
    """Drop the table's trailing zeros (``12.000000000`` → ``12``) so quantities read well."""
    if value is None:
        return Decimal(0)
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


def format_quantity(value: Decimal) -> str:
    """A quantity as a plain decimal string: ``1000``, ``12.5``, never ``1E+3``."""
    return format(_plain(value), "f")
