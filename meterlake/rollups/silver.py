"""Silver rollups: usage per minute, hour and day (UTC windows) per tenant, customer, meter,
region and resource.

Each window is always computed from *all* of its bronze events, never by adding a delta to
the stored row, so an incremental refresh and a rebuild from scratch produce the same
rows. Percentiles and exact distinct counts cannot be added up from a finer grain, which
is why every grain aggregates events directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from meterlake import tables

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

KEYS = ("tenant_id", "customer_id", "meter_key", "region", "resource_id", "window_start")


@dataclass(frozen=True)
class Grain:
    spec: tables.TableSpec
    unit: str  # a date_trunc unit
    interval: str  # the window length as a Spark interval


GRAINS = (
    Grain(tables.SILVER_USAGE_MINUTE, "minute", "INTERVAL 1 MINUTE"),
    Grain(tables.SILVER_USAGE_HOUR, "hour", "INTERVAL 1 HOUR"),
    Grain(tables.SILVER_USAGE_DAY, "day", "INTERVAL 1 DAY"),
)


def rollup(metered: DataFrame, grain: Grain) -> DataFrame:
    """``metered`` events (see `meter_values.metered_events`) aggregated into ``grain``."""
    from pyspark.sql import functions as F

    from meterlake.rollups.meter_values import exact_distinct, value_aggregates

    start = F.date_trunc(grain.unit, "billing_time")
    levels = F.array(*map(F.lit, (0.5, 0.95, 0.99)))
    percentiles = F.percentile(F.col("value").cast("double"), levels)
    grouped = metered.groupBy(*KEYS[:-1], start.alias("window_start")).agg(
        *value_aggregates(),
        exact_distinct("unique_value").alias("unique_count"),
        F.hll_sketch_agg("unique_value").alias("unique_sketch"),
        percentiles.alias("percentiles"),
    )
    return grouped.select(
        *KEYS,
        (F.col("window_start") + F.expr(grain.interval)).alias("window_end"),
        F.to_date("window_start").alias("window_date"),
        "events",
        "sum_value",
        "min_value",
        "max_value",
        "unique_count",
        "unique_sketch",
        "latest_value",
        "latest_time",
        "latest_event_id",
        *(F.col("percentiles")[i].alias(name) for i, name in enumerate(("p50", "p95", "p99"))),
    )
