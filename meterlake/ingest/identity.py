"""Identity: ``(tenant_id, event_id)`` is unique for all time. Pure DataFrame functions.

The first copy of an event stays. A later copy with the same payload is a duplicate
(dropped and counted); with a different payload it is a ``duplicate_conflict`` (quarantined).
"First" means: already in bronze, else earliest by (received_at, batch_id, line_number).

"The same payload" is compared through ``payload_sha256``, versioned by a prefix:

- ``v2:`` (`payload_hash`): the sha256 of the event's fields as the parser read them (ids,
  type, timestamp and quantity as sent, dimensions, schema version, SDK, and the canonical
  JSON of ``properties`` and ``extra`` bronze keeps anyway). Key order and whitespace do
  not matter, nor whether the default ``schema_version`` is sent or left out (v1 called a
  resend that started naming it a conflict). It costs a fraction of what hashing the whole
  re-serialised document did.
- none (bronze rows written before v2): the sha256 of the whole line's canonical JSON
  (`legacy_payload_hash`), computed for a new line only when its id meets such a row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meterlake.ingest import reasons

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

HASH_V2 = "v2:"
ACCEPTED = "accepted"
DUPLICATE = "duplicate"
REJECTED = "rejected"
IDENTITY = ("tenant_id", "event_id")
ORDER = ("received_at", "batch_id", "line_number")  # which copy came first
KEY = ("batch_id", "line_number")  # one line of the lines being classified


def payload_hash(fields: list[Column]) -> Column:
    """The v2 payload hash of ``fields`` (named columns; nulls left out, names kept)."""
    from pyspark.sql import functions as F

    return F.concat(F.lit(HASH_V2), F.sha2(F.to_json(F.struct(*fields)), 256))


def legacy_payload_hash(value: str = "value") -> Column:
    """The hash bronze stored before v2: the line's whole canonical JSON."""
    from pyspark.sql import functions as F

    return F.sha2(F.expr(f"to_json(try_parse_json({value}))"), 256)


def repeats(lines: DataFrame, prior: DataFrame) -> DataFrame:
    """The valid lines whose outcome depends on other rows: a later copy of an identity in
    this batch, or one bronze already holds. Columns ``batch_id, line_number`` (the key
    back to ``lines``), ``_rank`` (1 = earliest by received_at, batch_id, line_number),
    ``_first_sha`` (the earliest copy's hash) and ``_prior_sha`` (bronze's hash, or null).

    Ranks and joins the key columns only: shuffling whole parsed rows to rank them and
    again to meet bronze cost more than the parse. ``prior`` holds ``tenant_id, event_id,
    payload_sha256`` of events already in bronze, excluding the lines the caller is
    (re)processing, so a retried batch classifies the same way as its first attempt.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = Window.partitionBy(*IDENTITY).orderBy(*ORDER)
    keys = lines.where(F.col("reason").isNull()).select(*IDENTITY, *ORDER, "payload_sha256")
    ranked = keys.withColumn("_rank", F.row_number().over(order)).withColumn(
        "_first_sha", F.first("payload_sha256").over(order)
    )
    known = prior.select(*IDENTITY, F.col("payload_sha256").alias("_prior_sha"))
    return (
        ranked.join(known, list(IDENTITY), "left")
        .where((F.col("_rank") > 1) | F.col("_prior_sha").isNotNull())
        .select(*KEY, "_rank", "_first_sha", "_prior_sha")
    )


def classify(lines: DataFrame, found: DataFrame) -> DataFrame:
    """Add ``outcome`` (accepted | duplicate | rejected) to parsed lines, given their
    `repeats` (``found``).

    Lines with a ``reason`` already are rejected as they are. A valid line not among the
    repeats is the first copy of its identity: accepted. A repeat is a duplicate when its
    payload is the first copy's (bronze's where bronze has one), else a rejected
    ``duplicate_conflict``. One pass: no split and union, which would parse every line
    twice. ``lines`` keeps ``raw``, the line's bytes, for the old hash version.
    """
    from pyspark.sql import functions as F

    valid = F.col("reason").isNull()
    joined = lines.join(found, list(KEY), "left")
    prior_sha = F.col("_prior_sha")
    # A prior row of the old version is compared in its own terms (rare: a resend).
    comparable = F.when(prior_sha.startswith(HASH_V2), F.col("payload_sha256")).otherwise(
        legacy_payload_hash("CAST(raw AS STRING)")
    )
    same = F.when(prior_sha.isNull(), F.col("payload_sha256") == F.col("_first_sha")).otherwise(
        comparable == prior_sha
    )
    is_original = prior_sha.isNull() & (F.coalesce("_rank", F.lit(1)) == 1)
    conflict = F.concat(
        F.lit("event_id "),
        F.col("event_id"),
        F.lit(" was already received with a different payload"),
    )
    outcome = (
        F.when(~valid, F.lit(REJECTED))
        .when(is_original, F.lit(ACCEPTED))
        .when(same, F.lit(DUPLICATE))
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
