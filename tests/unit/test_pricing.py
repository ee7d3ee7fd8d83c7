"""Pricing models and rounding: worked examples plus hypothesis properties."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterlake.billing.pricing import (
    price_graduated,
    price_package,
    price_usage,
    price_volume,
    prorate,
)
from meterlake.catalog.model import Charge, Tier
from meterlake.currency import round_money

TIERS = (
    Tier(Decimal(5), Decimal("1.00")),
    Tier(Decimal(10), Decimal("0.50"), flat_price=Decimal("2.00")),
    Tier(None, Decimal("0.10")),
)
quantities = st.decimals(min_value=0, max_value=10**6, places=9, allow_nan=False)


@pytest.mark.parametrize(
    ("quantity", "graduated", "volume"),
    [
        (0, 0, 0),
        (5, 5, 5),  # 5 units stay in the tier with up_to 5
        (Decimal("5.5"), Fraction("5.25") + 2, Fraction("2.75") + 2),
        (10, Fraction("7.5") + 2, 5 + 2),
        (12, Fraction("7.7") + 2, Fraction("1.2")),
    ],
)
def test_graduated_and_volume_examples(quantity, graduated, volume) -> None:
    assert price_graduated(quantity, TIERS) == graduated
    assert price_volume(quantity, TIERS) == volume


STRIPE_TIERS = (
    Tier(Decimal(5), Decimal("7")),
    Tier(Decimal(10), Decimal("6.50")),
    Tier(None, Decimal("6")),
)


@pytest.mark.parametrize(
    ("quantity", "volume", "graduated"),
    [
        (1, "7", "7"),
        (5, "35", "35"),
        (6, "39", "41.50"),
        (20, "120", "127.50"),
        (25, "150", "157.50"),
    ],
)
def test_stripe_published_tier_example(quantity, volume, graduated) -> None:
    """Stripe's docs: 1-5 at $7, 6-10 at $6.50, 11+ at $6."""
    assert round_money(price_volume(quantity, STRIPE_TIERS), "USD") == Decimal(volume)
    assert round_money(price_graduated(quantity, STRIPE_TIERS), "USD") == Decimal(graduated)


def test_package_rounds_up_whole_packages() -> None:
    assert price_package(0, 100, Decimal(5)) == 0
    assert price_package(1, 100, Decimal(5)) == 5
    assert price_package(100, 100, Decimal(5)) == 5
    assert price_package(Decimal("100.000000001"), 100, Decimal(5)) == 10


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (Decimal("0.005"), "USD", "0.01"),
        (Decimal("0.00499999"), "USD", "0.00"),
        (Decimal("41"), "USD", "41.00"),
        (Decimal("526.5"), "JPY", "527"),
        (Decimal("6.4895"), "KWD", "6.490"),
        (Decimal("-0.005"), "EUR", "-0.01"),
        (Fraction(49) * 1_123_200 / 2_419_200, "USD", "22.75"),
    ],
)
def test_round_money_half_up_to_minor_units(amount, currency: str, expected: str) -> None:
    assert str(round_money(amount, currency)) == expected


@given(quantities, quantities)
def test_graduated_is_monotone_and_continuous_without_flat_fees(a, b) -> None:
    plain = tuple(Tier(t.up_to, t.unit_price) for t in TIERS)
    low, high = sorted((a, b))
    assert price_graduated(low, plain) <= price_graduated(high, plain)
    # the marginal price of a unit is the price of the tier it falls in
    assert price_graduated(high, plain) - price_graduated(low, plain) <= (high - low) * 1


@given(quantities)
def test_single_tier_models_equal_per_unit(quantity) -> None:
    one = (Tier(None, Decimal("0.37")),)
    per_unit = Charge(type="usage", meter="m", model="per_unit", unit_price=Decimal("0.37"))
    expected = price_usage(per_unit, quantity)
    assert price_graduated(quantity, one) == price_volume(quantity, one) == expected
    assert expected == Fraction(quantity) * Fraction("0.37")


@given(quantities, st.integers(1, 1000))
def test_package_covers_the_quantity_with_the_fewest_packages(quantity, size) -> None:
    packages = price_package(quantity, size, 1)
    assert packages * size >= quantity
    assert (packages - 1) * size < quantity or packages == 0


@given(st.integers(0, 2_678_400), st.integers(1, 2_678_400))
def test_proration_is_exact_and_bounded(seconds, full) -> None:
    seconds = min(seconds, full)
    share = prorate(Decimal("49.00"), seconds, full)
    assert share * full == 49 * seconds
    assert Decimal(0) <= round_money(share, "USD") <= Decimal("49.00")


@given(st.decimals(min_value=-(10**9), max_value=10**9, places=6, allow_nan=False))
def test_rounding_is_within_half_a_minor_unit(amount) -> None:
    rounded = round_money(amount, "USD")
    assert abs(rounded - amount) <= Decimal("0.005")
    assert rounded == rounded.quantize(Decimal("0.01"))


@given(
    st.lists(st.integers(1, 400_000), min_size=1, max_size=8),
    st.sampled_from(["USD", "JPY", "KWD"]),
)
def test_prorated_splits_sum_to_the_fee_within_a_minor_unit_per_segment(parts, currency) -> None:
    full = sum(parts)
    fee = Decimal("49.99")
    shares = [round_money(prorate(fee, part, full), currency) for part in parts]
    unit = Decimal(1).scaleb(-{"USD": 2, "JPY": 0, "KWD": 3}[currency])
    assert abs(sum(shares) - fee) <= unit * len(parts)


def _only(tiers: tuple[Tier, ...], index: int) -> tuple[Tier, ...]:
    """``tiers`` with every price but tier ``index``'s set to zero."""
    return tuple(t if i == index else Tier(t.up_to, Decimal(0), None) for i, t in enumerate(tiers))


@given(quantities)
def test_graduated_is_the_sum_of_its_tiers(quantity) -> None:
    parts = [price_graduated(quantity, _only(TIERS, i)) for i in range(len(TIERS))]
    assert price_graduated(quantity, TIERS) == sum(parts)


@given(quantities)
def test_volume_prices_every_unit_in_the_one_tier_the_quantity_falls_in(quantity) -> None:
    plain = tuple(Tier(t.up_to, t.unit_price) for t in TIERS)
    tier = next(t for t in plain if t.up_to is None or quantity <= t.up_to)
    assert price_volume(quantity, plain) == Fraction(quantity) * Fraction(tier.unit_price)
