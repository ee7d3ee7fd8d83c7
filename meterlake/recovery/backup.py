"""``meterlake backup create --to PATH`` and ``meterlake backup verify --backup PATH``.

A backup is a warehouse: every table copied at one version (recorded with the copy time in
``_backup.json``), the landing zone with each file's sha256 checked, and the access keys.
It can be used as it is, or replayed (``meterlake replay --from BACKUP --to NEW``).
Delta history is not copied: the backup's tables start at the copied state.

Verification compares the backup with the live warehouse *at the versions the backup
recorded* (for a plain file copy without ``_backup.json``: at the backup's own latest
versions, which a file copy keeps), so a backup taken last week still verifies: per
table and partition, the row count and an order-independent checksum of every column;
every landing file of the backup against its manifest; every batch the source had
received when the backup was taken present in it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.clock import audit_now, format_instant, parse_instant
from meterlake.delta_io import per_table
from meterlake.ingest.integrity import check_landing
from meterlake.ingest.landing import manifest_entries
from meterlake.recovery.copy import Progress, copy_keys, copy_landing, copy_tables, require_new
from meterlake.storage import storage_for
from meterlake.warehouse import init_warehouse, require_tables

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from meterlake.config import Settings

MANIFEST = "_backup.json"
BACKUPS_DIR = "_backups"  # in the source: one record per backup taken of it


@dataclass(frozen=True)
class BackupManifest:
    source: str
    created_at: str
    versions: dict[str, int]  # qualified table name → source version copied
    landing_batches: int


def create_backup(
    spark: SparkSession, source: Settings, target: Settings, progress: Progress = print
) -> BackupManifest:
    """Copy ``source`` into the new warehouse ``target`` (module docstring)."""
    require_tables(spark, source)
    require_new(spark, source, target)
    created_at = source.now()
    init_warehouse(spark, target)
    versions = copy_tables(spark, source, target, tables.ALL_TABLES)
    progress(f"{len(versions)} tables copied")
    copy_keys(source, target)
    landing = copy_landing(source, target, progress)
    manifest = BackupManifest(
        source.warehouse, format_instant(created_at), versions, landing.batches
    )
    body = json.dumps(manifest.__dict__, indent=2, sort_keys=True) + "\n"
    storage_for(target).write(MANIFEST, body.encode())
    # The source remembers its copies: an erasure cannot reach them, gdpr verify lists them.
    made = {"target": target.warehouse, "created_at": format_instant(audit_now())}
    record = json.dumps(made, sort_keys=True).encode()
    storage_for(source).create(f"{BACKUPS_DIR}/{uuid.uuid4().hex}.json", record)
    return manifest


def backups_made(source: Settings, *, before: datetime | None = None) -> list[dict[str, str]]:
    """The backups taken of ``source`` (target, created_at), oldest first; only those made
    before ``before`` when given."""
    storage = storage_for(source)
    made = []
    for key in storage.keys(BACKUPS_DIR + "/"):
        data = storage.read(key)
        if key.endswith(".json") and data is not None:
            made.append(json.loads(data))
    return sorted(
        (m for m in made if before is None or parse_instant(m["created_at"]) < before),
        key=lambda m: m["created_at"],
    )


@dataclass
class Verification:
    tables: int = 0
    partitions: int = 0
    rows: int = 0
    landing_files: int = 0
    newer_batches: int = 0  # received by the source after the backup was taken
    problems: list[str] = field(default_factory=list)


def _hashable(spec: tables.TableSpec) -> list[Column]:
    """Every column as something xxhash64 takes (maps, which it refuses, as sorted entries)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import MapType

    return [
        F.to_json(F.array_sort(F.map_entries(f.name))) if isinstance(f.dataType, MapType)
        else F.col(f.name)
        for f in spec.schema
    ]  # fmt: skip


