"""Spark's job pools: jobs started inside `in_background` run in the low-priority pool, so
``pipeline stream``'s rollups yield the cores to its micro-batches."""

from __future__ import annotations

import threading
import time

from meterlake.spark import BACKGROUND_POOL, in_background


def _running(spark, pool: str) -> int:
    return int(spark._jsc.sc().getPoolForName(pool).get().runningTasks())


def test_the_pools_come_from_meterlakes_allocation_file(spark) -> None:
    context = spark._jsc.sc()
    assert context.getSchedulingMode().toString() == "FAIR"
    default = context.getPoolForName("default").get()
    background = context.getPoolForName(BACKGROUND_POOL).get()
    assert (default.weight(), default.minShare()) == (8, 1024)
    assert (background.weight(), background.minShare()) == (1, 0)


def test_a_job_started_in_the_background_runs_in_that_pool_and_the_thread_returns(spark) -> None:
    seen: dict[str, int] = {}

    def slow_job() -> None:
        with in_background(spark):
            spark.sparkContext.parallelize(range(2), 2).map(lambda x: time.sleep(3) or x).count()
            seen["inside"] = 1
        seen["after"] = spark.sparkContext.getLocalProperty("spark.scheduler.pool") is None

    thread = threading.Thread(target=slow_job)
    thread.start()
    deadline = time.monotonic() + 30
    while _running(spark, BACKGROUND_POOL) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    busy, default_busy = _running(spark, BACKGROUND_POOL), _running(spark, "default")
    thread.join()
    assert busy > 0 and default_busy == 0
    assert seen == {"inside": 1, "after": True}
