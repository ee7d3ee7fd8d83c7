"""Scaling benchmark: the whole pipeline on growing volumes, time per million events.

    .venv/bin/python bench/scale.py [--sizes 1,3,10] [--customers 1000]

For each size (millions of events), in a fresh warehouse on one SparkSession: land the
events (files of 250,000), then time ``pipeline run`` (landing → bronze → silver → gold)
and an ``invoices run`` for every customer. Generating the events is not timed. A small
run first warms the JVM so the first size does not pay for it alone. Prints and records
the seconds per million events of each size and the growth from the smallest to the
largest (goal: at most 1.15).
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

from meterlake import synthetic
from meterlake.billing.run import run_invoices
from meterlake.catalog.parse import parse_catalog
from meterlake.catalog.store import store_catalog
from meterlake.config import Settings
from meterlake.ingest.landing import land_file
from meterlake.pipeline import run_pipeline
from meterlake.spark import build_session
from meterlake.warehouse import init_warehouse

PER_FILE = 250_000
START = datetime(2026, 1, 1, tzinfo=UTC)
RECEIVED = datetime(2026, 2, 1, 12, tzinfo=UTC)
BILLED = datetime(2026, 2, 10, tzinfo=UTC)  # January has closed (48 h grace)


def catalog(customers: list[str]):
    return parse_catalog(
        {
            "meters": [
                {"key": "api_calls", "event_type": "api_call", "aggregation": "sum"},
                {"key": "seats", "event_type": "seat", "aggregation": "unique_count",
                 "property": "user_id"},
                {"key": "storage_gb", "event_type": "storage_gb", "aggregation": "max"},
            ],
            "plans": [
                {
                    "id": "p",
                    "currency": "USD",
                    "charges": [
                        {"type": "flat", "amount": "10"},
                        {"type": "usage", "meter": "api_calls", "model": "per_unit",
                         "unit_price": "0.001"},
                        {"type": "usage", "meter": "seats", "model": "per_unit",
                         "unit_price": "5"},
                        {"type": "usage", "meter": "storage_gb", "model": "per_unit",
                         "unit_price": "0.02"},
                    ],
                }
            ],
            "customers": [
                {"id": c, "timezone": "UTC", "billing_anchor": "calendar",
                 "subscriptions": [{"plan": "p", "start": "2026-01-01T00:00:00Z"}]}
                for c in customers
            ],
        },
        sha256="bench-scale",
        source="bench",
    )  # fmt: skip


def one_size(spark, base: Settings, root: Path, events: int, customers: list[str]) -> float:
    """Seconds for pipeline + invoices on ``events`` events (generation and landing excluded)."""
    settings = replace(base.with_warehouse(str(root / f"wh-{events}")), pinned_now=RECEIVED)
    init_warehouse(spark, settings)
    store_catalog(spark, settings, catalog(customers))
    for index, first in enumerate(range(0, events, PER_FILE)):
        count = min(PER_FILE, events - first)
        stream = synthetic.events(count, customers, START, timedelta(days=31), seed=index)
        path = root / f"events-{events}-{index:03d}.jsonl"
        synthetic.write_jsonl(path, (synthetic.dump(e) for e in stream))
        land_file(settings, path, "default")
        path.unlink()
    billed = replace(settings, pinned_now=BILLED)
    started = time.perf_counter()
    run_pipeline(spark, billed, progress=lambda line: print("   ", line, flush=True))
    invoices = run_invoices(spark, billed, BILLED).invoices
    elapsed = time.perf_counter() - started
    assert {i.customer for i in invoices} == set(customers)
    shutil.rmtree(settings.warehouse, ignore_errors=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,3,10", help="millions of events, comma-separated")
    parser.add_argument("--customers", type=int, default=1000)
    args = parser.parse_args()
    sizes = [float(s) for s in args.sizes.split(",")]
    customers = [f"cust-{i:05d}" for i in range(args.customers)]
    root = Path(tempfile.mkdtemp(prefix="meterlake-bench-scale-"))
    try:
        base = Settings.load()
        spark = build_session(base)
        print("warming up (100,000 events) ...", flush=True)
        one_size(spark, base, root, 100_000, customers)
        per_million = {}
        for size in sizes:
            events = int(size * 1_000_000)
            print(f"{events:,} events ...", flush=True)
            elapsed = one_size(spark, base, root, events, customers)
            per_million[size] = elapsed / size
            print(f"  {elapsed:.1f} s, {per_million[size]:.1f} s per million", flush=True)
        spark.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    smallest, largest = min(sizes), max(sizes)
    growth = per_million[largest] / per_million[smallest]
    record(
        "scale",
        f"Scaling: pipeline run + invoices run for {args.customers:,} customers",
        [
            *(
                (
                    f"{size:g}M events",
                    f"{per_million[size] * size:.1f} s, {per_million[size]:.1f} s per million",
                )
                for size in sizes
            ),
            (f"growth {largest:g}M / {smallest:g}M per million (goal ≤ 1.15)", f"{growth:.2f}"),
        ],
    )


if __name__ == "__main__":
    main()
