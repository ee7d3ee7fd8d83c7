"""The DAGs import cleanly and cheaply, carry their metadata, and validate finance Params.

Airflow reads its configuration at import, so each check runs in a subprocess with its
own AIRFLOW_HOME (no metadata database is needed to parse DAGs or validate Params).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from meterlake.billing.run import check_run_request
from meterlake.errors import ConfigError

DAGS = Path(__file__).resolve().parents[2] / "dags"
EXPECTED = {
    "meterlake_ingest",
    "meterlake_rollups",
    "meterlake_period_close",
    "meterlake_invoice_run",
    "meterlake_data_quality",
    "meterlake_reconcile_daily",
    "meterlake_tiering",
    "meterlake_anomalies",
}

PROBE = """
import importlib.util, json, sys, time
import airflow.sdk  # Airflow's own import is not the DAG files' cost
from airflow.dag_processing.dagbag import DagBag

dags = sys.argv[1]
timings = {}
for path in sorted(__import__("pathlib").Path(dags).glob("*.py")):
    started = time.perf_counter()
    spec = importlib.util.spec_from_file_location(path.stem, path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    timings[path.name] = time.perf_counter() - started
bag = DagBag(dag_folder=dags)
conf = json.loads(sys.argv[2])
verdict = None
if conf is not None:
    params = __import__("copy").deepcopy(bag.dags["meterlake_invoice_run"].params)
    try:
        params.update(conf)
        params.validate()
        verdict = "valid"
    except Exception as exc:
        verdict = f"refused: {type(exc).__name__}"
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "timings": timings,
    "verdict": verdict,
    "dags": {
        d.dag_id: {
            "tags": sorted(d.tags), "doc": bool(d.doc_md), "catchup": d.catchup,
            "retries": [t.retries for t in d.tasks],
            "start_tz": str(d.start_date.tzinfo) if d.start_date else None,
        }
        for d in bag.dags.values()
    },
}))
"""


def probe(tmp_path: Path, conf: dict | None = None) -> dict:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(DAGS), json.dumps(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> dict:
    return probe(tmp_path_factory.mktemp("dagbag"))


def test_every_dag_imports_without_errors_or_heavy_work(bag: dict) -> None:
    assert bag["errors"] == {}
    assert set(bag["dags"]) == EXPECTED
    slow = {name: t for name, t in bag["timings"].items() if t >= 2}
    assert slow == {}, f"DAG files doing work at import: {slow}"


def test_every_dag_has_docs_tags_retries_and_a_utc_start(bag: dict) -> None:
    for dag_id, dag in bag["dags"].items():
        assert dag["doc"], dag_id
        assert "meterlake" in dag["tags"], dag_id
        assert dag["retries"] and min(dag["retries"]) >= 1, dag_id
        assert dag["start_tz"] in ("UTC", "utc", "+00:00", "Etc/UTC"), dag_id
        assert dag["catchup"] is False, dag_id


@pytest.mark.parametrize(
    ("conf", "verdict"),
    [
        ({"as_of": "2026-03-05T00:00:00Z", "dry_run": True}, "valid"),
        ({"as_of": "yesterday"}, "refused"),
        ({"as_of": "2026-03-05T00:00:00Z", "customers": "acme"}, "refused"),
        ({}, "refused"),
    ],
)
def test_finance_params_are_checked_at_trigger(tmp_path: Path, conf: dict, verdict: str) -> None:
    assert probe(tmp_path, conf)["verdict"].startswith(verdict)


def test_a_run_that_writes_needs_a_reason_and_a_real_instant() -> None:
    assert check_run_request("2026-03-05T00:00:00Z", None, True, None).day == 5
    with pytest.raises(ConfigError, match="reason"):
        check_run_request("2026-03-05T00:00:00Z", ["acme"], False, "  ")
    with pytest.raises(ConfigError, match="as_of"):
        check_run_request("2026-03-05", None, True, None)
