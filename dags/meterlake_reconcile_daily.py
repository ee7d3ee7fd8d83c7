"""
### meterlake: daily reconciliation

Daily. Completeness per landing batch, bronze → silver → gold agreement, drafts against
a recomputation from bronze, final invoices against their recomputation, and late usage
waiting for its adjustment. Findings go to `recon.results`; a mismatch fails the task.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, get_current_context, task


@dag(
    dag_id="meterlake_reconcile_daily",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=10)},
    tags=["meterlake", "reconciliation"],
    doc_md=__doc__,
)
def meterlake_reconcile_daily():
    @task
    def reconcile() -> dict:
        from meterlake import orchestration

        return orchestration.reconcile(orchestration.interval_end(get_current_context()))

    reconcile()


meterlake_reconcile_daily()
