"""The few adapters that write Delta: idempotent appends keyed by (app id, version).

Delta records the highest ``txnVersion`` committed per ``txnAppId``; a retried write with
the same pair is skipped, which is what makes reruns after a crash exactly-once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from meterlake.config import Settings
    from meterlake.tables import TableSpec


def append_once(
    df: DataFrame, settings: Settings, spec: TableSpec, app_id: str, version: int
) -> None:
    """Append ``df`` to ``spec`` unless a write with (``app_id``, ``version``) already committed.

    ``df`` is conformed to the table's declared schema (column order and types) first, so a
    transform cannot widen a table by accident.
    """
    from pyspark.sql import functions as F

    conformed = df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in spec.schema])
    (
        conformed.write.format("delta")
        .mode("append")
        .option("txnAppId", app_id)
        .option("txnVersion", version)
        .save(spec.path(settings))
    )
