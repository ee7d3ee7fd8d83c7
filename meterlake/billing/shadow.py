"""Shadow billing: price the same usage under another catalog, touching nothing.

For a plan migration finance wants to know, before switching, what every customer would
pay. ``meterlake shadow --catalog NEW.yaml --as-of ISO`` computes the invoices of every
period ended by ``as_of`` twice: as a dry invoice run under the current catalog (the
invoices meterlake would write), and from bronze under the new catalog (its meters,
plans, subscriptions and anchors; usage re-aggregated from the raw events, since the new
catalog may meter differently). The report gives per customer the old and new totals, the
difference and both sides' lines per period. No table is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meterlake.billing.invoices import Invoice
from meterlake.billing.usage import format_quantity
from meterlake.clock import format_instant
from meterlake.currency import format_money

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from meterlake.catalog.model import Catalog
    from meterlake.config import Settings


@dataclass(frozen=True)
class CustomerDiff:
    tenant: str
    customer: str
    old: list[Invoice]
    new: list[Invoice]

    @property
    def currency(self) -> str | None:
        """The one currency both sides bill in, or None when they differ."""
        currencies = {i.currency for i in self.old + self.new}
        return currencies.pop() if len(currencies) == 1 else None

    @property
    def old_total(self) -> Decimal:
        return sum((i.total for i in self.old), Decimal(0))

    @property
    def new_total(self) -> Decimal:
        return sum((i.total for i in self.new), Decimal(0))

    @property
    def difference(self) -> Decimal | None:
        return None if self.currency is None else self.new_total - self.old_total


@dataclass(frozen=True)
class ShadowReport:
    as_of: datetime
    catalog_file: str
    customers: list[CustomerDiff]


def shadow_run(
    spark: SparkSession, settings: Settings, catalog: Catalog, as_of: datetime
) -> ShadowReport:
    """Both sides for every customer of either catalog (see the module docstring)."""
    from meterlake.billing.run import price_customers, require_current, run_invoices, usage_rows
    from meterlake.catalog.store import StoredCatalog

    current = run_invoices(spark, settings, as_of, dry_run=True)
    version = require_current(spark, settings, as_of).bronze_version
    proposed = StoredCatalog(0, catalog)
    customers = list(catalog.customers)
    rows = usage_rows(spark, settings, proposed, customers, as_of, version, from_bronze=True)
    shadow = price_customers(spark, settings, proposed, customers, rows, as_of)
    keys = sorted({(i.tenant, i.customer) for i in current.invoices + shadow}.union(
        (c.tenant, c.id) for c in customers
    ))  # fmt: skip
    diffs = [
        CustomerDiff(
            tenant,
            customer,
            [i for i in current.invoices if (i.tenant, i.customer) == (tenant, customer)],
            [i for i in shadow if (i.tenant, i.customer) == (tenant, customer)],
        )
        for tenant, customer in keys
    ]
    return ShadowReport(as_of, catalog.source_file, diffs)


def _money(amount: Decimal | None, currency: str | None) -> str | None:
    if amount is None:
        return None
    return format_money(amount, currency) if currency else str(amount)


def _lines(invoice: Invoice) -> list[dict[str, Any]]:
    return [
        {
            "kind": line.kind,
            "plan": line.plan,
            "meter": line.meter,
            "quantity": format_quantity(line.quantity),
            "amount": format_money(line.amount, invoice.currency),
        }
        for line in invoice.lines
    ]


def report_document(report: ShadowReport) -> dict[str, Any]:
    """The JSON report: per customer, totals and both sides' invoices per period."""
    customers = []
    for diff in report.customers:
        periods = sorted({i.period_start for i in diff.old + diff.new})
        old = {i.period_start: i for i in diff.old}
        new = {i.period_start: i for i in diff.new}
        customers.append(
            {
                "tenant_id": diff.tenant,
                "customer_id": diff.customer,
                "currency": diff.currency,
                "old_total": _money(diff.old_total, diff.currency),
                "new_total": _money(diff.new_total, diff.currency),
                "difference": _money(diff.difference, diff.currency),
                "periods": [
                    {
                        "period_start": format_instant(start),
                        "old": _side(old.get(start)),
                        "new": _side(new.get(start)),
                    }
                    for start in periods
                ],
            }
        )
    return {
        "as_of": format_instant(report.as_of),
        "catalog": report.catalog_file,
        "customers": customers,
    }


def _side(invoice: Invoice | None) -> dict[str, Any] | None:
    if invoice is None:
        return None
    return {
        "currency": invoice.currency,
        "status": invoice.status,
        "total": format_money(invoice.total, invoice.currency),
        "lines": _lines(invoice),
    }


def report_lines(report: ShadowReport, out: str | None) -> list[str]:
    """What ``meterlake shadow`` prints (and writes the JSON report to ``out``)."""
    if out:
        Path(out).write_text(json.dumps(report_document(report), indent=2) + "\n")
    header = (
        f"  {'customer':<24}{'currency':<10}{'old total':>14}{'new total':>14}{'difference':>14}"
    )
    lines = [
        f"shadow billing as of {format_instant(report.as_of)} under {report.catalog_file}"
        " (nothing written)",
        header,
    ]
    changed = 0
    for diff in report.customers:
        currency, difference = diff.currency, diff.difference
        changed += difference != 0
        old, new = _money(diff.old_total, currency), _money(diff.new_total, currency)
        lines.append(
            f"  {diff.tenant + '/' + diff.customer:<24}{currency or 'changed':<10}{old:>14}"
            f"{new:>14}{_money(difference, currency) or 'n/a':>14}"
        )
    lines.append(f"{changed} of {len(report.customers)} customer(s) would pay differently")
    if out:
        lines.append(f"report with every line: {out}")
    return lines
