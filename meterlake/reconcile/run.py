"""``reconcile --as-of``: run every check, store the findings in ``recon.results``."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.clock import format_instant
from meterlake.delta_io import append
from meterlake.reconcile import checks
from meterlake.reconcile.checks import Finding

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from meterlake.config import Settings
    from meterlake.integrations.stripe_recon import StripeInvoice


@dataclass(frozen=True)
class ReconRun:
    run_id: str
    as_of: datetime
    findings: list[Finding]

    @property
    def mismatches(self) -> list[Finding]:
        return [f for f in self.findings if f.status == "mismatch"]


def reconcile(
    spark: SparkSession,
    settings: Settings,
    as_of: datetime,
    *,
    stripe: bool = False,
    stripe_fetch: Callable[[str], StripeInvoice] | None = None,
) -> ReconRun:
    """All checks as of ``as_of`` (after the same freshness checks as an invoice run);
    ``stripe`` adds the comparison of synced invoices with Stripe (``stripe_fetch``: how
    to read a Stripe invoice, by default its API)."""
    from meterlake.billing.run import require_current
    from meterlake.catalog.store import read_catalog

    version = require_current(spark, settings, as_of).bronze_version
    stored = read_catalog(spark, settings)
    findings = (
        checks.completeness(spark, settings)
        + checks.bronze_silver(spark, settings, stored)
        + checks.bronze_gold(spark, settings, stored)
        + checks.invoices(spark, settings, stored, as_of, version)
    )
    if stripe:
        from meterlake.integrations.stripe_recon import stripe_findings

        findings += stripe_findings(spark, settings, fetch=stripe_fetch)
    return store_run(spark, settings, as_of, findings)


def store_run(
    spark: SparkSession, settings: Settings, as_of: datetime, findings: list[Finding]
) -> ReconRun:
    """Give ``findings`` a run id and append them to recon.results."""
    now = settings.now()
    digest = hashlib.sha256(f"{format_instant(as_of)} {format_instant(now)}".encode())
    run = ReconRun(f"recon-{digest.hexdigest()[:16]}", as_of, findings)
    rows = [
        (run.run_id, as_of, now, f.check, f.scope, f.expected, f.actual, f.diff, f.status, f.detail)
        for f in findings
    ]
    frame = spark.createDataFrame(rows, tables.nullable_schema(tables.RECON_RESULTS))
    append(frame, settings, tables.RECON_RESULTS)
    return run


def report(run: ReconRun) -> list[str]:
    """What ``meterlake reconcile`` prints: one line per check, then what needs a look."""
    out = [f"reconciliation {run.run_id} as of {format_instant(run.as_of)}"]
    for check in dict.fromkeys(f.check for f in run.findings):
        mine = [f for f in run.findings if f.check == check]
        bad = [f for f in mine if f.status != "ok"]
        verdict = "ok" if not bad else f"{len(bad)} finding(s)"
        detail = mine[0].detail if not bad else ""
        out.append(f"  {check:<14}{verdict:<16}{detail}")
        for f in bad:
            out.append(
                f"    {f.status:<9}{f.scope}: expected {f.expected}, actual {f.actual}"
                f"{' — ' + f.detail if f.detail else ''}"
            )
    out.append(
        "result: "
        + ("all checks agree" if not run.mismatches else f"{len(run.mismatches)} mismatch(es)")
    )
    return out
