"""Re-admit quarantined lines through ingest's validation: ``unknown_customer`` lines once
their customer is in the catalog, and ``quality_failed`` lines (bronze rows taken out by
`meterlake.ingest.quality_quarantine`) always, re-derived from their landing bytes.

Each row is replayed once: the replay writes bronze, then marks the rows ``replayed_at``
with their outcome. A line whose lineage (batch_id, line_number) is already in bronze
counts as admitted and is not written again, so a crash between the two steps is
completed by the next run without doubling anything. The bronze insert is keyed on
lineage and commits only on top of the bronze version the lines were classified
against (`meterlake.delta_io.insert_as_of`), under the ingest lease.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.delta_io import insert_as_of, retry_conflicts, sql_in, table_version
from meterlake.ingest import reasons
from meterlake.ingest.bronze import (
    LINEAGE,
    Tally,
    admitted,
    bronze_rows,
    known_customers,
    prior_events,
)
from meterlake.ingest.identity import ACCEPTED, DUPLICATE, REJECTED
from meterlake.lease import INGEST, Lease, hold
from meterlake.tiering.events import bronze_version
from meterlake.warehouse import require_tables

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from meterlake.config import Settings


REPLAYABLE = (reasons.UNKNOWN_CUSTOMER, reasons.QUALITY_FAILED)


def replay_quarantine(spark: SparkSession, settings: Settings) -> Tally:
    """Replay the unresolved replayable rows (see the module docstring); returns the counts.
    Holds the ingest lease: a replay writes bronze as the stream does."""
    require_tables(spark, settings)
    with hold(settings, INGEST) as lease:
        return retry_conflicts(lambda: _replay(spark, settings, lease), lease)


def _replay(spark: SparkSession, settings: Settings, lease: Lease) -> Tally:
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    path = tables.BRONZE_QUARANTINE.path(settings)
    # Read one pinned version: the counts below are computed after the MERGE marks these
    # rows replayed, and must still see them as candidates.
    version = table_version(spark, path)
    snapshot = spark.read.format("delta").option("versionAsOf", version).load(path)
    candidates = (
        snapshot.where(F.col("reason").isin(*REPLAYABLE) & F.col("replayed_at").isNull())
        .join(F.broadcast(known_customers(spark, settings)), ["tenant_id", "customer_id"], "left")
        .where((F.col("reason") == reasons.QUALITY_FAILED) | F.col("_known").isNotNull())
    )
    lines = candidates.select(
        F.col("raw").cast("string").alias("value"),
        "tenant_id",
        "batch_id",
        "received_at",
        "landing_file",
        "line_number",
        F.lit(None).cast("timestamp").alias("source_time"),  # quarantine keeps no source time
    )
    read_version = bronze_version(spark, settings)
    prior = prior_events(spark, settings, read_version)
    done = lines.join(prior.select(*LINEAGE), LINEAGE, "left_semi")
    fresh = lines.join(prior.select(*LINEAGE), LINEAGE, "left_anti")
    with admitted(spark, settings, fresh, prior) as judged:
        now_ts = settings.now()
        outcomes = judged.select(
            *LINEAGE,
            F.when(F.col("outcome") == ACCEPTED, F.lit("admitted"))
            .when(F.col("outcome") == DUPLICATE, F.lit("duplicate"))
            .otherwise(F.col("reason"))
            .alias("outcome"),
        ).unionByName(done.select(*LINEAGE, F.lit("admitted").alias("outcome")))
        # Taken to the driver before bronze is written: that write drops every cached plan
        # that read bronze (``judged`` did), and the MERGE below must not re-cache it.
        outcomes = spark.createDataFrame(
            outcomes.collect(), "batch_id string, line_number long, outcome string"
        )
        if outcomes.isEmpty():
            return Tally()
        batch_ids = [r.batch_id for r in judged.select("batch_id").distinct().collect()]
        if batch_ids:
            insert_as_of(
                bronze_rows(judged, now_ts),
                settings,
                tables.BRONZE_EVENTS,
                LINEAGE,
                scope=sql_in("t.batch_id", batch_ids),
                read_version=read_version,
                fence=lease,
            )
        lease.check()
        (
            DeltaTable.forPath(spark, path)
            .alias("q")
            .merge(
                outcomes.alias("o"),
                "q.batch_id = o.batch_id AND q.line_number = o.line_number"
                f" AND q.reason IN {REPLAYABLE} AND q.replayed_at IS NULL",
            )
            .whenMatchedUpdate(
                set={"replayed_at": F.lit(now_ts).cast("timestamp"), "replay_outcome": "o.outcome"}
            )
            .execute()
        )
        counts = outcomes.groupBy("outcome").count().collect()
    tally = Tally()
    for row in counts:
        outcome = {"admitted": ACCEPTED, "duplicate": DUPLICATE}.get(row.outcome, REJECTED)
        tally.record(outcome, row.outcome, row["count"])
    return tally
