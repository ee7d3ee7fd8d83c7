"""
### meterlake: rollups

Hourly maintenance of silver (`usage_minute`, `usage_hour`, `usage_day`) and
`gold.period_usage`: brings them up to the current bronze (incremental; a new catalog
version rebuilds them). Ingest does the same after each batch; this catches up whatever
else appended to bronze (quarantine replays, backfills). Then the materialised views
(`views.current_usage`, `views.usage_by_dimension`, `views.tenant_daily_usage`) are
rebuilt from them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task


@dag(
    dag_id="meterlake_rollups",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["meterlake", "rollups"],
    doc_md=__doc__,
)
def meterlake_rollups():
    @task
    def refresh() -> dict:
        from meterlake import orchestration

        return orchestration.rollups()

    @task
    def materialised_views() -> dict:
        from meterlake import orchestration

        return orchestration.views()

    refresh() >> materialised_views()


meterlake_rollups()
