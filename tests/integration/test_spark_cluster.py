"""The end-to-end demo on a Spark standalone cluster (infra/spark-cluster.sh: a master and
two workers on 127.0.0.1), submitted through infra/submit.sh as a job of jobs/: its
invoices equal the local run's to the cent."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from meterlake import tables
from meterlake.config import Settings
from tests.capture_server import free_port
from tests.conftest import InfraService
from tests.e2e.cli import cli_env

ROOT = Path(__file__).resolve().parents[2]
INVOICE = ("tenant_id", "customer_id", "currency", "period_start", "period_end", "status",
           "subtotal", "credits", "total", "revision", "source_currency", "fx_rate")  # fmt: skip
LINE = ("tenant_id", "customer_id", "period_start", "revision", "line_no", "kind", "plan_id",
        "meter_key", "event_type", "quantity", "amount", "source_amount")  # fmt: skip


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """The cluster's master URL and its folder (logs, the workers' work folders)."""
    folder = tmp_path_factory.mktemp("spark-cluster")
    port, ui = free_port(), free_port()
    service = InfraService(
        "spark-cluster.sh",
        METERLAKE_SPARK_PORT=str(port),
        METERLAKE_SPARK_UI_PORT=str(ui),
        METERLAKE_SPARK_DIR=str(folder),
        METERLAKE_SPARK_WORKER_MEMORY="2g",
    )
    service.start()
    try:
        yield f"spark://127.0.0.1:{port}", folder
    finally:
        service.stop()


def billed(spark, warehouse: Path) -> tuple[list, list]:
    settings = Settings.load(env={}).with_warehouse(str(warehouse))
    invoices = tables.read(spark, settings, tables.BILLING_INVOICES).select(*INVOICE)
    lines = tables.read(spark, settings, tables.BILLING_INVOICE_LINES).select(*LINE)
    return sorted(invoices.collect()), sorted(lines.collect())


@pytest.mark.slow
def test_demo_submitted_to_the_cluster_bills_as_the_local_run(
    spark, demo_run, cluster, tmp_path: Path
) -> None:
    master, folder = cluster
    local_warehouse, local = demo_run
    assert local.returncode == 0, local.stderr
    warehouse = tmp_path / "warehouse"
    env = cli_env(warehouse, METERLAKE_SPARK_MASTER=master, METERLAKE_EXECUTOR_MEMORY="1g")
    submitted = subprocess.run(
        ["bash", str(ROOT / "infra/submit.sh"), str(ROOT / "jobs/meterlake_cli.py"), "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    assert "invoices" in submitted.stdout.lower()
    # The work ran in both workers' executors, not in the driver.
    for worker in (1, 2):
        assert list((folder / f"work-{worker}").glob("app-*/*/stderr")), f"worker {worker} idle"

    invoices, lines = billed(spark, warehouse)
    assert invoices and lines
    assert (invoices, lines) == billed(spark, local_warehouse)
