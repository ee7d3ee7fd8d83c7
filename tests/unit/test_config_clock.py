from __future__ import annotations

from datetime import UTC, datetime

import pytest

from meterlake.clock import format_instant, parse_instant
from meterlake.config import Settings
from meterlake.errors import ConfigError


def test_parse_instant_normalises_to_utc() -> None:
    assert parse_instant("2026-03-01T00:00:00-05:00") == datetime(2026, 3, 1, 5, tzinfo=UTC)
    assert format_instant(parse_instant("2026-03-01T05:00:00Z")) == "2026-03-01T05:00:00Z"


@pytest.mark.parametrize("text", ["2026-03-01T00:00:00", "yesterday", ""])
def test_parse_instant_refuses_naive_or_garbage(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_instant(text, "--now")


def test_settings_from_env_and_flags(tmp_path) -> None:
    env = {
        "METERLAKE_WAREHOUSE": str(tmp_path / "wh"),
        "METERLAKE_NOW": "2026-01-01T00:00:00Z",
        "METERLAKE_BACKFILL_DAYS": "10",
        "METERLAKE_SPARK_MASTER": "spark://127.0.0.1:7077",
    }
    settings = Settings.load(env)
    assert settings.warehouse == str(tmp_path / "wh")
    assert settings.now() == datetime(2026, 1, 1, tzinfo=UTC)
    assert settings.backfill_days == 10
    assert settings.spark_master == "spark://127.0.0.1:7077"
    flagged = Settings.load(env, warehouse="s3a://bucket/prefix/", now="2026-02-01T00:00:00+01:00")
    assert flagged.warehouse == "s3a://bucket/prefix"
    assert flagged.is_object_store
    assert flagged.now() == datetime(2026, 1, 31, 23, tzinfo=UTC)


def test_bad_numeric_setting_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="METERLAKE_BACKFILL_DAYS"):
        Settings.load({"METERLAKE_BACKFILL_DAYS": "soon"})


def test_kafka_settings_and_their_refusals() -> None:
    env = {"METERLAKE_CAPTURE_SINK": "Both", "METERLAKE_KAFKA_BOOTSTRAP": "10.0.0.1:9094",
           "METERLAKE_KAFKA_TOPIC": "usage.v1", "METERLAKE_KAFKA_PARTITIONS": "12"}  # fmt: skip
    kafka = Settings.load(env).kafka
    assert (kafka.sink, kafka.bootstrap, kafka.topic, kafka.partitions) == (
        "both", "10.0.0.1:9094", "usage.v1", 12
    )  # fmt: skip
    with pytest.raises(ConfigError, match="METERLAKE_CAPTURE_SINK: 'files' must be one of"):
        Settings.load({"METERLAKE_CAPTURE_SINK": "files"})
    with pytest.raises(ConfigError, match="METERLAKE_KAFKA_TOPIC"):
        Settings.load({"METERLAKE_KAFKA_TOPIC": "usage events"})
