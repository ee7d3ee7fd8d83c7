"""What the Airflow tasks call: one function per task, plain values in, a JSON-able
summary out. Each opens the process's Spark session on the configured warehouse
(``METERLAKE_*`` environment of the worker); DAG files hold no other logic.

A `MeterlakeError` that retrying cannot fix (bad Params, a failed quality gate, a
reconciliation mismatch) fails the task at once, without Airflow's retries, with its
one-line message; anything else is left to the DAG's retry policy.

Writer leases (`meterlake.lease`): the catch-up tasks (ingest, rollups) skip themselves
when another process holds their lease (``pipeline stream``, say, is doing that very
work); the others wait up to ``METERLAKE_LEASE_WAIT_SECONDS`` (default here
`TASK_LEASE_WAIT_SECONDS`) and are then retried by Airflow like any other "not yet"."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from meterlake.clock import format_instant, parse_instant
from meterlake.errors import LeaseHeldError, MeterlakeError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from meterlake.config import Settings


Task = TypeVar("Task", bound=Callable[..., Any])


def task_body(func: Task) -> Task:
    """Mark ``func`` as a task body: non-retryable meterlake errors become Airflow's
    fail-now exception (imported only when raised, so the library does not need Airflow)."""

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MeterlakeError as exc:
            if exc.retryable:
                raise
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc

    return run  # type: ignore[return-value]


TASK_LEASE_WAIT_SECONDS = 300.0


def _open(*, wait: float | None = TASK_LEASE_WAIT_SECONDS) -> tuple[SparkSession, Settings]:
    """The worker's session and settings; ``wait``: how long a task waits for another
    writer's lease unless ``METERLAKE_LEASE_WAIT_SECONDS`` says otherwise."""
    import os

    from meterlake.config import Settings
    from meterlake.spark import build_session

    explicit = os.environ.get("METERLAKE_LEASE_WAIT_SECONDS")
    settings = Settings.load(wait=None if explicit else wait)
    return build_session(settings), settings


def _skipped(exc: LeaseHeldError) -> dict[str, Any]:
    """What a catch-up task reports when another process holds its lease."""
    print(f"skipped: {exc}")
    return {"skipped": str(exc)}


@task_body
def ingest() -> dict[str, Any]:
    """Landing → bronze → silver → gold, as ``pipeline run``; skipped while another
    process (``pipeline stream``) holds the ingest or rollups lease."""
    from meterlake.pipeline import run_pipeline

    spark, settings = _open(wait=0)
    try:
        result = run_pipeline(spark, settings, progress=print)
    except LeaseHeldError as exc:
        return _skipped(exc)
    tally = result.tally
    return {
        "batches": tally.batches,
        "events_read": tally.events_read,
        "bronze_rows": tally.bronze_rows,
        "duplicates": tally.duplicates,
        "quarantined": tally.quarantined_total,
        "bronze_version": result.rollups.bronze_version if result.rollups else None,
    }


@task_body
def due(as_of: str) -> list[dict[str, str]]:
    """Periods whose grace has passed by ``as_of`` and that are not closed yet."""
    from meterlake.billing.close import due_periods
    from meterlake.catalog.store import read_catalog

    spark, settings = _open()
    found = due_periods(spark, settings, read_catalog(spark, settings), parse_instant(as_of))
    return [
        {
            "tenant": d.customer.tenant,
            "customer": d.customer.id,
            "period_start": format_instant(d.period.start),
            "close": format_instant(d.period.close),
        }
        for d in found
    ]


@task_body
def quality_gate() -> dict[str, Any]:
    """Every Great Expectations suite; raises when one fails."""
    from meterlake.quality.run import require_quality

    spark, settings = _open()
    report = require_quality(spark, settings)
    return {"run_id": report.run_id, "expectations": len(report.outcomes), "docs": str(report.docs)}


@task_body
def reconcile(as_of: str) -> dict[str, Any]:
    """Every reconciliation check, stored in recon.results; raises on a mismatch."""
    from meterlake.billing.close import require_reconciled
    from meterlake.reconcile.run import report

    spark, settings = _open()
    run = require_reconciled(spark, settings, parse_instant(as_of))
    print("\n".join(report(run)))
    return {"run_id": run.run_id, "findings": len(run.findings)}


@task_body
def tier(as_of: str) -> dict[str, Any]:
    """Move data down the tiers by age (copy, verify, log, delete, vacuum)."""
    from meterlake.tiering.move import summary, tier_run

    spark, settings = _open()
    report = tier_run(spark, settings, parse_instant(as_of))
    print("\n".join(summary(report)))
    return {
        "move_id": report.move_id,
        "moved": sum(n for n, _ in report.moved.values()),
        "expired": report.expired,
        "vacuum_floor": report.vacuum_floor,
    }


@task_body
def finalise(as_of: str) -> dict[str, Any]:
    """Finalise the due periods' invoices and write their outbox events."""
    from meterlake.billing.close import finalise_due

    spark, settings = _open()
    result = finalise_due(spark, settings, parse_instant(as_of))
    return {"closed": len(result.due), "as_of": as_of}


