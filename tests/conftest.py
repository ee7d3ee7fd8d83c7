"""One session-scoped SparkSession for the whole suite; tables live under tmp_path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from meterlake.config import Settings

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
    """The suite's one SparkSession, with S3A on the classpath for the object-store tests."""
    from meterlake.spark import build_session

    env = {**os.environ, "METERLAKE_SHUFFLE_PARTITIONS": "2"}
    session = build_session(Settings.load(env=env), s3=True)
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


class S3Server:
    """The local S3 server (MinIO via infra/s3.sh) on one port and data folder; ``stop``
    and ``start`` again keep its data, for the outage tests."""

    def __init__(self, port: int, data: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self._env = {**os.environ, "METERLAKE_S3_PORT": str(port), "METERLAKE_S3_DATA": str(data)}
        self._script = str(Path(__file__).resolve().parents[1] / "infra/s3.sh")

    def _run(self, command: str) -> None:
        import subprocess

        script = ["bash", self._script, command]
        subprocess.run(script, env=self._env, check=True, capture_output=True)

    def start(self) -> None:
        self._run("start")

    def stop(self) -> None:
        self._run("stop")


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
