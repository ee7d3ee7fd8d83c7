"""Billing benchmark: rollups (full rebuild vs incremental) and ``invoices run``.

    .venv/bin/python bench/invoices.py [--customers 10000] [--hours 744]

Writes one event per customer, meter (3) and hour of January 2026 straight into bronze
(10,000 customers: 22.3 M events; landing → bronze has its own benchmark), then times on
one SparkSession:

- a full rollup rebuild (silver minute/hour/day + gold) from bronze;
- an incremental refresh after a late batch touching 1 % of the customers (one day
  each), and the ratio rebuild / incremental;
- ``invoices run`` end to end as the CLI runs it (freshness checks, gold read, pricing,
  writing invoices and lines) for every customer, as of after January's close.

Goal: ``invoices run`` under 2 minutes for 10,000 customers on a 2-core machine.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from results import record

from meterlake import tables
from meterlake.billing.run import run_invoices
from meterlake.catalog.parse import parse_catalog
from meterlake.catalog.store import store_catalog
from meterlake.config import Settings
from meterlake.delta_io import append
from meterlake.rollups.refresh import refresh_rollups
from meterlake.spark import build_session
from meterlake.warehouse import init_warehouse

JANUARY = datetime(2026, 1, 1, tzinfo=UTC)
AS_OF = datetime(2026, 2, 10, tzinfo=UTC)
METERS = [
    {"key": "api_calls", "event_type": "api_call", "aggregation": "sum"},
    {"key": "storage_gb", "event_type": "storage", "aggregation": "max"},
    {"key": "seats", "event_type": "seat", "aggregation": "unique_count", "property": "user_id"},
]


def catalog(customers: int):
    charges = [
        {"type": "flat", "amount": "49.00"},
        {"type": "usage", "meter": "api_calls", "model": "graduated",
         "tiers": [{"up_to": 10000, "unit_price": "0"}, {"up_to": None, "unit_price": "0.002"}]},
        {"type": "usage", "meter": "storage_gb", "model": "package",
         "package_size": 100, "package_price": "5"},
        {"type": "usage", "meter": "seats", "model": "per_unit", "unit_price": "8.00"},
    ]  # fmt: skip
    document = {
        "meters": METERS,
        "plans": [
            {"id": "pro", "currency": "USD", "minimum_commitment": "100", "charges": charges}
        ],
        "customers": [
            {
                "id": f"c{i:05d}",
                "timezone": ["UTC", "America/New_York", "Europe/Berlin"][i % 3],
                "billing_anchor": "calendar",
                "subscriptions": [{"plan": "pro", "start": "2026-01-01T00:00:00Z"}],
            }
            for i in range(customers)
        ],
    }
    return parse_catalog(document, sha256=f"bench-{customers}", source="bench")


def events(spark, customers: int, hours: int, *, only: int | None = None, batch: str):
    """One event per (customer, meter, hour); ``only`` limits to the first N customers and
    one day received later (a late batch)."""
    from pyspark.sql import functions as F

    count = (only or customers) * (24 if only else hours)
    base = spark.range(count).select(
        (F.col("id") % (only or customers)).alias("c"),
        (F.col("id") / (only or customers)).cast("long").alias("h"),
    )
    kinds = spark.createDataFrame([(m["event_type"],) for m in METERS], "event_type string")
    start = F.lit(JANUARY).cast("long")
    when = (start + F.col("h") * 3600 + F.col("c") % 3600).cast("timestamp")
    received = when + F.expr("INTERVAL 1 MINUTE") if not only else F.lit(AS_OF).cast("timestamp")
    rows = base.crossJoin(F.broadcast(kinds)).select(
        F.lit("default").alias("tenant_id"),
        F.concat_ws("-", F.lit(batch), "c", "h", "event_type").alias("event_id"),
        F.format_string("c%05d", "c").alias("customer_id"),
        "event_type",
        ((F.col("c") * 7 + F.col("h") * 13) % 100).cast(tables.QUANTITY).alias("quantity"),
        when.alias("event_time"),
        when.alias("billing_time"),
        F.to_date(when).alias("billing_date"),
        received.alias("received_at"),
        F.lit(False).alias("clock_skew"),
        F.lit(None).cast("string").alias("resource_id"),
        F.format_string("u%02d", (F.col("h") + F.col("c")) % 20).alias("user_id"),
        F.lit(None).cast("string").alias("session_id"),
        F.when(F.col("c") % 2 == 0, "eu").otherwise("us").alias("region"),
        F.lit(None).cast("string").alias("properties"),
        F.lit(None).cast("string").alias("extra"),
        F.lit("1").alias("schema_version"),
        F.lit(None).cast("string").alias("sdk_name"),
        F.lit(None).cast("string").alias("sdk_version"),
        F.lit("bench").alias("payload_sha256"),
        F.lit(batch).alias("batch_id"),
        F.lit("bench").alias("landing_file"),
        (F.monotonically_increasing_id() + 1).alias("line_number"),
        F.lit(JANUARY).cast("timestamp").alias("ingested_at"),
    )
    return rows, count * len(METERS)


def timed(label: str, action) -> float:
    started = time.perf_counter()
    action()
    elapsed = time.perf_counter() - started
    print(f"{label:<48}{elapsed:>9.1f} s", flush=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--hours", type=int, default=744)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="meterlake-bench-invoices-"))
    try:
        base = Settings.load().with_warehouse(str(folder / "warehouse"))
        settings = replace(base, pinned_now=AS_OF)
        spark = build_session(settings)
        init_warehouse(spark, settings)
        store_catalog(spark, settings, catalog(args.customers))
        frame, total = events(spark, args.customers, args.hours, batch="jan")
        print(
            f"{args.customers} customers × {len(METERS)} meters × {args.hours} h = {total:,} events"
        )
        timed(
            "write bronze (setup, not measured)",
            lambda: append(frame, settings, tables.BRONZE_EVENTS),
        )
        quiet = {"progress": lambda _: None}
        full = timed("rollups: full rebuild", lambda: refresh_rollups(spark, settings, **quiet))
        late, late_count = events(
            spark, args.customers, args.hours, only=max(1, args.customers // 100), batch="late"
        )
        append(late, settings, tables.BRONZE_EVENTS)
        incremental = timed(
            f"rollups: incremental ({late_count:,} late events)",
            lambda: refresh_rollups(spark, settings, **quiet),
        )
        holder = {}
        took = timed(
            "invoices run (all customers, as of Feb 10)",
            lambda: holder.setdefault("run", run_invoices(spark, settings, AS_OF)),
        )
        run = holder["run"]
        again = timed(
            "invoices run again (nothing changes)", lambda: run_invoices(spark, settings, AS_OF)
        )
        record(
            "invoices",
            f"Billing: rollups and an invoice run for {args.customers:,} customers",
            [
                ("events in bronze", f"{total:,}"),
                ("rollups: full rebuild", f"{full:.1f} s"),
                (f"rollups: incremental ({late_count:,} late events)", f"{incremental:.1f} s"),
                ("rebuild / incremental ratio", f"{full / incremental:.1f}"),
                ("invoices run (goal < 120 s)", f"{took:.1f} s"),
                ("invoices", f"{len(run.invoices):,} ({args.customers / took:,.0f} customers/s)"),
                ("rerun ratio to first run", f"{again / took:.2f}"),
            ],
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
