"""Materialised views for the seed's query patterns, so the common questions are one small
table scan instead of an aggregation over every event:

- ``views.current_usage``: each customer's usage so far in its current period, per segment
  and meter, with the estimated total (the numbers ``usage show`` prints);
- ``views.usage_by_dimension``: usage per tenant, day, meter, event type, region, resource;
- ``views.tenant_daily_usage``: usage per tenant, day and meter.

Each is rebuilt whole (one Delta overwrite, readers see the old or the new version) from
the rollups: gold for the current periods, ``silver.usage_day`` for the daily views, which
holds one row per customer, meter, day, region and resource, so a rebuild reads far fewer
rows than bronze. ``pipeline stream`` refreshes them after every rollup cycle, the
rollups DAG every hour, ``meterlake views refresh`` on demand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.delta_io import overwrite

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from meterlake.billing.estimate import Estimate
    from meterlake.catalog.store import StoredCatalog
    from meterlake.config import Settings


@dataclass(frozen=True)
class ViewsRefresh:
    rows: dict[str, int]  # qualified view name → rows written
    catalog_version: int


def current_usage_rows(estimates: list[Estimate]) -> list[tuple]:
    """``views.current_usage`` rows of the given estimates (one per segment and meter)."""
    rows = []
    for e in estimates:
        c, p = e.customer, e.period
        for (segment, meter), quantity in e.usage.items():
            row = (
                c.tenant, c.id, p.start, p.end, segment.start, segment.end, segment.plan,
                meter, quantity, e.currency, e.amount, e.as_of, e.bronze_version,
            )  # fmt: skip
            rows.append(row)
    return rows


def _totals() -> list:
    """What both daily views hold per group: customers (each once), events, sum."""
    from pyspark.sql import functions as F

    return [
        F.countDistinct("customer_id").alias("customers"),
        F.sum("events").alias("events"),
        F.sum("sum_value").alias("sum_value"),
    ]


def daily_usage(spark: SparkSession, settings: Settings, stored: StoredCatalog) -> DataFrame:
    """``views.usage_by_dimension`` from ``silver.usage_day`` (event type from the meter)."""
    from pyspark.sql import functions as F

    from meterlake.rollups.meter_values import meters_frame

    meters = meters_frame(spark, stored.catalog.meters).select(
        "meter_key", F.col("meter_event_type").alias("event_type")
    )
    days = tables.read(spark, settings, tables.SILVER_USAGE_DAY)
    return (
        days.join(F.broadcast(meters), "meter_key")
        .groupBy(
            "tenant_id",
            F.col("window_date").alias("day"),
            "meter_key",
            "event_type",
            "region",
            "resource_id",
        )
        .agg(*_totals())
    )


def tenant_daily(spark: SparkSession, settings: Settings) -> DataFrame:
    """``views.tenant_daily_usage`` from ``silver.usage_day`` (customers counted once a day,
    whatever their regions and resources)."""
    from pyspark.sql import functions as F

    return (
        tables.read(spark, settings, tables.SILVER_USAGE_DAY)
        .groupBy("tenant_id", F.col("window_date").alias("day"), "meter_key")
        .agg(*_totals())
    )


def refresh_views(
    spark: SparkSession, settings: Settings, *, progress: Callable[[str], None] = print
) -> ViewsRefresh:
    """Rebuild every materialised view from the current rollups, and publish the
    dashboard's documents from the same current-period estimates."""
    from meterlake.analytics.dashboard import publish_dashboard
    from meterlake.billing.estimate import estimates
    from meterlake.catalog.store import read_catalog

    stored = read_catalog(spark, settings)
    current = estimates(spark, settings, stored, list(stored.catalog.customers), settings.now())
    frames = {
        tables.VIEWS_CURRENT_USAGE: spark.createDataFrame(
            current_usage_rows(current), tables.nullable_schema(tables.VIEWS_CURRENT_USAGE)
        ),
        tables.VIEWS_USAGE_BY_DIMENSION: daily_usage(spark, settings, stored),
        tables.VIEWS_TENANT_DAILY_USAGE: tenant_daily(spark, settings),
    }
    rows = {}
    for spec, frame in frames.items():
        overwrite(frame, settings, spec)
        rows[spec.qualified_name] = tables.read(spark, settings, spec).count()
        progress(f"views: {spec.qualified_name} rebuilt, {rows[spec.qualified_name]:,} rows")
    tenants = publish_dashboard(spark, settings, current)
    progress(f"views: dashboard published for {tenants} tenant(s)")
    return ViewsRefresh(rows, stored.version)
