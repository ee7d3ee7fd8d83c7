"""Identity: ``(tenant_id, event_id)`` is unique for all time. Pure DataFrame functions.

The first copy of an event stays. A later copy with the same payload is a duplicate
(dropped and counted); with a different payload it is a ``duplicate_conflict`` (quarantined).
"First" means: already in bronze, else earliest by (received_at, batch_id, line_number).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meterlake.ingest import reasons

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
REJECTED = "rejected"
IDENTITY = ("tenant_id", "event_id")


def classify(valid: DataFrame, prior: DataFrame) -> DataFrame:
    """Add ``outcome`` (accepted | duplicate | rejected) to valid events, with ``reason`` set
    to ``duplicate_conflict`` for rejected ones.

    ``prior`` holds ``tenant_id, event_id, payload_sha256`` of events already in bronze,
    excluding the ones the caller is (re)processing, so a retried batch classifies the
    same way as its first attempt.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = Window.partitionBy(*IDENTITY).orderBy("received_at", "batch_id", "line_number")
    ranked = valid.withColumn("_rank", F.row_number().over(order)).withColumn(
        "_first_sha", F.first("payload_sha256").over(order)
    )
    known = prior.select(*IDENTITY, F.col("payload_sha256").alias("_prior_sha"))
    joined = ranked.join(known, list(IDENTITY), "left")
    reference = F.coalesce(F.col("_prior_sha"), F.col("_first_sha"))
    is_original = F.col("_prior_sha").isNull() & (F.col("_rank") == 1)
    same_payload = F.col("payload_sha256") == reference
    outcome = (
        F.when(is_original, F.lit(ACCEPTED))
        .when(same_payload, F.lit(DUPLICATE))
        .otherwise(F.lit(REJECTED))
    )
    conflict_detail = F.concat(
        F.lit("event_id "),
        F.col("event_id"),
        F.lit(" was already received with a different payload"),
    )
    return (
        joined.withColumn("outcome", outcome)
        .withColumn(
            "reason", F.when(F.col("outcome") == REJECTED, F.lit(reasons.DUPLICATE_CONFLICT))
        )
        .withColumn("detail", F.when(F.col("outcome") == REJECTED, conflict_detail))
        .drop("_rank", "_first_sha", "_prior_sha")
    )