@task_body
def stripe_sync(as_of: str) -> dict[str, Any]:
    """Push the final invoices not yet in Stripe; skipped when no Stripe key is set."""
    from meterlake.config import Settings
    from meterlake.errors import BillingSystemError
    from meterlake.integrations.stripe_sync import sync_invoices

    if not Settings.load().billing_system.stripe_api_key:
        return {"skipped": "METERLAKE_STRIPE_API_KEY not set"}
    spark, settings = _open()
    result = sync_invoices(spark, settings, parse_instant(as_of), progress=print)
    if result.failed:
        first, error = result.failed[0]
        raise BillingSystemError(
            f"{len(result.failed)} invoice(s) not synced to Stripe, first {first}: {error}"
        )
    return {"synced": len(result.synced), "already": result.already, "requests": result.requests}


@task_body
def stripe_reconciliation(as_of: str) -> dict[str, Any]:
    """Compare every synced invoice with Stripe into recon.results; raises on a mismatch."""
    from meterlake.billing.close import ReconciliationError
    from meterlake.config import Settings
    from meterlake.integrations.stripe_recon import stripe_findings
    from meterlake.reconcile.run import report, store_run

    if not Settings.load().billing_system.stripe_api_key:
        return {"skipped": "METERLAKE_STRIPE_API_KEY not set"}
    spark, settings = _open()
    run = store_run(spark, settings, parse_instant(as_of), stripe_findings(spark, settings))
    print("\n".join(report(run)))
    if run.mismatches:
        first = run.mismatches[0]
        raise ReconciliationError(
            f"{run.run_id}: {len(run.mismatches)} invoice line(s) differ from Stripe, first"
            f" {first.scope}: {first.detail}"
        )
    return {"run_id": run.run_id, "findings": len(run.findings)}


@task_body
def deliver_webhooks() -> dict[str, Any]:
    """Send undelivered billing-period-closed events; skipped without endpoints."""
    from meterlake.config import Settings
    from meterlake.errors import BillingSystemError
    from meterlake.integrations.webhooks import deliver_outbox

    if not Settings.load().billing_system.webhook_urls:
        return {"skipped": "METERLAKE_WEBHOOK_URLS not set"}
    spark, settings = _open()
    result = deliver_outbox(spark, settings, progress=print)
    if result.failed:
        event, url, error = result.failed[0]
        raise BillingSystemError(
            f"{len(result.failed)} webhook delivery(ies) failed, first {event} → {url}: {error}"
        )
    return {"delivered": len(result.delivered), "events": result.completed_events}


@task_body
def invoice_run(
    as_of: str, customers: list[str] | None, dry_run: bool, reason: str | None
) -> dict[str, Any]:
    """Finance's manual run; ``reason`` is required when it writes."""
    from meterlake.billing.report import run_report
    from meterlake.billing.run import check_run_request, run_invoices

    when = check_run_request(as_of, customers, dry_run, reason)
    spark, settings = _open()
    run = run_invoices(
        spark,
        settings,
        when,
        customers=customers or None,
        dry_run=dry_run,
        reason=reason,
        source="airflow",
    )
    print("\n".join(run_report(run, lines=dry_run)))
    return {
        "invoices": len(run.invoices),
        "written": len(run.saved.written) if run.saved else 0,
        "dry_run": dry_run,
        "reason": reason,
    }


@task_body
def data_quality() -> dict[str, Any]:
    """Every suite, recorded and documented, without failing the task on a failed suite
    (the gate in period close is what blocks)."""
    from meterlake.quality.run import run_quality

    spark, settings = _open()
    report = run_quality(spark, settings)
    return {"run_id": report.run_id, "failures": len(report.failures), "docs": str(report.docs)}


@task_body
def rollups() -> dict[str, Any]:
    """Silver and gold up to the current bronze; skipped while another process holds the
    rollups lease."""
    from meterlake.rollups.refresh import refresh_rollups

    spark, settings = _open(wait=0)
    try:
        result = refresh_rollups(spark, settings, progress=print)
    except LeaseHeldError as exc:
        return _skipped(exc)
    return {
        "rebuilt": result.rebuilt,
        "batches": result.batches,
        "bronze_version": result.bronze_version,
    }


@task_body
def views() -> dict[str, Any]:
    """The materialised views rebuilt from the rollups, and the API's reads of the last
    hour folded into audit.query_log."""
    from meterlake.analytics.views import refresh_views
    from meterlake.audit.query_log import fold_reads

    spark, settings = _open()
    rows = refresh_views(spark, settings, progress=print).rows
    return {**rows, "api_reads_logged": fold_reads(spark, settings)}


@task_body
def anomalies(run_at: str) -> dict[str, Any]:
    """Usage anomalies of the 24 hours before ``run_at`` (stored in analytics.anomalies).

    Airflow 3's cron schedules give a run a zero-length data interval at the moment it
    runs, so the day judged is counted back from there."""
    from datetime import timedelta

    from meterlake.analytics.anomalies import detect_anomalies, report

    spark, settings = _open()
    since = parse_instant(run_at, "run_at") - timedelta(days=1)
    run = detect_anomalies(spark, settings, since)
    print("\n".join(report(run)))
    return {"since": since.isoformat(), "found": len(run.found)}


def interval_end(context: dict[str, Any]) -> str:
    """The instant an Airflow run works up to: the end of its data interval (its logical
    date for manual runs), in UTC."""
    from datetime import UTC

    instant = context.get("data_interval_end") or context["logical_date"]
    return instant.astimezone(UTC).isoformat()
