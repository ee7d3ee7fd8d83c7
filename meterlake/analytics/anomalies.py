"""Usage anomalies (the seed: rolling statistics, mean and standard deviation, to compare
against): per customer and meter, each complete hour's usage against the ``baseline``
hours before it. An hour more than ``k`` standard deviations above the baseline's mean is
a spike, below it a drop; a perfectly flat baseline (deviation 0) flags any other value.

The series is the hourly sum of the metered value from ``silver.usage_hour`` (the number
of events for a meter without one), with the hours that have no usage counted as 0, from
the customer's first usage: a customer going quiet is a drop, one that has not started
is not. An hour needs ``min_history`` hours before it to be judged. Found hours are merged
into ``analytics.anomalies`` (a rerun over the same hours rewrites them, never doubles).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.clock import hour_floor
from meterlake.delta_io import settled, upsert
from meterlake.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from meterlake.config import Settings

DEFAULT_K = 3.0
DEFAULT_BASELINE_HOURS = 168  # a week: the daily rhythm seven times over
DEFAULT_MIN_HISTORY = 24
KEYS = ("tenant_id", "customer_id", "meter_key", "hour_start")
SERIES = ("tenant_id", "customer_id", "meter_key")


@dataclass(frozen=True)
class AnomalyRun:
    since: datetime
    until: datetime  # the end of the last complete hour judged
    k: float
    baseline_hours: int
    found: list  # Rows of analytics.anomalies, oldest first


def hourly_value() -> Column:
    """An hour's usage of a meter, aggregated over ``silver.usage_hour`` rows: the sum of
    its metered value, or the number of events for a meter without one."""
    from pyspark.sql import functions as F

    return F.coalesce(F.sum("sum_value"), F.sum("events").cast(tables.QUANTITY))


def hourly_series(
    spark: SparkSession, settings: Settings, start: datetime, end: datetime
) -> DataFrame:
    """Usage per customer, meter and hour in [start, end), zero-filled from the series'
    first usage (or ``start``) to ``end``."""
    from pyspark.sql import functions as F

    hours = (
        tables.read(spark, settings, tables.SILVER_USAGE_HOUR)
        .where(F.col("window_date").between(start.date(), end.date()))
        .where((F.col("window_start") >= F.lit(start)) & (F.col("window_start") < F.lit(end)))
        .groupBy(*SERIES, F.col("window_start").alias("hour_start"))
        .agg(hourly_value().alias("value"))
    )
    last = F.lit(end - timedelta(hours=1)).cast("timestamp")
    spans = hours.groupBy(*SERIES).agg(F.min("hour_start").alias("first"))
    dense = spans.select(
        *SERIES,
        F.explode(F.sequence("first", last, F.expr("INTERVAL 1 HOUR"))).alias("hour_start"),
    )
    return dense.join(hours, [*SERIES, "hour_start"], "left").fillna(0, subset=["value"])


def flag(series: DataFrame, k: float, baseline_hours: int, min_history: int) -> DataFrame:
    """The hours of ``series`` beyond ``k`` deviations of the ``baseline_hours`` before them."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    before = Window.partitionBy(*SERIES).orderBy("hour_start").rowsBetween(-baseline_hours, -1)
    value = F.col("value").cast("double")
    stats = series.select(
        "*",
        F.avg(value).over(before).alias("baseline_mean"),
        F.coalesce(F.stddev_pop(value).over(before), F.lit(0.0)).alias("baseline_stddev"),
        F.count(value).over(before).alias("baseline_hours"),
    )
    distance = value - F.col("baseline_mean")
    deviation = F.col("baseline_stddev")
    beyond = F.when(deviation > 0, F.abs(distance) > F.lit(k) * deviation).otherwise(distance != 0)
    return stats.where((F.col("baseline_hours") >= min_history) & beyond).select(
        *KEYS,
        "value",
        "baseline_mean",
        "baseline_stddev",
        "baseline_hours",
        F.when(deviation > 0, distance / deviation).alias("z_score"),
        F.when(distance > 0, "spike").otherwise("drop").alias("direction"),
        F.lit(k).alias("k"),
    )


def detect_anomalies(
    spark: SparkSession,
    settings: Settings,
    since: datetime,
    *,
    k: float = DEFAULT_K,
    baseline_hours: int = DEFAULT_BASELINE_HOURS,
    min_history: int = DEFAULT_MIN_HISTORY,
    tenant: str | None = None,
) -> AnomalyRun:
    """Judge every complete hour from ``since`` to now; store and return what was found."""
    from pyspark.sql import functions as F

    if k <= 0:
        raise ConfigError(f"--k: {k} must be above 0")
    if baseline_hours < 2 or min_history < 2 or min_history > baseline_hours:
        raise ConfigError(
            f"--baseline-hours: {baseline_hours} must be at least 2 and at least the"
            f" {min_history} hours of history an hour needs"
        )
    start, until = hour_floor(since), hour_floor(settings.now())
    series = hourly_series(spark, settings, start - timedelta(hours=baseline_hours), until)
    if tenant is not None:
        series = series.where(F.col("tenant_id") == tenant)
    found = settled(
        flag(series, k, baseline_hours, min_history)
        .where(F.col("hour_start") >= F.lit(start))
        .withColumn("detected_at", F.lit(settings.now()).cast("timestamp"))
    )
    upsert(
        found,
        settings,
        tables.ANALYTICS_ANOMALIES,
        KEYS,
        changed="s.value <> t.value OR s.k <> t.k OR s.baseline_hours <> t.baseline_hours",
    )
    rows = found.orderBy("hour_start", *SERIES).collect()
    return AnomalyRun(start, until, k, baseline_hours, rows)


def report(run: AnomalyRun) -> list[str]:
    """The lines ``meterlake anomalies`` prints."""
    from meterlake.billing.usage import format_quantity
    from meterlake.clock import format_instant

    out = [
        f"anomalies from {format_instant(run.since)} to {format_instant(run.until)}"
        f" (k = {run.k:g} standard deviations of the {run.baseline_hours} hours before):"
        f" {len(run.found)} found"
    ]
    for r in run.found:
        z = f"z = {r.z_score:+.1f}" if r.z_score is not None else "flat baseline"
        out.append(
            f"  {format_instant(r.hour_start)}  {r.tenant_id}/{r.customer_id}  {r.meter_key:<16}"
            f" {r.direction:<5} {format_quantity(r.value):>14} vs mean {r.baseline_mean:,.2f}"
            f" ± {r.baseline_stddev:,.2f} ({z})"
        )
    return out
