"""One read of raw events across tiers, so lineage, re-billing, deduplication and
rollups work for events of any age.

``events_at(version)`` is what bronze held at that Delta version, whichever tier the rows
are in now: bronze at ``version`` (time travel) plus the cold rows of every move whose
delete from bronze committed at or before it. A row being moved is therefore seen exactly
once at every moment: from bronze until its delete commits, from cold after. Once a vacuum
has removed the files older versions need, a version below the vacuum's floor reads as
the floor (the oldest version still whole).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.tiering.log import delete_commits, move_states

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from meterlake.config import Settings

BRONZE_COLUMNS = [f.name for f in tables.BRONZE_EVENTS.schema]


def moved(spark: SparkSession, settings: Settings) -> tuple[dict[str, int], int]:
    """Every move whose rows have left bronze → the bronze version of its delete commit,
    and the vacuum floor. Moves still open are looked up in bronze's history, so a crash
    between a delete and its log entry hides nothing."""
    states = move_states(spark, settings)
    return {**states.deleted, **delete_commits(spark, settings, states.open)}, states.vacuum_floor


def events_at(spark: SparkSession, settings: Settings, version: int | None = None) -> DataFrame:
    """Raw events as of bronze ``version`` (None: now) across hot and cold, with bronze's
    columns."""
    from pyspark.sql import functions as F

    deleted, floor = moved(spark, settings)
    reader = spark.read.format("delta")
    if version is not None:
        version = max(version, floor)
        reader = reader.option("versionAsOf", version)
    hot = reader.load(tables.BRONZE_EVENTS.path(settings))
    visible = [m for m, at in deleted.items() if version is None or at <= version]
    if not visible:
        return hot
    cold = tables.read(spark, settings, tables.COLD_EVENTS).where(F.col("move_id").isin(visible))
    return hot.unionByName(cold.select(*BRONZE_COLUMNS))


def bronze_version(spark: SparkSession, settings: Settings) -> int:
    from meterlake.delta_io import table_version

    return table_version(spark, tables.BRONZE_EVENTS.path(settings))
