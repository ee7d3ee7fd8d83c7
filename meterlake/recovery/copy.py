"""Copying what a warehouse cannot rebuild into another warehouse (local or S3): the landing
zone, the access keys and the record tables.

Used by ``meterlake replay`` (disaster recovery) and ``meterlake backup create``. A
landing file is in place before its manifest entry, as landing itself commits them; its
sha256 is checked where it is used: by the target's bronze (`ingest.integrity`), which
quarantines a changed file, and by ``meterlake backup verify``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.audit.access import KEYS_DIR
from meterlake.catalog.erased_customers import MARKERS
from meterlake.delta_io import per_table
from meterlake.errors import ConfigError, StaleDataError
from meterlake.ingest.landing import ensure_landing, manifest_entries, manifest_key
from meterlake.storage import Storage, storage_for

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from meterlake.config import Settings

# Records of what happened (reference data, audit trails, what external systems were
# sent): copied as they are. Everything else is derived from landing and these, and is
# rebuilt by a replay.
RECORD_TABLES: tuple[tables.TableSpec, ...] = (
    tables.REF_CATALOG_VERSIONS,
    tables.REF_METERS,
    tables.REF_PLANS,
    tables.REF_PLAN_CHARGES,
    tables.REF_CUSTOMERS,
    tables.REF_SUBSCRIPTIONS,
    tables.REF_CREDITS,
    tables.REF_TENANTS,
    tables.REF_FX_RATES,
    tables.BILLING_OUTBOX,
    tables.BILLING_STRIPE_SYNC,
    tables.BILLING_WEBHOOK_DELIVERIES,
    tables.AUDIT_QUERY_LOG,
    tables.AUDIT_TIERING_LOG,
    tables.AUDIT_ERASURES,
)

Progress = Callable[[str], None]


def require_new(spark: SparkSession, source: Settings, target: Settings) -> None:
    """``target`` must be another place and hold no warehouse yet."""
    from delta.tables import DeltaTable

    if target.warehouse.rstrip("/") == source.warehouse.rstrip("/"):
        raise ConfigError("--to: must not be the warehouse being replayed")
    if next(manifest_entries(target), None) is not None or DeltaTable.isDeltaTable(
        spark, tables.BRONZE_EVENTS.path(target)
    ):
        raise ConfigError(f"--to: {target.warehouse} already holds a warehouse; name a new one")


@dataclass
class LandingCopy:
    batches: int = 0
    bytes: int = 0


def copy_landing(source: Settings, target: Settings, progress: Progress) -> LandingCopy:
    """Copy every committed landing batch (file, then manifest entry) as it is; a missing
    file stops the copy."""
    ensure_landing(target)
    src, dst = storage_for(source), storage_for(target)
    done = LandingCopy()
    with tempfile.TemporaryDirectory(dir=dst.spool_dir()) as scratch:
        for batch in manifest_entries(source):
            local = Path(scratch) / "batch"
            if not src.download(batch.landing_file, local):
                raise StaleDataError(
                    f"landing file {batch.landing_file} of batch {batch.batch_id} is missing"
                    f" in {source.warehouse}; nothing can rebuild it"
                )
            done.bytes += local.stat().st_size
            dst.put_file(local, batch.landing_file)
            key = manifest_key(batch.tenant_id, batch.sha256)
            dst.create(key, _read(src, key))
            done.batches += 1
            if done.batches % 100 == 0:
                progress(f"landing: {done.batches} batches, {done.bytes / 1e6:.1f} MB copied")
    return done


def _read(storage: Storage, key: str) -> bytes:
    """An object that was just listed; gone meanwhile means someone is deleting from the
    warehouse being copied, and the copy must not go on as if it were whole."""
    data = storage.read(key)
    if data is None:
        raise StaleDataError(f"{key} disappeared while it was being copied")
    return data


def copy_keys(source: Settings, target: Settings) -> int:
    """Copy the API and CLI access keys (their digests) and the erased customers' markers
    (so the copy refuses a catalog bringing one back, too); returns how many keys."""
    src: Storage = storage_for(source, spool="_access/.tmp")
    dst: Storage = storage_for(target, spool="_access/.tmp")
    keys = list(src.keys(KEYS_DIR + "/"))
    for key in [*keys, *src.keys(MARKERS + "/")]:
        dst.create(key, _read(src, key))
    return len(keys)


def copy_tables(
    spark: SparkSession,
    source: Settings,
    target: Settings,
    specs: tuple[tables.TableSpec, ...],
    versions: dict[str, int] | None = None,
) -> dict[str, int]:
    """Copy ``specs`` (the target's tables must exist and be empty) as of the source's
    latest version or ``versions[qualified_name]``; returns the version copied per table."""
    from delta.tables import DeltaTable

    from meterlake.delta_io import append

    def one(spec: tables.TableSpec) -> tuple[str, int]:
        path = spec.path(source)
        version = (versions or {}).get(spec.qualified_name)
        if version is None:
            version = DeltaTable.forPath(spark, path).history(1).first().version
        frame = spark.read.format("delta").option("versionAsOf", version).load(path)
        append(frame, target, spec)
        return spec.qualified_name, version

    return dict(per_table(one, specs))
