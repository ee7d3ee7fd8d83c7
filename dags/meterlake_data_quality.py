"""
### meterlake: data quality

Daily. Runs every Great Expectations suite in `expectations/` (bronze, silver, gold,
billing), stores each expectation's outcome in `quality.results` and rebuilds Data Docs
under `<warehouse>/_quality/gx/uncommitted/data_docs/local_site`. A failing suite is
reported here; the period-close gate is what blocks finalisation.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task


@dag(
    dag_id="meterlake_data_quality",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=10)},
    tags=["meterlake", "quality"],
    doc_md=__doc__,
)
def meterlake_data_quality():
    @task
    def validate_all_layers() -> dict:
        from meterlake import orchestration

        return orchestration.data_quality()

    validate_all_layers()


meterlake_data_quality()
