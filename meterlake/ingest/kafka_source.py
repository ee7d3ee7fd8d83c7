"""The usage-events topic as the bronze stream's source (``--source kafka``).

Spark's Kafka connector plans each micro-batch's offsets and writes them to the
checkpoint before the batch runs, so a rerun after a crash reads exactly the same
records. The records are archived first: per tenant, their values in partition and
offset order become one landing batch, through the same `land_stream` as a file or an
API request, so the raw records stay in landing, immutable and checksummed; a rerun of
the epoch makes the same bytes, finds their manifest entry and lands nothing twice. Like
every landing batch, an archived one is received when it commits to landing; the newest
record timestamp in it (when the capture API published them) is kept as its
``source_time``, and the batch is named after the partitions and offsets it holds.
"""

from __future__ import annotations

import io
from collections import defaultdict
from typing import TYPE_CHECKING

from meterlake.clock import from_table
from meterlake.ingest.kafka_topic import ensure_topic, tenant_of
from meterlake.ingest.landing import LandingBatch, land_stream
from meterlake.ingest.stream import Source

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Row, SparkSession

    from meterlake.config import Settings

CHECKPOINTS = "_checkpoints/kafka_to_bronze"


def kafka_source(spark: SparkSession, settings: Settings) -> Source:
    """The topic from its earliest offsets, ``METERLAKE_KAFKA_MAX_RECORDS_PER_BATCH`` records
    per micro-batch; records expired from the broker before they were read stop the
    stream (``failOnDataLoss``) rather than pass unnoticed."""
    kafka = settings.kafka
    ensure_topic(settings)
    frame = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", kafka.bootstrap)
        .option("subscribe", kafka.topic)
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", kafka.max_records_per_batch)
        .option("failOnDataLoss", "true")
        .load()
    )

    def batches(batch: DataFrame) -> list[LandingBatch]:
        records = batch.select("key", "value", "partition", "offset", "timestamp").collect()
        return archive(settings, kafka.topic, records)

    return Source(frame, f"{settings.warehouse}/{CHECKPOINTS}/{kafka.topic}", batches)


def archive(settings: Settings, topic: str, records: list[Row]) -> list[LandingBatch]:
    """Land ``records`` as one batch per tenant (see the module's docstring)."""
    by_tenant: dict[str, list[Row]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_tenant[tenant_of(record.key)].append(record)
    landed = []
    for tenant, rows in sorted(by_tenant.items()):
        data = b"".join(bytes(r.value or b"") + b"\n" for r in rows)
        result = land_stream(
            settings,
            io.BytesIO(data),
            tenant,
            original_name=f"kafka:{topic}:{_offsets(rows)}",
            source="kafka",
            refuse_non_jsonl=False,
            source_time=from_table(max(r.timestamp for r in rows)),
        )
        landed.append(result.batch)
    return landed


def _offsets(rows: list[Row]) -> str:
    """``p0=12-40,p3=7-9``: the offset range of each partition in the batch."""
    spans: dict[int, list[int]] = {}
    for row in rows:
        low, high = spans.setdefault(row.partition, [row.offset, row.offset])
        spans[row.partition] = [min(low, row.offset), max(high, row.offset)]
    return ",".join(f"p{p}={low}-{high}" for p, (low, high) in sorted(spans.items()))
