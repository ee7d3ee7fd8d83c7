"""
### meterlake: finance invoice run

Triggered by hand. Params: `as_of` (ISO 8601 instant with offset, required),
`customers` (list of customer ids, empty = everyone), `dry_run` (default true: a report,
no invoice written) and `reason` (required when `dry_run` is false; kept in the run's
log). Params are checked first; a bad date, a missing reason or an unknown customer stops
the run before anything is computed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task


@dag(
    dag_id="meterlake_invoice_run",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=2)},
    tags=["meterlake", "billing", "finance"],
    doc_md=__doc__,
    params={
        "as_of": Param(type="string", format="date-time", description="ISO 8601 with offset"),
        "customers": Param([], type="array", items={"type": "string"}),
        "dry_run": Param(True, type="boolean"),
        "reason": Param(None, type=["null", "string"], description="required unless dry run"),
    },
)
def meterlake_invoice_run():
    @task
    def invoice_run() -> dict:
        from meterlake import orchestration

        params = get_current_context()["params"]
        return orchestration.invoice_run(
            params["as_of"], params["customers"], params["dry_run"], params["reason"]
        )

    invoice_run()


meterlake_invoice_run()
