"""Ingest benchmark: landing → bronze against plain Spark JSON → Parquet, in one process.

    .venv/bin/python bench/ingest.py [--events 1000000] [--files 10]

Generates realistic events (about 350 bytes each) into JSONL files, then times, on the
same SparkSession: (a) ``spark.read.json`` with the event schema → Parquet, and (b) the
``pipeline run`` path (landing → validated, deduplicated, partitioned Delta bronze).
Prints both rates and the ratio (b)/(a); the goal is >= 0.6. A small warm-up of both
paths runs first so neither pays the JVM's cold start alone.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
    pipeline(spark, settings.with_warehouse(str(root / "warm-wh")), warm)
    print("(a) plain Spark JSON → Parquet ...", flush=True)
    plain = plain_json_to_parquet(spark, paths, root / "parquet")
    print("(b) meterlake pipeline run, landing → bronze ...", flush=True)
    ours, rows = pipeline(spark, settings.with_warehouse(str(root / "wh")), paths)
    print()
    print(f"events                     {events:>12,}")
    print(f"(a) JSON → Parquet         {plain:>10.1f} s  {events / plain:>10,.0f} events/s")
    print(f"(b) landing → bronze       {ours:>10.1f} s  {rows / ours:>10,.0f} events/s")
    print(f"ratio (b)/(a)              {plain / ours:>12.2f}   (goal >= 0.6)")
    spark.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="meterlake-bench-"))
    try:
        run(args.events, args.files, root)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
