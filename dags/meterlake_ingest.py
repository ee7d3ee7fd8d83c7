"""
### meterlake: ingest

Every five minutes: landing → bronze (validated, deduplicated, exactly once) → silver
rollups → gold period usage, the same as `meterlake pipeline run`. A run that finds
nothing new finishes quickly; runs never overlap.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task


@dag(
    dag_id="meterlake_ingest",
    schedule=timedelta(minutes=5),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 3, "retry_delay": timedelta(minutes=1)},
    tags=["meterlake", "ingest"],
    doc_md=__doc__,
)
def meterlake_ingest():
    @task
    def landing_to_gold() -> dict:
        from meterlake import orchestration

        return orchestration.ingest()

    landing_to_gold()


meterlake_ingest()
