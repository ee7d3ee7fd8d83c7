"""Gold period usage: metered events per customer billing period, subscription segment,
meter and carrier invoice (see `meterlake.billing.schedule`).

Keeping the carrier apart is what lets an invoice be a pure function of the events and
their arrival: a period's own invoice reads the on-time rows, and each later invoice adds
the rows it carries as adjustments. Distinct counts cannot be added across carriers, so
each row holds ``new_unique``: the values whose *first* arrival it carries; the distinct
count of any set of carriers is then a sum.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.billing.periods import segments
from meterlake.billing.schedule import ScheduledPeriod, bands, schedule
from meterlake.catalog.model import Customer

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from meterlake.catalog.store import StoredCatalog

SEGMENT_KEY = ("tenant_id", "customer_id", "segment_start", "meter_key")
KEYS = (*SEGMENT_KEY, "carrier_period_start")
_NEVER = "9999-12-31 00:00:00"


Keep = Callable[[Customer, ScheduledPeriod], bool]


def _frames(
    spark, stored: StoredCatalog, customers: Iterable[Customer], until: datetime, keep: Keep
):
    """Segment rows for ``customers``' periods that start before ``until`` and ``keep``
    accepts, and carrier-band rows for all of them."""
    from pyspark.sql.types import StringType, StructField, StructType, TimestampType

    def schema(*names: str) -> StructType:
        return StructType(
            [StructField(n, StringType() if k == "s" else TimestampType(), True) for n, k in names]
        )

    segment_rows, band_rows = [], []
    for customer in customers:
        plan = schedule(customer, stored.catalog.grace(customer.tenant), until)
        key = (customer.tenant, customer.id)
        for period in filter(lambda p: keep(customer, p), plan):
            local = period.start.astimezone(_zone(customer)).isoformat()
            for segment in segments(customer, period.period):
                where = (customer.timezone, period.start, period.end, local, period.close)
                segment_rows.append((*key, *where, segment.start, segment.end, segment.plan))
        band_rows += [(*key, p.start, lower, upper) for p, lower, upper in bands(plan)]
    segment_schema = schema(
        ("s_tenant", "s"), ("s_customer", "s"), ("timezone", "s"), ("period_start", "t"),
        ("period_end", "t"), ("period_start_local", "s"), ("close_at", "t"),
        ("segment_start", "t"), ("segment_end", "t"), ("plan_id", "s"),
    )  # fmt: skip
    band_schema = schema(
        ("b_tenant", "s"), ("b_customer", "s"), ("band_carrier", "t"), ("band_from", "t"),
        ("band_until", "t"),
    )  # fmt: skip
    return (
        spark.createDataFrame(segment_rows, segment_schema),
        spark.createDataFrame(band_rows, band_schema),
    )


def _zone(customer: Customer):
    from zoneinfo import ZoneInfo

    return ZoneInfo(customer.timezone)


def period_usage(
    events: DataFrame,
    stored: StoredCatalog,
    customers: Iterable[Customer],
    until: datetime,
    keep: Keep = lambda customer, period: True,
) -> DataFrame:
    """Gold rows for ``events`` (bronze rows) of ``customers``, periods before ``until``
    (only those ``keep`` accepts).

    Events outside every subscription have no segment and do not appear (reconciliation
    reports them); usage arriving after the schedule's last close has a null carrier.
    """
    from pyspark.sql import functions as F

    from meterlake.rollups.meter_values import metered_events, value_aggregates

    spark = events.sparkSession
    segment_frame, band_frame = _frames(spark, stored, customers, until, keep)
    metered = metered_events(events, stored.catalog.meters)
    placed = metered.join(
        F.broadcast(segment_frame),
        (F.col("tenant_id") == F.col("s_tenant"))
        & (F.col("customer_id") == F.col("s_customer"))
        & (F.col("billing_time") >= F.col("segment_start"))
        & (F.col("billing_time") < F.col("segment_end")),
    )
    late = F.col("received_at") >= F.col("close_at")
    carried = placed.join(
        F.broadcast(band_frame),
        late
        & (F.col("tenant_id") == F.col("b_tenant"))
        & (F.col("customer_id") == F.col("b_customer"))
        & (F.col("received_at") >= F.coalesce("band_from", F.col("close_at")))
        & (F.col("received_at") < F.col("band_until")),
        "left",
    ).withColumn(
        "carrier_period_start", F.when(late, F.col("band_carrier")).otherwise(F.col("period_start"))
    )
    period_columns = (
        "timezone", "period_start", "period_end", "period_start_local", "close_at",
        "segment_end", "plan_id", "aggregation",
    )  # fmt: skip
    usage = carried.groupBy(*KEYS, *period_columns).agg(
        *value_aggregates(),
        F.min("received_at").alias("first_received"),
        F.max("received_at").alias("last_received"),
    )
    never = F.lit(_NEVER).cast("timestamp")
    first_arrivals = (
        carried.where((F.col("aggregation") == "unique_count") & F.col("unique_value").isNotNull())
        .groupBy(*SEGMENT_KEY, "unique_value")
        .agg(F.min(F.coalesce("carrier_period_start", never)).alias("first"))
        .groupBy(*SEGMENT_KEY, "first")
        .agg(F.count("*").alias("new_unique"))
        .select(
            *(F.col(k).alias(f"u_{k}") for k in SEGMENT_KEY),
            F.when(F.col("first") != never, F.col("first")).alias("u_carrier"),
            "new_unique",
        )
    )
    joined = usage.join(
        first_arrivals,
        [F.col(k) == F.col(f"u_{k}") for k in SEGMENT_KEY]
        + [F.col("carrier_period_start").eqNullSafe(F.col("u_carrier"))],
        "left",
    )
    return joined.select(
        *KEYS,
        *(F.col(c) for c in period_columns),
        F.col("carrier_period_start").eqNullSafe(F.col("period_start")).alias("on_time"),
        "events",
        "sum_value",
        "min_value",
        "max_value",
        "latest_value",
        "latest_time",
        "latest_event_id",
        F.coalesce("new_unique", F.lit(0)).cast("long").alias("new_unique"),
        "first_received",
        "last_received",
        F.lit(stored.version).cast("long").alias("catalog_version"),
    ).select([F.col(f.name) for f in tables.GOLD_PERIOD_USAGE.schema])
