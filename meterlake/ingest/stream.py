"""The bronze Structured Streaming query of ``pipeline run`` and ``pipeline stream``.

Its source is either the landing manifest directory (one JSON entry per committed batch,
so the stream only ever sees complete batches) or the Kafka topic, whose records each
micro-batch first archives into landing as batches (`meterlake.ingest.kafka_source`).
Either way a micro-batch ends as landing batches for `process_batches`; the checkpoint
records what each epoch took (manifest entries or topic offsets), and a repeated epoch
makes the same batches, which `process_batches` completes rather than doubles.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from meterlake.ingest.bronze import Tally, process_batches
from meterlake.ingest.landing import LandingBatch, ensure_landing, manifest_location
from meterlake.ingest.progress import record_progress
from meterlake.lease import INGEST, hold
from meterlake.phases import phase
from meterlake.warehouse import require_tables

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from meterlake.config import Settings

CHECKPOINT = "_checkpoints/landing_to_bronze"
Progress = Callable[[str], None]
OnBatch = Callable[[Tally], None]


@dataclass(frozen=True)
class Source:
    """A streaming source, where its progress is checkpointed, and how one micro-batch of
    it becomes landing batches."""

    frame: DataFrame
    checkpoint: str
    batches: Callable[[DataFrame], list[LandingBatch]]


def checkpoint_path(settings: Settings) -> str:
    return f"{settings.warehouse}/{CHECKPOINT}"


def landing_source(spark: SparkSession, settings: Settings) -> Source:
    """The committed manifest entries, ``METERLAKE_MANIFESTS_PER_BATCH`` per micro-batch.
    Batches archived from Kafka are the Kafka stream's (its checkpoint tracks them)."""
    frame = (
        spark.readStream.schema(_manifest_schema())
        .option("maxFilesPerTrigger", settings.manifests_per_batch)
        .json(manifest_location(settings))
    )

    def batches(batch: DataFrame) -> list[LandingBatch]:
        entries = (LandingBatch(**row.asDict()) for row in batch.collect())
        return [entry for entry in entries if entry.source != "kafka"]

    return Source(frame, checkpoint_path(settings), batches)


def open_source(spark: SparkSession, settings: Settings, source: str) -> Source:
    if source == "kafka":
        from meterlake.ingest.kafka_source import kafka_source

        return kafka_source(spark, settings)
    return landing_source(spark, settings)


def _manifest_schema():
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    kinds = {"bytes": LongType(), "lines": LongType(), "blank_lines": LongType()}
    return StructType(
        [StructField(f.name, kinds.get(f.name, StringType()), True) for f in fields(LandingBatch)]
    )


def run_landing_to_bronze(
    spark: SparkSession,
    settings: Settings,
    *,
    source: str = "landing",
    continuous: bool = False,
    progress: Progress = print,
    on_batch: OnBatch | None = None,
) -> Tally:
    """Take everything ``source`` (landing or kafka) holds into bronze and stop (or keep
    going if continuous).

    After each micro-batch the progress mark is recorded and ``on_batch`` gets its tally.
    Continuous mode stops cleanly at a batch boundary on SIGTERM or SIGINT. The query holds
    the ingest lease while it runs: two processes on one checkpoint would replay each
    other's epochs, so a second ``pipeline run`` waits (``--wait``) or is refused.
    """
    with hold(settings, INGEST):
        return _run(spark, settings, source, continuous, progress, on_batch)


def _run(
    spark: SparkSession,
    settings: Settings,
    source: str,
    continuous: bool,
    progress: Progress,
    on_batch: OnBatch | None,
) -> Tally:
    require_tables(spark, settings)
    ensure_landing(settings)
    reader = open_source(spark, settings, source)
    total = Tally()
    busy = threading.Lock()
    started = time.monotonic()

    stopping = threading.Event()

    def handle(frame, epoch_id: int) -> None:
        with busy:
            if stopping.is_set():
                raise _Stopping("stop requested; this epoch is left for the next run")
            with phase("stream: source batches"):
                batches = reader.batches(frame)
            if not batches:
                return
            tally = process_batches(spark, settings, batches, epoch_id)
            record_progress(settings, max(b.received for b in batches))
            total.add(tally)
            progress(
                f"epoch {epoch_id}: {tally.batches} landing batch(es), {tally.events_read} events"
                f" → {tally.bronze_rows} bronze, {tally.duplicates} duplicates,"
                f" {tally.quarantined_total} quarantined ({time.monotonic() - started:.1f}s)"
            )
            if on_batch is not None:
                on_batch(tally)

    writer = reader.frame.writeStream.foreachBatch(handle).option(
        "checkpointLocation", reader.checkpoint
    )
    if continuous:
        writer = writer.trigger(processingTime=f"{settings.stream_interval_seconds} seconds")
    else:
        writer = writer.trigger(availableNow=True)
    query = writer.start()
    if not continuous:
        query.awaitTermination()
        return total
    requested = threading.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, lambda *_: requested.set()) for sig in signals}
    try:
        while query.isActive and not requested.is_set():
            query.awaitTermination(1)
        with busy:  # let the batch in flight finish; later epochs refuse to start
            stopping.set()
        query.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not requested.is_set() and query.exception():
        raise query.exception()
    progress(f"stopped at a batch boundary after {total.batches} landing batch(es)")
    return total


class _Stopping(RuntimeError):
    """Raised inside a micro-batch that starts after a stop was requested, so it is not
    committed to the checkpoint and the next run takes it."""
