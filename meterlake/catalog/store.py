"""Persist a validated catalog as a new version of the ``ref.*`` tables, and read it back.

Every table keeps all versions (history is never overwritten); the highest version in
``ref.catalog_versions`` is current. Loading a file identical to the current version
writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.catalog.erased_customers import refuse_erased
from meterlake.catalog.model import Catalog
from meterlake.delta_io import append, per_table
from meterlake.errors import WarehouseError
from meterlake.lease import CATALOG, Lease, hold

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from meterlake.config import Settings


@dataclass(frozen=True)
class LoadResult:
    version: int
    changed: bool


def current_version(spark: SparkSession, settings: Settings) -> tuple[int, str] | None:
    """(version, sha256) of the current catalog, or None before the first load."""
    rows = (
        tables.read(spark, settings, tables.REF_CATALOG_VERSIONS)
        .orderBy("version", ascending=False)
        .limit(1)
        .collect()
    )
    return (rows[0].version, rows[0].sha256) if rows else None


def store_catalog(spark: SparkSession, settings: Settings, catalog: Catalog) -> LoadResult:
    """Write ``catalog`` as the next version; a rerun after a crash completes the same version.

    Under the catalog lease: two loads at once would both pick the next version number,
    and Delta's idempotent appends would keep a mix of the two catalogs' tables."""
    with hold(settings, CATALOG) as lease:
        return _store(spark, settings, catalog, lease)


def _store(spark: SparkSession, settings: Settings, catalog: Catalog, lease: Lease) -> LoadResult:
    current = current_version(spark, settings)
    if current and current[1] == catalog.sha256:
        return LoadResult(version=current[0], changed=False)
    refuse_erased(settings, ((i, c.tenant, c.id) for i, c in enumerate(catalog.customers)))
    version = (current[0] if current else 0) + 1
    app_id = "meterlake-catalog"

    def write(item: tuple[tables.TableSpec, list[tuple]]) -> None:
        spec, rows = item
        frame = spark.createDataFrame(rows, schema=tables.nullable_schema(spec))
        lease.check()
        append(frame, settings, spec, txn=(f"{app_id}-{spec.name}", version))

    per_table(write, _rows(catalog, version).items())  # the version row last: it commits the load
    loaded = [
        (
            version,
            catalog.sha256,
            catalog.source_file,
            settings.now(),
            len(catalog.meters),
            len(catalog.plans),
            len(catalog.customers),
            catalog.text,
        )
    ]
    frame = spark.createDataFrame(
        loaded, schema=tables.nullable_schema(tables.REF_CATALOG_VERSIONS)
    )
    lease.check()
    append(frame, settings, tables.REF_CATALOG_VERSIONS, txn=(app_id, version))
    return LoadResult(version=version, changed=True)


def _rows(catalog: Catalog, version: int) -> dict[tables.TableSpec, list[tuple]]:
    charges = [
        (
            version,
            plan.id,
            index,
            charge.type,
            charge.meter,
            charge.model,
            charge.amount,
            charge.unit_price,
            charge.package_size,
            charge.package_price,
            [(t.up_to, t.unit_price, t.flat_price) for t in charge.tiers] if charge.tiers else None,
        )
        for plan in catalog.plans
        for index, charge in enumerate(plan.charges)
    ]
    return {
        tables.REF_METERS: [
            (version, m.key, m.event_type, m.aggregation, m.property) for m in catalog.meters
        ],
        tables.REF_PLANS: [
            (version, p.id, p.currency, p.interval, p.minimum_commitment) for p in catalog.plans
        ],
        tables.REF_PLAN_CHARGES: charges,
        tables.REF_CUSTOMERS: [
            (
                version,
                c.tenant,
                c.id,
                c.timezone,
                c.billing_anchor,
                c.stripe_customer_id,
                c.invoice_currency,
            )
            for c in catalog.customers
        ],
        tables.REF_SUBSCRIPTIONS: [
            (version, c.tenant, c.id, seq, s.plan, s.start, s.end)
            for c in catalog.customers
            for seq, s in enumerate(c.subscriptions)
        ],
        tables.REF_CREDITS: [
            (version, c.tenant, c.id, seq, credit.amount, credit.expires)
            for c in catalog.customers
            for seq, credit in enumerate(c.credits)
        ],
        tables.REF_TENANTS: [
            (version, t.id, int(t.grace.total_seconds())) for t in catalog.tenants
        ],
    }


def current(spark: SparkSession, settings: Settings, spec: tables.TableSpec) -> DataFrame:
    """Rows of ``spec`` in the current catalog version (empty before the first load)."""
    from pyspark.sql import functions as F

    latest = tables.read(spark, settings, tables.REF_CATALOG_VERSIONS).agg(
        F.max("version").alias("current_version")
    )
    rows = tables.read(spark, settings, spec)
    return rows.join(latest, rows.version == latest.current_version).drop("current_version")


@dataclass(frozen=True)
class StoredCatalog:
    version: int
    catalog: Catalog


def read_catalog(
    spark: SparkSession, settings: Settings, version: int | None = None
) -> StoredCatalog:
    """The current (or given) catalog version, parsed from the YAML stored with it by the
    same parser that validated it at load (one small read, no second mapping to keep in
    step)."""
    from meterlake.catalog.parse import parse_catalog_text

    versions = tables.read(spark, settings, tables.REF_CATALOG_VERSIONS)
    if version is not None:
        versions = versions.where(f"version = {int(version)}")
    rows = versions.orderBy("version", ascending=False).limit(1).collect()
    if not rows:
        raise WarehouseError(
            f"{settings.warehouse}: no catalog loaded; run `meterlake catalog load FILE`"
        )
    row = rows[0]
    return StoredCatalog(row.version, parse_catalog_text(row.source_text.encode(), row.source_file))
