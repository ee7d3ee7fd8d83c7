"""Batch accounting: a micro-batch's bronze.batches row written as `append_numbered` does
it, against the insert-only MERGE (`insert_missing`) it replaced, in one process.

    .venv/bin/python bench/accounting.py [--rounds 40]

Each round writes one numbered accounting row both ways, interleaved, into two tables that
grow alike (one commit per round, as one per micro-batch); the first 10 rounds are the
JVM's warm-up. The MERGE side numbers its row inside its own plan (one more than the
highest ``ingest_seq``), as bronze did before.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from results import record

from meterlake import tables
from meterlake.config import Settings
from meterlake.delta_io import append_numbered, insert_missing, sql_in
from meterlake.spark import build_session
from meterlake.warehouse import init_warehouse

SPEC = tables.BRONZE_BATCHES
WARM_UP = 10
NOW = datetime(2026, 12, 3, tzinfo=UTC)


def accounting(n: int) -> tuple:
    """A bronze.batches row (every column but ingest_seq) of a 10-line batch."""
    return (
        f"b{n:06d}",
        "default",
        "landing/x.jsonl",
        "0" * 64,
        NOW,
        10,
        0,
        10,
        10,
        0,
        0,
        {},
        n,
        NOW,
    )


def merged(spark, settings: Settings, n: int) -> None:
    from pyspark.sql import functions as F

    schema = tables.nullable_schema(SPEC)
    unnumbered = type(schema)([f for f in schema.fields if f.name != "ingest_seq"])
    top = tables.read(spark, settings, SPEC).agg(
        (F.coalesce(F.max("ingest_seq"), F.lit(0)) + 1).alias("ingest_seq")
    )
    rows = spark.createDataFrame([accounting(n)], schema=unnumbered).crossJoin(top)
    insert_missing(rows, settings, SPEC, ["batch_id"], scope=sql_in("t.batch_id", [f"b{n:06d}"]))


def appended(spark, settings: Settings, n: int) -> None:
    append_numbered(spark, settings, SPEC, [accounting(n)], key="batch_id", number="ingest_seq")


def run(rounds: int, root: Path) -> None:
    base = Settings.load()
    ways = {
        "insert-only MERGE (before)": (merged, base.with_warehouse(str(root / "merge"))),
        "append_numbered (now)": (appended, base.with_warehouse(str(root / "append"))),
    }
    spark = build_session(base)
    for _, settings in ways.values():
        init_warehouse(spark, settings)
    times: dict[str, list[float]] = {name: [] for name in ways}
    for n in range(rounds):
        for name, (write, settings) in ways.items():
            started = time.perf_counter()
            write(spark, settings, n)
            times[name].append(time.perf_counter() - started)
    for _, settings in ways.values():
        numbers = [r.ingest_seq for r in tables.read(spark, settings, SPEC).collect()]
        assert sorted(numbers) == list(range(1, rounds + 1)), numbers
    spark.stop()
    medians = {name: statistics.median(t[WARM_UP:]) for name, t in times.items()}
    before, now = medians.values()
    record(
        "accounting",
        "Batch accounting: one numbered bronze.batches row per micro-batch",
        [
            ("rounds (after the warm-up)", f"{rounds - WARM_UP}"),
            *((f"{name}, median", f"{seconds:.2f} s") for name, seconds in medians.items()),
            ("now / before", f"{now / before:.2f}"),
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="meterlake-bench-acct-"))
    try:
        run(max(args.rounds, WARM_UP + 1), root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
