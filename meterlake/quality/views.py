"""What each suite validates: a table, plus the derived columns its cross-column and
cross-table expectations need (GX expectations test columns; the rule that computes the
column lives here, next to the table it is about)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.tiering.events import events_at

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from meterlake.config import Settings

View = Callable[["SparkSession", "Settings"], "DataFrame"]

# Columns that identify a row in failure reports, per view.
ROW_KEYS: dict[str, list[str]] = {
    "bronze.events": ["tenant_id", "event_id", "batch_id", "line_number"],
    "silver.usage_day": ["tenant_id", "customer_id", "meter_key", "window_date"],
    "gold.period_usage": ["tenant_id", "customer_id", "segment_start", "meter_key"],
    "billing.invoices": ["invoice_id"],
}


def bronze_events(spark: SparkSession, settings: Settings) -> DataFrame:
    from pyspark.sql import functions as F

    from meterlake.ingest.event_schema import load_event_schemas

    known = sorted(load_event_schemas())
    bronze = tables.read(spark, settings, tables.BRONZE_EVENTS)
    earliest = F.col("received_at") - F.make_dt_interval(F.lit(settings.backfill_days))
    latest = F.col("received_at") + F.make_dt_interval(secs=F.lit(settings.max_clock_skew_seconds))
    return bronze.select(
        "*",
        F.col("billing_time").between(earliest, latest).alias("billing_time_in_window"),
        F.col("schema_version").isin(known).alias("schema_version_known"),
    )


def silver_usage_day(spark: SparkSession, settings: Settings) -> DataFrame:
    """Each daily rollup row, with whether its customer-meter-day total of events equals
    bronze's."""
    from pyspark.sql import functions as F

    from meterlake.catalog.store import read_catalog
    from meterlake.rollups.meter_values import metered_events

    keys = ["tenant_id", "customer_id", "meter_key", "window_date"]
    meters = read_catalog(spark, settings).catalog.meters
    bronze = (
        metered_events(events_at(spark, settings), meters)
        .groupBy(
            "tenant_id", "customer_id", "meter_key", F.col("billing_date").alias("window_date")
        )
        .agg(F.count("*").alias("bronze_events"))
    )
    silver = tables.read(spark, settings, tables.SILVER_USAGE_DAY)
    totals = silver.groupBy(*keys).agg(F.sum("events").alias("silver_events"))
    agreed = totals.join(bronze, keys, "left").select(
        *keys,
        F.coalesce(F.col("bronze_events") == F.col("silver_events"), F.lit(False)).alias(
            "events_match_bronze"
        ),
    )
    return silver.join(agreed, keys)


def gold_period_usage(spark: SparkSession, settings: Settings) -> DataFrame:
    return tables.read(spark, settings, tables.GOLD_PERIOD_USAGE)


def billing_invoices(spark: SparkSession, settings: Settings) -> DataFrame:
    """Invoices with their current lines added up."""
    from pyspark.sql import functions as F

    from meterlake.billing.store import current_lines
    from meterlake.currency import MINOR_UNITS

    sums = (
        current_lines(spark, settings)
        .where(F.col("kind") != "credit")
        .groupBy("invoice_id")
        .agg(F.sum("amount").alias("lines_sum"))
    )
    invoices = tables.read(spark, settings, tables.BILLING_INVOICES)
    return invoices.join(sums, "invoice_id", "left").select(
        *invoices.columns,
        (F.coalesce("lines_sum", F.lit(0)) == F.col("subtotal")).alias("lines_sum_to_subtotal"),
        (F.col("total") == F.col("subtotal") - F.col("credits")).alias(
            "total_is_subtotal_less_credits"
        ),
        F.col("currency").isin(sorted(MINOR_UNITS)).alias("currency_known"),
    )


VIEWS: dict[str, View] = {
    "bronze.events": bronze_events,
    "silver.usage_day": silver_usage_day,
    "gold.period_usage": gold_period_usage,
    "billing.invoices": billing_invoices,
}
