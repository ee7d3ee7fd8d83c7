"""``invoices run``: check the inputs are complete, compute invoices, save what changed.

An invoice run reads gold, which reflects every event in bronze. When bronze already
holds events received after ``as_of`` (a run for a past instant), gold is recomputed for
the selected customers from bronze restricted to ``received_at <= as_of``, so the run is
the same pure function of catalog, events and ``as_of`` either way.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.billing.invoices import Invoice, customer_invoices
from meterlake.billing.store import SaveResult, save_invoices
from meterlake.billing.usage import UsageRow, usage_row
from meterlake.catalog.model import Customer
from meterlake.clock import format_instant, from_table
from meterlake.errors import ConfigError, StaleDataError
from meterlake.lease import BILLING, Lease, hold

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from meterlake.catalog.store import StoredCatalog
    from meterlake.config import Settings


@dataclass(frozen=True)
class InvoiceRun:
    as_of: datetime
    invoices: list[Invoice]
    saved: SaveResult | None
    catalog_version: int
    bronze_version: int
    ingest_seq: int | None = None  # the landing batches it saw (see `Inputs`)


def select_customers(
    stored: StoredCatalog, customers: Sequence[str] | None, tenant: str | None
) -> list[Customer]:
    """The catalog's customers matching the filters (None: all); an unknown id is an error."""
    chosen = [
        c
        for c in stored.catalog.customers
        if (customers is None or c.id in customers) and (tenant is None or c.tenant == tenant)
    ]
    missing = sorted(set(customers or ()) - {c.id for c in chosen})
    if missing:
        where = f" of tenant {tenant!r}" if tenant else ""
        names = ", ".join(map(repr, missing))
        raise ConfigError(f"--customer: no customer {names}{where} in the current catalog")
    return chosen


def check_run_request(
    as_of: str, customers: Sequence[str] | None, dry_run: bool, reason: str | None
) -> datetime:
    """Validate a finance run request before anything starts; returns the as-of instant."""
    from meterlake.clock import parse_instant

    when = parse_instant(as_of or "", "as_of")
    if not dry_run and not (reason or "").strip():
        raise ConfigError("reason: required for a run that writes invoices (dry_run false)")
    if customers is not None and any(not str(c).strip() for c in customers):
        raise ConfigError("customers: ids must not be blank")
    return when


@dataclass(frozen=True)
class Inputs:
    """What an invoice run reads: bronze at ``bronze_version``, holding every landing
    batch of bronze.batches up to ``ingest_seq`` (None before any batch was numbered)."""

    bronze_version: int
    ingest_seq: int | None


def wait_for_landing(settings: Settings, as_of: datetime) -> None:
    """Return once no landing writer can still commit a batch received at or before
    ``as_of``: each in-flight writer that started by then commits, or its marker lapses
    (``METERLAKE_LANDING_COMMIT_SECONDS``); a batch committed later anyway is billed as a
    late adjustment (`meterlake.billing.late_commits`)."""
    import time

    from meterlake.ingest.landing import landing_watermark

    while True:
        started, remaining = landing_watermark(settings)
        if started is None or started > as_of:
            return
        time.sleep(min(0.2, remaining))


def require_kafka_archived(settings: Settings, as_of: datetime, entries: list) -> None:
    """When the bronze stream reads Kafka (its checkpoint exists), every record the topic
    holds with a timestamp at or before ``as_of`` must be archived into landing first: those
    are events the capture API acknowledged by then."""
    from meterlake.ingest.kafka_source import CHECKPOINTS
    from meterlake.ingest.kafka_topic import archived_offsets, unarchived_before
    from meterlake.storage import storage_for

    topic = settings.kafka.topic
    if not any(storage_for(settings).keys(f"{CHECKPOINTS}/{topic}/")):
        return
    behind = unarchived_before(settings, as_of, archived_offsets(entries, topic))
    if behind:
        partition, have, need = behind[0]
        raise StaleDataError(
            f"Kafka topic {topic} holds records received by {format_instant(as_of)} that are"
            f" not in landing yet (partition {partition}: archived through offset {have}, needs"
            f" {need}); run `meterlake pipeline run --source kafka`"
        )


