"""VACUUM after the retention window, and the bronze version it leaves as the oldest whole.

Delta keeps the files a delete removed until VACUUM runs with a retention window older
than the delete; until then time travel to earlier versions still works. VACUUM removes
files tombstoned before ``now − retention`` (wall-clock, as Delta measures it), so every
bronze version before the newest such delete loses files. That version is logged as the
vacuum floor, and `events_at` reads any older version as the floor plus the cold rows
moved by then.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.tiering import log
from meterlake.tiering.log import Step

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from meterlake.config import Settings

VACUUMED_TABLES = (
    tables.BRONZE_EVENTS,
    tables.COLD_EVENTS,
    tables.SILVER_USAGE_MINUTE,
    tables.SILVER_USAGE_HOUR,
    # what a GDPR erasure rewrites besides: the old files hold the erased identifier
    tables.BRONZE_QUARANTINE,
    tables.SILVER_USAGE_DAY,
    tables.AUDIT_QUERY_LOG,
)
DELTA_DEFAULT_HOURS = 168
# An erasure's superseded files are removed by the first VACUUM past the retention window;
# the tables it rewrote are vacuumed by every tier run this long after it (tier runs are
# expected at least once per retention window).
ERASED_TABLES_HOURS = 2 * DELTA_DEFAULT_HOURS


def _removed_files(metrics: dict[str, str] | None) -> bool:
    return any(
        ("RemovedFiles" in key or "FilesRemoved" in key) and value not in ("0", "")
        for key, value in (metrics or {}).items()
    )


def removal_floor(spark: SparkSession, settings: Settings, threshold: datetime) -> int:
    """The newest bronze version that removed files and committed before ``threshold``."""
    from delta.tables import DeltaTable

    history = DeltaTable.forPath(spark, tables.BRONZE_EVENTS.path(settings)).history()
    cut = threshold.astimezone(UTC).replace(tzinfo=None)
    return max(
        (
            row.version
            for row in history.select("version", "timestamp", "operationMetrics").collect()
            if row.timestamp <= cut and _removed_files(row.operationMetrics)
        ),
        default=0,
    )


def _recently_erased(spark: SparkSession, settings: Settings, hours: int) -> list[tables.TableSpec]:
    """The tables besides `VACUUMED_TABLES` that a recent erasure rewrote or looked in (a
    customer's erasure covers every table that can name a customer, invoices included:
    rows a refresh removed before it still sit in superseded files)."""
    from pyspark.sql import functions as F

    since = datetime.now(UTC) - timedelta(hours=max(2 * hours, ERASED_TABLES_HOURS))
    erasures = tables.read(spark, settings, tables.AUDIT_ERASURES)
    recent = erasures.where(F.col("at") >= F.lit(since.replace(tzinfo=None)))
    covered = recent.select(F.explode(F.map_keys("rows")).alias("table")).distinct()
    named = {row.table for row in covered.collect()}
    return [s for s in tables.ALL_TABLES if s.qualified_name in named and s not in VACUUMED_TABLES]


def vacuum_all(spark: SparkSession, settings: Settings, progress: Callable[[str], None]) -> int:
    """VACUUM the tiered tables with ``settings.vacuum_retention_hours``; returns (and logs,
    when it rose) the bronze vacuum floor."""
    hours = settings.vacuum_retention_hours
    floor = removal_floor(spark, settings, datetime.now(UTC) - timedelta(hours=hours))
    conf = {
        # Delta refuses windows shorter than its default unless told the caller means it.
        "spark.databricks.delta.retentionDurationCheck.enabled": str(hours >= DELTA_DEFAULT_HOURS),
        # No VACUUM START/END commits: they would move bronze's version with no data change,
        # making the rollups look stale. audit.tiering_log records the vacuum instead.
        "spark.databricks.delta.vacuum.logging.enabled": "false",
    }
    for key, value in conf.items():
        spark.conf.set(key, value.lower())
    try:
        for spec in (*VACUUMED_TABLES, *_recently_erased(spark, settings, hours)):
            spark.sql(f"VACUUM delta.`{spec.path(settings)}` RETAIN {hours} HOURS")
    finally:
        for key in conf:
            spark.conf.unset(key)
    previous = log.move_states(spark, settings).vacuum_floor
    if floor > previous:
        log.record(
            spark,
            settings,
            [
                Step("-", None, log.VACUUMED, tables.BRONZE_EVENTS.path(settings),
                     bronze_version=floor, detail=f"retention {hours} h")
            ],
        )  # fmt: skip
    progress(f"tier: vacuumed (retention {hours} h); bronze versions below {floor} read as {floor}")
    return max(floor, previous)
