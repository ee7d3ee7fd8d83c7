"""Small builders shared by the Spark tests."""

from __future__ import annotations

import json
import os
import threading
import uuid
from dataclasses import replace
from datetime import datetime

from meterlake.config import S3Settings, Settings
from meterlake.ingest.event_schema import load_event_schemas
from meterlake.ingest.parse import parse_lines


def bucket_settings(endpoint: str, prefix: str) -> Settings:
    """A fresh warehouse in the test bucket behind ``endpoint``, on the defaults rather than
    the caller's METERLAKE_* settings, but for the JVM package cache the suite's session was
    built from (another cache would be resolved from Maven Central again)."""
    env = {key: os.environ[key] for key in ("METERLAKE_IVY_DIR",) if key in os.environ}
    base = Settings.load(env=env).with_warehouse(
        f"s3a://meterlake/{prefix}-{uuid.uuid4().hex[:12]}"
    )
    return replace(base, s3=S3Settings(endpoint=endpoint))


# Two customers on a flat fee plus 0.01 per API call, calendar months in UTC.
BASIC_CATALOG = b"""
meters: [{key: api_calls, event_type: api_call, aggregation: sum}]
plans:
  - id: basic
    currency: USD
    charges:
      - {type: flat, amount: "10.00"}
      - {type: usage, meter: api_calls, model: per_unit, unit_price: "0.01"}
customers:
  - {id: c1, timezone: UTC, billing_anchor: calendar,
     subscriptions: [{plan: basic, start: "2026-01-01T00:00:00Z", end: null}]}
  - {id: c2, timezone: UTC, billing_anchor: calendar,
     subscriptions: [{plan: basic, start: "2026-01-01T00:00:00Z", end: null}]}
"""


def event(**overrides) -> dict:
    """A valid v1 event; keyword arguments replace or (with value ...) remove fields."""
    base = {
        "event_id": "e-1",
        "customer_id": "acme",
        "event_type": "api_call",
        "quantity": 3,
        "timestamp": "2026-03-02T11:00:00Z",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def line(value: dict | str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    return (value if isinstance(value, str) else json.dumps(value)).encode()


def lines_frame(spark, lines: list, received_at: datetime):
    """Landing lines as `parse_lines` expects them (bytes kept exactly), numbered from 1."""
    from pyspark.sql import functions as F

    rows = [(bytearray(line(v)), i + 1) for i, v in enumerate(lines)]
    return (
        spark.createDataFrame(rows, "raw_bytes binary, line_number long")
        .withColumn("value", F.col("raw_bytes").cast("string"))
        .withColumn("tenant_id", F.lit("default"))
        .withColumn("batch_id", F.lit("b1"))
        .withColumn("received_at", F.lit(received_at).cast("timestamp"))
        .withColumn("source_time", F.lit(None).cast("timestamp"))
        .withColumn("landing_file", F.lit("landing/x.jsonl"))
        .drop("raw_bytes")
    )


def parse(spark, settings: Settings, lines: list, received_at: datetime):
    """Run `parse_lines` with the shipped schemas and collect rows in line order."""
    frame = lines_frame(spark, lines, received_at)
    return parse_lines(frame, settings, load_event_schemas()).orderBy("line_number").collect()


def hold_first_calls(monkeypatch, owner, name: str, parties: int) -> None:
    """Patch ``owner.name`` so that each thread's first call waits until ``parties``
    threads have made theirs: a forced interleaving in which every concurrent writer has
    read (or priced, or classified) before any of them writes."""
    everyone_here = threading.Barrier(parties, timeout=120)
    first = threading.local()
    real = getattr(owner, name)

    def after_everyone(*args, **kwargs):
        if not getattr(first, "done", False):
            first.done = True
            everyone_here.wait()
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, after_everyone)
