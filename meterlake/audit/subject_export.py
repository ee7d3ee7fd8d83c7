"""``meterlake gdpr export``: everything meterlake holds about one customer or one user
of a tenant, from every tier, as one JSON document (GDPR access and portability).

A customer's export holds its catalog entry, its events (hot and cold, each marked with
its tier and landing file), its quarantined lines and its invoices; a user's export holds
the events carrying that ``user_id`` and the quarantined lines mentioning it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meterlake import tables
from meterlake.audit.erasure import mentions, mentions_in_raw
from meterlake.clock import audit_now, format_instant, from_table
from meterlake.errors import ConfigError
from meterlake.tiering.events import events_at

if TYPE_CHECKING:
    from pyspark.sql import Column, SparkSession

    from meterlake.config import Settings

LINEAGE = ["batch_id", "line_number"]


def _plain(value: Any) -> Any:
    """JSON-ready: instants as UTC ISO strings, decimals as strings, dates as ISO dates."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return format_instant(value if value.tzinfo else from_table(value))
    if isinstance(value, date | timedelta | Decimal):
        return str(value)
    return value


def _events(spark: SparkSession, settings: Settings, subject: Column) -> list[dict[str, Any]]:
    from pyspark.sql import functions as F

    hot = tables.read(spark, settings, tables.BRONZE_EVENTS).where(subject).select(*LINEAGE)
    rows = (
        events_at(spark, settings)
        .where(subject)
        .join(hot.withColumn("tier", F.lit("hot")), LINEAGE, "left")
        .withColumn("tier", F.coalesce("tier", F.lit("cold")))
        .orderBy("billing_time", "event_id")
        .collect()
    )
    return [_plain(row.asDict()) for row in rows]


def subject_document(
    spark: SparkSession,
    settings: Settings,
    tenant: str,
    *,
    customer: str | None = None,
    user: str | None = None,
) -> dict[str, Any]:
    """The export of ``customer`` or ``user`` (exactly one) of ``tenant``."""
    from pyspark.sql import functions as F

    from meterlake.billing.export import export_document
    from meterlake.catalog.store import read_catalog

    if (customer is None) == (user is None):
        raise ConfigError("gdpr export: give exactly one of --customer and --user")
    mine = F.col("tenant_id") == tenant
    document: dict[str, Any] = {
        "subject": {"tenant": tenant, "customer": customer, "user": user},
        "generated_at": format_instant(audit_now()),
    }
    if customer is not None:
        entry = next(
            (
                c
                for c in read_catalog(spark, settings).catalog.customers
                if (c.tenant, c.id) == (tenant, customer)
            ),
            None,
        )
        if entry is None:
            raise ConfigError(f"--customer: no customer {customer!r} in tenant {tenant!r}")
        subject = mine & (F.col("customer_id") == customer)
        document["customer"] = _plain(asdict(entry))
        document["invoices"] = [
            i
            for i in export_document(spark, settings)["invoices"]
            if (i["tenant_id"], i["customer_id"]) == (tenant, customer)
        ]
        in_quarantine = subject
    else:
        subject = mine & mentions(user)
        in_quarantine = mentions_in_raw(tenant, user)
    document["events"] = _events(spark, settings, subject)
    quarantined = (
        tables.read(spark, settings, tables.BRONZE_QUARANTINE)
        .where(in_quarantine)
        .select("landing_file", "line_number", "reason", "detail", F.col("raw").cast("string"))
        .orderBy("landing_file", "line_number")
        .collect()
    )
    document["quarantined"] = [_plain(row.asDict()) for row in quarantined]
    return document


def write_subject(document: dict[str, Any], out: str | Path) -> int:
    """Write the document; returns how many events it holds."""
    Path(out).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return len(document["events"])
