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


def classify(lines: DataFrame, prior: DataFrame) -> DataFrame:
    """Add ``outcome`` (accepted | duplicate | rejected) to parsed lines.

    Lines with a ``reason`` already are rejected as they are. Valid ones are ranked per
    identity; a later copy becomes a duplicate or, with a different payload, a rejected
    ``duplicate_conflict``. ``prior`` holds ``tenant_id, event_id, payload_sha256`` of events
    already in bronze, excluding the lines the caller is (re)processing, so a retried batch
    classifies the same way as its first attempt. One pass: no split and union, which
    would parse every line twice.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    valid = F.col("reason").isNull()
    order = Window.partitionBy(*IDENTITY, valid).orderBy("received_at", "batch_id", "line_number")
    ranked = lines.withColumn("_rank", F.row_number().over(order)).withColumn(
        "_first_sha", F.first("payload_sha256").over(order)
    )
    known = prior.select(*IDENTITY, F.col("payload_sha256").alias("_prior_sha"))
    joined = ranked.join(known, list(IDENTITY), "left")
    reference = F.coalesce(F.col("_prior_sha"), F.col("_first_sha"))
    is_original = F.col("_prior_sha").isNull() & (F.col("_rank") == 1)
    conflict = F.concat(
        F.lit("event_id "),
        F.col("event_id"),
        F.lit(" was already received with a different payload"),
    )
    outcome = (
        F.when(~valid, F.lit(REJECTED))
        .when(is_original, F.lit(ACCEPTED))
        .when(F.col("payload_sha256") == reference, F.lit(DUPLICATE))
        .otherwise(F.lit(REJECTED))
    )
    return (
        joined.withColumn("outcome", outcome)
        .withColumn(
            "detail",
            F.when(valid & (F.col("outcome") == REJECTED), conflict).otherwise(F.col("detail")),
        )
        .withColumn(
            "reason",
            F.when(
                valid & (F.col("outcome") == REJECTED), F.lit(reasons.DUPLICATE_CONFLICT)
            ).otherwise(F.col("reason")),
        )
        .drop("_rank", "_first_sha", "_prior_sha")
    )
