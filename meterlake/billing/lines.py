"""Invoice lines of one segment: flat fees prorated, usage priced, commitment trued up.

Every line is computed exactly and rounded once (`meterlake.currency.round_money`); the
commitment compares the sum of the segment's rounded lines with the rounded prorated
commitment, as DESIGN.md section 5 specifies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from meterlake.billing.periods import Segment
from meterlake.billing.pricing import price_usage, prorate
from meterlake.catalog.model import Plan
from meterlake.currency import round_money


@dataclass(frozen=True)
class Line:
    kind: str  # flat | usage | commitment
    plan: str
    meter: str | None
    quantity: Decimal
    amount: Decimal
    period_start: datetime
    period_end: datetime


def segment_lines(plan: Plan, segment: Segment, usage: Mapping[str, Decimal]) -> list[Line]:
    """Lines for ``segment`` under ``plan`` given each meter's aggregated quantity in it
    (a meter with no events has quantity 0)."""

    def line(kind: str, meter: str | None, quantity: Decimal, amount) -> Line:
        rounded = round_money(amount, plan.currency)
        return Line(kind, plan.id, meter, quantity, rounded, segment.start, segment.end)

    lines = []
    for charge in plan.charges:
        if charge.type == "flat":
            share = prorate(charge.amount, segment.seconds, segment.full_seconds)
            lines.append(line("flat", None, Decimal(1), share))
        else:
            quantity = usage.get(charge.meter, Decimal(0))
            lines.append(line("usage", charge.meter, quantity, price_usage(charge, quantity)))
    if plan.minimum_commitment is not None:
        committed = round_money(
            prorate(plan.minimum_commitment, segment.seconds, segment.full_seconds), plan.currency
        )
        subtotal = sum((item.amount for item in lines), Decimal(0))
        if subtotal < committed:
            lines.append(line("commitment", None, Decimal(1), committed - subtotal))
    return lines
