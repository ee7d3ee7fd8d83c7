"""Landing → bronze: read landing batches, validate, apply identity, write exactly once.

Each micro-batch writes ``bronze.quarantine``, ``bronze.events`` (both keyed on lineage:
batch_id, line_number) and ``bronze.batches`` (keyed on batch_id), inserting only keys
not already there. A batch retried after a crash classifies its lines exactly as the
first attempt did (its own rows already in bronze are excluded from "prior" events), so
whatever the first attempt committed is not written again and the rest is completed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.catalog.store import current
from meterlake.delta_io import (
    append_numbered,
    insert_as_of,
    insert_missing,
    retry_conflicts,
    sql_in,
)
from meterlake.ingest import reasons
from meterlake.ingest.event_schema import load_event_schemas
from meterlake.ingest.identity import ACCEPTED, DUPLICATE, REJECTED, classify, repeats
from meterlake.ingest.integrity import Altered, altered_batches
from meterlake.ingest.landing import LandingBatch
from meterlake.ingest.parse import parse_lines
from meterlake.lease import INGEST, Lease, hold
from meterlake.phases import phase
from meterlake.tiering.events import bronze_version, events_at

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from meterlake.config import Settings

BLANK_LINE = r"^[ \t\r]*$"
LINEAGE = ["batch_id", "line_number"]


@dataclass
class Tally:
    """Counts of one run: events read = bronze rows + duplicates + quarantined."""

    batches: int = 0
    events_read: int = 0
    blank_lines: int = 0
    bronze_rows: int = 0
    duplicates: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    customers: set[tuple[str, str]] = field(default_factory=set)  # (tenant, customer) landed
    altered: list[Altered] = field(default_factory=list)  # landing files changed since landing

    def record(self, outcome: str, reason: str, count: int) -> None:
        """Count ``count`` lines of one outcome (accepted | duplicate | rejected + reason)."""
        self.events_read += count
        if outcome == ACCEPTED:
            self.bronze_rows += count
        elif outcome == DUPLICATE:
            self.duplicates += count
        else:
            self.quarantined[reason] += count

    def add(self, other: Tally) -> None:
        self.batches += other.batches
        self.events_read += other.events_read
        self.blank_lines += other.blank_lines
        self.bronze_rows += other.bronze_rows
        self.duplicates += other.duplicates
        self.quarantined.update(other.quarantined)
        self.customers |= other.customers
        self.altered += other.altered

    @property
    def quarantined_total(self) -> int:
        return sum(self.quarantined.values())


def landing_lines(
    spark: SparkSession, settings: Settings, batches: list[LandingBatch]
) -> DataFrame:
    """Every line of the given landing files with its lineage and 1-based line number.

    The text source keeps each line's raw bytes; line numbers are rebuilt from the file
    split each row came from (position within the split plus the lines of earlier splits).
    ``pos`` is evaluated by two scans of the same files (the block counts, then the lines);
    both plan the same splits in the same order, so they agree.
    """
    from pyspark.sql import functions as F

    paths = [f"{settings.warehouse}/{b.landing_file}" for b in batches]
    raw = (
        spark.read.option("lineSep", "\n")
        .text(paths)
        .select(
            "value",
            F.col("_metadata.file_name").alias("file_name"),
            F.col("_metadata.file_block_start").alias("block"),
            F.monotonically_increasing_id().alias("pos"),
        )
    )
    blocks = raw.groupBy("file_name", "block").agg(
        F.min("pos").alias("first_pos"), F.count("*").alias("n")
    )
    offsets = []
    running: dict[str, int] = {}
    for row in sorted(blocks.collect(), key=lambda r: (r.file_name, r.block)):
        offsets.append((row.file_name, row.block, row.first_pos, running.get(row.file_name, 0)))
        running[row.file_name] = running.get(row.file_name, 0) + row.n
    offset_frame = spark.createDataFrame(
        offsets, "file_name string, block long, first_pos long, lines_before long"
    )
    meta = (
        spark.createDataFrame(
            [
                (
                    b.landing_file.rsplit("/", 1)[-1],
                    b.tenant_id,
                    b.batch_id,
                    b.received_at,
                    b.landing_file,
                    b.source_time,
                )
                for b in batches
            ],
            "file_name string, tenant_id string, batch_id string, received_at string,"
            " landing_file string, source_time string",
        )
        .withColumn("received_at", F.to_timestamp("received_at"))
        .withColumn("source_time", F.to_timestamp("source_time"))
    )
    return (
        raw.join(F.broadcast(offset_frame), ["file_name", "block"])
        .join(F.broadcast(meta), "file_name")
        .withColumn("line_number", F.col("pos") - F.col("first_pos") + F.col("lines_before") + 1)
        .drop("file_name", "block", "pos", "first_pos", "lines_before")
    )


def known_customers(spark: SparkSession, settings: Settings) -> DataFrame:
    """(tenant_id, customer_id, _known) of the current catalog."""
    from pyspark.sql import functions as F

    customers = current(spark, settings, tables.REF_CUSTOMERS)
    return customers.select("tenant_id", "customer_id", F.lit(True).alias("_known"))


@contextmanager
def admitted(
    spark: SparkSession,
    settings: Settings,
    lines: DataFrame,
    prior: DataFrame,
    altered: dict[str, Altered] | None = None,
) -> Iterator[DataFrame]:
    """Non-blank lines classified: ``outcome`` accepted | duplicate | rejected, with reasons.

    ``prior`` is bronze's (tenant_id, event_id, payload_sha256) minus the lines being
    processed; every line of an ``altered`` batch is rejected, whatever it holds. The
    parsed lines and their identity repeats are cached while the caller's block runs (the
    repeats are ranked on the parsed rows' keys, so those rows are read twice), and
    released after it; ``raw`` is kept for rejected lines only.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    with phase("plan: parse, customers, identity"):
        judged = _judged(spark, settings, lines, altered).persist(StorageLevel.MEMORY_AND_DISK)
        found = repeats(judged, prior).persist(StorageLevel.MEMORY_AND_DISK)
        classified = classify(judged, found).withColumn(
            "raw", F.when(F.col("outcome") == REJECTED, F.col("raw"))
        )
    try:
        yield classified
    finally:
        found.unpersist()
        judged.unpersist()


