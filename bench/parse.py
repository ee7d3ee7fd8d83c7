"""Parser benchmark: `parse_lines` with its fast path against every check on every line.

    .venv/bin/python bench/parse.py [--events 200000] [--rounds 3]

Generates the ingest benchmark's synthetic events, caches their text, then times
``parse_lines`` (forced with a no-op write) with the fast path and with ``fast=False``
(the full checks on every line, its reference) in alternating rounds in one process, and
prints the fastest round of each and their ratio. Then the cost of single output
columns, to show where the remaining time goes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from ingest import RECEIVED, generate, noop
from results import record

from meterlake.config import Settings
from meterlake.ingest.event_schema import load_event_schemas
from meterlake.ingest.parse import parse_lines
from meterlake.spark import build_session

COLUMNS = ("reason", "payload_sha256", "properties", "quantity", "event_time", "event_id")


def _timed(frame) -> float:
    started = time.perf_counter()
    noop(frame)
    return time.perf_counter() - started


def run(events: int, rounds: int) -> None:
    from pyspark.sql import functions as F

    settings = replace(Settings.load(), pinned_now=RECEIVED)
    spark = build_session(settings)
    paths = generate(Path(tempfile.mkdtemp()), events, 2, seed=1)
    lines = (
        spark.read.text([str(p) for p in paths])
        .where("trim(value) != ''")
        .select(
            "value",
            F.lit("default").alias("tenant_id"),
            F.lit("b").alias("batch_id"),
            F.lit(RECEIVED).cast("timestamp").alias("received_at"),
            F.lit(None).cast("timestamp").alias("source_time"),
            F.lit("landing/x.jsonl").alias("landing_file"),
            F.monotonically_increasing_id().alias("line_number"),
        )
        .cache()
    )
    lines.count()
    schemas = load_event_schemas()
    variants = {
        "fast path": lambda: parse_lines(lines, settings, schemas),
        "every check": lambda: parse_lines(lines, settings, schemas, fast=False),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for attempt in range(rounds + 1):  # the first round warms both up and is not counted
        for name, frame in variants.items():
            took = _timed(frame())
            print(f"  round {attempt}: {name:<12}{took:>7.2f} s", flush=True)
            if attempt:
                times[name].append(took)
    fast, full = min(times["fast path"]), min(times["every check"])
    parsed = parse_lines(lines, settings, schemas)
    columns = [
        (f"  {name} alone", f"{min(_timed(parsed.select(name)) for _ in range(2)):.2f} s")
        for name in COLUMNS
    ]
    spark.stop()
    record(
        "parse",
        "Parse: the fast path against every check on every line",
        [
            ("events (cached text)", f"{events:,}"),
            ("parse_lines, fast path (fastest round)", f"{fast:.2f} s"),
            ("parse_lines, every check on every line", f"{full:.2f} s"),
            ("ratio fast / every check", f"{fast / full:.2f}"),
            *columns,
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    run(args.events, args.rounds)


if __name__ == "__main__":
    main()
