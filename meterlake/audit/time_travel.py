"""An invoice as it was when it was written: the first version of ``billing.invoices``
holding that revision, read with Delta time travel, so an auditor sees the document the
customer was sent even after later revisions (a draft is replaced in place). Lines are
kept per revision (``billing.invoice_lines`` is append-only), so they need no travel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import Row, SparkSession

    from meterlake.config import Settings


@dataclass(frozen=True)
class AsWritten:
    version: int  # the billing.invoices version that first held the revision
    invoice: Row
    lines: list[Row]


def invoice_as_written(spark: SparkSession, settings: Settings, invoice_id: str) -> AsWritten:
    """``invoice_id``'s current revision at the commit that wrote it. A revision, once
    written, stays until replaced, so the versions holding the current one run from that
    commit to now: a binary search over the table's versions finds it."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    path = tables.BILLING_INVOICES.path(settings)
    current = tables.read(spark, settings, tables.BILLING_INVOICES)
    found = current.where(F.col("invoice_id") == invoice_id).first()
    if found is None:
        raise ConfigError(f"invoice: no invoice {invoice_id!r}")
    wanted = (F.col("invoice_id") == invoice_id) & (F.col("revision") == found.revision)

    def at(version: int) -> Row | None:
        frame = spark.read.format("delta").option("versionAsOf", version).load(path)
        return frame.where(wanted).first()

    history = DeltaTable.forPath(spark, path).history()
    low, high = history.agg(F.min("version"), F.max("version")).first()
    while low < high:
        middle = (low + high) // 2
        if at(middle) is None:
            low = middle + 1
        else:
            high = middle
    lines = (
        tables.read(spark, settings, tables.BILLING_INVOICE_LINES)
        .where(wanted)
        .orderBy("line_no")
        .collect()
    )
    return AsWritten(low, at(low), lines)
