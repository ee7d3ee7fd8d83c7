"""Ingest benchmark: landing → bronze against two plain Spark baselines, in one process.

    .venv/bin/python bench/ingest.py [--events 1000000] [--files 10]

Generates realistic events (about 350 bytes each) into JSONL files, then times, on the
same SparkSession: (a) ``spark.read.json`` with the event schema → Parquet (12 untyped
columns), (c) what a team would write by hand for bronze as specified: a typed
``from_json``, the same 25 typed and lineage columns (``DECIMAL(38, 9)``, two timestamps,
a raw-line sha256), appended to a Delta table partitioned like bronze, with no validation,
identity, quarantine or exactly-once, and (b) the ``pipeline run`` path (landing →
validated, deduplicated, exactly-once Delta bronze). Prints the rates and the ratios
(b)/(a), goal >= 0.3 (the stack's ceiling for bronze as specified), and (b)/(c), goal
>= 0.6 (meterlake's guarantees cost at most 1.7x the hand-written job). A small warm-up
of every path runs first so none pays the JVM's cold start alone.

    .venv/bin/python bench/ingest.py --phases [--events 200000]

times the phases of one landing → bronze micro-batch separately instead (each forced
with a no-op write; run twice, the second, warm run is the one to read), the parse also
with the fast path off (every check on every line), its baseline.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from results import record

from meterlake import synthetic, tables
from meterlake.catalog.parse import parse_catalog
from meterlake.catalog.store import store_catalog
from meterlake.config import Settings
from meterlake.ingest.landing import land_file
from meterlake.ingest.stream import run_landing_to_bronze
from meterlake.spark import build_session
from meterlake.warehouse import init_warehouse

RECEIVED = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
CUSTOMERS = [f"cust-{i:04d}" for i in range(200)]

PLAIN_SCHEMA = (
    "event_id string, customer_id string, event_type string, quantity string,"
    " timestamp string, resource_id string, user_id string, session_id string,"
    " region string, properties string, schema_version string,"
    " sdk struct<name: string, version: string>"
)


def catalog():
    return parse_catalog(
        {
            "meters": [{"key": "api_calls", "event_type": "api_call", "aggregation": "sum"}],
            "plans": [{"id": "p", "currency": "USD", "charges": [{"type": "flat", "amount": "1"}]}],
            "customers": [
                {
                    "id": c,
                    "timezone": "UTC",
                    "billing_anchor": "calendar",
                    "subscriptions": [{"plan": "p", "start": "2026-01-01T00:00:00Z"}],
                }
                for c in CUSTOMERS
            ],
        },
        sha256="bench",
        source="bench",
    )


def generate(folder: Path, events: int, files: int, seed: int) -> list[Path]:
    per_file = events // files
    start = RECEIVED - timedelta(days=20)
    paths = []
    for index in range(files):
        stream = synthetic.events(per_file, CUSTOMERS, start, timedelta(days=20), seed + index)
        path = folder / f"events-{index:03d}.jsonl"
        synthetic.write_jsonl(path, (synthetic.dump(e) for e in stream))
        paths.append(path)
    return paths


def plain_json_to_parquet(spark, paths: list[Path], out: Path) -> float:
    started = time.perf_counter()
    spark.read.schema(PLAIN_SCHEMA).json([str(p) for p in paths]).write.mode("overwrite").parquet(
        str(out)
    )
    return time.perf_counter() - started


def typed_bronze(spark, paths: list[Path], out: Path) -> float:
    """Baseline (c): bronze's columns from a hand-written typed job (module docstring)."""
    from pyspark.sql import functions as F

    started = time.perf_counter()
    lines = spark.read.text([str(p) for p in paths]).select(
        "value",
        F.col("_metadata.file_path").alias("landing_file"),
        F.monotonically_increasing_id().alias("line_number"),
    )
    event = F.from_json("value", PLAIN_SCHEMA)
    parsed = lines.select("*", event.alias("e")).select("*", "e.*").drop("e")
    event_time = F.to_timestamp("timestamp")
    bronze = parsed.select(
        F.lit("default").alias("tenant_id"),
        "event_id",
        "customer_id",
        "event_type",
        F.col("quantity").cast("decimal(38,9)").alias("quantity"),
        event_time.alias("event_time"),
        event_time.alias("billing_time"),
        F.to_date(event_time).alias("billing_date"),
        F.lit(RECEIVED).cast("timestamp").alias("received_at"),
        F.lit(False).alias("clock_skew"),
        "resource_id",
        "user_id",
        "session_id",
        "region",
        "properties",
        F.lit(None).cast("string").alias("extra"),
        "schema_version",
        F.col("sdk.name").alias("sdk_name"),
        F.col("sdk.version").alias("sdk_version"),
        F.sha2(F.col("value").cast("binary"), 256).alias("payload_sha256"),
        F.lit("batch").alias("batch_id"),
        "landing_file",
        "line_number",
        F.current_timestamp().alias("ingested_at"),
        F.lit(None).cast("timestamp").alias("source_time"),
    )
    bronze.write.format("delta").mode("append").partitionBy("billing_date").save(str(out))
    return time.perf_counter() - started


