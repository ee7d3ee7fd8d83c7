"""Usage that reached bronze after the final invoice it was on time for.

A final invoice prices what bronze held when it was made: every landing batch up to the
``ingest_seq`` it records (bronze.batches numbers its micro-batches in commit order). A
final run first waits until no landing writer can still commit with a receipt time at or
before its ``as_of`` (`meterlake.ingest.landing.landing_watermark`), so a batch received
before a period's close normally is in its invoice. One that commits later anyway (a
writer that outlived the commit bound, a restore) must not be dropped: billing treats its
usage as received at the close of the last final invoice that missed it, so the first
later invoice carries it as an ``adjustment`` (DESIGN.md §4), reconciliation lists it as a
pending adjustment until then, and a customer with no later period has it reported as
unbilled.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.clock import from_table

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from meterlake.catalog.model import Customer
    from meterlake.config import Settings

Late = dict[tuple[str, str, str], datetime]  # (tenant, customer, batch_id) → treated as received


def late_receipts(
    spark: SparkSession, settings: Settings, customers: list[Customer], as_of: datetime
) -> Late:
    """For every (customer, batch) whose usage a final invoice (closed by ``as_of``) missed:
    the close of the last such invoice, the instant that usage counts as received."""
    from pyspark.sql import functions as F

    wanted = {(c.tenant, c.id) for c in customers}
    finals = (
        tables.read(spark, settings, tables.BILLING_INVOICES)
        .where(
            (F.col("status") == "final")
            & F.col("ingest_seq").isNotNull()
            & (F.col("close_at") <= F.lit(as_of))
        )
        .select("tenant_id", "customer_id", "close_at", "ingest_seq")
        .collect()
    )
    fences: dict[tuple[str, str], list[tuple[datetime, int]]] = defaultdict(list)
    for row in finals:
        if (row.tenant_id, row.customer_id) in wanted:
            fences[row.tenant_id, row.customer_id].append(
                (from_table(row.close_at), row.ingest_seq)
            )
    if not fences:
        return {}
    marks = spark.createDataFrame(
        sorted({(t, close, seq) for (t, _), found in fences.items() for close, seq in found}),
        "m_tenant string, m_close timestamp, m_seq long",
    )
    batches = tables.read(spark, settings, tables.BRONZE_BATCHES).where(
        F.col("ingest_seq").isNotNull()
    )
    missed = (
        batches.join(
            F.broadcast(marks),
            (F.col("tenant_id") == F.col("m_tenant"))
            & (F.col("ingest_seq") > F.col("m_seq"))
            & (F.col("received_at") < F.col("m_close")),
        )
        .select("batch_id", "tenant_id", "received_at", "ingest_seq")
        .distinct()
        .collect()
    )
    late: Late = {}
    for batch in missed:
        received = from_table(batch.received_at)
        for (tenant, customer), found in fences.items():
            if tenant != batch.tenant_id:
                continue
            closes = [c for c, seq in found if seq < batch.ingest_seq and received < c]
            if closes:
                late[tenant, customer, batch.batch_id] = max(closes)
    return late


def with_late_receipts(events: DataFrame, late: Late) -> DataFrame:
    """``events`` with ``received_at`` moved to the instant each late batch counts as
    received (other events unchanged)."""
    from pyspark.sql import functions as F

    if not late:
        return events
    moved = events.sparkSession.createDataFrame(
        [(*key, at) for key, at in late.items()],
        "l_tenant string, l_customer string, l_batch string, l_received timestamp",
    )
    return (
        events.join(
            F.broadcast(moved),
            (F.col("tenant_id") == F.col("l_tenant"))
            & (F.col("customer_id") == F.col("l_customer"))
            & (F.col("batch_id") == F.col("l_batch")),
            "left",
        )
        .withColumn(
            "received_at", F.greatest("received_at", F.coalesce("l_received", "received_at"))
        )
        .drop("l_tenant", "l_customer", "l_batch", "l_received")
    )
