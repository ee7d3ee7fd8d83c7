"""The invoice engine on hand-made gold rows: drafts, finals, adjustments, credits."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from meterlake.billing.invoices import customer_invoices
from meterlake.billing.usage import UsageRow
from meterlake.catalog.parse import parse_catalog_text

CATALOG = b"""
meters:
  - {key: api_calls, event_type: api_call, aggregation: sum}
  - {key: seats, event_type: seat, aggregation: unique_count, property: user_id}
plans:
  - id: basic
    currency: USD
    charges:
      - {type: flat, amount: "10.00"}
      - {type: usage, meter: api_calls, model: per_unit, unit_price: "0.01"}
      - {type: usage, meter: seats, model: per_unit, unit_price: "3.00"}
customers:
  - id: c1
    tenant: t
    timezone: UTC
    billing_anchor: calendar
    subscriptions: [{plan: basic, start: "2026-01-01T00:00:00Z", end: null}]
    credits: [{amount: "5.00", expires: null}]
  - id: gone
    tenant: t
    timezone: UTC
    billing_anchor: calendar
    subscriptions: [{plan: basic, start: "2026-01-01T00:00:00Z", end: "2026-02-01T00:00:00Z"}]
"""
JAN, FEB, MAR = (datetime(2026, m, 1, tzinfo=UTC) for m in (1, 2, 3))
CATALOG_ = parse_catalog_text(CATALOG, "test")
C1, GONE = CATALOG_.customers


def row(period, meter, carrier, *, total="0", events=1, new_unique=0) -> UsageRow:
    return UsageRow(
        period, period, meter, carrier, events, Decimal(total), None, None, None,
        period, "e", new_unique,
    )  # fmt: skip


ROWS = [
    row(JAN, "api_calls", JAN, total="100", events=10),
    row(JAN, "seats", JAN, events=4, new_unique=3),
    row(JAN, "api_calls", FEB, total="50", events=5),  # arrived after Jan's close
    row(JAN, "seats", FEB, events=3, new_unique=2),
    row(FEB, "api_calls", FEB, total="200", events=20),
]


def amounts(invoice) -> list[tuple[str, str | None, str, str]]:
    return [(li.kind, li.meter, str(li.quantity), str(li.amount)) for li in invoice.lines]


def test_draft_until_close_then_final_with_credit() -> None:
    (jan,) = customer_invoices(CATALOG_, C1, ROWS, datetime(2026, 2, 2, tzinfo=UTC))
    assert jan.status == "draft"  # Jan closes Feb 3 00:00 (48 h grace)
    assert (jan.subtotal, jan.credits, jan.total) == (Decimal("20.00"), Decimal("5.00"), 15)
    assert amounts(jan) == [
        ("flat", None, "1", "10.00"),
        ("usage", "api_calls", "100", "1.00"),
        ("usage", "seats", "3", "9.00"),
        ("credit", None, "1", "-5.00"),
    ]
    (final,) = customer_invoices(CATALOG_, C1, ROWS, datetime(2026, 2, 3, tzinfo=UTC))
    assert final.status == "final" and final.invoice_id == jan.invoice_id
    assert final.total == Decimal("15.00")


def test_late_usage_is_an_adjustment_on_the_next_invoice() -> None:
    jan, feb = customer_invoices(CATALOG_, C1, ROWS, datetime(2026, 3, 1, 12, tzinfo=UTC))
    assert (jan.status, feb.status) == ("final", "draft")
    assert amounts(jan)[:3] == [
        ("flat", None, "1", "10.00"),
        ("usage", "api_calls", "100", "1.00"),
        ("usage", "seats", "3", "9.00"),
    ]
    assert amounts(feb) == [
        ("flat", None, "1", "10.00"),
        ("usage", "api_calls", "200", "2.00"),
        ("usage", "seats", "0", "0.00"),
        ("adjustment", "api_calls", "50", "0.50"),
        ("adjustment", "seats", "2", "6.00"),
    ]
    assert feb.lines[3].period_start == JAN and feb.lines[3].received_from == jan.close
    # The credit went to January (final); nothing is left for February.
    assert (feb.subtotal, feb.credits, feb.total) == (Decimal("18.50"), 0, Decimal("18.50"))
    later = customer_invoices(CATALOG_, C1, ROWS, datetime(2026, 3, 3, tzinfo=UTC))
    assert later[0].revision == jan.revision
    assert later[1].status == "final" and amounts(later[1]) == amounts(feb)


def test_churned_customer_gets_no_adjustment() -> None:
    rows = [row(JAN, "api_calls", JAN, total="100"), row(JAN, "api_calls", None, total="7")]
    invoices = customer_invoices(CATALOG_, GONE, rows, datetime(2026, 6, 1, tzinfo=UTC))
    assert [i.period_end for i in invoices] == [FEB]
    assert invoices[0].total == Decimal("11.00")


def test_every_ended_period_has_an_invoice_even_at_zero() -> None:
    invoices = customer_invoices(CATALOG_, GONE, [], datetime(2026, 3, 1, tzinfo=UTC))
    assert [(i.subtotal, i.total) for i in invoices] == [(Decimal("10.00"), Decimal("10.00"))]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10_000)), max_size=12))
def test_own_lines_plus_adjustments_price_all_usage(arrivals) -> None:
    """However late usage arrives, once every carrier is final the customer has paid, per
    period, exactly the price of all its usage (adjustments are differences)."""
    starts = [datetime(2026, m, 1, tzinfo=UTC) for m in range(1, 6)]
    rows = [
        row(JAN, "api_calls", starts[lateness], total=str(units)) for lateness, units in arrivals
    ]
    invoices = customer_invoices(CATALOG_, C1, rows, datetime(2026, 6, 10, tzinfo=UTC))
    billed_for_jan = sum(
        li.amount
        for invoice in invoices
        for li in invoice.lines
        if li.period_start == JAN and li.kind in ("usage", "adjustment")
    )
    assert billed_for_jan == Decimal(sum(units for _, units in arrivals)) * Decimal("0.01")
