"""Invoices in Delta: ``billing.invoices`` (current state) and ``billing.invoice_lines``
(lines per revision, with lineage).

Lines are written first, keyed by (invoice, revision, line number), then the invoice row
is merged to point at its revision. A crash in between leaves unreferenced lines that
the rerun finds already there; a reader never sees an invoice without its lines. A final
invoice is never updated; a draft only when its content changed, so a rerun writes
nothing. Both writes are MERGEs that Delta serialises (`meterlake.delta_io.insert_missing`),
made under the billing lease: a second run at the same moment cannot add a line to a
revision (a revision is a digest of its lines, so the same key always holds the same
line) nor move an invoice back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.billing.invoices import Invoice
from meterlake.clock import hour_floor
from meterlake.delta_io import insert_missing, sql_in, upsert

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from meterlake.billing.run import Inputs
    from meterlake.config import Settings
    from meterlake.lease import Lease

LINE_KEY = ("invoice_id", "revision", "line_no")
ROLLUP_FOR_LINEAGE = tables.SILVER_USAGE_HOUR


@dataclass
class SaveResult:
    created: list[Invoice] = field(default_factory=list)
    updated: list[Invoice] = field(default_factory=list)
    finalized: list[Invoice] = field(default_factory=list)
    unchanged: list[Invoice] = field(default_factory=list)
    final_differs: list[Invoice] = field(default_factory=list)

    @property
    def written(self) -> list[Invoice]:
        return self.created + self.updated + self.finalized


def _hour_ceil(instant: datetime) -> datetime:
    floor = hour_floor(instant)
    return floor if floor == instant else floor + timedelta(hours=1)


def _line_rows(invoices: Sequence[Invoice], bronze_version: int) -> list[tuple]:
    rows = []
    for invoice in invoices:
        revision = invoice.revision
        for number, line in enumerate(invoice.lines, start=1):
            traced = line.event_type is not None
            rows.append(
                (
                    invoice.invoice_id,
                    revision,
                    invoice.line_id(number),
                    number,
                    invoice.tenant,
                    invoice.customer,
                    line.kind,
                    line.plan,
                    line.meter,
                    line.quantity,
                    line.amount,
                    line.period_start,
                    line.period_end,
                    line.event_type,
                    line.received_from,
                    line.received_before,
                    bronze_version,
                    ROLLUP_FOR_LINEAGE.qualified_name if traced else None,
                    hour_floor(line.period_start) if traced else None,
                    _hour_ceil(line.period_end) if traced else None,
                    line.source_amount,
                )
            )
    return rows


def _invoice_rows(
    invoices: Sequence[Invoice], as_of: datetime, catalog_version: int, inputs: Inputs, now
) -> list[tuple]:
    return [
        (
            i.invoice_id,
            i.tenant,
            i.customer,
            i.currency,
            i.period_start,
            i.period_end,
            i.close,
            i.status,
            i.subtotal,
            i.credits,
            i.total,
            i.revision,
            as_of,
            catalog_version,
            inputs.bronze_version,
            now,
            i.fx.source_currency if i.fx else None,
            i.fx.rate if i.fx else None,
            i.fx.rate_date if i.fx else None,
            i.fx.rounding if i.fx else None,
            inputs.ingest_seq,
        )
        for i in invoices
    ]


def save_invoices(
    spark: SparkSession,
    settings: Settings,
    invoices: Sequence[Invoice],
    *,
    as_of: datetime,
    catalog_version: int,
    inputs: Inputs,
    fence: Lease,
) -> SaveResult:
    """Write what changed; report what was created, updated, finalised or left alone."""
    stored = {
        row.invoice_id: (row.status, row.revision)
        for row in tables.read(spark, settings, tables.BILLING_INVOICES)
        .select("invoice_id", "status", "revision")
        .collect()
    }
    result = SaveResult()
    for invoice in invoices:
        status, revision = stored.get(invoice.invoice_id, (None, None))
        if status is None:
            result.created.append(invoice)
        elif revision == invoice.revision:
            result.unchanged.append(invoice)
        elif status == "final":
            result.final_differs.append(invoice)
        elif invoice.status == "final":
            result.finalized.append(invoice)
        else:
            result.updated.append(invoice)
    if not result.written:
        return result
    lines = spark.createDataFrame(
        _line_rows(result.written, inputs.bronze_version),
        tables.nullable_schema(tables.BILLING_INVOICE_LINES),
    )
    insert_missing(
        lines,
        settings,
        tables.BILLING_INVOICE_LINES,
        LINE_KEY,
        scope=sql_in("t.invoice_id", sorted({i.invoice_id for i in result.written})),
        fence=fence,
    )
    rows = spark.createDataFrame(
        _invoice_rows(result.written, as_of, catalog_version, inputs, settings.now()),
        tables.nullable_schema(tables.BILLING_INVOICES),
    )
    upsert(
        rows,
        settings,
        tables.BILLING_INVOICES,
        ("invoice_id",),
        changed="t.status = 'draft' AND t.revision <> s.revision",
        fence=fence,
    )
    return result


def current_lines(spark: SparkSession, settings: Settings) -> DataFrame:
    """The lines of each invoice's current revision."""
    current = tables.read(spark, settings, tables.BILLING_INVOICES).select("invoice_id", "revision")
    lines = tables.read(spark, settings, tables.BILLING_INVOICE_LINES)
    return lines.join(current, ["invoice_id", "revision"], "left_semi")


def stored_invoices(spark: SparkSession, settings: Settings) -> dict[str, Invoice]:
    """Every stored invoice at its current revision, rebuilt as `Invoice` objects so it can
    be compared with a recomputation."""
    from collections import defaultdict

    from meterlake.billing.fx import Conversion
    from meterlake.billing.invoices import InvoiceLine
    from meterlake.clock import from_table

    lines = defaultdict(list)
    for row in current_lines(spark, settings).orderBy("invoice_id", "line_no").collect():
        lines[row.invoice_id].append(
            InvoiceLine(
                row.kind,
                row.plan_id,
                row.meter_key,
                row.quantity,
                row.amount,
                from_table(row.period_start),
                from_table(row.period_end),
                row.event_type,
                from_table(row.received_from),
                from_table(row.received_before),
                row.source_amount,
            )
        )
    return {
        row.invoice_id: Invoice(
            row.tenant_id,
            row.customer_id,
            row.currency,
            from_table(row.period_start),
            from_table(row.period_end),
            from_table(row.close_at),
            row.status,
            tuple(lines[row.invoice_id]),
            row.subtotal,
            row.credits,
            fx=Conversion(row.source_currency, row.fx_rate, row.fx_rate_date, row.fx_rounding)
            if row.source_currency
            else None,
        )
        for row in tables.read(spark, settings, tables.BILLING_INVOICES).collect()
    }