def require_current(spark: SparkSession, settings: Settings, as_of: datetime) -> Inputs:
    """What billing may read for ``as_of``, after waiting for landing writers still in
    flight and checking that every landing batch received by then (and every Kafka record
    of the topic the stream reads) is in bronze and that silver and gold follow it."""
    from meterlake.catalog.store import current_version
    from meterlake.ingest.landing import manifest_entries
    from meterlake.rollups.refresh import load_state
    from meterlake.tiering.events import bronze_version

    if as_of > settings.now():
        raise ConfigError(
            f"--as-of {format_instant(as_of)} is after now ({format_instant(settings.now())});"
            " events that could still arrive before it would be missed"
        )
    wait_for_landing(settings, as_of)
    entries = list(manifest_entries(settings))
    require_kafka_archived(settings, as_of, entries)
    seen = (
        tables.read(spark, settings, tables.BRONZE_BATCHES)
        .select("batch_id", "ingest_seq")
        .collect()
    )
    processed = {row.batch_id for row in seen}
    numbered = [row.ingest_seq for row in seen if row.ingest_seq is not None]
    waiting = [b for b in entries if b.received <= as_of and b.batch_id not in processed]
    if waiting:
        raise StaleDataError(
            f"{len(waiting)} landing batch(es) received by {format_instant(as_of)} are not in"
            " bronze yet; run `meterlake pipeline run` first"
        )
    state = load_state(settings)
    version = bronze_version(spark, settings)
    catalog = current_version(spark, settings)
    if state is None or catalog is None or state.catalog_version != catalog[0]:
        raise StaleDataError(
            "rollups do not follow the current catalog; run `meterlake pipeline run`"
        )
    if state.bronze_version < version:
        raise StaleDataError(
            f"rollups reflect bronze version {state.bronze_version}, bronze is at {version};"
            " run `meterlake pipeline run`"
        )
    return Inputs(version, max(numbered) if numbered else None)


def usage_rows(
    spark: SparkSession,
    settings: Settings,
    stored: StoredCatalog,
    customers: list[Customer],
    as_of: datetime,
    version: int,
    *,
    from_bronze: bool = False,
    since: datetime | None = None,
) -> dict[tuple[str, str], list[UsageRow]]:
    """Gold rows of ``customers`` as they were at ``as_of`` (see the module docstring);
    ``from_bronze`` recomputes them from bronze even when gold is current (reconciliation
    wants a result that does not depend on gold). With ``since``, only the rows of periods
    starting then or later are needed, so bronze is read from that day on (a period's rows
    come from the events billed in it). Customers with usage a final invoice missed (it
    reached bronze after that invoice, `meterlake.billing.late_commits`) are recomputed
    from bronze with that usage counted as received at that invoice's close."""
    from pyspark.sql import functions as F

    from meterlake.billing.late_commits import late_receipts, with_late_receipts
    from meterlake.rollups.period_usage import period_usage
    from meterlake.rollups.refresh import horizon
    from meterlake.tiering.events import events_at

    def mine(frame: DataFrame, chosen: Sequence[Customer]) -> DataFrame:
        keys = spark.createDataFrame(
            [(c.tenant, c.id) for c in chosen], "k_tenant string, k_customer string"
        )
        return frame.join(
            F.broadcast(keys),
            (F.col("tenant_id") == F.col("k_tenant"))
            & (F.col("customer_id") == F.col("k_customer")),
            "left_semi",
        )

    def recomputed(chosen: Sequence[Customer]) -> DataFrame:
        events = mine(bronze.where(F.col("received_at") <= F.lit(as_of)), chosen)
        return period_usage(with_late_receipts(events, late), stored, chosen, horizon(settings))

    bronze = events_at(spark, settings, version)
    if since is not None:
        bronze = bronze.where(F.col("billing_date") >= F.lit(since.astimezone(UTC).date()))
    late = late_receipts(spark, settings, customers, as_of)
    if not from_bronze:
        newest = bronze.agg(F.max("received_at")).first()[0]
        from_bronze = newest is not None and from_table(newest) > as_of
    if from_bronze:
        gold = recomputed(customers)
    else:
        moved = {(tenant, customer) for tenant, customer, _ in late}
        plain = [c for c in customers if (c.tenant, c.id) not in moved]
        gold = mine(tables.read(spark, settings, tables.GOLD_PERIOD_USAGE), plain)
        if moved:
            gold = gold.unionByName(
                recomputed([c for c in customers if (c.tenant, c.id) in moved]),
                allowMissingColumns=True,
            )
    found: dict[tuple[str, str], list[UsageRow]] = defaultdict(list)
    for row in gold.collect():
        found[row.tenant_id, row.customer_id].append(usage_row(row))
    return found


