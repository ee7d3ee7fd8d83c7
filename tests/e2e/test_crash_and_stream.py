"""`pipeline stream` keeping bronze, rollups and published usage current, and stopping
cleanly on SIGTERM. (SIGKILLs of the pipeline: tests/chaos/test_stream_kills.py.)"""

from __future__ import annotations

import signal
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import yaml

from meterlake import synthetic, tables
from meterlake.billing.current_usage import read_usage
from meterlake.catalog.parse import parse_catalog
from meterlake.catalog.store import store_catalog
from meterlake.clock import parse_instant
from meterlake.config import Settings
from meterlake.demo import DEMO_CATALOG
from meterlake.ingest.landing import land_file
from meterlake.rollups.refresh import load_state
from tests.e2e.cli import cli_env, spawn

RECEIVED = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def land_events(settings: Settings, folder: Path, count: int, files: int, seed: int) -> None:
    for index in range(files):
        stream = synthetic.events(
            count // files,
            ["acme", "globex"],
            RECEIVED - timedelta(days=10),
            timedelta(days=10),
            seed=seed + index,
        )
        path = folder / f"events-{seed}-{index}.jsonl"
        synthetic.write_jsonl(path, (synthetic.dump(e) for e in stream))
        land_file(replace(settings, pinned_now=RECEIVED), path, "default")


def prepare(spark, warehouse: Settings) -> None:
    store_catalog(spark, warehouse, parse_catalog(yaml.safe_load(DEMO_CATALOG), sha256="t"))


def published_api_calls(settings: Settings, customer: str) -> tuple[dict, Decimal]:
    """The published view of ``customer`` and its api_calls quantity over all segments."""
    view = read_usage(settings, "default", customer)
    assert view is not None, f"{customer} not published"
    total = sum(Decimal(u["quantity"]) for u in view["usage"] if u["meter"] == "api_calls")
    return view, total


def bronze_api_calls(spark, settings: Settings, customer: str, view: dict) -> Decimal:
    """The same quantity straight from bronze (independent of rollups and pricing)."""
    from pyspark.sql import functions as F

    period = view["period"]
    rows = tables.read(spark, settings, tables.BRONZE_EVENTS).where(
        (F.col("customer_id") == customer)
        & (F.col("event_type") == "api_call")
        & (F.col("billing_time") >= F.lit(parse_instant(period["start"])))
        & (F.col("billing_time") < F.lit(parse_instant(period["end"])))
    )
    return rows.agg(F.sum("quantity")).first()[0] or Decimal(0)


def viewed_api_calls(spark, settings: Settings, customer: str) -> Decimal:
    """The customer's api_calls in ``views.current_usage`` (the stream's rollup cycle
    rebuilds it)."""
    rows = tables.read(spark, settings, tables.VIEWS_CURRENT_USAGE).where(
        f"customer_id = '{customer}' AND meter_key = 'api_calls'"
    )
    return rows.agg({"quantity": "sum"}).first()[0] or Decimal(0)


def test_stream_keeps_bronze_rollups_and_usage_current_and_stops_on_sigterm(
    spark, warehouse: Settings, tmp_path: Path
) -> None:
    prepare(spark, warehouse)
    env = cli_env(
        warehouse.warehouse,
        METERLAKE_STREAM_INTERVAL_SECONDS="1",
        METERLAKE_ROLLUP_INTERVAL_SECONDS="2",
        METERLAKE_NOW="2026-03-02T12:00:00Z",  # the current period holds the synthetic events
    )
    stream = spawn("pipeline", "stream", env=env)
    try:
        for round_, expected in ((1, 300), (2, 600)):
            land_events(warehouse, tmp_path, 300, files=1, seed=100 + round_)
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                if tables.read(spark, warehouse, tables.BRONZE_EVENTS).count() == expected:
                    break
                assert stream.poll() is None, stream.communicate()[1]
                time.sleep(1)
            assert tables.read(spark, warehouse, tables.BRONZE_EVENTS).count() == expected
            for customer in ("acme", "globex"):  # published right after the bronze batch
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    view, published = published_api_calls(warehouse, customer)
                    if published == bronze_api_calls(spark, warehouse, customer, view):
                        break
                    time.sleep(1)
                assert published == bronze_api_calls(spark, warehouse, customer, view)
                assert view["status"] == "estimate" and view["freshness"] == "2026-03-02T12:00:00Z"
        deadline = time.monotonic() + 120  # the rollups catch up on their own
        while time.monotonic() < deadline and load_state(warehouse).bronze_version < 2:
            time.sleep(1)
        minute = tables.read(spark, warehouse, tables.SILVER_USAGE_MINUTE)
        bronze = tables.read(spark, warehouse, tables.BRONZE_EVENTS)
        assert minute.where("meter_key = 'api_calls'").agg({"events": "sum"}).first()[0] == (
            bronze.where("event_type = 'api_call'").count()
        )
        for customer in ("acme", "globex"):  # and the views follow the rollups
            deadline = time.monotonic() + 120
            view, _ = published_api_calls(warehouse, customer)
            expected = bronze_api_calls(spark, warehouse, customer, view)
            while time.monotonic() < deadline:
                if viewed_api_calls(spark, warehouse, customer) == expected:
                    break
                time.sleep(1)
            assert viewed_api_calls(spark, warehouse, customer) == expected
        stream.send_signal(signal.SIGTERM)
        out, err = stream.communicate(timeout=120)
    finally:
        if stream.poll() is None:
            stream.kill()
    assert stream.returncode == 0, err
    assert "stopped at a batch boundary after 2 landing batch(es)" in out
    assert "600 into bronze" in out