def pipeline(spark, settings: Settings, paths: list[Path]) -> tuple[float, int]:
    init_warehouse(spark, settings)
    store_catalog(spark, settings, catalog())
    for path in paths:
        land_file(settings, path, "default")
    started = time.perf_counter()
    tally = run_landing_to_bronze(spark, settings, progress=lambda line: print("   ", line))
    elapsed = time.perf_counter() - started
    bronze = tables.read(spark, settings, tables.BRONZE_EVENTS).count()
    assert bronze == tally.bronze_rows == tally.events_read, (bronze, tally)
    return elapsed, bronze


def phases(events: int, files: int, root: Path) -> None:
    """Time each phase of `process_batches` on its own, cold then warm."""
    settings = replace(Settings.load(), pinned_now=RECEIVED)
    spark = build_session(settings)
    paths = generate(root / "data", events, files, seed=1)
    for attempt in ("cold", "warm"):
        _time_phases(spark, settings.with_warehouse(str(root / f"wh-{attempt}")), paths, attempt)
    spark.stop()


def _time_phases(spark, wh: Settings, paths: list[Path], attempt: str) -> None:
    from pyspark.sql import functions as F

    from meterlake.delta_io import append
    from meterlake.ingest.bronze import (
        BLANK_LINE,
        admitted,
        bronze_rows,
        landing_lines,
        prior_events,
    )
    from meterlake.ingest.event_schema import load_event_schemas
    from meterlake.ingest.landing import manifest_entries
    from meterlake.ingest.parse import parse_lines

    init_warehouse(spark, wh)
    store_catalog(spark, wh, catalog())
    for path in paths:
        land_file(wh, path, "default")
    lines = landing_lines(spark, wh, list(manifest_entries(wh)))
    nonblank = lines.where(~F.col("value").rlike(BLANK_LINE))
    # Each step repeats the ones before it (Spark is lazy), so read the differences.
    with admitted(spark, wh, nonblank, prior_events(spark, wh)) as judged:
        steps = {
            "read lines + line numbers": lambda: noop(nonblank),
            "+ parse and validate": lambda: noop(parse_lines(nonblank, wh, load_event_schemas())),
            "  (every check on every line)": lambda: noop(
                parse_lines(nonblank, wh, load_event_schemas(), fast=False)
            ),
            "+ customers, identity, cache": judged.count,
            "bronze Delta write (cached)": lambda: append(
                bronze_rows(judged, RECEIVED), wh, tables.BRONZE_EVENTS
            ),
        }
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            print(f"{attempt}  {name:<28}{time.perf_counter() - started:>7.1f} s", flush=True)


def noop(frame) -> None:
    frame.write.format("noop").mode("overwrite").save()


def run(events: int, files: int, root: Path) -> None:
    settings = replace(Settings.load(), pinned_now=RECEIVED)
    spark = build_session(settings)
    print(f"generating {events:,} events in {files} files ...", flush=True)
    warm = generate(root / "warm", 20_000, 2, seed=99)
    paths = generate(root / "data", events, files, seed=1)
    size = sum(p.stat().st_size for p in paths)
    print(f"  {size / 1e6:.0f} MB, {size / events:.0f} bytes per event")
    print("warming up both paths ...", flush=True)
    plain_json_to_parquet(spark, warm, root / "warm-parquet")
    typed_bronze(spark, warm, root / "warm-typed")
    pipeline(spark, settings.with_warehouse(str(root / "warm-wh")), warm)
    print("(a) plain Spark JSON → Parquet ...", flush=True)
    plain = plain_json_to_parquet(spark, paths, root / "parquet")
    print("(c) hand-written typed job → Delta ...", flush=True)
    typed = typed_bronze(spark, paths, root / "typed")
    print("(b) meterlake pipeline run, landing → bronze ...", flush=True)
    ours, rows = pipeline(spark, settings.with_warehouse(str(root / "wh")), paths)
    spark.stop()
    record(
        "ingest",
        "Ingest: landing → bronze vs plain Spark jobs",
        [
            ("events", f"{events:,}"),
            ("(a) plain JSON → Parquet", f"{plain:.1f} s, {events / plain:,.0f} events/s"),
            ("(c) typed bronze columns → Delta", f"{typed:.1f} s, {events / typed:,.0f} events/s"),
            ("(b) landing → bronze", f"{ours:.1f} s, {rows / ours:,.0f} events/s"),
            ("ratio (b)/(a) (goal ≥ 0.3)", f"{plain / ours:.2f}"),
            ("ratio (b)/(c) (goal ≥ 0.6)", f"{typed / ours:.2f}"),
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=None, help="default 1M (200k with --phases)")
    parser.add_argument("--phases", action="store_true", help="time each phase separately")
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="meterlake-bench-"))
    try:
        if args.phases:
            phases(args.events or 200_000, args.files, root)
        else:
            run(args.events or 1_000_000, args.files, root)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
