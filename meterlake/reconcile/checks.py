"""The reconciliation checks. Each returns `Finding`s: one ``ok`` summary when everything
in its scope agrees, else one ``mismatch`` per disagreeing key (and ``pending`` or
``unbilled`` notes for late usage that is not on a final invoice yet).

- completeness: per landing batch, lines read = bronze + duplicates + quarantine, and the
  accounting agrees with the rows actually in bronze and quarantine;
- bronze_silver: events and value sums per customer, meter and UTC day;
- bronze_gold: events per customer, meter and billing period (usage in time no
  subscription covers shows up here);
- pre_invoice: each draft recomputed from bronze alone equals the gold-based draft;
- post_invoice: each stored invoice equals its recomputation from bronze, line by line;
- late_usage: usage of finalised periods waiting for its adjustment, with the amount.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.clock import format_instant
from meterlake.tiering.events import events_at

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from meterlake.billing.invoices import Invoice
    from meterlake.catalog.store import StoredCatalog
    from meterlake.config import Settings


@dataclass(frozen=True)
class Finding:
    check: str
    scope: str
    expected: Decimal | None
    actual: Decimal | None
    status: str  # ok | mismatch | pending | unbilled
    detail: str = ""

    @property
    def diff(self) -> Decimal | None:
        if self.expected is None or self.actual is None:
            return None
        return self.actual - self.expected


def summarise(check: str, found: list[Finding], checked: int, what: str) -> list[Finding]:
    if found:
        return found
    count = Decimal(checked)
    return [Finding(check, "all", count, count, "ok", f"{checked} {what} agree")]


def _compare(
    check: str, expected: DataFrame, actual: DataFrame, keys: list[str], measures: list[str]
) -> list[Finding]:
    """Full outer join on ``keys``; one finding per key and measure that differ (a missing
    side counts as zero)."""
    from pyspark.sql import functions as F

    def side(frame: DataFrame, prefix: str) -> DataFrame:
        return frame.select(*keys, *(F.col(m).alias(f"{prefix}_{m}") for m in measures))

    joined = side(expected, "e").join(side(actual, "a"), keys, "full_outer")
    differs = F.lit(False)
    for m in measures:
        differs = differs | (
            F.coalesce(F.col(f"e_{m}"), F.lit(0)) != F.coalesce(F.col(f"a_{m}"), F.lit(0))
        )
    found = []
    for row in joined.where(differs).orderBy(*keys).collect():
        scope = "/".join(str(row[k]) for k in keys)
        for m in measures:
            want, got = Decimal(row[f"e_{m}"] or 0), Decimal(row[f"a_{m}"] or 0)
            if want != got:
                found.append(Finding(check, f"{scope} {m}", want, got, "mismatch"))
    return summarise(check, found, joined.count(), "keys")


def completeness(spark: SparkSession, settings: Settings) -> list[Finding]:
    """Per landing batch: the accounting balances and matches the rows in the tables
    (rows a quarantine replay admitted count towards bronze; bronze rows moved to
    quarantine for failing data quality count towards quarantine)."""
    from pyspark.sql import functions as F

    from meterlake.ingest.reasons import QUALITY_FAILED

    accounting = (
        tables.read(spark, settings, tables.BRONZE_BATCHES)
        .groupBy("batch_id")
        .agg(
            F.sum("events_read").alias("read"),
            F.sum("bronze_rows").alias("bronze"),
            F.sum("duplicates").alias("duplicates"),
            F.sum("quarantined").alias("quarantine"),
        )
    )
    quarantine = tables.read(spark, settings, tables.BRONZE_QUARANTINE)
    moves = quarantine.groupBy("batch_id").agg(
        F.count_if(F.col("replay_outcome") == "admitted").alias("replayed"),
        F.count_if(F.col("reason") == QUALITY_FAILED).alias("moved"),
    )
    expected = accounting.join(moves, "batch_id", "left").select(
        "batch_id",
        (F.col("bronze") + F.coalesce(F.col("replayed") - F.col("moved"), F.lit(0))).alias(
            "bronze"
        ),
        (F.col("quarantine") + F.coalesce("moved", F.lit(0))).alias("quarantine"),
        (F.col("bronze") + F.col("duplicates") + F.col("quarantine")).alias("read"),
    )
    bronze = events_at(spark, settings).groupBy("batch_id").count()
    in_quarantine = quarantine.groupBy("batch_id").count()
    actual = (
        accounting.select("batch_id", "read")
        .join(bronze.withColumnRenamed("count", "bronze"), "batch_id", "full_outer")
        .join(in_quarantine.withColumnRenamed("count", "quarantine"), "batch_id", "full_outer")
    )
    return _compare(
        "completeness", expected, actual, ["batch_id"], ["read", "bronze", "quarantine"]
    )


def _metered(spark: SparkSession, settings: Settings, stored: StoredCatalog) -> DataFrame:
    from meterlake.rollups.meter_values import metered_events

    bronze = events_at(spark, settings)
    return metered_events(bronze, stored.catalog.meters)


def bronze_silver(spark: SparkSession, settings: Settings, stored: StoredCatalog) -> list[Finding]:
    """Events and value sums per tenant, customer, meter and UTC day: bronze vs usage_day."""
    from pyspark.sql import functions as F

    keys = ["tenant_id", "customer_id", "meter_key", "day"]
    bronze = (
        _metered(spark, settings, stored)
        .groupBy("tenant_id", "customer_id", "meter_key", F.col("billing_date").alias("day"))
        .agg(F.count("*").alias("events"), F.sum("value").alias("total"))
    )
    silver = (
        tables.read(spark, settings, tables.SILVER_USAGE_DAY)
        .groupBy("tenant_id", "customer_id", "meter_key", F.col("window_date").alias("day"))
        .agg(F.sum("events").alias("events"), F.sum("sum_value").alias("total"))
    )
    return _compare("bronze_silver", bronze, silver, keys, ["events", "total"])


def bronze_gold(spark: SparkSession, settings: Settings, stored: StoredCatalog) -> list[Finding]:
    """Events per tenant, customer, meter and billing period: bronze (by the schedule
    alone) vs gold. Bronze events no subscription covers make a mismatch by design:
    they are usage nobody is billed for."""
    from pyspark.sql import functions as F

    from meterlake.billing.schedule import schedule
    from meterlake.rollups.refresh import horizon

    until = horizon(settings)
    periods = spark.createDataFrame(
        [
            (c.tenant, c.id, p.start, p.end)
            for c in stored.catalog.customers
            for p in schedule(c, stored.catalog.grace(c.tenant), until)
        ],
        "p_tenant string, p_customer string, period_start timestamp, period_end timestamp",
    )
    keys = ["tenant_id", "customer_id", "meter_key", "period_start"]
    bronze = (
        _metered(spark, settings, stored)
        .join(
            F.broadcast(periods),
            (F.col("tenant_id") == F.col("p_tenant"))
            & (F.col("customer_id") == F.col("p_customer"))
            & (F.col("billing_time") >= F.col("period_start"))
            & (F.col("billing_time") < F.col("period_end")),
        )
        .groupBy(*keys)
        .agg(F.count("*").alias("events"))
    )
    gold = (
        tables.read(spark, settings, tables.GOLD_PERIOD_USAGE)
        .groupBy(*keys)
        .agg(F.sum("events").alias("events"))
    )
    return _compare("bronze_gold", bronze, gold, keys, ["events"])


def _line_amounts(invoice: Invoice) -> list[tuple[str, str | None, Decimal]]:
    return [(line.kind, line.meter, line.amount) for line in invoice.lines]


def invoices(
    spark: SparkSession, settings: Settings, stored: StoredCatalog, as_of: datetime, version: int
) -> list[Finding]:
    """Pre-invoice (drafts: gold-based = bronze-only recomputation), post-invoice (stored
    = recomputed, line by line) and late usage waiting on finalised periods."""
    from meterlake.billing.fx import rates_for
    from meterlake.billing.invoices import customer_invoices, pending_adjustments
    from meterlake.billing.run import usage_rows
    from meterlake.billing.store import stored_invoices

    customers = list(stored.catalog.customers)
    rates = rates_for(spark, settings, customers)
    max_age = settings.billing_system.fx_max_age_days
    from_gold = usage_rows(spark, settings, stored, customers, as_of, version)
    from_bronze = usage_rows(spark, settings, stored, customers, as_of, version, from_bronze=True)
    saved = stored_invoices(spark, settings)
    found: list[Finding] = []
    checked = {"pre_invoice": 0, "post_invoice": 0}
    for customer in customers:
        key = (customer.tenant, customer.id)
        independent, gold_based = (
            customer_invoices(stored.catalog, customer, rows.get(key, ()), as_of, rates, max_age)
            for rows in (from_bronze, from_gold)
        )
        for mine, theirs in zip(independent, gold_based, strict=True):
            if mine.status != "draft":
                continue
            checked["pre_invoice"] += 1
            if _line_amounts(mine) != _line_amounts(theirs):
                found.append(
                    Finding(
                        "pre_invoice", mine.invoice_id, mine.total, theirs.total, "mismatch",
                        "gold-based draft differs from a recomputation from bronze",
                    )
                )  # fmt: skip
        for recomputed in independent:
            kept = saved.get(recomputed.invoice_id)
            if kept is None or kept.status != "final":
                continue
            checked["post_invoice"] += 1
            if _line_amounts(kept) != _line_amounts(recomputed) or kept.total != recomputed.total:
                found.append(
                    Finding(
                        "post_invoice", recomputed.invoice_id, recomputed.total, kept.total,
                        "mismatch", "stored final invoice differs from its recomputation",
                    )
                )  # fmt: skip
        for period, amount, carrier in pending_adjustments(
            stored.catalog, customer, from_bronze.get(key, ()), as_of
        ):
            status = "pending" if carrier is not None else "unbilled"
            where = f"on the invoice of {format_instant(carrier)}" if carrier else "no later period"
            found.append(
                Finding(
                    "late_usage", f"{customer.tenant}/{customer.id}/{format_instant(period)}",
                    None, amount, status, f"late usage of a finalised period: {where}",
                )
            )  # fmt: skip
    for check in ("pre_invoice", "post_invoice"):
        if not any(f.check == check for f in found):
            found += summarise(check, [], checked[check], "invoices")
    return found
