"""``pipeline run``: landing → bronze → silver → gold, then stop."""

from __future__ import annotations

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
    spark: SparkSession, settings: Settings, *, progress: Callable[[str], None] = print
) -> PipelineResult:
    from meterlake.catalog.store import current_version

    tally = run_landing_to_bronze(spark, settings, progress=progress)
    if current_version(spark, settings) is None:
        progress("rollups skipped: no catalog loaded yet (`meterlake catalog load FILE`)")
        return PipelineResult(tally, None)
    return PipelineResult(tally, refresh_rollups(spark, settings, progress=progress))
