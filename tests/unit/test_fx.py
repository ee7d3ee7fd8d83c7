"""Currency conversion: the rate file, the rate in effect, and invoices converted to the
cent (JPY with 0 decimals, KWD with 3)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterlake.billing.fx import FxError, convert_amounts, last_day, parse_rates
from meterlake.billing.invoices import customer_invoices
from meterlake.catalog.parse import parse_catalog_text
from meterlake.errors import ConfigError

RATES = b"""date,base,quote,rate
2026-01-30,USD,JPY,150.5
2026-01-31,USD,JPY,155.37
2026-01-31,USD,KWD,0.30712
2026-01-31,USD,EUR,0.921
"""

CATALOG = b"""
meters:
  - {key: api_calls, event_type: api_call, aggregation: sum}
plans:
  - id: basic
    currency: USD
    charges:
      - {type: flat, amount: "10.00"}
customers:
  - {id: tokyo, timezone: Asia/Tokyo, billing_anchor: calendar, invoice_currency: JPY,
     subscriptions: [{plan: basic, start: "2026-01-01T00:00:00+09:00", end: null}],
     credits: [{amount: "10.00", expires: null}]}
  - {id: kuwait, timezone: Asia/Kuwait, billing_anchor: calendar, invoice_currency: KWD,
     subscriptions: [{plan: basic, start: "2026-01-01T00:00:00+03:00", end: null}],
     credits: [{amount: "3.33", expires: null}]}
  - {id: plain, timezone: UTC, billing_anchor: calendar, invoice_currency: USD,
     subscriptions: [{plan: basic, start: "2026-01-01T00:00:00Z", end: null}]}
"""


def test_the_rate_in_effect_is_the_newest_on_or_before_the_day() -> None:
    rates = parse_rates(RATES, "rates.csv")
    assert rates.rate_on("USD", "JPY", date(2026, 1, 30), 7) == (
        date(2026, 1, 30),
        Decimal("150.5"),
    )
    assert rates.rate_on("USD", "JPY", date(2026, 2, 3), 7)[1] == Decimal("155.37")
    with pytest.raises(FxError, match="no USD→JPY rate on or before 2026-01-29"):
        rates.rate_on("USD", "JPY", date(2026, 1, 29), 7)
    with pytest.raises(FxError, match="more than 7 days old"):
        rates.rate_on("USD", "JPY", date(2026, 2, 8), 7)
    with pytest.raises(FxError, match="no JPY→USD rate"):
        rates.rate_on("JPY", "USD", date(2026, 2, 1), 7)  # never inverted silently


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"day,base,quote,rate\n", "header must be"),
        (b"date,base,quote,rate\n2026-13-01,USD,JPY,1\n", "rates.csv:2: date"),
        (b"date,base,quote,rate\n2026-01-01,USD,XXX,1\n", "quote 'XXX' is not an ISO 4217"),
        (b"date,base,quote,rate\n2026-01-01,USD,JPY,-1\n", "rate must be positive"),
        (b"date,base,quote,rate\n2026-01-01,USD,JPY,abc\n", "is not a decimal"),
        (b"date,base,quote,rate\n2026-01-01,USD,JPY,1\n2026-01-01,USD,JPY,2\n", ":3: a second"),
        (b"date,base,quote,rate\n", "no rates"),
    ],
)
def test_a_bad_rate_file_names_the_line_and_field(text: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_rates(text, "rates.csv")


def test_the_period_s_last_day_is_the_customer_s() -> None:
    # January in Tokyo ends at 2026-01-31T15:00Z; its last day there is the 31st.
    assert last_day(datetime(2026, 1, 31, 15, tzinfo=UTC), "Asia/Tokyo") == date(2026, 1, 31)
    assert last_day(datetime(2026, 2, 1, tzinfo=UTC), "America/New_York") == date(2026, 1, 31)


def test_invoices_convert_to_the_cent_in_jpy_and_kwd() -> None:
    catalog = parse_catalog_text(CATALOG, "catalog.yaml")
    rates = parse_rates(RATES, "rates.csv")
    tokyo, kuwait, plain = catalog.customers
    as_of = datetime(2026, 2, 10, tzinfo=UTC)
    (jan,) = customer_invoices(catalog, tokyo, [], as_of, rates)
    # 10.00 USD × 155.37 = 1553.7 → 1554 JPY; the 10.00 credit covers it all: total 0.
    assert (jan.currency, jan.subtotal, jan.credits, jan.total) == (
        "JPY", Decimal("1554"), Decimal("1554"), Decimal("0"),
    )  # fmt: skip
    assert jan.fx.rate == Decimal("155.37") and jan.fx.rate_date == date(2026, 1, 31)
    assert jan.fx.rounding == Decimal("0") and jan.fx.source_currency == "USD"
    assert [(li.kind, li.amount, li.source_amount) for li in jan.lines] == [
        ("flat", Decimal("1554"), Decimal("10.00")),
        ("credit", Decimal("-1554"), Decimal("-10.00")),
    ]
    (kw,) = customer_invoices(catalog, kuwait, [], as_of, rates)
    # 10.00 × 0.30712 = 3.0712 → 3.071 KWD; credit 3.33 × 0.30712 = 1.0227096 → 1.023.
    assert (kw.currency, kw.subtotal, kw.credits, kw.total) == (
        "KWD", Decimal("3.071"), Decimal("1.023"), Decimal("2.048"),
    )  # fmt: skip
    (usd,) = customer_invoices(catalog, plain, [], as_of, rates)
    assert usd.fx is None and usd.currency == "USD"  # invoice_currency = plan currency


def test_a_converted_invoice_without_a_rate_is_refused() -> None:
    catalog = parse_catalog_text(CATALOG, "catalog.yaml")
    with pytest.raises(FxError, match="no USD→JPY rate"):
        customer_invoices(catalog, catalog.customers[0], [], datetime(2026, 2, 10, tzinfo=UTC))


money = st.decimals(min_value=Decimal("-500"), max_value=Decimal("5000"), places=2)


@given(
    amounts=st.lists(money, min_size=1, max_size=6),
    rate=st.decimals(min_value=Decimal("0.001"), max_value=Decimal("500"), places=6),
    target=st.sampled_from(["JPY", "KWD", "EUR"]),
    share=st.fractions(min_value=0, max_value=1),
)
def test_conversion_rounds_each_line_and_never_leaves_a_credit_cent(
    amounts, rate, target, share
) -> None:
    subtotal = sum(amounts, Decimal(0))
    credit = (
        Decimal(0)
        if subtotal <= 0
        else min(
            subtotal,
            (subtotal * Decimal(share.numerator) / share.denominator).quantize(Decimal("0.01")),
        )
    )
    lines, converted_credit, rounding = convert_amounts(amounts, credit, rate, target)
    digits = {"JPY": 0, "KWD": 3, "EUR": 2}[target]
    assert all(-line.as_tuple().exponent == digits for line in lines)
    total = sum(lines, Decimal(0))
    assert 0 <= converted_credit <= max(total, Decimal(0))
    if credit == subtotal and credit:
        assert converted_credit == total  # a fully covered invoice stays fully covered
    half = Decimal(1).scaleb(-digits) / 2
    assert abs(rounding) <= half * len(amounts) + half  # at most half a unit per line, + 1
