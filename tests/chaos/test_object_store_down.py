"""The object store goes away (the local S3 server is stopped).

Capture, in ``make test``: ``events load`` fails with one clear line and the API answers
503 with ``Retry-After`` (never 202, never 500) while the store is down; both take the
same events once it is back, and nothing half-landed is left.

Jobs, under ``make chaos`` only (S3A waits out an outage with its own retries, which takes
minutes): the store stops for ``size.outage`` seconds while ``pipeline run`` and then
``tier run`` work on a warehouse in the bucket; each waits it out or fails with one clear
line, and run again after the store is back, everything completes with every event once."""

from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from meterlake import tables
from meterlake.audit.access import create_key
from meterlake.catalog.parse import parse_catalog
from meterlake.catalog.store import store_catalog
from meterlake.clock import format_instant
from meterlake.config import Settings
from meterlake.demo import DEMO_CATALOG
from meterlake.ingest.landing import manifest_entries
from meterlake.spark import build_session
from meterlake.tiering.events import events_at
from meterlake.warehouse import init_warehouse
from tests.capture_server import ApiServer
from tests.chaos.conftest import FULL, RECEIVED, Size, land, make_events
from tests.e2e.cli import cli_env, meterlake, spawn
from tests.helpers import bucket_settings

TIERED_AT = "2026-05-01T00:00:00Z"  # every event is older than the default 30 hot days


def _through_an_outage(args: tuple[str, ...], env: dict, s3_server, seconds: int, rng) -> str:
    """Run the command, stop the store a few seconds in, bring it back after ``seconds``;
    the command's outcome: "completed" or "failed cleanly"."""
    job = spawn(*args, env=env)
    time.sleep(rng.uniform(6, 12))  # JVM started, work under way
    s3_server.stop()
    try:
        time.sleep(seconds)
    finally:
        s3_server.start()
    _, stderr = job.communicate(timeout=900)
    if job.returncode == 0:
        return "completed"
    lines = [line for line in stderr.splitlines() if line.startswith("meterlake: ")]
    assert job.returncode in (1, 3) and len(lines) == 1, stderr[-2000:]
    return "failed cleanly"


def test_capture_refuses_cleanly_while_the_store_is_down(s3_server, tmp_path: Path) -> None:
    warehouse = bucket_settings(s3_server.url, "chaos")
    key = create_key(warehouse, "acme", "ingest")[0]
    env = cli_env(warehouse.warehouse, METERLAKE_S3_ENDPOINT=s3_server.url)
    source = tmp_path / "events.jsonl"
    events = make_events(50, seed=93)
    source.write_text("".join(json.dumps(e) + "\n" for e in events))
    body = {"events": [e | {"timestamp": format_instant(datetime.now(UTC))} for e in events]}
    api = ApiServer(warehouse.warehouse, METERLAKE_S3_ENDPOINT=s3_server.url).start()
    try:
        s3_server.stop()
        try:
            refused = meterlake("events", "load", str(source), env=env)
            answer = httpx.post(
                f"{api.url}/v1/events", json=body, headers={"Authorization": f"Bearer {key}"}
            )
        finally:
            s3_server.start()
        assert refused.returncode != 0 and refused.stderr.count("\n") == 1, refused.stderr
        assert answer.status_code == 503 and answer.headers["retry-after"], answer.text
        assert list(manifest_entries(warehouse)) == []
        loaded = meterlake("events", "load", str(source), env=env)
        assert loaded.returncode == 0, loaded.stderr
        again = httpx.post(
            f"{api.url}/v1/events", json=body, headers={"Authorization": f"Bearer {key}"}
        )
        assert again.status_code == 202 and again.json()["accepted"] == len(events), again.text
    finally:
        api.stop()
    assert [b.lines for b in manifest_entries(warehouse)] == [len(events)] * 2


def test_jobs_survive_the_object_store_going_away(
    spark, settings: Settings, s3_server, tmp_path: Path, size: Size
) -> None:
    if size is not FULL:
        pytest.skip("under `make chaos` only: S3A waits out the outage, which takes minutes")
    bucket = replace(
        bucket_settings(s3_server.url, "chaos"), shuffle_partitions=2, pinned_now=RECEIVED
    )
    assert build_session(bucket) is spark
    init_warehouse(spark, bucket)
    store_catalog(spark, bucket, parse_catalog(yaml.safe_load(DEMO_CATALOG), sha256="chaos"))
    events = make_events(size.events, seed=91)
    for n in range(4):
        land(bucket, tmp_path, f"s3-{n}", events[n::4], RECEIVED + timedelta(minutes=n))
    env = cli_env(
        bucket.warehouse, METERLAKE_S3_ENDPOINT=s3_server.url, METERLAKE_MANIFESTS_PER_BATCH="1"
    )
    rng = random.Random(23)

    outcome = _through_an_outage(("pipeline", "run"), env, s3_server, size.outage, rng)
    again = meterlake("pipeline", "run", env=env)
    assert again.returncode == 0, (outcome, again.stderr)
    bronze = tables.read(spark, bucket, tables.BRONZE_EVENTS)
    assert bronze.count() == bronze.select("event_id").distinct().count() == len(events)
    accounts = tables.read(spark, bucket, tables.BRONZE_BATCHES).collect()
    assert sorted(b.bronze_rows for b in accounts) == sorted(len(events[n::4]) for n in range(4))

    tier = ("--now", TIERED_AT, "tier", "run", "--as-of", TIERED_AT)
    _through_an_outage(tier, env, s3_server, size.outage, rng)
    again = meterlake(*tier, env=env)
    assert again.returncode == 0, again.stderr
    tiered = replace(bucket, pinned_now=RECEIVED + timedelta(days=60))
    every = events_at(spark, tiered)
    assert every.count() == every.select("event_id").distinct().count() == len(events)
    assert tables.read(spark, tiered, tables.COLD_EVENTS).count() == len(events)
