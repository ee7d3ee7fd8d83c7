"""``meterlake tier run --as-of ISO``: move data down the tiers, verified and logged.

For every tenant (ages from the catalog's ``tenants``, defaults 30/180 days, seven years):

1. Finish or discard the moves an earlier run left open: a move whose delete committed
   (found by its ``tier:<move_id>`` commit metadata) is logged as deleted; one whose delete
   never committed still has all its rows in bronze, so its cold copy is dropped.
2. Hot → cold: bronze rows whose UTC billing day is wholly older than ``hot_days`` are
   read at one pinned bronze version, appended to the cold table under a new move id,
   read back and compared per (tenant, day) partition — row count and a content checksum
   (the sum of a 64-bit hash of every column) — and only when every partition agrees are
   exactly those rows deleted from bronze. Rows that arrive meanwhile are left for the
   next run.
3. Down-sample: minute rollups older than ``hot_days`` and hourly rollups older than
   ``warm_days`` are deleted (day rollups and gold stay; raw events rebuild any of them).
4. Expire: cold rows older than ``retention_days`` are deleted.
5. Bring the rollups to the new bronze version, then VACUUM bronze, cold and silver with
   the configured retention window and log the oldest bronze version still whole, which
   `events_at` reads older versions as.

Every step is recorded in ``audit.tiering_log``. At every moment each event is readable
through `meterlake.tiering.events.events_at` exactly once, so a crash anywhere loses and
duplicates nothing, and rerunning completes the move. Runs must not overlap (the DAG
allows one at a time): step 1 takes any open move for a crashed one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.catalog.model import TierAges
from meterlake.delta_io import append, delete_matching, delete_where
from meterlake.errors import TieringError
from meterlake.lease import TIERING, hold
from meterlake.tiering import log
from meterlake.tiering.events import BRONZE_COLUMNS, bronze_version
from meterlake.tiering.log import Step

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from meterlake.catalog.model import Catalog
    from meterlake.config import Settings

Partition = tuple[str, date]
Digest = dict[Partition, tuple[int, str]]
Progress = Callable[[str], None]
KEYS = ["tenant_id", "billing_date", "event_id"]


@dataclass
class TierReport:
    as_of: datetime
    recovered: dict[str, str] = field(default_factory=dict)  # move id → deleted | abandoned
    move_id: str | None = None
    moved: Digest = field(default_factory=dict)
    downsampled: dict[str, int] = field(default_factory=dict)  # table → rows deleted
    expired: int = 0
    vacuum_floor: int = 0


def digest(frame: DataFrame) -> Digest:
    """Rows and content checksum per (tenant, billing day) over bronze's columns; the
    checksum is order-free, so a copy matches whatever its file layout."""
    from pyspark.sql import functions as F

    content = F.xxhash64(*[F.col(c) for c in BRONZE_COLUMNS]).cast("decimal(38,0)")
    rows = (
        frame.groupBy("tenant_id", "billing_date")
        .agg(F.count("*").alias("rows"), F.sum(content).alias("checksum"))
        .collect()
    )
    return {(r.tenant_id, r.billing_date): (r.rows, str(r.checksum)) for r in rows}


def _cutoff(catalog: Catalog, as_of: datetime, age: Callable[[TierAges], int]) -> Column:
    """The first billing day a tenant keeps, as a column over ``tenant_id``: days older than
    ``age(tier ages)`` days before ``as_of`` go (tenants the catalog does not list get the
    default ages)."""
    from pyspark.sql import functions as F

    def day(ages: TierAges) -> date:
        return (as_of - timedelta(days=age(ages))).date()

    expression = F.lit(day(TierAges()))
    for tenant in catalog.tenants:
        expression = F.when(F.col("tenant_id") == tenant.id, F.lit(day(tenant.tiers))).otherwise(
            expression
        )
    return expression


def _recover(
    spark: SparkSession, settings: Settings, report: TierReport, progress: Progress
) -> None:
    from pyspark.sql import functions as F

    states = log.move_states(spark, settings)
    committed = log.delete_commits(spark, settings, states.open)
    steps = []
    for move in sorted(states.open):
        if move in committed:
            steps.append(
                Step(move, None, log.DELETED, tables.BRONZE_EVENTS.path(settings),
                     bronze_version=committed[move], detail="delete found in bronze history")
            )  # fmt: skip
            report.recovered[move] = log.DELETED
        else:
            delete_where(spark, settings, tables.COLD_EVENTS, F.col("move_id") == move)
            steps.append(
                Step(move, None, log.ABANDONED, tables.COLD_EVENTS.path(settings),
                     detail="delete from bronze never committed; cold copy dropped")
            )  # fmt: skip
            report.recovered[move] = log.ABANDONED
        progress(f"tier: open move {move} from an earlier run → {report.recovered[move]}")
    log.record(spark, settings, steps)


def _partition_steps(move: str, step: str, source: str, target: str, found: Digest) -> list[Step]:
    return [
        Step(move, tenant, step, source, target, day, rows, checksum)
        for (tenant, day), (rows, checksum) in sorted(found.items())
    ]


def _move_hot(
    spark: SparkSession, settings: Settings, cutoff: Column, report: TierReport, progress: Progress
) -> None:
    from pyspark.sql import functions as F

    source = tables.BRONZE_EVENTS.path(settings)
    target = tables.COLD_EVENTS.path(settings)
    pinned = bronze_version(spark, settings)
    leaving = (
        spark.read.format("delta")
        .option("versionAsOf", pinned)
        .load(source)
        .where(F.col("billing_date") < cutoff)
    )
    expected = digest(leaving)
    if not expected:
        return
    move = report.move_id = uuid.uuid4().hex
    rows = sum(n for n, _ in expected.values())
    progress(f"tier: moving {rows} event(s) in {len(expected)} partition(s) to {target}")
    append(
        leaving.withColumn("move_id", F.lit(move)).withColumn(
            "moved_at", F.lit(settings.now()).cast("timestamp")
        ),
        settings,
        tables.COLD_EVENTS,
    )
    log.record(spark, settings, _partition_steps(move, log.COPIED, source, target, expected))
    copied = digest(
        tables.read(spark, settings, tables.COLD_EVENTS).where(F.col("move_id") == move)
    )
    wrong = sorted(p for p in expected if copied.get(p) != expected[p])
    if wrong or set(copied) != set(expected):
        tenant, day = (wrong or sorted(set(copied) ^ set(expected)))[0]
        raise TieringError(
            f"tier: copy of tenant {tenant} day {day} to {target} does not verify"
            f" (bronze {expected.get((tenant, day))}, cold {copied.get((tenant, day))});"
            " bronze left as it was, rerun to retry"
        )
    log.record(spark, settings, _partition_steps(move, log.VERIFIED, source, target, copied))
    delete_matching(
        leaving.select(*KEYS), settings, tables.BRONZE_EVENTS, KEYS, metadata=log.COMMIT_TAG + move
    )
    version = log.delete_commits(spark, settings, {move})[move]
    log.record(
        spark,
        settings,
        [Step(move, None, log.DELETED, source, target, rows=rows, bronze_version=version)],
    )
    report.moved = expected


def tier_run(
    spark: SparkSession, settings: Settings, as_of: datetime, *, progress: Progress = print
) -> TierReport:
    """Bring every tenant's data to the tiers its age calls for at ``as_of`` (module doc),
    under the tiering lease."""
    with hold(settings, TIERING):
        return _tier_run(spark, settings, as_of, progress)


def _tier_run(
    spark: SparkSession, settings: Settings, as_of: datetime, progress: Progress
) -> TierReport:
    from pyspark.sql import functions as F

    from meterlake.catalog.store import read_catalog
    from meterlake.rollups.refresh import refresh_rollups
    from meterlake.tiering.vacuum import vacuum_all

    report = TierReport(as_of)
    catalog = read_catalog(spark, settings).catalog
    _recover(spark, settings, report, progress)
    _move_hot(spark, settings, _cutoff(catalog, as_of, lambda a: a.hot_days), report, progress)
    for spec, days in (
        (tables.SILVER_USAGE_MINUTE, lambda a: a.hot_days),
        (tables.SILVER_USAGE_HOUR, lambda a: a.warm_days),
    ):
        older = F.col("window_date") < _cutoff(catalog, as_of, days)
        report.downsampled[spec.qualified_name] = delete_where(spark, settings, spec, older)
    expired = F.col("billing_date") < _cutoff(catalog, as_of, lambda a: a.retention_days)
    expiring = digest(tables.read(spark, settings, tables.COLD_EVENTS).where(expired))
    if expiring:
        report.expired = delete_where(spark, settings, tables.COLD_EVENTS, expired)
    steps = [
        Step(report.move_id or "-", None, log.DOWNSAMPLED, name, rows=rows)
        for name, rows in report.downsampled.items()
        if rows
    ]
    steps += _partition_steps("-", log.EXPIRED, tables.COLD_EVENTS.path(settings), None, expiring)
    log.record(spark, settings, steps)
    # Before the vacuum: the rollup stream reads the files of bronze versions it has not seen.
    refresh_rollups(spark, settings, progress=progress)
    report.vacuum_floor = vacuum_all(spark, settings, progress)
    return report


def summary(report: TierReport) -> list[str]:
    """What a tier run did, for people."""
    from meterlake.clock import format_instant

    out = [f"tier run as of {format_instant(report.as_of)}"]
    out += [f"  open move {move}: {outcome}" for move, outcome in sorted(report.recovered.items())]
    if report.moved:
        rows = sum(n for n, _ in report.moved.values())
        days = sorted({day for _, day in report.moved})
        out.append(
            f"  moved {rows} event(s) hot → cold in {len(report.moved)} partition(s)"
            f" ({days[0]} … {days[-1]}), verified, move {report.move_id}"
        )
    else:
        out.append("  nothing older than the hot tier's age")
    out += [f"  down-sampled {name}: {rows} row(s)" for name, rows in report.downsampled.items()]
    out.append(f"  expired from cold after retention: {report.expired} event(s)")
    out.append(f"  vacuum floor: bronze version {report.vacuum_floor}")
    return out
