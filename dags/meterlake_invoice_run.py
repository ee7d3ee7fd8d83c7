"""
### meterlake: finance invoice run

Triggered by hand. Params: `as_of` (ISO 8601 instant with offset, required),
`customers` (list of customer ids, empty = everyone), `dry_run` (default true: a report,
no invoice written) and `reason` (required when `dry_run` is false; recorded with the
run in `billing.runs`). A bad date is refused when the run is triggered; a missing reason
or an unknown customer fails the task, without retries, before anything is computed or
written.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task

ISO_INSTANT = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})$"


@dag(
    dag_id="meterlake_invoice_run",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=2)},
    tags=["meterlake", "billing", "finance"],
    doc_md=__doc__,
    params={
        # Airflow checks JSON Schema formats only in the UI; the pattern makes the check real.
        "as_of": Param(
            type="string",
            format="date-time",
            pattern=ISO_INSTANT,
            description="ISO 8601 instant with offset, e.g. 2026-03-05T00:00:00Z",
        ),
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
