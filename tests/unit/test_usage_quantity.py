"""How each aggregation combines gold rows across carriers, and analyst window specs."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from meterlake.billing.usage import UsageRow, format_quantity, quantity
from meterlake.errors import ConfigError
from meterlake.rollups.windows import WindowSpec, parse_window

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def row(events, total, low, high, latest, at, event_id, new_unique=0) -> UsageRow:
    values = (Decimal(total), Decimal(low), Decimal(high), Decimal(latest))
    return UsageRow(T0, T0, "m", T0, events, *values, at, event_id, new_unique)


ROWS = [
    row(2, "10.5", "1", "9.5", "9.5", datetime(2026, 1, 5, tzinfo=UTC), "e-b", 2),
    row(1, "4", "4", "4", "4", datetime(2026, 1, 5, tzinfo=UTC), "e-a", 1),  # same time
    row(3, "30", "0.25", "20", "3", datetime(2026, 1, 3, tzinfo=UTC), "e-z", 0),
]


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [
        ("count", "6"),
        ("sum", "44.5"),
        ("min", "0.25"),
        ("max", "20"),
        ("latest", "9.5"),  # greatest billing time; the tie goes to the greater event id
        ("unique_count", "3"),
    ],
)
def test_aggregations_combine_across_carriers(aggregation: str, expected: str) -> None:
    assert format_quantity(quantity(aggregation, ROWS)) == expected


def test_no_rows_is_zero_and_quantities_print_plainly() -> None:
    assert quantity("max", []) == 0
    assert format_quantity(Decimal("1000.000000000")) == "1000"
    assert format_quantity(Decimal("12.500000000")) == "12.5"


def test_window_specs() -> None:
    assert parse_window("tumbling:1h") == WindowSpec("tumbling", "1 hours")
    assert parse_window("sliding:1d/6h") == WindowSpec("sliding", "1 days", "6 hours")
    assert parse_window("session:30m") == WindowSpec("session", "30 minutes")
    for bad in ("hopping:1h", "tumbling:", "sliding:1h", "session:0m", "tumbling:1y"):
        with pytest.raises(ConfigError, match="--window"):
            parse_window(bad)
