"""``meterlake status``: the warehouse's health as metrics, checked against `rules.RULES`.

Computed from the warehouse itself (landing manifest, bronze accounting, rollup state,
reconciliation and quality results, billing-system logs), so it is right whichever
process did the work. Printed as a summary, or written in Prometheus's text format for
node_exporter's textfile collector (``--format prometheus --out``), where the rules in
``infra/prometheus/meterlake-alerts.yml`` watch them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.clock import from_table
from meterlake.ingest.landing import manifest_entries
from meterlake.ingest.progress import read_progress
from meterlake.ingest.summary import quarantined_by_reason
from meterlake.monitoring.rules import RULES, Rule
from meterlake.rollups.refresh import load_state
from meterlake.tiering.events import bronze_version

if TYPE_CHECKING:
    from pyspark.sql import Column, SparkSession

    from meterlake.config import Settings

SETTLED = timedelta(hours=1)  # landing batches older than this must be in bronze
UNDELIVERED = timedelta(hours=1)


@dataclass(frozen=True)
class Sample:
    name: str
    help: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


@dataclass
class Health:
    at: datetime
    samples: list[Sample] = field(default_factory=list)

    def add(self, name: str, help_text: str, value: float, **labels: str) -> None:
        self.samples.append(Sample(name, help_text, float(value), tuple(sorted(labels.items()))))

    def value(self, name: str) -> float | None:
        return next((s.value for s in self.samples if s.name == name and not s.labels), None)

    def firing(self) -> list[tuple[Rule, float]]:
        """The rules whose condition holds now (Prometheus adds the ``for`` duration)."""
        return [
            (rule, value)
            for rule in RULES
            if (value := self.value(rule.metric)) is not None and rule.firing(value)
        ]

    def prometheus(self) -> str:
        """Prometheus text exposition format (one HELP/TYPE per metric name)."""
        out: list[str] = []
        described: set[str] = set()
        for s in self.samples:
            if s.name not in described:
                described.add(s.name)
                out += [f"# HELP {s.name} {s.help}", f"# TYPE {s.name} gauge"]
            labels = ",".join(f'{k}="{v}"' for k, v in s.labels)
            out.append(f"{s.name}{{{labels}}} {s.value:g}" if labels else f"{s.name} {s.value:g}")
        return "\n".join(out) + "\n"


def collect(spark: SparkSession, settings: Settings) -> Health:
    """Every metric of the module docstring, as of ``settings.now()``."""
    health = Health(settings.now())
    _flow(spark, settings, health)
    _rollups(spark, settings, health)
    _checks(spark, settings, health)
    _billing(spark, settings, health)
    return health


def _flow(spark: SparkSession, settings: Settings, health: Health) -> None:
    """Event flow, lag, freshness, completeness and quarantine."""
    now = health.at
    landed = list(manifest_entries(settings))
    accounts = {
        r.batch_id: r
        for r in tables.read(spark, settings, tables.BRONZE_BATCHES)
        .select("batch_id", "events_read", "quarantined", "duplicates", "processed_at")
        .collect()
    }
    waiting = [b for b in landed if b.batch_id not in accounts]
    settled = [b for b in landed if b.received <= now - SETTLED]
    expected = sum(b.lines - b.blank_lines for b in settled)
    accounted = sum(accounts[b.batch_id].events_read for b in settled if b.batch_id in accounts)
    progress = read_progress(settings)
    recent = [a for a in accounts.values() if from_table(a.processed_at) > now - timedelta(1)]
    read_24h = sum(a.events_read for a in recent)

    health.add("meterlake_landing_batches", "landing batches committed", len(landed))
    health.add(
        "meterlake_landing_events",
        "event lines landed",
        sum(b.lines - b.blank_lines for b in landed),
    )
    health.add(
        "meterlake_landing_batches_waiting", "landing batches not yet in bronze", len(waiting)
    )
    health.add(
        "meterlake_bronze_lag_seconds",
        "age of the oldest landing batch not yet in bronze (0: none waiting)",
        max(((now - b.received).total_seconds() for b in waiting), default=0),
    )
    behind = (now - progress.through).total_seconds() if progress else -1
    health.add(
        "meterlake_freshness_seconds",
        "while landing holds newer batches, seconds since the newest receipt time bronze has"
        " taken in (0: bronze has all that landed; -1: it never ran)",
        behind if waiting else 0,
    )
    health.add(
        "meterlake_completeness_ratio",
        "events landed over an hour ago that bronze accounts for (bronze, duplicate, quarantine)",
        accounted / expected if expected else 1,
    )
    health.add(
        "meterlake_quarantine_ratio_24h",
        "quarantined / read over the landing batches processed in the last 24 h",
        sum(a.quarantined for a in recent) / read_24h if read_24h else 0,
    )
    health.add(
        "meterlake_duplicates",
        "duplicate events dropped",
        sum(a.duplicates for a in accounts.values()),
    )
    for reason, count in quarantined_by_reason(spark, settings).items():
        health.add(
            "meterlake_quarantined", "quarantined events not re-admitted", count, reason=reason
        )


def _rollups(spark: SparkSession, settings: Settings, health: Health) -> None:
    state = load_state(settings)
    behind = bronze_version(spark, settings) - (state.bronze_version if state else -1)
    health.add(
        "meterlake_rollup_lag_versions", "bronze commits silver and gold have not taken in", behind
    )


@dataclass(frozen=True)
class Checks:
    """The latest reconciliation and data-quality outcomes (None: never run)."""

    reconciled_at: datetime | None
    mismatches: int | None
    quality_at: datetime | None
    quality_failures: int | None


def latest_checks(spark: SparkSession, settings: Settings) -> Checks:
    """The newest reconciliation and data-quality runs and how many of their rows failed."""
    from pyspark.sql import functions as F

    recon_at, mismatches = _latest_run(
        spark, settings, tables.RECON_RESULTS, F.col("status") == "mismatch"
    )
    quality_at, failures = _latest_run(spark, settings, tables.QUALITY_RESULTS, ~F.col("success"))
    return Checks(recon_at, mismatches, quality_at, failures)


def _latest_run(
    spark: SparkSession, settings: Settings, spec: tables.TableSpec, failed: Column
) -> tuple[datetime | None, int | None]:
    """When ``spec``'s newest run was (its ``run_at``) and how many of its rows are
    ``failed``; (None, None) before the first run."""
    from pyspark.sql import functions as F

    results = tables.read(spark, settings, spec)
    run_at = results.agg(F.max("run_at")).first()[0]
    if run_at is None:
        return None, None
    return run_at, results.where((F.col("run_at") == run_at) & failed).count()


def _checks(spark: SparkSession, settings: Settings, health: Health) -> None:
    """The latest reconciliation and data-quality outcomes."""
    checks = latest_checks(spark, settings)
    if checks.reconciled_at is not None:
        health.add(
            "meterlake_reconciliation_mismatches",
            "mismatches in the latest reconciliation",
            checks.mismatches,
        )
        health.add(
            "meterlake_reconciliation_age_seconds",
            "seconds since the latest reconciliation",
            (health.at - from_table(checks.reconciled_at)).total_seconds(),
        )
    if checks.quality_at is not None:
        health.add(
            "meterlake_quality_failures",
            "failed expectations in the latest run",
            checks.quality_failures,
        )


def _billing(spark: SparkSession, settings: Settings, health: Health) -> None:
    """Final invoices per currency, Stripe sync failures, undelivered webhooks."""
    from pyspark.sql import functions as F

    finals = (
        tables.read(spark, settings, tables.BILLING_INVOICES)
        .where(F.col("status") == "final")
        .groupBy("currency")
        .agg(F.count("*").alias("n"), F.sum("total").alias("total"))
        .collect()
    )
    for row in sorted(finals):
        health.add("meterlake_final_invoices", "final invoices", row.n, currency=row.currency)
        health.add(
            "meterlake_invoiced_amount", "total of final invoices", row.total, currency=row.currency
        )
    failed = tables.read(spark, settings, tables.BILLING_STRIPE_SYNC).where(
        F.col("status") == "failed"
    )
    health.add(
        "meterlake_stripe_sync_failed", "Stripe objects whose last attempt failed", failed.count()
    )
    overdue = (
        tables.read(spark, settings, tables.BILLING_OUTBOX)
        .where(F.col("delivered_at").isNull())
        .where(F.col("created_at") < F.lit(health.at - UNDELIVERED))
    )
    health.add(
        "meterlake_webhooks_undelivered",
        "closed-period events undelivered for over an hour (0 when no endpoint is configured)",
        overdue.count() if settings.billing_system.webhook_urls else 0,
    )