def price_customers(
    spark: SparkSession,
    settings: Settings,
    stored: StoredCatalog,
    customers: Sequence[Customer],
    rows: dict[tuple[str, str], list[UsageRow]],
    as_of: datetime,
) -> list[Invoice]:
    """Every invoice of ``customers`` from their usage ``rows``, converted where asked."""
    from meterlake.billing.fx import rates_for

    rates = rates_for(spark, settings, customers)
    max_age = settings.billing_system.fx_max_age_days
    return [
        invoice
        for c in customers
        for invoice in customer_invoices(
            stored.catalog, c, rows.get((c.tenant, c.id), ()), as_of, rates, max_age
        )
    ]


def run_invoices(
    spark: SparkSession,
    settings: Settings,
    as_of: datetime,
    *,
    customers: Sequence[str] | None = None,
    tenant: str | None = None,
    dry_run: bool = False,
    reason: str | None = None,
    source: str = "cli",
    catalog_version: int | None = None,
) -> InvoiceRun:
    """Compute every invoice of the selected customers as of ``as_of``; save unless dry,
    and then log the run (``source``, ``reason``) in billing.runs for auditors.

    ``catalog_version`` (default: the current one) lets a replay price with the catalog
    an earlier run used."""
    from meterlake.catalog.store import read_catalog

    stored = read_catalog(spark, settings, catalog_version)
    chosen = select_customers(stored, customers, tenant)  # an unknown id stops it first
    if dry_run:  # writes nothing, so needs no lease and waits for no one
        return _priced(spark, settings, stored, chosen, as_of)
    with hold(settings, BILLING) as lease:
        run = _priced(spark, settings, stored, chosen, as_of)
        saved = save_invoices(
            spark,
            settings,
            run.invoices,
            as_of=as_of,
            catalog_version=stored.version,
            inputs=Inputs(run.bronze_version, run.ingest_seq),
            fence=lease,
        )
        run = replace(run, saved=saved)
        record_run(spark, settings, run, saved, customers, tenant, reason, source, lease)
    return run


def _priced(
    spark: SparkSession,
    settings: Settings,
    stored: StoredCatalog,
    customers: list[Customer],
    as_of: datetime,
) -> InvoiceRun:
    inputs = require_current(spark, settings, as_of)
    rows = usage_rows(spark, settings, stored, customers, as_of, inputs.bronze_version)
    invoices = price_customers(spark, settings, stored, customers, rows, as_of)
    return InvoiceRun(
        as_of, invoices, None, stored.version, inputs.bronze_version, inputs.ingest_seq
    )


def record_run(
    spark: SparkSession,
    settings: Settings,
    run: InvoiceRun,
    saved: SaveResult,
    customers: Sequence[str] | None,
    tenant: str | None,
    reason: str | None,
    source: str,
    fence: Lease,
) -> None:
    """Append the run to billing.runs (written runs only)."""
    from meterlake.delta_io import append

    row = (
        f"run-{uuid.uuid4().hex[:16]}", settings.now(), run.as_of, source, reason,
        ",".join(customers) if customers else None, tenant, run.catalog_version,
        run.bronze_version, len(run.invoices), len(saved.created), len(saved.updated),
        len(saved.finalized), len(saved.unchanged),
    )  # fmt: skip
    frame = spark.createDataFrame([row], tables.nullable_schema(tables.BILLING_RUNS))
    fence.check()
    append(frame, settings, tables.BILLING_RUNS)
