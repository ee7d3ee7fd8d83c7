"""
### meterlake: usage anomalies

Daily. Each complete hour of the 24 before the run, per customer and meter, against the
week before it: usage beyond 3 standard deviations of that week's hourly mean is stored in
`analytics.anomalies` as a spike or a drop (`meterlake anomalies --since` lists them, with
`--k` and `--baseline-hours` to tune).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, get_current_context, task


@dag(
    dag_id="meterlake_anomalies",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=15)},
    tags=["meterlake", "analytics"],
    doc_md=__doc__,
)
def meterlake_anomalies():
    @task
    def detect() -> dict:
        from meterlake import orchestration

        return orchestration.anomalies(orchestration.interval_end(get_current_context()))

    detect()


meterlake_anomalies()
