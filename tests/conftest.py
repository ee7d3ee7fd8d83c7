"""One session-scoped SparkSession for the whole suite; tables live under tmp_path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from meterlake.config import Settings
from meterlake.demo import DEMO_CATALOG

FIXED_NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


# The local S3 server's credentials (infra/s3.sh's defaults), in the environment before
# the JVM starts: S3A reads them through the AWS chain from the process environment.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "meterlake")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "meterlake-secret")


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--chaos-full",
        action="store_true",
        help="run tests/chaos at full size (`make chaos`); the default is the suite's small size",
    )


@pytest.fixture(scope="session")
def spark() -> Iterator:
    """The suite's one SparkSession, with S3A and the Kafka connector on the classpath for
    the object-store and Kafka tests."""
    from meterlake.spark import build_session

    # 4g: the one session lives through every test (the in-process CLI commands and the
    # shared warehouses among them); at 2g a late MERGE could not build its broadcast.
    env = {**os.environ, "METERLAKE_SHUFFLE_PARTITIONS": "2", "METERLAKE_DRIVER_MEMORY": "4g"}
    session = build_session(Settings.load(env=env), s3=True, kafka=True)
    yield session
    session.stop()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for a fresh warehouse under tmp_path with the clock pinned."""
    base = Settings.load(
        env={k: v for k, v in os.environ.items() if not k.startswith("METERLAKE_NOW")}
    )
    return replace(base.with_warehouse(str(tmp_path / "warehouse")), pinned_now=FIXED_NOW)


@pytest.fixture
def warehouse(spark, settings: Settings) -> Settings:
    """An initialised warehouse (all tables created) for Spark tests."""
    from meterlake.warehouse import init_warehouse

    init_warehouse(spark, settings)
    return settings


class InfraService:
    """A service run by one of infra/'s scripts with its port and data folder in the
    environment; ``stop`` and ``start`` again keep its data, for the outage tests."""

    def __init__(self, script: str, **env: str) -> None:
        self._env = {**os.environ, **env}
        self._script = str(Path(__file__).resolve().parents[1] / "infra" / script)

    def _run(self, command: str) -> None:
        import subprocess

        script = ["bash", self._script, command]
        subprocess.run(script, env=self._env, check=True, capture_output=True)

    def start(self) -> None:
        self._run("start")

    def stop(self) -> None:
        self._run("stop")


class S3Server(InfraService):
    """The local S3 server (MinIO via infra/s3.sh)."""

    def __init__(self, port: int, data: Path) -> None:
        super().__init__("s3.sh", METERLAKE_S3_PORT=str(port), METERLAKE_S3_DATA=str(data))
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    """A real S3 server on a free loopback port for the session, with the bucket
    ``meterlake``; credentials are the local defaults, given to boto3 and S3A through the
    standard AWS environment variables."""
    from tests.capture_server import free_port

    server = S3Server(free_port(), tmp_path_factory.mktemp("s3") / "data")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory) -> Iterator[str]:
    """A real Apache Kafka broker (KRaft, via infra/kafka.sh) on free loopback ports for
    the session; its bootstrap address."""
    from tests.capture_server import free_port

    port, controller = free_port(), free_port()
    broker = InfraService(
        "kafka.sh",
        METERLAKE_KAFKA_PORT=str(port),
        METERLAKE_KAFKA_CONTROLLER_PORT=str(controller),
        METERLAKE_KAFKA_DATA=str(tmp_path_factory.mktemp("kafka") / "data"),
    )
    broker.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def s3_endpoint(s3_server: S3Server) -> str:
    return s3_server.url


@pytest.fixture(scope="session")
def stripe_mock(tmp_path_factory) -> Iterator[int]:
    """Stripe's stripe-mock (via infra/stripe-mock.sh) on a free loopback port; its port."""
    from tests.billing_systems import start_stripe_mock, stop_stripe_mock
    from tests.capture_server import free_port

    port = free_port()
    env = start_stripe_mock(port, tmp_path_factory.mktemp("stripe_mock"))
    yield port
    stop_stripe_mock(env)


# Three weeks of synthetic usage in two tenants: acme and initech in `default`, globex in
# `t2`; the analytics tests and the dashboard's browser test read it.
USAGE_NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
USAGE_CATALOG = (
    DEMO_CATALOG.replace("id: globex\n    tenant: default", "id: globex\n    tenant: t2").rstrip()
    + """
  - id: initech
    tenant: default
    timezone: UTC
    billing_anchor: calendar
    subscriptions: [{plan: pro, start: "2026-01-01T00:00:00Z", end: null}]
"""
)


@pytest.fixture(scope="session")
def usage_warehouse(spark, tmp_path_factory) -> Settings:
    """The usage above through the pipeline, anomaly detection and the views (which
    publish the dashboard), at USAGE_NOW."""
    import yaml

    from meterlake import synthetic
    from meterlake.analytics.anomalies import detect_anomalies
    from meterlake.analytics.views import refresh_views
    from meterlake.catalog.parse import parse_catalog
    from meterlake.catalog.store import store_catalog
    from meterlake.ingest.landing import land_file
    from meterlake.pipeline import run_pipeline
    from meterlake.warehouse import init_warehouse

    folder = tmp_path_factory.mktemp("usage")
    base = Settings.load(env={"METERLAKE_SHUFFLE_PARTITIONS": "2"})
    settings = replace(base.with_warehouse(str(folder / "warehouse")), pinned_now=USAGE_NOW)
    init_warehouse(spark, settings)
    store_catalog(spark, settings, parse_catalog(yaml.safe_load(USAGE_CATALOG), sha256="usage"))
    start = USAGE_NOW - timedelta(days=21)
    for tenant, customers in (("default", ["acme", "initech"]), ("t2", ["globex"])):
        path = folder / f"{tenant}.jsonl"
        events = synthetic.events(1500, customers, start, timedelta(days=21), seed=len(tenant))
        synthetic.write_jsonl(path, (synthetic.dump(e) for e in events))
        land_file(settings, path, tenant)
    quiet = {"progress": lambda _: None}
    run_pipeline(spark, settings, **quiet)
    detect_anomalies(spark, settings, start, baseline_hours=48)
    refresh_views(spark, settings, **quiet)
    return settings


@pytest.fixture(scope="session")
def demo_run(spark, tmp_path_factory) -> tuple[Path, object]:
    """`meterlake demo` once for the session (in this process: tests/e2e/cli.py): its
    warehouse and the finished command (exit code, output)."""
    from tests.e2e.cli import cli_env, meterlake_here

    warehouse = tmp_path_factory.mktemp("demo") / "warehouse"
    return warehouse, meterlake_here("demo", env=cli_env(warehouse))
