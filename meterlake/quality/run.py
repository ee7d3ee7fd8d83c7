"""Run the Great Expectations suites of ``expectations/<layer>/<suite>.json`` with a
file-backed GX context in `quality_root` (Spark data source, one dataframe
asset per suite), store every expectation's outcome in ``quality.results`` and build
Data Docs there.

`require_quality` is the gate invoicing uses: a failing suite raises one line naming
the suite, the expectation and the first offending rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meterlake import tables
from meterlake.delta_io import append
from meterlake.errors import MeterlakeError
from meterlake.paths import expectations_dir
from meterlake.quality.views import ROW_KEYS, VIEWS

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from meterlake.config import Settings


class QualityGateError(MeterlakeError):
    """A data-quality suite failed; what depends on it (finalising invoices) must wait."""


@dataclass(frozen=True)
class Outcome:
    suite: str
    expectation: str
    column: str
    success: bool
    unexpected: int
    rows: list[str] = field(default_factory=list)  # identities of offending rows (a sample)
    # Every offending row's key columns (ROW_KEYS of the view), for repairs.
    offending: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class QualityReport:
    run_id: str
    outcomes: list[Outcome]
    docs: Path

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success]


def load_suites(layers: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """The suite documents, layer by layer (bronze, silver, gold, billing)."""
    order = ("bronze", "silver", "gold", "billing")
    found = []
    for layer in order:
        if layers and layer not in layers:
            continue
        for path in sorted((expectations_dir() / layer).glob("*.json")):
            found.append(json.loads(path.read_text()))
    return found


def quality_root(settings: Settings) -> Path:
    """GX keeps its project (suites, validation results, Data Docs) on a local disk: in
    the warehouse when that is local, else in a folder of the user's cache per warehouse."""
    if not settings.is_object_store:
        return Path(settings.warehouse) / "_quality"
    return Path.home() / ".cache/meterlake/quality" / settings.warehouse.split("://", 1)[1]


def _context(settings: Settings):
    import great_expectations as gx

    root = quality_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="file", project_root_dir=str(root))
    # Progress bars would interleave with meterlake's own one-line progress output.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context, root


def _outcome(suite: str, result, keys: list[str]) -> Outcome:
    config = result.expectation_config
    details = result.result or {}
    offending = [r for r in details.get("unexpected_index_list") or [] if isinstance(r, dict)]
    sample = ["/".join(str(row.get(k)) for k in keys) for row in offending[:5]]
    column = config.kwargs.get("column") or ",".join(
        config.kwargs.get("column_list")
        or [config.kwargs.get("column_A", ""), config.kwargs.get("column_B", "")]
    )
    return Outcome(
        suite,
        config.type,
        column,
        bool(result.success),
        int(details.get("unexpected_count") or 0),
        sample,
        offending,
    )


def run_quality(
    spark: SparkSession, settings: Settings, layers: tuple[str, ...] | None = None
) -> QualityReport:
    """Validate every suite (or those of ``layers``), record and document the results."""
    import great_expectations as gx

    context, root = _context(settings)
    source = context.data_sources.add_or_update_spark(name="meterlake")
    outcomes: list[Outcome] = []
    for document in load_suites(layers):
        view = document["meta"]["view"]
        name = document["name"]
        frame = VIEWS[view](spark, settings)
        asset = next(
            (a for a in source.assets if a.name == name), None
        ) or source.add_dataframe_asset(name)
        batch = next(
            (b for b in asset.batch_definitions if b.name == "whole"), None
        ) or asset.add_batch_definition_whole_dataframe("whole")
        suite = context.suites.add_or_update(gx.ExpectationSuite(**document))
        definition = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=name, data=batch, suite=suite)
        )
        keys = ROW_KEYS[view]
        result = definition.run(
            batch_parameters={"dataframe": frame},
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": keys},
        )
        outcomes += [_outcome(name, r, keys) for r in result.results]
    context.build_data_docs()
    now = settings.now()
    run_id = f"quality-{now:%Y%m%dT%H%M%S%fZ}"
    rows = [
        (run_id, now, o.suite, o.expectation, o.column, o.success, o.unexpected, "; ".join(o.rows))
        for o in outcomes
    ]
    frame = spark.createDataFrame(rows, tables.nullable_schema(tables.QUALITY_RESULTS))
    append(frame, settings, tables.QUALITY_RESULTS)
    return QualityReport(run_id, outcomes, root / "gx" / "uncommitted" / "data_docs" / "local_site")


def require_quality(spark: SparkSession, settings: Settings) -> QualityReport:
    """Run every suite; raise `QualityGateError` naming what failed on which rows."""
    report = run_quality(spark, settings)
    if report.failures:
        first = report.failures[0]
        rows = f" (rows {', '.join(first.rows)})" if first.rows else ""
        more = len(report.failures) - 1
        raise QualityGateError(
            f"data-quality gate failed: {first.suite}: {first.expectation} on {first.column}:"
            f" {first.unexpected} unexpected{rows}" + (f"; and {more} more" if more else "")
        )
    return report