def _judged(
    spark: SparkSession, settings: Settings, lines: DataFrame, altered: dict[str, Altered] | None
) -> DataFrame:
    """Parsed lines with the customer and landing-integrity verdicts added (no identity)."""
    from pyspark.sql import functions as F

    parsed = parse_lines(lines, settings, load_event_schemas()).drop("value")
    parsed = parsed.join(
        F.broadcast(known_customers(spark, settings)), ["tenant_id", "customer_id"], "left"
    )
    parsed = (
        parsed.withColumn(
            "detail",
            F.when(
                F.col("reason").isNull() & F.col("_known").isNull(),
                F.concat(F.lit("customer "), F.col("customer_id"), F.lit(" is not in the catalog")),
            ).otherwise(F.col("detail")),
        )
        .withColumn(
            "reason",
            F.when(
                F.col("reason").isNull() & F.col("_known").isNull(), F.lit(reasons.UNKNOWN_CUSTOMER)
            ).otherwise(F.col("reason")),
        )
        .drop("_known")
    )
    if altered:
        bad = F.col("batch_id").isin(list(altered))
        details = F.create_map(
            *(F.lit(x) for a in altered.values() for x in (a.batch_id, a.detail))
        )
        parsed = parsed.withColumn(
            "detail", F.when(bad, details[F.col("batch_id")]).otherwise(F.col("detail"))
        ).withColumn(
            "reason",
            F.when(bad, F.lit(reasons.LANDING_CHECKSUM_MISMATCH)).otherwise(F.col("reason")),
        )
    return parsed


def prior_events(spark: SparkSession, settings: Settings, version: int | None = None) -> DataFrame:
    """Identity and lineage of every event bronze held at ``version`` (None: now), any tier."""
    return events_at(spark, settings, version).select(
        "tenant_id", "event_id", "payload_sha256", "batch_id", "line_number"
    )


def quarantine_rows(admitted: DataFrame, now_ts) -> DataFrame:
    from pyspark.sql import functions as F

    return (
        admitted.where(F.col("outcome") == REJECTED)
        .withColumn("quarantined_at", F.lit(now_ts).cast("timestamp"))
        .withColumn("replayed_at", F.lit(None).cast("timestamp"))
        .withColumn("replay_outcome", F.lit(None).cast("string"))
    )


def bronze_rows(admitted: DataFrame, now_ts) -> DataFrame:
    from pyspark.sql import functions as F

    return admitted.where(F.col("outcome") == ACCEPTED).withColumn(
        "ingested_at", F.lit(now_ts).cast("timestamp")
    )


