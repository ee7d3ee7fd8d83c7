"""What the warehouse holds, in the terms a newcomer asks about (used by ``demo``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.tiering.events import events_at

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from meterlake.config import Settings


@dataclass(frozen=True)
class IngestSummary:
    landing_batches: int
    events_read: int
    blank_lines: int
    bronze_rows: int
    clock_skewed: int
    duplicates: int
    quarantined_by_reason: dict[str, int]


def ingest_summary(spark: SparkSession, settings: Settings) -> IngestSummary:
    """Totals over ``bronze.batches`` and the current contents of bronze and quarantine."""
    from pyspark.sql import functions as F

    batches = (
        tables.read(spark, settings, tables.BRONZE_BATCHES)
        .agg(
            F.count("*").alias("n"),
            F.coalesce(F.sum("events_read"), F.lit(0)).alias("read"),
            F.coalesce(F.sum("blank_lines"), F.lit(0)).alias("blank"),
            F.coalesce(F.sum("duplicates"), F.lit(0)).alias("dups"),
        )
        .first()
    )
    events = (
        events_at(spark, settings)
        .agg(F.count("*").alias("n"), F.coalesce(F.sum(F.col("clock_skew").cast("int")), F.lit(0)))
        .first()
    )
    return IngestSummary(
        landing_batches=batches.n,
        events_read=batches.read,
        blank_lines=batches.blank,
        bronze_rows=events[0],
        clock_skewed=events[1],
        duplicates=batches.dups,
        quarantined_by_reason=quarantined_by_reason(spark, settings),
    )


def quarantined_by_reason(spark: SparkSession, settings: Settings) -> dict[str, int]:
    """Quarantined events not re-admitted by a replay, per reason (sorted)."""
    from pyspark.sql import functions as F

    rows = (
        tables.read(spark, settings, tables.BRONZE_QUARANTINE)
        .where(F.col("replayed_at").isNull() | (F.col("replay_outcome") != "admitted"))
        .groupBy("reason")
        .count()
        .collect()
    )
    return {row.reason: row["count"] for row in sorted(rows)}
