"""A customer's billing schedule: periods with their close, and which invoice carries usage
that arrives at a given instant (DESIGN.md section 4).

Usage of period P received before ``close(P) = end(P) + grace`` is billed on P's own
invoice. Usage received later is carried by the first later period Q whose close is after
the arrival; the bands ``[close(Q-1), close(Q))`` tile time, so every arrival has exactly
one carrier, or none when the customer has no later period (churned).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from meterlake.billing.periods import Period, periods
from meterlake.catalog.model import Customer


@dataclass(frozen=True)
class ScheduledPeriod:
    start: datetime
    end: datetime
    close: datetime

    @property
    def period(self) -> Period:
        return Period(self.start, self.end)


def schedule(customer: Customer, grace: timedelta, until: datetime) -> list[ScheduledPeriod]:
    """The customer's periods that start before ``until``, each with its close."""
    return [ScheduledPeriod(p.start, p.end, p.end + grace) for p in periods(customer, until)]


def bands(plan: list[ScheduledPeriod]) -> list[tuple[ScheduledPeriod, datetime | None, datetime]]:
    """Each period with the arrivals it carries as adjustments: ``[close(prev), close)``
    (from the beginning of time for the first). Together they tile time up to the last
    close; usage of P arriving before close(P) is P's own, whatever band it falls in."""
    closes = [None, *(p.close for p in plan)]
    return [(p, closes[i], p.close) for i, p in enumerate(plan)]
