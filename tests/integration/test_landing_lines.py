"""Line numbers stay exact when Spark splits a landing file into several partitions."""

from __future__ import annotations

from pathlib import Path

from meterlake.config import Settings
from meterlake.ingest.bronze import landing_lines
from meterlake.ingest.landing import land_file


def test_line_numbers_across_file_splits(spark, settings: Settings, tmp_path: Path) -> None:
    lines = [f'{{"n": {i}, "pad": "{"x" * (i % 37)}"}}' for i in range(1, 2001)]
    lines[10] = ""  # blank lines keep their number too
    first = tmp_path / "a.jsonl"
    first.write_text("\n".join(lines) + "\n")
    second = tmp_path / "b.jsonl"
    second.write_text("\n".join(lines[:5]))  # no trailing newline
    batches = [land_file(settings, first, "default").batch, land_file(settings, second, "t2").batch]
    spark.conf.set("spark.sql.files.maxPartitionBytes", "4096")
    try:
        frame = landing_lines(spark, settings, batches)
        assert frame.rdd.getNumPartitions() > 10
        rows = frame.select("batch_id", "tenant_id", "line_number", "value").collect()
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    got = sorted((r.batch_id, r.line_number, r.value, r.tenant_id) for r in rows)
    expected = sorted(
        [(batches[0].batch_id, i + 1, text, "default") for i, text in enumerate(lines)]
        + [(batches[1].batch_id, i + 1, text, "t2") for i, text in enumerate(lines[:5])]
    )
    assert got == expected
