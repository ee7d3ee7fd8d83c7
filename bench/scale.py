"""Scaling benchmark: the whole pipeline on growing volumes, time per million events.

    .venv/bin/python bench/scale.py [--sizes 1,3,10] [--customers 1000] [--cluster]

For each size (millions of events), in a fresh warehouse on one SparkSession: land the
events (files of 250,000), then time ``pipeline run`` (landing → bronze → silver → gold)
and an ``invoices run`` for every customer. Generating the events is not timed. A small
run first warms the JVM so the first size does not pay for it alone. Prints and records
the seconds per million events of each size and the growth from the smallest to the
largest (goal: at most 1.15). With ``--cluster`` all of it runs again on a Spark
standalone cluster of two one-core workers started by infra/spark-cluster.sh, and the
cluster's time per million is compared with the local master's at each size.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
EXECUTOR_MEMORY = "4g"  # each cluster worker's one executor (two: 8g, the local run's driver)
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


def event_files(root: Path, events: int, customers: list[str]) -> list[Path]:
    """The synthetic events of one size as files of `PER_FILE`, generated once per run (the
    local and the cluster run land the same files)."""
    folder = root / f"events-{events}"
    if not folder.exists():
        folder.mkdir()
        for index, first in enumerate(range(0, events, PER_FILE)):
            count = min(PER_FILE, events - first)
            stream = synthetic.events(count, customers, START, timedelta(days=31), seed=index)
            synthetic.write_jsonl(
                folder / f"{index:03d}.jsonl", (synthetic.dump(e) for e in stream)
            )
    return sorted(folder.glob("*.jsonl"))


def one_size(spark, base: Settings, root: Path, events: int, customers: list[str]) -> float:
    """Seconds for pipeline + invoices on ``events`` events (generation and landing excluded)."""
    settings = replace(base.with_warehouse(str(root / f"wh-{events}")), pinned_now=RECEIVED)
    init_warehouse(spark, settings)
    store_catalog(spark, settings, catalog(customers))
    for path in event_files(root, events, customers):
        land_file(settings, path, "default")
    billed = replace(settings, pinned_now=BILLED)
    started = time.perf_counter()
    run_pipeline(spark, billed, progress=lambda line: print("   ", line, flush=True))
    invoices = run_invoices(spark, billed, BILLED).invoices
    elapsed = time.perf_counter() - started
    assert {i.customer for i in invoices} == set(customers)
    shutil.rmtree(settings.warehouse, ignore_errors=True)
    return elapsed


def on_master(master: str, args, customers: list[str], root: Path) -> dict[float, float]:
    """Seconds per million events of each size, on one Spark master (a fresh session)."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()
    base = replace(Settings.load(), spark_master=master, executor_memory=EXECUTOR_MEMORY)
    spark = build_session(base)
    print(f"[{master}] warming up (100,000 events) ...", flush=True)
    one_size(spark, base, root, 100_000, customers)
    per_million = {}
    for size in args.sizes:
        events = int(size * 1_000_000)
        print(f"[{master}] {events:,} events ...", flush=True)
        elapsed = one_size(spark, base, root, events, customers)
        per_million[size] = elapsed / size
        print(f"  {elapsed:.1f} s, {per_million[size]:.1f} s per million", flush=True)
    spark.stop()
    return per_million


@contextmanager
def standalone_cluster(root: Path) -> Iterator[str]:
    """infra/spark-cluster.sh's master and two workers for the run; the master's URL."""
    script = str(Path(__file__).resolve().parents[1] / "infra/spark-cluster.sh")
    env = {**os.environ, "METERLAKE_SPARK_PORT": "17077", "METERLAKE_SPARK_UI_PORT": "18080",
           "METERLAKE_SPARK_DIR": str(root / "cluster"),
           "METERLAKE_SPARK_WORKER_MEMORY": EXECUTOR_MEMORY}  # fmt: skip
    subprocess.run(["bash", script, "start"], env=env, check=True)
    try:
        yield "spark://127.0.0.1:17077"
    finally:
        subprocess.run(["bash", script, "stop"], env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,3,10", help="millions of events, comma-separated")
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="also on a standalone cluster of two workers (infra/spark-cluster.sh)",
    )
    args = parser.parse_args()
    args.sizes = [float(s) for s in args.sizes.split(",")]
    customers = [f"cust-{i:05d}" for i in range(args.customers)]
    root = Path(tempfile.mkdtemp(prefix="meterlake-bench-scale-"))
    runs: dict[str, dict[float, float]] = {}
    try:
        runs["local[2]"] = on_master("local[2]", args, customers, root)
        if args.cluster:
            with standalone_cluster(root) as master:
                runs["cluster (2 workers x 1 core)"] = on_master(master, args, customers, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    smallest, largest = min(args.sizes), max(args.sizes)
    figures = []
    for name, per_million in runs.items():
        figures += [
            (
                f"{name}: {size:g}M events",
                f"{per_million[size] * size:.1f} s, {per_million[size]:.1f} s/M",
            )
            for size in args.sizes
        ]
        growth = per_million[largest] / per_million[smallest]
        figures.append(
            (
                f"{name}: growth {largest:g}M / {smallest:g}M per million (goal ≤ 1.15)",
                f"{growth:.2f}",
            )
        )
    if len(runs) == 2:
        local, cluster = runs.values()
        figures += [
            (f"cluster / local at {size:g}M", f"{cluster[size] / local[size]:.2f}")
            for size in args.sizes
        ]
    name, where = ("scale-cluster", " on local[2] and a cluster") if args.cluster else ("scale", "")
    title = f"Scaling: pipeline run + invoices run for {args.customers:,} customers{where}"
    record(name, title, figures)


if __name__ == "__main__":
    main()
