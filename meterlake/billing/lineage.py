"""``lineage --invoice-line ID``: from an invoice line to the aggregates, raw events and
landing files behind it, recomputed from the bronze snapshot the line was priced from.

A usage line prices the events of one meter in one segment received before a bound; an
adjustment prices those received in ``[received_from, received_before)`` as a change in
quantity. Both are recomputed here with the same gold rule (`period_usage`) from bronze
at the line's Delta version and the invoice's catalog version, and compared.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.billing.store import current_lines
from meterlake.billing.usage import format_quantity, quantity, usage_row
from meterlake.clock import format_instant, from_table
from meterlake.currency import format_money
from meterlake.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from meterlake.catalog.model import Customer
    from meterlake.catalog.store import StoredCatalog
    from meterlake.config import Settings


def _quantity_before(
    spark: SparkSession,
    settings: Settings,
    stored: StoredCatalog,
    customer: Customer,
    line,
    version: int,
    bound: datetime | None,
) -> Decimal:
    """The line's meter quantity in its segment over events received before ``bound``."""
    from pyspark.sql import functions as F

    from meterlake.rollups.period_usage import period_usage
    from meterlake.rollups.refresh import horizon
    from meterlake.tiering.events import events_at

    if bound is None:
        return Decimal(0)
    events = events_at(spark, settings, version).where(
        (F.col("tenant_id") == customer.tenant)
        & (F.col("customer_id") == customer.id)
        & (F.col("received_at") < F.lit(bound))
    )
    start = from_table(line.period_start)
    rows = [
        usage_row(r)
        for r in period_usage(events, stored, [customer], horizon(settings)).collect()
        if r.meter_key == line.meter_key and from_table(r.segment_start) == start
    ]
    return quantity(stored.catalog.meter(line.meter_key).aggregation, rows)


def _events(spark, settings, line, version: int) -> DataFrame:
    from pyspark.sql import functions as F

    from meterlake.tiering.events import events_at

    events = events_at(spark, settings, version).where(
        (F.col("tenant_id") == line.tenant_id)
        & (F.col("customer_id") == line.customer_id)
        & (F.col("event_type") == line.event_type)
        & (F.col("billing_time") >= F.lit(line.period_start))
        & (F.col("billing_time") < F.lit(line.period_end))
        & (F.col("received_at") < F.lit(line.received_before))
    )
    if line.received_from is not None:
        events = events.where(F.col("received_at") >= F.lit(line.received_from))
    return events


def _event_lines(
    spark: SparkSession, settings: Settings, events: DataFrame, version: int
) -> list[str]:
    """Count, quantity sum and sample ids of the line's events, then their landing files
    with the sha256 recorded when each batch landed."""
    from pyspark.sql import functions as F

    total = events.agg(F.count("*").alias("n"), F.sum("quantity").alias("sum")).first()
    sample = [r.event_id for r in events.orderBy("billing_time", "event_id").limit(3).collect()]
    batches = tables.read(spark, settings, tables.BRONZE_BATCHES).select("batch_id", "sha256")
    files = (
        events.groupBy("batch_id", "landing_file")
        .agg(F.count("*").alias("n"), F.min("line_number").alias("first"))
        .join(batches, "batch_id", "left")
        .orderBy("batch_id")
        .collect()
    )
    out = [
        f"  bronze.events as of version {version} (Delta time travel, hot and cold tiers):"
        f" {total.n} event(s), quantity sum {format_quantity(total.sum or Decimal(0))},"
        f" e.g. {', '.join(sample) or '-'}",
        f"  {sum(f.n for f in files)} event(s) from {len(files)} landing file(s):",
    ]
    out += [
        f"    {f.landing_file}  sha256 {f.sha256}  {f.n} event(s), first at line {f.first}"
        for f in files
    ]
    return out


