"""Keep silver and gold in step with bronze (the rollup stage of ``pipeline run``).

Incremental by default: a Structured Streaming query over bronze's Delta log hands each
micro-batch of new events to a handler that recomputes only what they touch: the silver
windows of the (tenant, customer, UTC day)s they fall on, and the billing periods of those
customers that overlap those days. Each is recomputed from *all* of its bronze events and
merged in, so late events correct old windows, a repeated epoch is harmless, and the
result equals a rebuild from scratch. A rebuild happens when the catalog version changes
(meters, plans and subscriptions define every row).

``state.json`` beside the stream checkpoint records the catalog version the rollups
follow and the bronze version they reflect; invoicing refuses to run on stale rollups.
That version is what the micro-batch actually read (the end offset Spark planned for it
before it ran), never bronze's version when the batch finished: a bronze commit made
while a batch is being rolled up is left for the next batch, not claimed as covered.
Refreshes hold the rollups lease (`meterlake.lease`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.billing.schedule import schedule
from meterlake.delta_io import overwrite, settled, upsert
from meterlake.lease import ROLLUPS, Lease, hold
from meterlake.rollups import period_usage as gold
from meterlake.rollups import silver
from meterlake.storage import storage_for
from meterlake.tiering.events import bronze_version, events_at

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from meterlake.catalog.model import Customer
    from meterlake.catalog.store import StoredCatalog
    from meterlake.config import Settings

CHECKPOINT = "_checkpoints/bronze_to_rollups"
STREAM_CHECKPOINT = f"{CHECKPOINT}/stream"
END_INDEX = 2**63 - 1  # Delta's offset index for "after every file of the version"
Progress = Callable[[str], None]
GOLD_CHANGED = "NOT (s.events <=> t.events AND s.new_unique <=> t.new_unique)"


@dataclass(frozen=True)
class RollupState:
    catalog_version: int
    bronze_version: int


@dataclass
class RefreshResult:
    rebuilt: bool = False
    batches: int = 0
    days: int = 0
    bronze_version: int = -1


STATE_KEY = f"{CHECKPOINT}/state.json"


def load_state(settings: Settings) -> RollupState | None:
    data = storage_for(settings).read(STATE_KEY)
    return RollupState(**json.loads(data)) if data is not None else None


def _save_state(settings: Settings, state: RollupState) -> None:
    storage_for(settings).write(STATE_KEY, json.dumps(asdict(state)).encode())


def horizon(settings: Settings) -> datetime:
    """Schedules reach past every event: billing time is at most the skew limit after
    receipt, and receipt is at most now."""
    return settings.now() + timedelta(days=1)


def rebuild(
    spark: SparkSession, settings: Settings, stored: StoredCatalog, version: int, fence: Lease
) -> None:
    """Every silver grain and gold from bronze at ``version``, replacing what was there."""
    from meterlake.rollups.meter_values import metered_events

    events = events_at(spark, settings, version)
    metered = metered_events(events, stored.catalog.meters).persist()
    try:
        for grain in silver.GRAINS:
            fence.check()
            overwrite(silver.rollup(metered, grain), settings, grain.spec)
    finally:
        metered.unpersist()
    rows = gold.period_usage(events, stored, stored.catalog.customers, horizon(settings))
    fence.check()
    overwrite(rows, settings, tables.GOLD_PERIOD_USAGE)


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


def refresh_touched(
    spark: SparkSession,
    settings: Settings,
    stored: StoredCatalog,
    touched: dict[tuple[str, str], set[date]],
    version: int,
    *,
    fence: Lease,
) -> None:
    """Recompute the silver windows on ``touched`` (tenant, customer) → UTC days and the
    gold periods overlapping them, from bronze at ``version``, and merge them in."""
    from pyspark.sql import functions as F

    from meterlake.rollups.meter_values import metered_events

    bronze = events_at(spark, settings, version)
    keys = spark.createDataFrame(
        [(*key, day) for key, days in touched.items() for day in days],
        "k_tenant string, k_customer string, k_date date",
    )
    days = sorted({day for days in touched.values() for day in days})
    on_days = bronze.where(F.col("billing_date").isin(days)).join(
        F.broadcast(keys),
        (F.col("tenant_id") == F.col("k_tenant"))
        & (F.col("customer_id") == F.col("k_customer"))
        & (F.col("billing_date") == F.col("k_date")),
        "left_semi",
    )
    metered = settled(metered_events(on_days, stored.catalog.meters))
    shown = ", ".join(f"DATE'{day.isoformat()}'" for day in days)
    for grain in silver.GRAINS:
        upsert(
            silver.rollup(metered, grain),
            settings,
            grain.spec,
            silver.KEYS,
            changed="s.events <> t.events",
            scope=f"t.window_date IN ({shown})",
            fence=fence,
        )

    def keep(customer: Customer, period) -> bool:
        days = touched.get((customer.tenant, customer.id), ())
        return any(
            period.start < end and start < period.end for start, end in map(_day_bounds, days)
        )

    customers = [c for c in stored.catalog.customers if (c.tenant, c.id) in touched]
    reach = horizon(settings)
    periods = [
        p
        for c in customers
        for p in schedule(c, stored.catalog.grace(c.tenant), reach)
        if keep(c, p)
    ]
    if not periods:
        return
    first = min(p.start for p in periods).date()
    last = max(p.end for p in periods).date()
    scoped = bronze.where(F.col("billing_date").between(first, last)).join(
        F.broadcast(keys.select("k_tenant", "k_customer").distinct()),
        (F.col("tenant_id") == F.col("k_tenant")) & (F.col("customer_id") == F.col("k_customer")),
        "left_semi",
    )
    rows = gold.period_usage(scoped, stored, customers, reach, keep)
    upsert(rows, settings, tables.GOLD_PERIOD_USAGE, gold.KEYS, changed=GOLD_CHANGED, fence=fence)


def batch_versions(settings: Settings, epoch_id: int) -> tuple[int, int]:
    """(bronze version to recompute from, bronze version fully covered) for micro-batch
    ``epoch_id`` of the rollup stream, from the end offset Spark wrote to the checkpoint
    before running it: ``(V, -1)`` ends before version V, ``(V, i)`` inside it, after
    file ``i``, and ``(V, END_INDEX)`` after all of it."""
    data = storage_for(settings).read(f"{STREAM_CHECKPOINT}/offsets/{epoch_id}")
    if data is None:
        raise FileNotFoundError(f"{STREAM_CHECKPOINT}/offsets/{epoch_id}")
    offset = json.loads(data.decode().splitlines()[-1])
    version, index = int(offset["reservoirVersion"]), int(offset["index"])
    if index == END_INDEX:
        return version, version
    if index >= 0:
        return version, version - 1
    return version - 1, version - 1


def refresh_rollups(
    spark: SparkSession, settings: Settings, *, progress: Progress = print
) -> RefreshResult:
    """Bring silver and gold up to the current bronze; a no-op when nothing is new."""
    with hold(settings, ROLLUPS) as lease:
        return _refresh(spark, settings, lease, progress)


def _refresh(
    spark: SparkSession, settings: Settings, lease: Lease, progress: Progress
) -> RefreshResult:
    from meterlake.catalog.store import read_catalog

    result = RefreshResult()
    stored = read_catalog(spark, settings)
    state = load_state(settings)
    if state is None or state.catalog_version != stored.version:
        version = bronze_version(spark, settings)
        progress(f"rollups: rebuilding silver and gold from bronze version {version}")
        rebuild(spark, settings, stored, version, lease)
        storage_for(settings).delete_tree(STREAM_CHECKPOINT)
        state = RollupState(stored.version, version)
        lease.check()
        _save_state(settings, state)
        result.rebuilt = True
    result.bronze_version = state.bronze_version

    def handle(batch: DataFrame, epoch_id: int) -> None:
        touched: dict[tuple[str, str], set[date]] = defaultdict(set)
        for row in batch.select("tenant_id", "customer_id", "billing_date").distinct().collect():
            touched[row.tenant_id, row.customer_id].add(row.billing_date)
        read, covered = batch_versions(settings, epoch_id)
        if touched:
            refresh_touched(spark, settings, stored, touched, read, fence=lease)
        lease.check()
        _save_state(settings, RollupState(stored.version, max(covered, result.bronze_version)))
        days = sum(len(d) for d in touched.values())
        result.batches += 1
        result.days += days
        result.bronze_version = max(covered, result.bronze_version)
        progress(
            f"rollups epoch {epoch_id}: {days} customer-day(s) of {len(touched)} customer(s)"
            f" refreshed (bronze version {covered})"
        )

    latest = bronze_version(spark, settings)
    if latest == state.bronze_version:
        return result
    query = (
        spark.readStream.format("delta")
        .option("startingVersion", state.bronze_version + 1)
        # Bronze is append-only; a commit that removes rows (tiering, a repair) must not stop
        # the stream. Windows are recomputed from the current bronze, so removals show up in
        # any window new events touch, and fully on the next rebuild.
        .option("skipChangeCommits", "true")
        .load(tables.BRONZE_EVENTS.path(settings))
        .writeStream.foreachBatch(handle)
        .option("checkpointLocation", f"{settings.warehouse}/{STREAM_CHECKPOINT}")
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    # availableNow takes everything committed when the query started, which includes
    # ``latest``: versions up to it without a batch added no rows (removals, empty commits).
    if result.bronze_version < latest:
        lease.check()
        _save_state(settings, RollupState(stored.version, latest))
        result.bronze_version = latest
    return result
