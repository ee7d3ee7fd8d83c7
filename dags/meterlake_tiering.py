"""
### meterlake: hot/warm/cold tiering

Daily. Raw events older than each tenant's hot age move from `bronze.events` to the cold
table (copied, verified per partition by row count and checksum, logged in
`audit.tiering_log`, then deleted from bronze); minute and hourly rollups are
down-sampled with age; cold events past retention are deleted; VACUUM runs with the
retention window. One run at a time: a run takes over any move an earlier one left open.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, get_current_context, task


@dag(
    dag_id="meterlake_tiering",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=15)},
    tags=["meterlake", "storage"],
    doc_md=__doc__,
)
def meterlake_tiering():
    @task
    def tier() -> dict:
        from meterlake import orchestration

        return orchestration.tier(orchestration.interval_end(get_current_context()))

    tier()


meterlake_tiering()
