"""Credit application: order, expiry, drafts consume nothing, never below zero."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from meterlake.billing.credits import InvoiceDue, apply_credits
from meterlake.catalog.model import Credit


def at(month: int) -> datetime:
    return datetime(2026, month, 1, tzinfo=UTC)


def test_earliest_expiring_first_and_expired_credits_skipped() -> None:
    credits = [
        Credit(Decimal("50.00"), None),
        Credit(Decimal("20.00"), at(3)),
        Credit(Decimal("30.00"), at(5)),
    ]
    invoices = [
        InvoiceDue(at(2), Decimal("15.00"), final=True),  # 15 from the March credit
        InvoiceDue(at(3), Decimal("40.00"), final=True),  # 5 (March) + 30 (May) + 5 (never)
        InvoiceDue(at(4), Decimal("60.00"), final=True),  # March and May gone: 45 (never)
        InvoiceDue(at(5), Decimal("10.00"), final=True),  # nothing left
    ]
    assert apply_credits(credits, invoices) == [
        Decimal("15.00"),
        Decimal("40.00"),
        Decimal("45.00"),
        Decimal("0.00"),
    ]


def test_drafts_show_credits_but_consume_nothing() -> None:
    credits = [Credit(Decimal("20.00"), None)]
    invoices = [
        InvoiceDue(at(2), Decimal("15.00"), final=False),
        InvoiceDue(at(3), Decimal("15.00"), final=True),
        InvoiceDue(at(4), Decimal("15.00"), final=False),
    ]
    assert apply_credits(credits, invoices) == [Decimal("15.00"), Decimal("15.00"), Decimal("5.00")]


def test_credit_usable_up_to_its_expiry_inclusive() -> None:
    credits = [Credit(Decimal("10"), at(3))]
    assert apply_credits(credits, [InvoiceDue(at(3), Decimal(4), True)]) == [Decimal(4)]
    assert apply_credits(credits, [InvoiceDue(at(4), Decimal(4), True)]) == [Decimal(0)]


money = st.decimals(min_value=-50, max_value=500, places=2, allow_nan=False)


@given(
    st.lists(
        st.tuples(
            st.decimals(min_value=0, max_value=200, places=2), st.integers(1, 12) | st.none()
        ),
        max_size=4,
    ),
    st.lists(st.tuples(money, st.booleans()), max_size=8),
)
def test_never_more_than_subtotal_or_granted(granted, dues) -> None:
    credits = [Credit(amount, None if m is None else at(m)) for amount, m in granted]
    invoices = [
        InvoiceDue(at(1 + i % 12), subtotal, final) for i, (subtotal, final) in enumerate(dues)
    ]
    applied = apply_credits(credits, invoices)
    for invoice, amount in zip(invoices, applied, strict=True):
        assert Decimal(0) <= amount <= max(invoice.subtotal, Decimal(0))
    final_total = sum(a for a, i in zip(applied, invoices, strict=True) if i.final)
    assert final_total <= sum(c.amount for c in credits)
