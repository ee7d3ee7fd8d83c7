"""Move bronze rows the data-quality suite fails into quarantine, so they can be replayed.

Ingest validates every line before bronze, so a bronze row that breaks an expectation was
written wrong (a bug, a hand edit, a changed rule). Its landing line is immutable and
checksummed, so the repair is to take the row out of bronze and re-derive it from that
line: this module writes each offending row's landing line to ``bronze.quarantine`` with
reason ``quality_failed`` (naming the expectation), deletes the row from bronze and
recomputes the rollup windows it was in; ``quarantine replay`` then runs the line through
the same validation as ingest, which admits it again or rejects it with its reason.

The steps are ordered so a crash loses nothing: quarantine is written first (a rerun adds
no second copy), then the bronze rows go, then the windows are recomputed; rerunning
finishes whatever was left.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.delta_io import delete_matching, insert_missing, settled
from meterlake.ingest import reasons
from meterlake.ingest.bronze import LINEAGE, landing_lines
from meterlake.ingest.landing import manifest_entries
from meterlake.lease import INGEST, ROLLUPS, hold

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from meterlake.config import Settings


def failing_rows(spark: SparkSession, settings: Settings) -> dict[tuple[str, int], str]:
    """(batch_id, line_number) of every bronze row the bronze suite fails → the first
    expectation it fails (the run is recorded in quality.results like any other)."""
    from meterlake.quality.run import run_quality

    found: dict[tuple[str, int], str] = {}
    for outcome in run_quality(spark, settings, layers=("bronze",)).failures:
        for row in outcome.offending:
            key = (row["batch_id"], int(row["line_number"]))
            found.setdefault(key, f"{outcome.expectation} on {outcome.column}")
    return found


def _quarantine_frame(
    spark: SparkSession, settings: Settings, failing: dict[tuple[str, int], str]
) -> DataFrame:
    """The offending rows as quarantine rows, with their landing lines' bytes (and their
    ``billing_date``, which the quarantine table does not keep, for the windows)."""
    from pyspark.sql import functions as F

    keys = spark.createDataFrame(
        [(b, n, d) for (b, n), d in failing.items()],
        "batch_id string, line_number long, detail string",
    )
    bronze = tables.read(spark, settings, tables.BRONZE_EVENTS).join(F.broadcast(keys), LINEAGE)
    batch_ids = {b for b, _ in failing}
    lines = landing_lines(
        spark, settings, [b for b in manifest_entries(settings) if b.batch_id in batch_ids]
    )
    return bronze.join(
        lines.select(*LINEAGE, F.col("value").cast("binary").alias("raw")), LINEAGE
    ).select(
        "tenant_id",
        "batch_id",
        "landing_file",
        "line_number",
        F.lit(reasons.QUALITY_FAILED).alias("reason"),
        "detail",
        "raw",
        "event_id",
        "customer_id",
        "received_at",
        F.lit(settings.now()).cast("timestamp").alias("quarantined_at"),
        F.lit(None).cast("timestamp").alias("replayed_at"),
        F.lit(None).cast("string").alias("replay_outcome"),
        "billing_date",
    )


def quarantine_failing(spark: SparkSession, settings: Settings) -> int:
    """Move every bronze row the bronze suite fails to quarantine (see the module
    docstring); returns how many rows moved."""
    from meterlake.catalog.store import read_catalog
    from meterlake.rollups.refresh import refresh_touched
    from meterlake.tiering.events import bronze_version

    with hold(settings, INGEST) as lease:
        failing = failing_rows(spark, settings)
        if not failing:
            return 0
        moving = settled(_quarantine_frame(spark, settings, failing))
        scope = f"t.reason = '{reasons.QUALITY_FAILED}' AND t.replayed_at IS NULL"
        insert_missing(
            moving, settings, tables.BRONZE_QUARANTINE, LINEAGE, scope=scope, fence=lease
        )
        touched: dict[tuple[str, str], set[date]] = defaultdict(set)
        for row in moving.select("tenant_id", "customer_id", "billing_date").distinct().collect():
            touched[row.tenant_id, row.customer_id].add(row.billing_date)
        lease.check()
        delete_matching(moving.select(*LINEAGE), settings, tables.BRONZE_EVENTS, LINEAGE)
    if touched:
        with hold(settings, ROLLUPS) as rollups:
            stored = read_catalog(spark, settings)
            version = bronze_version(spark, settings)
            refresh_touched(spark, settings, stored, touched, version, fence=rollups)
    return len(failing)
