"""Lines of a segment: proration, usage pricing and the commitment true-up."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import yaml
from hypothesis import given
from hypothesis import strategies as st

from meterlake.billing.lines import segment_lines
from meterlake.billing.periods import Segment
from meterlake.catalog.parse import parse_catalog
from meterlake.demo import DEMO_CATALOG

CATALOG = parse_catalog(yaml.safe_load(DEMO_CATALOG))
PRO = CATALOG.plan("pro")
FEB = (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))


def segment(start_day: int = 1) -> Segment:
    return Segment("pro", datetime(2026, 2, start_day, tzinfo=UTC), FEB[1], *FEB)


def test_full_month_with_commitment_true_up() -> None:
    usage = {"api_calls": Decimal(1500), "seats": Decimal(3)}
    lines = segment_lines(PRO, segment(), usage)
    assert [(x.kind, x.meter, x.amount) for x in lines] == [
        ("flat", None, Decimal("49.00")),
        ("usage", "api_calls", Decimal("1.00")),  # first 1000 free, 500 x 0.002
        ("usage", "seats", Decimal("24.00")),
        ("commitment", None, Decimal("26.00")),  # 74.00 up to 100.00
    ]


def test_partial_segment_prorates_flat_fee_and_commitment_by_seconds() -> None:
    lines = segment_lines(PRO, segment(start_day=15), {"seats": Decimal(10)})
    # 14 of 28 days: 49.00 / 2 = 24.50; commitment 50.00 is below 24.50 + 0 + 80.00
    assert [(x.kind, x.amount) for x in lines] == [
        ("flat", Decimal("24.50")),
        ("usage", Decimal("0.00")),
        ("usage", Decimal("80.00")),
    ]
    assert lines[1].quantity == 0 and lines[0].period_start == datetime(2026, 2, 15, tzinfo=UTC)


@given(
    st.integers(1, 28),
    st.decimals(min_value=0, max_value=10**5, places=3, allow_nan=False),
    st.integers(0, 30),
)
def test_segment_total_never_below_prorated_commitment(day, calls, seats) -> None:
    lines = segment_lines(PRO, segment(day), {"api_calls": calls, "seats": Decimal(seats)})
    total = sum(x.amount for x in lines)
    seconds = (FEB[1] - datetime(2026, 2, day, tzinfo=UTC)).total_seconds()
    floor = (Decimal(100) * Decimal(int(seconds)) / Decimal(28 * 86_400)).quantize(Decimal("0.01"))
    assert total >= floor - Decimal("0.01")
    assert all(x.amount == x.amount.quantize(Decimal("0.01")) for x in lines)
    assert sum(x.kind == "commitment" for x in lines) <= 1
