"""Micro-batch fixed cost: one small landing batch into a bronze that already holds events.

    .venv/bin/python bench/microbatch.py [--bronze 100000] [--batch 1000] [--rounds 5]
                                         [--codegen-cache N]

Fills bronze with ``--bronze`` events (one landing batch), then lands and loads
``--rounds`` batches of ``--batch`` events one at a time, as `pipeline stream` does,
timing each (`run_landing_to_bronze`: integrity check, parse, identity against bronze,
the Delta commits). The first small round pays the JVM's warm-up; the report is the
median of the others (goal: ≤ 1.5 s on an idle machine), beside the time of a bare
1-row Delta append on the same session as the baseline of what one commit costs, the
Delta commits each micro-batch made, and where the time goes: the median per phase the
library marks (`meterlake.phases`; "plan" phases build query plans on the driver and
run no job), the code compilations Spark made (CodegenMetrics) and the JVM's metaspace
(where compiled classes live). ``--codegen-cache`` runs with another size of Spark's
compiled-code cache than meterlake's (`meterlake.spark.CODEGEN_CACHE_ENTRIES`), e.g. 100,
Spark's default, for the before figure.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from ingest import RECEIVED, catalog, generate
from results import record

from meterlake import spark as spark_session
from meterlake import tables
from meterlake.catalog.store import store_catalog
from meterlake.config import Settings
from meterlake.ingest.landing import land_file
from meterlake.ingest.stream import run_landing_to_bronze
from meterlake.phases import timed
from meterlake.spark import build_session
from meterlake.warehouse import init_warehouse

# The tables one micro-batch writes (its commits are counted on each).
WRITTEN = (tables.BRONZE_EVENTS, tables.BRONZE_QUARANTINE, tables.BRONZE_BATCHES)


def commits(spark, settings: Settings) -> int:
    from delta.tables import DeltaTable

    return sum(
        DeltaTable.forPath(spark, spec.path(settings)).history(1).first().version
        for spec in WRITTEN
    )


def one_row_append(spark, path: Path) -> float:
    started = time.perf_counter()
    spark.range(1).write.format("delta").mode("append").save(str(path))
    return time.perf_counter() - started


def metaspace_mib(spark) -> float:
    """The JVM's metaspace in use (MiB): compiled query classes are kept there."""
    management = spark._jvm.java.lang.management.ManagementFactory
    (pool,) = [p for p in management.getMemoryPoolMXBeans() if p.getName() == "Metaspace"]
    return pool.getUsage().getUsed() / 2**20


def after_warm_up(values: list):
    """The rounds after the first, which pays the JVM's warm-up (all of them if only one)."""
    return values[1:] or values


def run(bronze: int, batch: int, rounds: int, root: Path) -> None:
    settings = replace(Settings.load(), pinned_now=RECEIVED).with_warehouse(str(root / "wh"))
    spark = build_session(settings)
    quiet = {"progress": lambda _: None}
    init_warehouse(spark, settings)
    store_catalog(spark, settings, catalog())
    print(f"filling bronze with {bronze:,} events ...", flush=True)
    for path in generate(root / "fill", bronze, 4, seed=1):
        land_file(settings, path, "default")
    run_landing_to_bronze(spark, settings, **quiet)
    baseline = [one_row_append(spark, root / "one-row") for _ in range(3)]
    times, made, compiled, split = [], [], [], []
    for n in range(rounds):
        (path,) = generate(root / f"round-{n}", batch, 1, seed=100 + n)
        land_file(settings, path, "default")
        before, classes = commits(spark, settings), spark_session.compiled_classes(spark)
        started = time.perf_counter()
        with timed() as phases:
            tally = run_landing_to_bronze(spark, settings, **quiet)
        times.append(time.perf_counter() - started)
        made.append(commits(spark, settings) - before)
        compiled.append(spark_session.compiled_classes(spark) - classes)
        split.append(
            {
                **phases,
                "other (query start and stop, checkpoint, lease)": times[-1] - sum(phases.values()),
            }
        )
        assert tally.events_read == batch, tally
        print(f"  round {n + 1}: {times[-1]:.2f} s, {made[-1]} commits", flush=True)
    metaspace = metaspace_mib(spark)
    spark.stop()
    phases = {
        name: statistics.median(p.get(name, 0.0) for p in after_warm_up(split))
        for name in split[-1]
    }
    per_batch, per_append = statistics.median(after_warm_up(times)), statistics.median(baseline)
    record(
        "microbatch",
        "Micro-batch fixed cost: a small landing batch into a filled bronze",
        [
            ("bronze before", f"{bronze:,} events"),
            ("micro-batch", f"{batch:,} events, {rounds} rounds"),
            ("first round (warm-up)", f"{times[0]:.2f} s"),
            ("median of the others (goal ≤ 1.5 s)", f"{per_batch:.2f} s"),
            ("Delta commits per micro-batch", f"{statistics.median(made):.0f}"),
            ("a bare 1-row Delta append", f"{per_append:.2f} s"),
            ("micro-batch / 1-row append", f"{per_batch / per_append:.1f}"),
            (
                "classes compiled per micro-batch",
                f"{statistics.median(after_warm_up(compiled)):.0f}",
            ),
            ("compiled-code cache (entries)", f"{spark_session.CODEGEN_CACHE_ENTRIES:,}"),
            ("JVM metaspace in use after the rounds", f"{metaspace:.0f} MiB"),
            *((f"  {name}", f"{seconds:.2f} s") for name, seconds in phases.items()),
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bronze", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--codegen-cache", type=int, default=spark_session.CODEGEN_CACHE_ENTRIES)
    args = parser.parse_args()
    spark_session.CODEGEN_CACHE_ENTRIES = args.codegen_cache
    root = Path(tempfile.mkdtemp(prefix="meterlake-bench-mb-"))
    try:
        run(args.bronze, args.batch, args.rounds, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
