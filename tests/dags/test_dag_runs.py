"""The period-close and finance DAGs run end to end with ``dag.test()`` on a real warehouse.

Airflow gets its own AIRFLOW_HOME and SQLite metadata database, made here. Its
configuration is read once, at import, so this module imports Airflow in-process only
after pointing it there; the tasks run in this process and share the suite's
SparkSession. The warehouse's clock follows the scenario through ``METERLAKE_NOW``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from unittest import mock

import pytest

from meterlake import tables
from meterlake.catalog.parse import parse_catalog_text
from meterlake.catalog.store import store_catalog
from meterlake.config import Settings
from meterlake.ingest.landing import land_file
from meterlake.warehouse import init_warehouse
from tests.helpers import BASIC_CATALOG

DAGS = Path(__file__).resolve().parents[2] / "dags"
EVENTS = [
    {"event_id": "j1", "customer_id": "c1", "event_type": "api_call", "quantity": 100,
     "timestamp": "2026-01-20T10:00:00Z"},
    {"event_id": "j2", "customer_id": "c2", "event_type": "api_call", "quantity": 7,
     "timestamp": "2026-01-31T23:59:00Z"},
    {"event_id": "f1", "customer_id": "c1", "event_type": "api_call", "quantity": 40,
     "timestamp": "2026-02-10T08:00:00Z"},
]  # fmt: skip
RECEIVED = datetime(2026, 2, 1, 6, tzinfo=UTC)
BEFORE_GRACE = datetime(2026, 2, 2, 12, tzinfo=UTC)  # January closes Feb 3 00:00 (48 h)
AFTER_GRACE = datetime(2026, 2, 3, 1, tzinfo=UTC)
MARCH = datetime(2026, 3, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def env(spark, tmp_path_factory) -> Iterator[dict[str, str]]:
    """A warehouse with the catalog and one landed batch, and the environment the tasks
    read their settings from."""
    folder = tmp_path_factory.mktemp("dag_runs")
    settings = Settings.load(env={}).with_warehouse(str(folder / "warehouse"))
    init_warehouse(spark, settings)
    store_catalog(spark, settings, parse_catalog_text(BASIC_CATALOG, "catalog.yaml"))
    batch = folder / "usage.jsonl"
    batch.write_text("".join(json.dumps(e) + "\n" for e in EVENTS[:2]))
    land_file(replace(settings, pinned_now=RECEIVED), batch, "default")
    values = {
        "AIRFLOW_HOME": str(folder / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "METERLAKE_WAREHOUSE": settings.warehouse,
        "METERLAKE_SHUFFLE_PARTITIONS": "2",
        "METERLAKE_NOW": RECEIVED.isoformat(),
    }
    with mock.patch.dict(os.environ, values):
        yield values


@pytest.fixture(scope="module")
def dags(env) -> Callable[[], dict]:
    """Parses the project's DAGs afresh (as every Airflow worker does: a run in this
    process must not see what an earlier one left in the DAG objects, such as merged
    Params), with a freshly migrated metadata DB."""
    assert "airflow" not in sys.modules, "Airflow was imported before its home was set"
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils import db

    db.initdb()
    # Airflow's logging setup binds py4j's INFO messages to pytest's captured stdout,
    # which is closed by the time py4j logs its goodbye at interpreter exit.
    logging.getLogger("py4j").setLevel(logging.WARNING)

    def parse() -> dict:
        bag = DagBag(dag_folder=str(DAGS))
        assert not bag.import_errors
        return bag.dags

    return parse


def run(dags, dag_id: str, at: datetime, conf: dict | None = None) -> dict[str, str]:
    """``dag.test()`` at ``at`` (its logical date and the warehouse's now); returns each
    task's final state, plus the run's under ``"<run>"``."""
    os.environ["METERLAKE_NOW"] = at.isoformat()
    dag_run = dags()[dag_id].test(logical_date=at, run_conf=conf)
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    return {"<run>": str(dag_run.state), **states}


def last_try(dag_id: str, task_id: str):
    """The task instance of the DAG's latest run."""
    from airflow.models.dagrun import DagRun

    (dag_run,) = DagRun.find(dag_id=dag_id)[-1:]
    return dag_run.get_task_instance(task_id)


def returned(dag_id: str, task_id: str) -> object:
    return last_try(dag_id, task_id).xcom_pull(task_ids=task_id)


def read(spark, env: dict, spec: tables.TableSpec) -> list:
    settings = Settings.load(env=env)
    return tables.read(spark, settings, spec).collect()


def invoices(spark, env: dict) -> list[tuple]:
    return sorted(
        (r.customer_id, r.period_start.month, r.status, r.total)
        for r in read(spark, env, tables.BILLING_INVOICES)
    )


def test_ingest_lands_the_batch_in_bronze(spark, env, dags) -> None:
    assert run(dags, "meterlake_ingest", RECEIVED) == {
        "<run>": "success",
        "landing_to_gold": "success",
    }
    assert returned("meterlake_ingest", "landing_to_gold")["bronze_rows"] == 2
    assert len(read(spark, env, tables.GOLD_PERIOD_USAGE)) == 2


def test_period_close_waits_for_grace(spark, env, dags) -> None:
    states = run(dags, "meterlake_period_close", BEFORE_GRACE)
    assert states == {
        "<run>": "success",
        "find_due": "success",
        "quality_gate": "skipped",
        "pre_invoice_reconciliation": "skipped",
        "finalise_and_emit": "skipped",
        "deliver_webhooks": "skipped",
        "stripe_sync": "skipped",
        "post_invoice_stripe_reconciliation": "skipped",
    }
    assert invoices(spark, env) == []
    assert read(spark, env, tables.BILLING_OUTBOX) == []


def test_period_close_after_grace_finalises_and_announces_once(spark, env, dags) -> None:
    states = run(dags, "meterlake_period_close", AFTER_GRACE)
    assert set(states.values()) == {"success"}
    # No Stripe key or webhook URL here: those tasks say so and succeed.
    assert returned("meterlake_period_close", "stripe_sync") == {
        "skipped": "METERLAKE_STRIPE_API_KEY not set"
    }
    assert invoices(spark, env) == [
        ("c1", 1, "final", Decimal("11.00")),
        ("c2", 1, "final", Decimal("10.07")),
    ]
    events = [json.loads(r.payload) for r in read(spark, env, tables.BILLING_OUTBOX)]
    assert sorted((e["customer_id"], e["type"], e["total"]) for e in events) == [
        ("c1", "billing.period.closed", "11.00"),
        ("c2", "billing.period.closed", "10.07"),
    ]
    (logged,) = read(spark, env, tables.BILLING_RUNS)
    assert (logged.source, logged.reason, logged.created) == ("period_close", "period close", 2)
    later = run(dags, "meterlake_period_close", AFTER_GRACE.replace(hour=2))
    assert later["find_due"] == "success" and later["finalise_and_emit"] == "skipped"
    assert len(read(spark, env, tables.BILLING_OUTBOX)) == 2
    assert len(read(spark, env, tables.BILLING_RUNS)) == 1


def test_finance_dry_run_reports_and_writes_nothing(spark, env, dags) -> None:
    batch = Path(env["AIRFLOW_HOME"]).parent / "february.jsonl"
    batch.write_text(json.dumps(EVENTS[2]) + "\n")
    settings = Settings.load(env={**env, "METERLAKE_NOW": "2026-02-11T00:00:00Z"})
    land_file(settings, batch, "default")
    assert run(dags, "meterlake_ingest", MARCH)["<run>"] == "success"
    before = invoices(spark, env)
    conf = {"as_of": "2026-03-02T00:00:00Z", "customers": ["c1"]}
    assert run(dags, "meterlake_invoice_run", MARCH, conf)["invoice_run"] == "success"
    assert returned("meterlake_invoice_run", "invoice_run") == {
        "invoices": 2, "written": 0, "dry_run": True, "reason": None,
    }  # fmt: skip
    assert invoices(spark, env) == before


def test_finance_final_run_writes_and_records_the_reason(spark, env, dags) -> None:
    conf = {
        "as_of": "2026-03-02T00:00:00Z",
        "customers": ["c1"],
        "dry_run": False,
        "reason": "March review, ticket FIN-12",
    }
    assert run(dags, "meterlake_invoice_run", MARCH, conf)["invoice_run"] == "success"
    assert ("c1", 2, "draft", Decimal("10.40")) in invoices(spark, env)
    logged = [r for r in read(spark, env, tables.BILLING_RUNS) if r.source == "airflow"]
    assert [(r.reason, r.customers, r.created) for r in logged] == [
        ("March review, ticket FIN-12", "c1", 1)
    ]


def test_bad_date_is_refused_at_trigger(spark, env, dags) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError, match="as_of"):
        run(dags, "meterlake_invoice_run", MARCH, {"as_of": "2026-03-02"})


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"as_of": "2026-03-02T00:00:00Z", "dry_run": False}, "reason: required"),
        ({"as_of": "2026-03-02T00:00:00Z", "dry_run": False, "reason": "  "}, "reason: required"),
        (
            {"as_of": "2026-03-02T00:00:00Z", "customers": ["nobody"]},
            "--customer: no customer 'nobody'",
        ),
    ],
    ids=["missing-reason", "blank-reason", "unknown-customer"],
)
def test_bad_requests_fail_at_once_and_write_nothing(
    spark, env, dags, capsys, conf: dict, message: str
) -> None:
    before = (invoices(spark, env), len(read(spark, env, tables.BILLING_RUNS)))
    states = run(dags, "meterlake_invoice_run", MARCH, conf)
    assert states == {"<run>": "failed", "invoice_run": "failed"}
    assert last_try("meterlake_invoice_run", "invoice_run").try_number == 1  # no retries
    assert f"ConfigError: {message}" in capsys.readouterr().out
    assert (invoices(spark, env), len(read(spark, env, tables.BILLING_RUNS))) == before


