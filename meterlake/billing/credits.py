"""Credits per DESIGN.md section 5: which credit pays how much of which invoice.

Final invoices consume credits in period order, the earliest-expiring usable credit
first (never-expiring last, ties in catalog order). A credit is usable on an invoice
whose ``period_end <= expires``. Each invoice takes ``min(available, subtotal)`` and
never goes below zero. A draft shows what it would use from the balances left by the
final invoices before it, and consumes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from meterlake.catalog.model import Credit


@dataclass(frozen=True)
class InvoiceDue:
    """What credits need to know of an invoice."""

    period_end: datetime
    subtotal: Decimal
    final: bool


def apply_credits(credits: Sequence[Credit], invoices: Sequence[InvoiceDue]) -> list[Decimal]:
    """Credit applied to each invoice (same order as ``invoices``, sorted by period end)."""
    order = sorted(
        range(len(credits)),
        key=lambda i: (credits[i].expires is None, credits[i].expires or datetime.min, i),
    )
    balance = [credit.amount for credit in credits]
    applied = []
    for invoice in invoices:
        remaining = max(invoice.subtotal, Decimal(0))
        used = [Decimal(0)] * len(credits)
        for index in order:
            if remaining == 0:
                break
            expires = credits[index].expires
            if expires is not None and invoice.period_end > expires:
                continue
            take = min(balance[index], remaining)
            used[index] = take
            remaining -= take
        if invoice.final:
            balance = [left - take for left, take in zip(balance, used, strict=True)]
        applied.append(sum(used, Decimal(0)))
    return applied
