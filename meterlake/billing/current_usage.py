"""The published current-period usage view: what ``GET /v1/usage`` answers without a JVM.

The continuous pipeline prices the current period of every customer its new events touch
(with `meterlake.billing.estimate.estimates`, the function ``usage show`` uses, straight
from bronze so it need not wait for the rollups) and writes one JSON document per tenant,
``serving/usage/<tenant>.json``, whole (readers never see half of one). Each entry says
``estimate``: a period still open has no final invoice, and the numbers are the usage
received so far, fresh as of the stream's progress mark.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection
from datetime import datetime
from typing import TYPE_CHECKING, Any

from meterlake.billing.estimate import Estimate, estimates
from meterlake.billing.usage import format_quantity
from meterlake.clock import format_instant, parse_instant
from meterlake.config import Settings
from meterlake.currency import format_money
from meterlake.storage import storage_for

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

VIEW_DIR = "serving/usage"


def usage_key(tenant: str) -> str:
    return f"{VIEW_DIR}/{tenant}.json"


def entry(estimate: Estimate, freshness: datetime | None) -> dict[str, Any]:
    """One customer's published usage (decimals as strings: exact, never floats)."""
    period = estimate.period
    return {
        "tenant_id": estimate.customer.tenant,
        "customer_id": estimate.customer.id,
        "status": "estimate",
        "currency": estimate.currency,
        "period": {
            "start": format_instant(period.start),
            "end": format_instant(period.end),
            "close": format_instant(period.close),
        },
        "usage": [
            {
                "meter": meter,
                "plan": segment.plan,
                "segment_start": format_instant(segment.start),
                "segment_end": format_instant(segment.end),
                "quantity": format_quantity(quantity),
            }
            for (segment, meter), quantity in estimate.usage.items()
        ],
        "lines": [
            {
                "kind": x.kind,
                "plan": x.plan,
                "meter": x.meter,
                "amount": format_money(x.amount, estimate.currency),
            }
            for x in estimate.lines
        ],
        "estimated_total": format_money(estimate.amount, estimate.currency),
        "as_of": format_instant(estimate.as_of),
        "bronze_version": estimate.bronze_version,
        "freshness": format_instant(freshness) if freshness else None,
    }


def publish_usage(
    spark: SparkSession,
    settings: Settings,
    keys: Collection[tuple[str, str]] | None,
    freshness: datetime | None,
) -> int:
    """Re-price the current period of the (tenant, customer)s in ``keys`` (None: all) and
    publish them; returns how many were published."""
    from meterlake.catalog.store import read_catalog

    stored = read_catalog(spark, settings)
    chosen = [c for c in stored.catalog.customers if keys is None or (c.tenant, c.id) in keys]
    found = estimates(spark, settings, stored, chosen, settings.now(), from_bronze=True)
    per_tenant: dict[str, list[Estimate]] = defaultdict(list)
    for estimate in found:
        per_tenant[estimate.customer.tenant].append(estimate)
    storage = storage_for(settings)
    for tenant, mine in per_tenant.items():
        current = storage.read(usage_key(tenant))
        document = json.loads(current) if current is not None else {"customers": {}}
        for estimate in mine:
            document["customers"][estimate.customer.id] = entry(estimate, freshness)
        document["updated_at"] = format_instant(settings.now())
        storage.write(usage_key(tenant), json.dumps(document, sort_keys=True).encode())
    return len(found)


def ended_customers(settings: Settings) -> set[tuple[str, str]]:
    """Published customers whose period has ended since: their current period is a new one."""
    storage = storage_for(settings)
    now = settings.now()
    ended = set()
    for key in storage.keys(VIEW_DIR + "/"):
        data = storage.read(key)
        for entry in json.loads(data)["customers"].values() if data else ():
            if parse_instant(entry["period"]["end"]) <= now:
                ended.add((entry["tenant_id"], entry["customer_id"]))
    return ended


def read_usage(settings: Settings, tenant: str, customer: str) -> dict[str, Any] | None:
    """One customer's published current-period usage, or None."""
    data = storage_for(settings).read(usage_key(tenant))
    if data is None:
        return None
    return json.loads(data)["customers"].get(customer)


def pull_document(
    spark: SparkSession, settings: Settings, customer_id: str, as_of: datetime, tenant: str | None
) -> dict[str, Any]:
    """What a billing system that pulls asks for (``usage show --format json``): the usage
    and priced lines of the customer's period containing ``as_of``, as ``GET /v1/usage``
    shows them, marked ``final`` with the stored invoice once that period's invoice is."""
    from meterlake.billing.estimate import current_estimate, final_invoice
    from meterlake.billing.export import export_document
    from meterlake.billing.invoices import invoice_id
    from meterlake.ingest.progress import read_progress

    estimate = current_estimate(spark, settings, customer_id, as_of, tenant)
    mark = read_progress(settings)
    document = entry(estimate, mark.through if mark else None)
    c, p = estimate.customer, estimate.period
    final = final_invoice(spark, settings, invoice_id(c.tenant, c.id, p.start))
    if final is not None:
        (stored,) = [
            i for i in export_document(spark, settings)["invoices"] if i["invoice_id"] == final
        ]
        document.update(status="final", invoice=stored)
    return document
