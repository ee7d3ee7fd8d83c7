"""``pipeline run``: landing → bronze → silver → gold, then stop; ``pipeline stream``: the
same, continuously, with the published current-period usage."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meterlake.ingest.bronze import Tally
from meterlake.ingest.stream import run_landing_to_bronze
from meterlake.rollups.refresh import RefreshResult, refresh_rollups

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from meterlake.config import Settings


@dataclass(frozen=True)
class PipelineResult:
    tally: Tally
    rollups: RefreshResult | None  # None until a catalog is loaded: no meters to roll up


def run_pipeline(
    spark: SparkSession,
    settings: Settings,
    *,
    source: str = "landing",
    progress: Callable[[str], None] = print,
) -> PipelineResult:
    from meterlake.catalog.store import current_version

    tally = run_landing_to_bronze(spark, settings, source=source, progress=progress)
    if current_version(spark, settings) is None:
        progress("rollups skipped: no catalog loaded yet (`meterlake catalog load FILE`)")
        return PipelineResult(tally, None)
    return PipelineResult(tally, refresh_rollups(spark, settings, progress=progress))


def run_continuous(
    spark: SparkSession,
    settings: Settings,
    *,
    source: str = "landing",
    progress: Callable[[str], None] = print,
) -> Tally:
    """``pipeline stream``: keep bronze, silver, gold and the published current-period usage
    up to date until SIGTERM/SIGINT.

    Landing → bronze runs as a stream (one micro-batch per trigger with new batches); each
    micro-batch asks for the usage of the customers it touched to be re-published, priced
    from bronze so ``GET /v1/usage`` does not wait for the rollups. A `Publisher` thread
    does that beside the stream, merging the requests of micro-batches that finish while it
    works. The rollups catch up every ``METERLAKE_ROLLUP_INTERVAL_SECONDS`` in a third
    thread, in Spark's background pool (they take only the cores the micro-batches leave),
    which then rebuilds the materialised views (when the rollups changed) and asks for the
    customers whose published period has ended.
    """
    from meterlake.analytics.views import refresh_views
    from meterlake.billing.current_usage import ended_customers, publish_usage
    from meterlake.billing.usage_publisher import Keys, Publisher
    from meterlake.catalog.store import current_version
    from meterlake.errors import root_cause
    from meterlake.ingest.progress import read_progress
    from meterlake.spark import in_background

    stop = threading.Event()

    def publish(keys: Keys) -> None:
        if current_version(spark, settings) is None:
            return
        began = time.monotonic()
        mark = read_progress(settings)
        count = publish_usage(spark, settings, keys, mark.through if mark else None)
        progress(f"usage: {count} customer(s) published in {time.monotonic() - began:.1f}s")

    def catch_up() -> None:
        while not stop.wait(settings.rollup_interval_seconds):
            try:
                if current_version(spark, settings) is not None:
                    began = time.monotonic()
                    with in_background(spark):
                        done = refresh_rollups(spark, settings, progress=progress)
                        if done.rebuilt or done.batches:
                            refresh_views(spark, settings, progress=progress)
                    progress(f"rollups: caught up in {time.monotonic() - began:.1f}s")
                ended = ended_customers(settings)
                if ended:
                    publisher.request(ended)
            except Exception as exc:  # a long-running service: report, retry next round
                progress(f"rollups: failed ({root_cause(exc)}); retrying")

    publisher = Publisher(publish, progress)
    publisher.request(None)
    worker = threading.Thread(target=catch_up, name="meterlake-rollups", daemon=True)
    worker.start()
    try:
        return run_landing_to_bronze(
            spark,
            settings,
            source=source,
            continuous=True,
            progress=progress,
            on_batch=lambda tally: publisher.request(tally.customers) if tally.customers else None,
        )
    finally:
        stop.set()
        worker.join()
        publisher.close()
