"""The data behind ``/dashboard`` of ``meterlake serve``: one JSON document per tenant,
``serving/dashboard/<tenant>.json``, so the page is served without a JVM.

Per customer: the current period's usage and estimated amount (the entry ``GET
/v1/usage`` serves, labelled an estimate, with the stream's freshness), each meter's
hourly usage over the period so far (from ``silver.usage_hour``), the latest invoices
with their status, and recent usage anomalies; per tenant: the latest data-quality and
reconciliation outcomes. Published with the materialised views, from the same estimates.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from meterlake import tables
from meterlake.analytics.anomalies import hourly_value
from meterlake.billing.current_usage import entry
from meterlake.billing.usage import format_quantity
from meterlake.clock import format_instant
from meterlake.currency import format_money
from meterlake.storage import storage_for

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from meterlake.billing.estimate import Estimate
    from meterlake.config import Settings

DASHBOARD_DIR = "serving/dashboard"
RECENT_INVOICES = 6
ANOMALY_DAYS = 7


def _key(tenant: str) -> str:
    return f"{DASHBOARD_DIR}/{tenant}.json"


def _when(value: datetime | None) -> str | None:
    return format_instant(value) if value is not None else None


def _series(spark: SparkSession, settings: Settings, current: list[Estimate]) -> dict:
    """(tenant, customer) → meter → [[hour, value], ...] over each current period so far."""
    from pyspark.sql import functions as F

    if not current:
        return {}
    first = min(e.period.start for e in current)
    periods = spark.createDataFrame(
        [(e.customer.tenant, e.customer.id, e.period.start) for e in current],
        "tenant_id string, customer_id string, period_start timestamp",
    )
    hours = (
        tables.read(spark, settings, tables.SILVER_USAGE_HOUR)
        .where(F.col("window_date") >= first.date())
        .join(F.broadcast(periods), ["tenant_id", "customer_id"])
        .where(F.col("window_start") >= F.col("period_start"))
        .groupBy("tenant_id", "customer_id", "meter_key", "window_start")
        .agg(hourly_value().alias("v"))
    )
    out: dict = defaultdict(lambda: defaultdict(list))
    for r in hours.orderBy("window_start").collect():
        point = [format_instant(r.window_start), format_quantity(r.v)]
        out[r.tenant_id, r.customer_id][r.meter_key].append(point)
    return out


def _invoices(spark: SparkSession, settings: Settings) -> dict:
    """(tenant, customer) → the latest invoices, newest first."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    newest = Window.partitionBy("tenant_id", "customer_id").orderBy(F.desc("period_start"))
    rows = (
        tables.read(spark, settings, tables.BILLING_INVOICES)
        .withColumn("n", F.row_number().over(newest))
        .where(F.col("n") <= RECENT_INVOICES)
        .orderBy("tenant_id", "customer_id", "n")
        .collect()
    )
    out: dict = defaultdict(list)
    for r in rows:
        out[r.tenant_id, r.customer_id].append(
            {
                "invoice_id": r.invoice_id,
                "period_start": format_instant(r.period_start),
                "period_end": format_instant(r.period_end),
                "status": r.status,
                "currency": r.currency,
                "total": format_money(r.total, r.currency),
            }
        )
    return out


def _anomalies(spark: SparkSession, settings: Settings, since: datetime) -> dict:
    from pyspark.sql import functions as F

    rows = (
        tables.read(spark, settings, tables.ANALYTICS_ANOMALIES)
        .where(F.col("hour_start") >= F.lit(since))
        .orderBy(F.desc("hour_start"))
        .collect()
    )
    out: dict = defaultdict(list)
    for r in rows:
        out[r.tenant_id, r.customer_id].append(
            {
                "hour_start": format_instant(r.hour_start),
                "meter": r.meter_key,
                "direction": r.direction,
                "value": format_quantity(r.value),
                "baseline_mean": round(r.baseline_mean, 3),
            }
        )
    return out


def publish_dashboard(spark: SparkSession, settings: Settings, current: list[Estimate]) -> int:
    """Write every tenant's dashboard document from the customers' current ``estimates``;
    returns how many tenants were published."""
    from meterlake.ingest.progress import read_progress
    from meterlake.monitoring.health import latest_checks

    mark = read_progress(settings)
    freshness = mark.through if mark else None
    checks = latest_checks(spark, settings)
    series = _series(spark, settings, current)
    invoices = _invoices(spark, settings)
    anomalies = _anomalies(spark, settings, settings.now() - timedelta(days=ANOMALY_DAYS))
    documents: dict[str, dict[str, Any]] = {}
    for estimate in current:
        key = (estimate.customer.tenant, estimate.customer.id)
        document = documents.setdefault(
            key[0],
            {
                "tenant_id": key[0],
                "updated_at": format_instant(settings.now()),
                "freshness": _when(freshness),
                "quality": {
                    "run_at": _when(checks.quality_at),
                    "failures": checks.quality_failures,
                },
                "reconciliation": {
                    "run_at": _when(checks.reconciled_at),
                    "mismatches": checks.mismatches,
                },
                "customers": {},
            },
        )
        document["customers"][key[1]] = {
            "current": entry(estimate, freshness),
            "series": series.get(key, {}),
            "invoices": invoices.get(key, []),
            "anomalies": anomalies.get(key, []),
        }
    storage = storage_for(settings)
    for tenant, document in documents.items():
        storage.write(_key(tenant), json.dumps(document, sort_keys=True).encode())
    return len(documents)


def read_dashboard(settings: Settings, tenant: str) -> dict[str, Any] | None:
    """A tenant's published dashboard document, or None."""
    data = storage_for(settings).read(_key(tenant))
    return json.loads(data) if data is not None else None