def _write_events(events: DataFrame, out_file: str | Path) -> int:
    """Every event behind the line, one JSON object per line, in billing-time order."""
    import json

    rows = events.orderBy("billing_time", "event_id").collect()
    with open(out_file, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row.asDict(), default=str, sort_keys=True) + "\n")
    return len(rows)


def lineage_report(
    spark: SparkSession,
    settings: Settings,
    line_id: str,
    *,
    tenant: str | None = None,
    out_file: str | Path | None = None,
) -> list[str]:
    """The trace of one current invoice line; ``tenant`` limits the search to that
    tenant's lines (another tenant's line is reported as not found); ``out_file`` gets the
    full list of the line's events as JSON lines."""
    from pyspark.sql import functions as F

    from meterlake.billing.estimate import one_customer
    from meterlake.catalog.store import read_catalog

    lines = current_lines(spark, settings).where(F.col("line_id") == line_id)
    if tenant is not None:
        lines = lines.where(F.col("tenant_id") == tenant)
    found = lines.collect()
    if not found:
        raise ConfigError(f"--invoice-line: no current invoice line {line_id!r}")
    line = found[0]
    invoice = (
        tables.read(spark, settings, tables.BILLING_INVOICES)
        .where(F.col("invoice_id") == line.invoice_id)
        .first()
    )
    currency = invoice.currency
    out = [
        f"invoice {invoice.invoice_id} ({invoice.status}) customer {invoice.customer_id}"
        f" (tenant {invoice.tenant_id}), period {format_instant(from_table(invoice.period_start))}"
        f" → {format_instant(from_table(invoice.period_end))}, revision {invoice.revision}",
        f"line {line.line_id}: {line.kind} {line.meter_key or line.plan_id or ''}"
        f" quantity {format_quantity(line.quantity)} amount {format_money(line.amount, currency)}",
    ]
    if line.event_type is None:
        out.append("  not priced from events (flat fee, commitment true-up or credit)")
        return out
    received = f"received before {format_instant(from_table(line.received_before))}"
    if line.received_from is not None:
        received = f"received from {format_instant(from_table(line.received_from))}, {received}"
    out.append(
        f"  events: type {line.event_type!r}, billing time in"
        f" [{format_instant(from_table(line.period_start))},"
        f" {format_instant(from_table(line.period_end))}), {received};"
        f" bronze version {line.bronze_version}"
    )
    events = _events(spark, settings, line, line.bronze_version).persist()
    try:
        out += _event_lines(spark, settings, events, line.bronze_version)
        if out_file is not None:
            written = _write_events(events, out_file)
            out.append(f"  full event list ({written} event(s)) written to {out_file}")
    finally:
        events.unpersist()
    window = (
        tables.read(spark, settings, tables.SILVER_USAGE_HOUR)
        .where(
            (F.col("tenant_id") == line.tenant_id)
            & (F.col("customer_id") == line.customer_id)
            & (F.col("meter_key") == line.meter_key)
            & (F.col("window_start") >= F.lit(line.window_from))
            & (F.col("window_start") < F.lit(line.window_until))
        )
        .agg(F.count("*").alias("windows"), F.sum("events").alias("events"))
        .first()
    )
    out.append(
        f"  {line.rollup_table}: {window.windows} window(s) in"
        f" [{format_instant(from_table(line.window_from))},"
        f" {format_instant(from_table(line.window_until))}) hold {window.events or 0} event(s)"
        " of this meter (all arrivals, all regions and resources)"
    )
    stored = read_catalog(spark, settings, invoice.catalog_version)
    customer = one_customer(stored, line.customer_id, line.tenant_id)
    recomputed = _quantity_before(
        spark, settings, stored, customer, line, line.bronze_version, line.received_before
    ) - _quantity_before(
        spark, settings, stored, customer, line, line.bronze_version, line.received_from
    )
    verdict = "matches" if recomputed == line.quantity else "DOES NOT MATCH"
    out.append(
        f"  recomputed quantity from bronze version {line.bronze_version}:"
        f" {format_quantity(recomputed)} — {verdict} the line"
    )
    return out