def partition_digests(frame: DataFrame, spec: tables.TableSpec) -> dict[str, tuple[int, int]]:
    """Per partition (``-`` for an unpartitioned table): row count and the sum of the rows'
    xxhash64, which does not depend on row order or file layout."""
    from pyspark.sql import functions as F

    keys = [F.col(c).cast("string") for c in spec.partition_by] or [F.lit("-")]
    rows = (
        frame.select(F.concat_ws("/", *keys).alias("p"), F.xxhash64(*_hashable(spec)).alias("h"))
        .groupBy("p")
        .agg(F.count("*").alias("n"), F.sum(F.col("h").cast("decimal(38,0)")).alias("s"))
        .collect()
    )
    return {r.p: (r.n, int(r.s)) for r in rows}


def read_manifest(spark: SparkSession, backup: Settings) -> BackupManifest:
    """The backup's manifest; for a plain copy, its own latest table versions."""
    from delta.tables import DeltaTable

    found = storage_for(backup).read(MANIFEST)
    if found is not None:
        return BackupManifest(**json.loads(found))
    versions = {
        spec.qualified_name: DeltaTable.forPath(spark, spec.path(backup)).history(1).first().version
        for spec in tables.ALL_TABLES
    }
    return BackupManifest("", "", versions, 0)


def verify_backup(spark: SparkSession, source: Settings, backup: Settings) -> Verification:
    """Check ``backup`` against ``source`` (module docstring); problems are listed, not raised."""
    require_tables(spark, source)
    require_tables(spark, backup)
    manifest = read_manifest(spark, backup)
    result = Verification()

    def compare(spec: tables.TableSpec) -> tuple[list[str], int, int]:
        """(problems, partitions, rows) of one table."""
        version = manifest.versions.get(spec.qualified_name)
        if version is None:
            return [f"{spec.qualified_name}: not in the backup's manifest"], 0, 0
        path = spec.path(source)
        try:
            then = spark.read.format("delta").option("versionAsOf", version).load(path)
            want = partition_digests(then, spec)
            got = partition_digests(tables.read(spark, backup, spec), spec)
        except Exception as exc:  # a table that cannot be read is a finding, not a crash
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return [f"{spec.qualified_name}: cannot be compared: {reason}"], 0, 0
        problems = []
        for p in sorted(want.keys() | got.keys()):
            (rows_then, sum_then), (rows_now, sum_now) = want.get(p, (0, 0)), got.get(p, (0, 0))
            if (rows_then, sum_then) != (rows_now, sum_now):
                same_count = ", checksums differ" if rows_then == rows_now else ""
                problems.append(
                    f"{spec.qualified_name} partition {p}: source {rows_then} rows,"
                    f" backup {rows_now} rows{same_count}"
                )
        return problems, len(want), sum(n for n, _ in want.values())

    for problems, partitions, rows in per_table(compare, tables.ALL_TABLES):
        result.tables += 1
        result.partitions += partitions
        result.rows += rows
        result.problems += problems
    _verify_landing(spark, source, backup, manifest, result)
    return result


def _verify_landing(
    spark: SparkSession,
    source: Settings,
    backup: Settings,
    manifest: BackupManifest,
    result: Verification,
) -> None:
    entries = list(manifest_entries(backup))
    held = {batch.batch_id for batch in entries}
    result.landing_files += len(entries)
    checked = check_landing(spark, backup, entries)
    for batch in checked.missing:
        result.problems.append(f"landing file {batch.landing_file}: missing in the backup")
    for altered in checked.altered.values():
        result.problems.append(
            f"landing file {altered.landing_file}: sha256 {altered.actual},"
            f" manifest {altered.expected}"
        )
    taken: datetime | None = parse_instant(manifest.created_at) if manifest.created_at else None
    for batch in manifest_entries(source):
        if batch.batch_id in held:
            continue
        if taken is not None and batch.received > taken:
            result.newer_batches += 1
        else:
            result.problems.append(f"landing batch {batch.batch_id}: not in the backup")
