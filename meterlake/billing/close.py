"""Period close: finalise the invoices of periods whose grace has passed, once.

A period is *due* when ``close = end + grace`` (per tenant) is at or before ``as_of`` and
no "billing period closed" event for it is in ``billing.outbox`` yet. Closing runs the
data-quality gate and the reconciliation first (either failing stops everything and says
why), then the invoice run that finalises the due periods' invoices, then writes one
outbox event per period, keyed by the period, so a rerun finds nothing due and writes
nothing. Periods still in their grace simply wait.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.billing.invoices import invoice_id
from meterlake.billing.schedule import ScheduledPeriod, schedule
from meterlake.catalog.model import Customer
from meterlake.clock import format_instant
from meterlake.delta_io import insert_missing
from meterlake.errors import MeterlakeError
from meterlake.lease import BILLING, Lease, hold

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from meterlake.billing.run import InvoiceRun
    from meterlake.catalog.store import StoredCatalog
    from meterlake.config import Settings
    from meterlake.reconcile.run import ReconRun

EVENT_TYPE = "billing.period.closed"


class ReconciliationError(MeterlakeError):
    """Reconciliation found a mismatch; finalising would put it on an invoice."""


@dataclass(frozen=True)
class DuePeriod:
    customer: Customer
    period: ScheduledPeriod

    @property
    def event_id(self) -> str:
        key = f"{self.customer.tenant}\0{self.customer.id}\0{self.period.start.isoformat()}"
        return "evt_" + hashlib.sha256(key.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class CloseResult:
    as_of: datetime
    due: list[DuePeriod]
    run: InvoiceRun | None


def due_periods(
    spark: SparkSession, settings: Settings, stored: StoredCatalog, as_of: datetime
) -> list[DuePeriod]:
    """Periods closed by ``as_of`` that have no outbox event yet, in close order."""
    emitted = {
        row.event_id
        for row in tables.read(spark, settings, tables.BILLING_OUTBOX).select("event_id").collect()
    }
    due = [
        DuePeriod(customer, period)
        for customer in stored.catalog.customers
        for period in schedule(customer, stored.catalog.grace(customer.tenant), as_of)
        if period.close <= as_of
    ]
    return sorted(
        (d for d in due if d.event_id not in emitted),
        key=lambda d: (d.period.close, d.customer.tenant, d.customer.id),
    )


def close_periods(spark: SparkSession, settings: Settings, as_of: datetime) -> CloseResult:
    """Gate, reconcile, finalise and announce every due period (see the module docstring)."""
    from meterlake.catalog.store import read_catalog
    from meterlake.quality.run import require_quality

    stored = read_catalog(spark, settings)
    if not due_periods(spark, settings, stored, as_of):
        return CloseResult(as_of, [], None)
    require_quality(spark, settings)
    require_reconciled(spark, settings, as_of)
    return finalise_due(spark, settings, as_of)


def require_reconciled(spark: SparkSession, settings: Settings, as_of: datetime) -> ReconRun:
    """Run the reconciliation; raise `ReconciliationError` on any mismatch."""
    from meterlake.reconcile.run import reconcile

    recon = reconcile(spark, settings, as_of)
    if recon.mismatches:
        first = recon.mismatches[0]
        raise ReconciliationError(
            f"reconciliation {recon.run_id} found {len(recon.mismatches)} mismatch(es), first"
            f" {first.check} {first.scope}: expected {first.expected}, actual {first.actual};"
            " nothing was finalised"
        )
    return recon


def finalise_due(spark: SparkSession, settings: Settings, as_of: datetime) -> CloseResult:
    """Finalise the due periods' invoices and announce them, without the gates (the period
    close DAG runs those as tasks of their own before this)."""
    from meterlake.billing.run import run_invoices
    from meterlake.catalog.store import read_catalog

    with hold(settings, BILLING) as lease:  # what is due is decided by the lease's holder
        stored = read_catalog(spark, settings)
        due = due_periods(spark, settings, stored, as_of)
        if not due:
            return CloseResult(as_of, [], None)
        customers = sorted({d.customer.id for d in due})
        run = run_invoices(
            spark,
            settings,
            as_of,
            customers=customers,
            reason="period close",
            source="period_close",
        )
        emit_closed(spark, settings, run, due, lease)
    return CloseResult(as_of, due, run)


def emit_closed(
    spark: SparkSession, settings: Settings, run: InvoiceRun, due: list[DuePeriod], fence: Lease
) -> None:
    """One outbox event per due period, carrying its final invoice's totals (inserted once
    per event id, whoever else is emitting it)."""
    invoices = {i.invoice_id: i for i in run.invoices}
    now = settings.now()
    rows = []
    for item in due:
        customer, period = item.customer, item.period
        invoice = invoices[invoice_id(customer.tenant, customer.id, period.start)]
        payload = {
            "type": EVENT_TYPE,
            "event_id": item.event_id,
            "tenant_id": customer.tenant,
            "customer_id": customer.id,
            "invoice_id": invoice.invoice_id,
            "period_start": format_instant(period.start),
            "period_end": format_instant(period.end),
            "closed_at": format_instant(period.close),
            "currency": invoice.currency,
            "subtotal": str(invoice.subtotal),
            "credits": str(invoice.credits),
            "total": str(invoice.total),
        }
        rows.append(
            (
                item.event_id, EVENT_TYPE, customer.tenant, customer.id, invoice.invoice_id,
                period.start, period.end, period.close, json.dumps(payload, sort_keys=True),
                now, None,
            )
        )  # fmt: skip
    frame = spark.createDataFrame(rows, tables.nullable_schema(tables.BILLING_OUTBOX))
    insert_missing(frame, settings, tables.BILLING_OUTBOX, ["event_id"], fence=fence)
