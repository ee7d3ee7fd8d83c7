"""Wall-clock time per named phase of a unit of work, for the benchmarks' breakdowns.

A micro-batch's fixed cost is spread over a dozen steps, most of them driver-side
planning that no Spark metric shows, so the steps time themselves: library code marks
them with `phase`, and a caller that wants the figures opens `timed` around the work.
With no `timed` open, `phase` only reads the clock. The record is process-wide, not per
thread, because the stream's ``foreachBatch`` handler runs on a Py4J callback thread,
not on the thread that started the query.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_records: dict[int, dict[str, float]] = {}  # open records by id


@contextmanager
def timed() -> Iterator[dict[str, float]]:
    """Seconds per phase entered (on any thread) while the block runs, summed over
    repeats, in the order first entered."""
    record: dict[str, float] = {}
    with _lock:
        _records[id(record)] = record
    try:
        yield record
    finally:
        with _lock:
            del _records[id(record)]


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Count the block's wall-clock time under ``name`` in every open record."""
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - started
        with _lock:
            for record in _records.values():
                record[name] = record.get(name, 0.0) + elapsed
