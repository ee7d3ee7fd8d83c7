"""`append_numbered` (bronze's batch accounting): rows numbered in commit order, each key
once, with a second writer doing the same at the same moment."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from meterlake import delta_io, tables
from meterlake.delta_io import append_numbered, table_version
from tests.helpers import hold_first_calls

SPEC = tables.BRONZE_BATCHES
NOW = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)


def rows_of(batch_ids: list[str]) -> list[tuple]:
    """bronze.batches rows (all columns but ingest_seq) of 3-line batches."""
    landed = ("default", "landing/x.jsonl", "0" * 64, NOW, 3, 0, 3, 3, 0, 0, {}, 0, NOW)
    return [(b, *landed) for b in batch_ids]


def numbers(spark, settings) -> dict[str, int]:
    return {
        r.batch_id: r.ingest_seq
        for r in tables.read(spark, settings, SPEC).select("batch_id", "ingest_seq").collect()
    }


def write(spark, settings, batch_ids: list[str], fence=None) -> None:
    append_numbered(
        spark, settings, SPEC, rows_of(batch_ids), key="batch_id", number="ingest_seq", fence=fence
    )


def both_read_first(monkeypatch) -> None:
    """Each writer's first commit waits until the other has read the table too (held at
    the commit tag, before its lock, which one process holds for one commit at a time)."""
    hold_first_calls(monkeypatch, delta_io, "commit_metadata", 2)


def test_two_writers_of_different_batches_get_consecutive_numbers(
    spark, warehouse, monkeypatch
) -> None:
    """Both read number 1 before either commits: without the compare-and-set both would
    commit number 2 (two batches indistinguishable in commit order). A rerun of batches
    already there commits nothing."""
    write(spark, warehouse, ["b0"])
    both_read_first(monkeypatch)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda b: write(spark, warehouse, [b]), ["b1", "b2"]))
    found = numbers(spark, warehouse)
    assert found["b0"] == 1 and sorted([found["b1"], found["b2"]]) == [2, 3], found
    version = table_version(spark, SPEC.path(warehouse))
    write(spark, warehouse, ["b2", "b1"])
    assert table_version(spark, SPEC.path(warehouse)) == version


def test_two_writers_of_the_same_batch_write_it_once(spark, warehouse, monkeypatch) -> None:
    both_read_first(monkeypatch)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: write(spark, warehouse, ["b1"]), range(2)))
    assert tables.read(spark, warehouse, SPEC).count() == 1
    assert numbers(spark, warehouse) == {"b1": 1}


class CommitsBetween:
    """A fence whose second check (the first is made before the attempt reads, the second
    once it has read the table, before it appends) lets the other writer commit first:
    ``read`` is set, then it waits for ``committed``."""

    def __init__(self) -> None:
        self.read, self.committed = threading.Event(), threading.Event()
        self.checks = 0

    def check(self) -> None:
        self.checks += 1
        if self.checks == 2:
            self.read.set()
            assert self.committed.wait(120)


def test_a_commit_between_the_read_and_the_append_is_not_written_twice(spark, warehouse) -> None:
    """On a table with no number recorded yet (the fresh case, where the number comes from
    the rows): the other writer commits the same batch after this one found it missing.
    The number read after that commit would be 2 and the batch would land twice (CI's
    failure of test_concurrent_bronze); read before the keys, it is 1, which is taken, so
    the append is skipped and the next attempt finds the batch there."""
    between = CommitsBetween()

    def other() -> None:
        assert between.read.wait(120)
        write(spark, warehouse, ["b1"])
        between.committed.set()

    with ThreadPoolExecutor(2) as pool:
        done = [pool.submit(write, spark, warehouse, ["b1"], between), pool.submit(other)]
        for future in done:
            future.result()
    assert tables.read(spark, warehouse, SPEC).count() == 1
    assert numbers(spark, warehouse) == {"b1": 1}
