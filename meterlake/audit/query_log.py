"""``audit.query_log``: one append-only row per read, so an auditor can answer "who looked
at which tenant's data, when, and how much of it".

The CLI, the notebooks and server mode run Spark and append their row directly. The
API's reads wait as files (``read_spool``) until ``fold_reads`` moves them in: at the
next direct log write, in the hourly views task, and in erasure and its verification
before they look. A fold inserts only the reads not yet in the table (one MERGE on
``query_id``), then deletes the files, so two folds at once, or a fold killed between
the two steps, log each read once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meterlake import tables
from meterlake.audit.read_spool import log_entry, spooled_reads
from meterlake.delta_io import append, insert_missing
from meterlake.storage import storage_for

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from meterlake.audit.access import Principal
    from meterlake.config import Settings


def log_query(
    spark: SparkSession,
    settings: Settings,
    principal: Principal,
    command: str,
    arguments: dict[str, Any],
    tenant: str | None,
    rows: int,
) -> str:
    """Append one read to the log (and fold the API's reads waiting); returns its id."""
    row = log_entry(principal, command, arguments, tenant, rows)
    frame = spark.createDataFrame([row], tables.nullable_schema(tables.AUDIT_QUERY_LOG))
    append(frame, settings, tables.AUDIT_QUERY_LOG)
    fold_reads(spark, settings)
    return row[0]


def fold_reads(spark: SparkSession, settings: Settings) -> int:
    """Move the API's spooled reads into ``audit.query_log``; returns how many were
    waiting. Safe beside another fold and after a fold killed at any point."""
    storage = storage_for(settings)
    keys, rows = spooled_reads(storage)
    if rows:
        spec = tables.AUDIT_QUERY_LOG
        frame = spark.createDataFrame(rows, tables.nullable_schema(spec))
        earliest = min(row[1] for row in rows).isoformat()  # prunes the files the MERGE reads
        insert_missing(frame, settings, spec, ["query_id"], scope=f"t.at >= TIMESTAMP '{earliest}'")
    for key in keys:
        storage.delete(key)
    return len(rows)
