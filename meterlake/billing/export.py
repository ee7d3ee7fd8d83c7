"""``invoices export``: every invoice in its current state as JSON (DESIGN.md format).

Money is a decimal string in major units with exactly the currency's minor digits;
quantities are plain decimal strings; instants are UTC ISO 8601.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meterlake import tables
from meterlake.billing.store import current_lines
from meterlake.billing.usage import format_quantity
from meterlake.clock import format_instant, from_table
from meterlake.currency import format_money

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from meterlake.config import Settings


def export_document(
    spark: SparkSession, settings: Settings, tenant: str | None = None
) -> dict[str, Any]:
    """``{"invoices": [...]}`` ordered by tenant, customer and period; only ``tenant``'s
    when one is given (the others are filtered out in Spark, never read into Python)."""
    stored = tables.read(spark, settings, tables.BILLING_INVOICES)
    if tenant is not None:
        stored = stored.where(stored.tenant_id == tenant)
    mine = current_lines(spark, settings).join(
        stored.select("invoice_id"), "invoice_id", "left_semi"
    )
    lines = defaultdict(list)
    for row in mine.orderBy("invoice_id", "line_no").collect():
        lines[row.invoice_id].append(row)
    invoices = stored.orderBy("tenant_id", "customer_id", "period_start").collect()

    def when(value) -> str:
        return format_instant(from_table(value))

    def conversion(i) -> dict[str, Any]:
        """Converted invoices say from what, at which rate of which day, and the rounding;
        each line keeps its amount before conversion."""
        if not i.source_currency:
            return {}
        return {
            "conversion": {
                "source_currency": i.source_currency,
                "rate": format(i.fx_rate.normalize(), "f"),
                "rate_date": i.fx_rate_date.isoformat(),
                "rounding": format_money(i.fx_rounding, i.currency),
            }
        }

    def source(line, i) -> dict[str, Any]:
        if line.source_amount is None:
            return {}
        return {"source_amount": format_money(line.source_amount, i.source_currency)}

    return {
        "invoices": [
            {
                "invoice_id": i.invoice_id,
                "tenant_id": i.tenant_id,
                "customer_id": i.customer_id,
                "currency": i.currency,
                "period_start": when(i.period_start),
                "period_end": when(i.period_end),
                "close_at": when(i.close_at),
                "status": i.status,
                "lines": [
                    {
                        "line_id": line.line_id,
                        "kind": line.kind,
                        "meter": line.meter_key,
                        "plan": line.plan_id,
                        "quantity": format_quantity(line.quantity),
                        "amount": format_money(line.amount, i.currency),
                        "period_start": when(line.period_start),
                        "period_end": when(line.period_end),
                        **source(line, i),
                    }
                    for line in lines[i.invoice_id]
                ],
                "subtotal": format_money(i.subtotal, i.currency),
                "credits": format_money(i.credits, i.currency),
                "total": format_money(i.total, i.currency),
                **conversion(i),
            }
            for i in invoices
        ]
    }


def write_export(
    spark: SparkSession, settings: Settings, out: str | Path, tenant: str | None = None
) -> int:
    """Write the export (of ``tenant`` only, when given) to ``out`` atomically; returns the
    number of invoices."""
    document = export_document(spark, settings, tenant)
    target = Path(out)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(partial, target)
    return len(document["invoices"])
