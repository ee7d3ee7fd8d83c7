"""``meterlake replay --to NEW_WAREHOUSE``: rebuild a warehouse from its immutable landing zone.

Disaster recovery when derived tables are lost or suspect (a bad deploy, a corrupted
table, a region rebuilt from a landing-zone replica). Into a new, empty warehouse:

1. the record tables (`copy.RECORD_TABLES`: catalog versions, credits, tenants, FX rates,
   what Stripe and webhooks were sent, audit trails) and the access keys are copied;
2. every landing batch is copied (`copy.copy_landing`);
3. the pipeline rebuilds bronze, silver and gold from landing (bronze checks each file's
   sha256 and quarantines a changed one, reported in the tally);
4. every invoice run the source logged in ``billing.runs`` is run again, in order, with
   its as-of instant, customer selection and catalog version: an invoice run is a pure
   function of those and of the events received by then, so finals, late-event
   adjustments and credits come out as they did;
5. the replayed invoices are compared with the source's, to the cent.

A source that is gone entirely is replayed from a backup (``--from``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.billing.export import export_document
from meterlake.billing.run import run_invoices
from meterlake.clock import from_table
from meterlake.ingest.bronze import Tally
from meterlake.pipeline import run_pipeline
from meterlake.recovery.copy import (
    RECORD_TABLES,
    LandingCopy,
    Progress,
    copy_keys,
    copy_landing,
    copy_tables,
    require_new,
)
from meterlake.warehouse import init_warehouse, require_tables

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from meterlake.config import Settings


@dataclass(frozen=True)
class ReplayResult:
    landing: LandingCopy
    keys: int
    tally: Tally
    runs: int
    invoices: int
    differences: list[str]  # one line per invoice that differs, is missing or is extra


def replay(
    spark: SparkSession, source: Settings, target: Settings, progress: Progress = print
) -> ReplayResult:
    """Rebuild ``source`` into the new warehouse ``target`` (module docstring)."""
    require_tables(spark, source)
    require_new(spark, source, target)
    init_warehouse(spark, target)
    copy_tables(spark, source, target, RECORD_TABLES)
    keys = copy_keys(source, target)
    landing = copy_landing(source, target, progress)
    progress(f"copied {len(RECORD_TABLES)} record tables, {keys} keys, {landing.batches} batches")
    tally = run_pipeline(spark, target, progress=progress).tally
    runs = tables.read(spark, source, tables.BILLING_RUNS).orderBy("run_at").collect()
    for n, run in enumerate(runs, 1):
        run_invoices(
            spark,
            target,
            from_table(run.as_of),
            customers=run.customers.split(",") if run.customers else None,
            tenant=run.tenant_id,
            reason=f"replay of {run.run_id}",
            source="replay",
            catalog_version=run.catalog_version,
        )
        progress(f"invoice run {n}/{len(runs)} (as of {run.as_of:%Y-%m-%dT%H:%M:%SZ}) replayed")
    before = export_document(spark, source)["invoices"]
    after = export_document(spark, target)["invoices"]
    return ReplayResult(
        landing, keys, tally, len(runs), len(before), invoice_differences(before, after)
    )


def invoice_differences(before: list[dict], after: list[dict]) -> list[str]:
    """Each invoice of either list that the other lacks or holds differently."""
    old = {i["invoice_id"]: i for i in before}
    new = {i["invoice_id"]: i for i in after}
    found = []
    for invoice_id in sorted(old.keys() | new.keys()):
        a, b = old.get(invoice_id), new.get(invoice_id)
        if a == b:
            continue
        if a is None or b is None:
            kept = a or b
            where = "replay only" if a is None else "source only"
            found.append(f"{invoice_id} ({kept['customer_id']}, {kept['total']}): {where}")
        else:
            found.append(
                f"{invoice_id} ({a['customer_id']}): source {a['status']} {a['total']},"
                f" replay {b['status']} {b['total']}"
            )
    return found