APRIL_3 = datetime(2026, 4, 3, tzinfo=UTC)
SPIKE = datetime(2026, 4, 2, 9, tzinfo=UTC)


def test_rollups_dag_rebuilds_the_views_and_the_anomalies_dag_finds_the_spike(
    spark, env, dags
) -> None:
    """Two days of c2 calling 5 times an hour, but 500 times at one hour of the second:
    the daily anomalies run over the second day flags that hour and nothing else."""
    hours = [datetime(2026, 4, 1, tzinfo=UTC) + timedelta(hours=h) for h in range(48)]
    batch = Path(env["AIRFLOW_HOME"]).parent / "april.jsonl"
    batch.write_text(
        "".join(
            json.dumps(
                {"event_id": f"a{i}", "customer_id": "c2", "event_type": "api_call",
                 "quantity": 500 if at == SPIKE else 5, "timestamp": at.isoformat()}
            ) + "\n"
            for i, at in enumerate(hours)
        )
    )  # fmt: skip
    land_file(Settings.load(env={**env, "METERLAKE_NOW": APRIL_3.isoformat()}), batch, "default")
    assert run(dags, "meterlake_ingest", APRIL_3)["<run>"] == "success"

    assert set(run(dags, "meterlake_rollups", APRIL_3).values()) == {"success"}
    rebuilt = returned("meterlake_rollups", "materialised_views")
    daily = {
        (r.day.isoformat(), r.customers, r.events, r.sum_value)
        for r in read(spark, env, tables.VIEWS_TENANT_DAILY_USAGE)
    }
    assert {("2026-04-01", 1, 24, 120), ("2026-04-02", 1, 24, 615)} <= daily
    assert rebuilt["views.tenant_daily_usage"] == len(daily)
    (april,) = [r for r in read(spark, env, tables.VIEWS_CURRENT_USAGE) if r.customer_id == "c2"]
    assert (april.period_start.month, april.quantity) == (4, 735)

    assert set(run(dags, "meterlake_anomalies", APRIL_3).values()) == {"success"}
    assert returned("meterlake_anomalies", "detect") == {
        "since": "2026-04-02T00:00:00+00:00",
        "found": 1,
    }
    (found,) = read(spark, env, tables.ANALYTICS_ANOMALIES)
    assert (found.customer_id, found.hour_start, found.value, found.direction) == (
        "c2", SPIKE.replace(tzinfo=None), 500, "spike"
    )  # fmt: skip
