"""The few adapters that write Delta: plain appends, versioned idempotent appends,
insert-if-absent appends keyed on lineage, overwrites and conditional upserts.

Two ways to make a retried write exactly-once, each used where it is cheaper:

- ``append(..., txn=(app_id, version))``: Delta records the highest ``txnVersion`` per
  ``txnAppId`` and skips a repeat. Looking it up rebuilds the table state, about a second
  per commit here, so it suits rare writes (catalog loads).
- `append_missing`: an anti-join against the keys already in the table, limited to the
  slice being written (e.g. ``batch_id IN (...)``, which data skipping prunes). Used by the
  landing → bronze micro-batches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from meterlake.config import Settings
    from meterlake.tables import TableSpec


def _conform(df: DataFrame, spec: TableSpec) -> DataFrame:
    from pyspark.sql import functions as F

    return df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in spec.schema])


def append(
    df: DataFrame, settings: Settings, spec: TableSpec, *, txn: tuple[str, int] | None = None
) -> None:
    """Append ``df`` to ``spec``; with ``txn=(app_id, version)`` the append is skipped when a
    write with that pair already committed (Delta idempotent writes).

    ``df`` is conformed to the table's declared schema (column order and types) first, so a
    transform cannot widen a table by accident.
    """
    writer = _conform(df, spec).write.format("delta").mode("append")
    if spec.compression:
        writer = writer.option("compression", spec.compression)
    if txn is not None:
        writer = writer.option("txnAppId", txn[0]).option("txnVersion", txn[1])
    writer.save(spec.path(settings))


def append_missing(
    df: DataFrame, settings: Settings, spec: TableSpec, keys: list[str], scope: Column
) -> None:
    """Append the rows of ``df`` whose ``keys`` are not yet in ``spec`` (within ``scope``).

    Equivalent to a MERGE that only inserts, without rewriting any file, so it is allowed on
    append-only tables. ``scope`` must cover every row ``df`` can hold.
    """
    from pyspark.sql import functions as F

    existing = (
        df.sparkSession.read.format("delta").load(spec.path(settings)).where(scope).select(*keys)
    )
    append(df.join(F.broadcast(existing.distinct()), keys, "left_anti"), settings, spec)


def overwrite(df: DataFrame, settings: Settings, spec: TableSpec) -> None:
    """Replace the contents of ``spec`` with ``df`` in one commit (history is kept)."""
    _conform(df, spec).write.format("delta").mode("overwrite").save(spec.path(settings))


def upsert(
    df: DataFrame,
    settings: Settings,
    spec: TableSpec,
    keys: tuple[str, ...],
    *,
    changed: str,
    scope: str = "",
) -> None:
    """MERGE ``df`` into ``spec`` on ``keys`` (null-safe): insert new rows, and update a
    matched row only where the SQL condition ``changed`` (over ``t.`` and ``s.``) holds, so
    rewriting identical rows writes nothing. ``scope`` (over ``t.``) prunes the target."""
    from delta.tables import DeltaTable

    condition = " AND ".join([f"t.{key} <=> s.{key}" for key in keys] + ([scope] if scope else []))
    (
        DeltaTable.forPath(df.sparkSession, spec.path(settings))
        .alias("t")
        .merge(_conform(df, spec).alias("s"), condition)
        .whenMatchedUpdateAll(condition=changed)
        .whenNotMatchedInsertAll()
        .execute()
    )


def delete_matching(
    keys: DataFrame,
    settings: Settings,
    spec: TableSpec,
    on: list[str],
    *,
    metadata: str | None = None,
) -> None:
    """Delete the rows of ``spec`` that match a row of ``keys`` on ``on``, in one commit.

    On an append-only table the guard is lifted for exactly this commit and restored
    whatever happens. ``metadata`` is recorded as the commit's ``userMetadata``, so a
    caller that crashed after the commit can find it in the table's history.
    """
    from delta.tables import DeltaTable

    spark = keys.sparkSession
    path = spec.path(settings)
    append_only = spec.properties.get("delta.appendOnly") == "true"

    def guard(value: str) -> None:
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.appendOnly' = '{value}')")

    if append_only:
        guard("false")
    try:
        if metadata is not None:
            spark.conf.set("spark.databricks.delta.commitInfo.userMetadata", metadata)
        try:
            condition = " AND ".join(f"t.{key} = k.{key}" for key in on)
            (
                DeltaTable.forPath(spark, path)
                .alias("t")
                .merge(keys.alias("k"), condition)
                .whenMatchedDelete()
                .execute()
            )
        finally:
            spark.conf.unset("spark.databricks.delta.commitInfo.userMetadata")
    finally:
        if append_only:
            guard("true")
