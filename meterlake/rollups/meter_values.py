"""Bronze events seen through the catalog's meters: which meter each event feeds and with
what value. Silver, gold and lineage all start here, so a meter means the same everywhere.

A meter selects events by ``event_type``. Its numeric value is ``quantity``, or the field
named by ``property`` (a top-level column such as ``user_id`` or a key of ``properties``)
read as a decimal; an event whose property is missing or not numeric adds nothing to a
sum, min, max or latest but still counts. The value counted by ``unique_count`` is the
property as text; for other meters it is ``user_id``, which the dashboards' distinct-user
sketches use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.catalog.model import Meter

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

# Bronze's own text fields a meter property may name; anything else is a key of properties.
TOP_LEVEL_FIELDS = ("user_id", "session_id", "resource_id", "region", "event_type")


def property_column(name: str) -> Column:
    """The text of property ``name`` of each event (null when absent)."""
    from pyspark.sql import functions as F

    if name in TOP_LEVEL_FIELDS:
        return F.col(name)
    escaped = name.replace("\\", "\\\\").replace("'", "\\'")
    return F.get_json_object(F.col("properties"), f"$['{escaped}']")


def meters_frame(spark: SparkSession, meters: tuple[Meter, ...]) -> DataFrame:
    from pyspark.sql.types import StringType, StructField, StructType

    names = ("meter_key", "meter_event_type", "aggregation", "property")
    schema = StructType([StructField(name, StringType(), True) for name in names])
    rows = [(m.key, m.event_type, m.aggregation, m.property) for m in meters]
    return spark.createDataFrame(rows, schema)


def metered_events(events: DataFrame, meters: tuple[Meter, ...]) -> DataFrame:
    """One row per (event, meter selecting it) with ``value`` and ``unique_value``.

    Events no meter selects drop out here (they stay in bronze, unbilled).
    """
    from pyspark.sql import functions as F

    joined = events.join(
        F.broadcast(meters_frame(events.sparkSession, meters)),
        F.col("event_type") == F.col("meter_event_type"),
    )
    properties = sorted({m.property for m in meters if m.property})
    value = F.col("quantity").cast(tables.QUANTITY)
    unique_value = F.col("user_id")
    for name in properties:
        raw = property_column(name)
        chosen = F.col("property") == name
        value = F.when(chosen, raw.try_cast(tables.QUANTITY)).otherwise(value)
        unique_value = F.when(chosen, raw).otherwise(unique_value)
    return joined.select(
        "tenant_id",
        "customer_id",
        "meter_key",
        "aggregation",
        "event_id",
        "region",
        "resource_id",
        "billing_time",
        "billing_date",
        "received_at",
        "batch_id",
        "landing_file",
        value.alias("value"),
        unique_value.alias("unique_value"),
    )


def latest_of(column: str) -> Column:
    """``column`` of the event with the greatest billing_time, ties by the greater event_id."""
    from pyspark.sql import functions as F

    return F.max_by(column, F.struct("billing_time", "event_id"))


def exact_distinct(column: str) -> Column:
    """Exact number of distinct non-null values. Written as the size of a set rather than
    ``count(DISTINCT ...)``, which makes Spark expand every row per distinct aggregate and
    cost the silver rollups more than twice the time when combined with the others."""
    from pyspark.sql import functions as F

    return F.size(F.collect_set(column))


def value_aggregates() -> list[Column]:
    """Aggregates silver and gold both keep per group of metered events."""
    from pyspark.sql import functions as F

    return [
        F.count("*").alias("events"),
        F.sum("value").cast(tables.QUANTITY).alias("sum_value"),
        F.min("value").alias("min_value"),
        F.max("value").alias("max_value"),
        latest_of("value").alias("latest_value"),
        F.max("billing_time").alias("latest_time"),
        latest_of("event_id").alias("latest_event_id"),
    ]
