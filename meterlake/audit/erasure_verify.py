"""``meterlake gdpr verify``: proof that no copy of an erased subject remains, or where one does.

A customer is looked for where a customer is named (`meterlake.audit.customer_erasure`:
``customer_id`` columns and fields, free text, the stored catalogs, the published usage);
a user as follows.

Scanned, for the user's tenant: every table's current version (``user_id`` equal to the
id; every other text column that is not a billing field holding it as a whole word or a
JSON string), the files Delta no longer references but VACUUM has not yet removed (the
same test, read straight from Parquet), every landing file of the tenant line by line
(`meterlake.audit.subject_fields`, so a customer id equal to the user id is not a copy),
and the backups made before the tenant's latest erasure, which were copied with the id in
them and are listed as still holding it until re-made. When the Kafka stream has
archived from its topic, the records the topic still holds (erasure deletes those landing
has, `meterlake.audit.kafka_erasure`) are read too, the tenant's ones checked as landing
lines are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.audit.customer_erasure import customer_mentions
from meterlake.audit.erasure import in_tenant, mentions_anywhere
from meterlake.audit.kafka_erasure import records_holding
from meterlake.audit.query_log import fold_reads
from meterlake.audit.subject_fields import CUSTOMER, USER, holds_subject
from meterlake.billing.current_usage import VIEW_DIR, read_usage
from meterlake.ingest.kafka_topic import archived_offsets
from meterlake.ingest.landing import manifest_entries
from meterlake.recovery.backup import backups_made
from meterlake.storage import storage_for

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from meterlake.config import Settings


@dataclass(frozen=True)
class Copy:
    where: str  # a table, "<table> (superseded files)", a landing file or a backup
    count: int  # rows, or lines
    note: str


@dataclass(frozen=True)
class Verification:
    copies: list[Copy]
    tables: int
    landing_files: int

    @property
    def clean(self) -> bool:
        return not self.copies


def verify_erased(
    spark: SparkSession, settings: Settings, tenant: str, subject: str, kind: str = USER
) -> Verification:
    """Every place ``subject`` (a ``kind``) of ``tenant`` may still be (module docstring)."""
    fold_reads(spark, settings)  # the API's reads waiting in their spool join the log first
    copies: list[Copy] = []
    for spec in tables.ALL_TABLES:
        current = tables.read(spark, settings, spec)
        found = _matching(current, tenant, subject, kind).count()
        if found:
            copies.append(Copy(spec.qualified_name, found, "rows in the current version"))
        stale = _superseded(spark, spec.path(settings), current)
        if stale is not None:
            found = _matching(stale, tenant, subject, kind).count()
            if found:
                copies.append(Copy(f"{spec.qualified_name} (superseded files)", found,
                                   "removed by the next VACUUM past the retention window"
                                   " (meterlake tier run)"))  # fmt: skip
    storage = storage_for(settings)
    entries = list(manifest_entries(settings))
    batches = [b for b in entries if b.tenant_id == tenant]
    for batch in batches:
        body = storage.read(batch.landing_file) or b""
        lines = sum(holds_subject(line, subject, kind) for line in body.split(b"\n"))
        if lines:
            copies.append(Copy(batch.landing_file, lines, "landing lines"))
    if archived_offsets(entries, settings.kafka.topic):  # the stream has read the topic
        topic = f"kafka:{settings.kafka.topic}"
        for partition, records in records_holding(settings, tenant, subject, kind).items():
            copies.append(Copy(f"{topic} partition {partition}", records, "records the stream"
                               " has not archived yet: erase again once it has"))  # fmt: skip
    if kind == CUSTOMER and read_usage(settings, tenant, subject) is not None:
        copies.append(Copy(f"{VIEW_DIR}/{tenant}.json", 1, "published current usage"))
    for backup in backups_made(settings, before=_latest_erasure(spark, settings, tenant)):
        copies.append(Copy(backup["target"], 0, f"a backup made {backup['created_at']}, before"
                           " the erasure: re-make it, or erase the subject there"))  # fmt: skip
    return Verification(copies, len(tables.ALL_TABLES), len(batches))


def _matching(frame: DataFrame, tenant: str, subject: str, kind: str) -> DataFrame:
    scoped = frame.where(in_tenant(frame.schema, tenant))
    if kind == CUSTOMER:
        return scoped.where(customer_mentions(frame.schema, tenant, subject))
    return scoped.where(mentions_anywhere(frame.schema, subject))


def _superseded(spark: SparkSession, path: str, current: DataFrame) -> DataFrame | None:
    """The Parquet files under ``path`` the current version does not reference."""
    jvm = spark._jvm
    root = jvm.org.apache.hadoop.fs.Path(path)
    fs = root.getFileSystem(spark._jsc.hadoopConfiguration())
    if not fs.exists(root):
        return None
    referenced = {_normal(f) for f in current.inputFiles()}
    files, listing = [], fs.listFiles(root, True)
    while listing.hasNext():
        name = listing.next().getPath().toString()
        parquet = name.endswith(".parquet") and "/_delta_log/" not in name
        if parquet and _normal(name) not in referenced:
            files.append(name)
    return spark.read.parquet(*files) if files else None


def _normal(uri: str) -> str:
    return uri.replace("file:///", "/").replace("file:/", "/")


def _latest_erasure(spark: SparkSession, settings: Settings, tenant: str) -> datetime | None:
    from pyspark.sql import functions as F

    erasures = tables.read(spark, settings, tables.AUDIT_ERASURES)
    row = erasures.where(F.col("tenant_id") == tenant).agg(F.max("at").alias("at")).first()
    return row.at.replace(tzinfo=UTC) if row is not None and row.at is not None else None


def report(verification: Verification, subject_label: str) -> list[str]:
    if verification.clean:
        return [
            f"clean: no copy of {subject_label} in {verification.tables} tables (current and"
            f" superseded files) or {verification.landing_files} landing file(s)"
        ]
    lines = [f"{len(verification.copies)} place(s) still hold {subject_label}:"]
    for copy in verification.copies:
        lines.append(f"  {copy.where}: {f'{copy.count} ' if copy.count else ''}{copy.note}")
    return lines