def process_batches(
    spark: SparkSession, settings: Settings, batches: list[LandingBatch], epoch: int
) -> Tally:
    """Land ``batches`` (manifest entries) into bronze, exactly once.

    Safe to repeat after a crash and safe beside a second writer of the same batches: it
    holds the ingest lease, and each write of lines is an insert-only MERGE keyed on
    lineage (`meterlake.delta_io.insert_missing`), so an attempt that another writer got
    ahead of fails its commit, reclassifies against the rows now there, and writes only
    what is missing. Lines are classified against bronze as of one version; if bronze
    moved before this attempt's commit (another writer of bronze), the attempt starts
    again. The batches' accounting rows are appended once each, numbered in commit order
    (`meterlake.delta_io.append_numbered`).
    """
    with hold(settings, INGEST) as lease:
        return retry_conflicts(lambda: _process(spark, settings, batches, epoch, lease), lease)


def _process(
    spark: SparkSession,
    settings: Settings,
    batches: list[LandingBatch],
    epoch: int,
    lease: Lease,
) -> Tally:
    from pyspark.sql import functions as F

    now_ts = settings.now()
    with phase("landing: integrity, lines"):
        altered = altered_batches(spark, settings, batches)
        lines = landing_lines(spark, settings, batches)
    nonblank = lines.where(~F.col("value").rlike(BLANK_LINE))
    batch_ids = [b.batch_id for b in batches]
    in_scope = F.col("batch_id").isin(batch_ids)
    scope = sql_in("t.batch_id", batch_ids)
    with phase("prior identity"):
        read_version = bronze_version(spark, settings)
        prior = prior_events(spark, settings, read_version).where(~in_scope)
    # Cached once, counted first: writing bronze invalidates every cached plan that read
    # bronze (as ``prior`` does), so nothing may use the cache after that write.
    with admitted(spark, settings, nonblank, prior, altered) as judged:
        with phase("run: parse, identity, counts"):
            counts = _counts(judged)
        customers = {(c.tenant_id, c.customer_id) for row in counts for c in row.customers}
        if any(row.outcome == REJECTED for row in counts):  # most batches have none: no commit
            with phase("commit: quarantine"):
                insert_missing(
                    quarantine_rows(judged, now_ts),
                    settings,
                    tables.BRONZE_QUARANTINE,
                    LINEAGE,
                    scope=scope,
                    fence=lease,
                )
        # Keyed on lineage: a line written by this epoch's first attempt, or re-admitted
        # by a quarantine replay meanwhile, is never written twice; nor is one a tier move
        # has taken to cold since (a batch reprocessed after its checkpoint was lost).
        with phase("commit: bronze"):
            moved = (
                tables.read(spark, settings, tables.COLD_EVENTS).where(in_scope).select(*LINEAGE)
            )
            insert_as_of(
                bronze_rows(judged, now_ts).join(moved, LINEAGE, "left_anti"),
                settings,
                tables.BRONZE_EVENTS,
                LINEAGE,
                scope=scope,
                read_version=read_version,
                fence=lease,
            )
    tally, rows = _account(batches, counts, epoch, now_ts)
    tally.customers = customers
    tally.altered = list(altered.values())
    with phase("commit: batch accounting"):
        append_numbered(
            spark,
            settings,
            tables.BRONZE_BATCHES,
            rows,
            key="batch_id",
            number="ingest_seq",
            fence=lease,
        )
    return tally


def _counts(judged: DataFrame) -> list:
    """Lines per (batch_id, outcome, reason), with the customers given new events.

    One job for both: each action costs a plan and a job on the driver, the fixed cost of
    a small micro-batch."""
    from pyspark.sql import functions as F

    customer = F.struct("tenant_id", "customer_id")
    return (
        judged.groupBy("batch_id", "outcome", F.coalesce("reason", F.lit("")).alias("reason"))
        .agg(
            F.count("*").alias("count"),
            F.collect_set(F.when(F.col("outcome") == ACCEPTED, customer)).alias("customers"),
        )
        .collect()
    )


def _account(batches: list[LandingBatch], counts: list, epoch: int, now_ts) -> tuple[Tally, list]:
    per_batch: dict[str, Tally] = {b.batch_id: Tally(batches=1) for b in batches}
    for row in counts:
        per_batch[row.batch_id].record(row.outcome, row.reason, row["count"])
    total = Tally()
    rows = []
    for batch in batches:
        tally = per_batch[batch.batch_id]
        tally.blank_lines = batch.blank_lines
        total.add(tally)
        rows.append(
            (
                batch.batch_id,
                batch.tenant_id,
                batch.landing_file,
                batch.sha256,
                batch.received,
                batch.lines,
                batch.blank_lines,
                tally.events_read,
                tally.bronze_rows,
                tally.duplicates,
                tally.quarantined_total,
                dict(tally.quarantined),
                epoch,
                now_ts,
            )
        )
    return total, rows
