"""``audit.tiering_log``: the append-only record of every tiering step, and what it says
about moves that have finished and moves a crash interrupted.

A move is ``copied`` → ``verified`` → ``deleted`` (from bronze, with the bronze version of
the delete commit); ``abandoned`` marks a move whose copy a later run discarded because
its rows never left bronze. The delete commit carries ``tier:<move_id>`` as its Delta
``userMetadata``, so a move that crashed after deleting but before logging it is still
found, by the reads and by the next run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.delta_io import append

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from meterlake.config import Settings

COPIED = "copied"
VERIFIED = "verified"
DELETED = "deleted"
ABANDONED = "abandoned"
DOWNSAMPLED = "downsampled"
EXPIRED = "expired"
VACUUMED = "vacuumed"
COMMIT_TAG = "tier:"


@dataclass(frozen=True)
class Step:
    move_id: str
    tenant_id: str | None
    step: str
    source: str
    target: str | None = None
    billing_date: date | None = None
    rows: int = 0
    checksum: str | None = None
    bronze_version: int | None = None
    detail: str | None = None


def record(spark: SparkSession, settings: Settings, steps: list[Step]) -> None:
    """Append ``steps``, stamped with the settings' clock."""
    if not steps:
        return
    at = settings.now()
    rows = [
        (
            s.move_id, at, s.tenant_id, s.step, s.source, s.target, s.billing_date, s.rows,
            s.checksum, s.bronze_version, s.detail,
        )
        for s in steps
    ]  # fmt: skip
    frame = spark.createDataFrame(rows, schema=tables.nullable_schema(tables.AUDIT_TIERING_LOG))
    append(frame, settings, tables.AUDIT_TIERING_LOG)


@dataclass(frozen=True)
class MoveStates:
    """What the log says about moves: the bronze version each finished move's delete
    committed at, the moves still open (copied, neither deleted nor abandoned), and the
    oldest bronze version a vacuum left readable."""

    deleted: dict[str, int]
    open: set[str]
    vacuum_floor: int


def move_states(spark: SparkSession, settings: Settings) -> MoveStates:
    from pyspark.sql import functions as F

    rows = (
        tables.read(spark, settings, tables.AUDIT_TIERING_LOG)
        .where(F.col("step").isin(COPIED, DELETED, ABANDONED, VACUUMED))
        .select("move_id", "step", "bronze_version")
        .distinct()
        .collect()
    )
    deleted = {r.move_id: r.bronze_version for r in rows if r.step == DELETED}
    closed = set(deleted) | {r.move_id for r in rows if r.step == ABANDONED}
    opened = {r.move_id for r in rows if r.step == COPIED} - closed
    floor = max((r.bronze_version for r in rows if r.step == VACUUMED), default=0)
    return MoveStates(deleted, opened, floor)


def delete_commits(spark: SparkSession, settings: Settings, moves: set[str]) -> dict[str, int]:
    """Bronze versions of the delete commits of ``moves`` found in bronze's history."""
    from delta.tables import DeltaTable

    if not moves:
        return {}
    history = DeltaTable.forPath(spark, tables.BRONZE_EVENTS.path(settings)).history()
    found = {}
    for row in history.where(history.userMetadata.startswith(COMMIT_TAG)).collect():
        move = row.userMetadata.removeprefix(COMMIT_TAG)
        if move in moves:
            found[move] = row.version
    return found
