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


@pytest.fixture(scope="session")
def spark() -> Iterator:
    from meterlake.spark import build_session

    session = build_session(Settings.load(env={**os.environ, "METERLAKE_SHUFFLE_PARTITIONS": "2"}))
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
