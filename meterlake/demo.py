"""``meterlake demo``: a small, realistic run end to end on the embedded default.

Three landing batches arrive over a few days: ordinary usage, resends (duplicates), a
resend with a changed payload (conflict), a client clock running ahead (skew), a
backfill that is too old, an unknown customer and a handful of malformed lines. The
demo is deterministic (fixed times and seed), so running it twice changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from meterlake import synthetic
from meterlake.clock import format_instant

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from meterlake.billing.run import InvoiceRun
    from meterlake.config import Settings

DEMO_CATALOG = """\
meters:
  - {key: api_calls, event_type: api_call, aggregation: sum}
  - {key: seats, event_type: seat, aggregation: unique_count, property: user_id}
  - {key: storage_gb, event_type: storage_gb, aggregation: max}
plans:
  - id: pro
    currency: USD
    interval: month
    minimum_commitment: "100.00"
    charges:
      - {type: flat, amount: "49.00"}
      - {type: usage, meter: api_calls, model: graduated,
         tiers: [{up_to: 1000, unit_price: "0"}, {up_to: null, unit_price: "0.002"}]}
      - {type: usage, meter: seats, model: per_unit, unit_price: "8.00"}
  - id: scale
    currency: USD
    interval: month
    charges:
      - {type: flat, amount: "199.00"}
      - {type: usage, meter: api_calls, model: volume,
         tiers: [{up_to: 10000, unit_price: "0.0015"}, {up_to: null, unit_price: "0.001"}]}
      - {type: usage, meter: storage_gb, model: package, package_size: 100, package_price: "5"}
customers:
  - id: acme
    tenant: default
    timezone: America/New_York
    billing_anchor: anniversary
    subscriptions:
      - {plan: pro, start: "2026-01-31T05:00:00Z", end: "2026-03-10T12:00:00Z"}
      - {plan: scale, start: "2026-03-10T12:00:00Z", end: null}
    credits:
      - {amount: "20.00", expires: "2026-12-31T00:00:00Z"}
  - id: globex
    tenant: default
    timezone: Europe/Berlin
    billing_anchor: calendar
    subscriptions:
      - {plan: scale, start: "2026-02-10T09:00:00Z", end: null}
"""

# Every demo period has closed by then, so the summary shows final invoices, including
# adjustments for February events that arrived after February's close.
INVOICE_AS_OF = datetime(2026, 4, 5, tzinfo=UTC)

RECEIPTS = (
    datetime(2026, 3, 2, 0, 10, tzinfo=UTC),
    datetime(2026, 3, 3, 9, 0, tzinfo=UTC),
    datetime(2026, 3, 6, 0, 0, tzinfo=UTC),
)


def demo_inputs(folder: Path) -> tuple[Path, list[Path]]:
    """Write the demo catalog and three landing batches into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    catalog = folder / "catalog.yaml"
    catalog.write_text(DEMO_CATALOG)
    feb = datetime(2026, 2, 10, 9, 0, tzinfo=UTC)
    first = list(synthetic.events(400, ["acme", "globex"], feb, timedelta(days=19), seed=1))
    second = list(synthetic.events(300, ["acme", "globex"], feb, timedelta(days=21), seed=2))
    third = list(synthetic.events(200, ["acme", "globex"], feb, timedelta(days=23), seed=3))
    conflict = dict(first[5], quantity=999)
    skewed = dict(second[0], event_id="skew-1", timestamp="2026-03-03T11:00:00Z")
    too_old = dict(second[1], event_id="old-1", timestamp="2026-01-01T00:00:00Z")
    unknown = [dict(e, customer_id="initech") for e in second[2:7]]
    dumps = synthetic.dump
    batches = [
        [dumps(e) for e in first]
        + [dumps(first[0]), dumps(first[1])]
        + [
            "{not json",
            json.dumps({"event_id": "x"}),
            "",
            json.dumps(dict(first[2], event_id="neg", quantity=-3)),
        ]
        + [json.dumps(dict(first[3], event_id="naive", timestamp="2026-02-11T10:00:00"))],
        [dumps(e) for e in second[7:]]
        + [dumps(e) for e in first[:20]]
        + [dumps(conflict), dumps(skewed), dumps(too_old)]
        + [dumps(e) for e in unknown],
        [dumps(e) for e in third] + [dumps(e) for e in second[7:17]],
    ]
    paths = []
    for index, lines in enumerate(batches, start=1):
        path = folder / f"batch-{index}.jsonl"
        data = "\n".join(lines).encode() + b"\n"
        if index == 2:
            data += b'{"event_id": "latin1-\xe9", "customer_id": "acme"}\n'
        path.write_bytes(data)
        paths.append(path)
    return catalog, paths


def run_demo(spark: SparkSession, settings: Settings, say: Callable[[str], None] = print) -> None:
    """Initialise, load the catalog, land three batches at their receipt times, run the
    pipeline (bronze, silver, gold), invoice every ended period, rebuild the materialised
    views, and print the summary."""
    from meterlake.analytics.views import refresh_views
    from meterlake.billing.run import run_invoices
    from meterlake.catalog.parse import load_catalog_file
    from meterlake.catalog.store import store_catalog
    from meterlake.ingest.landing import land_file
    from meterlake.pipeline import run_pipeline
    from meterlake.warehouse import init_warehouse

    local = not settings.is_object_store
    inputs = (Path(settings.warehouse).parent if local else Path(settings.log_dir)) / "demo-input"
    catalog_file, batch_files = demo_inputs(inputs)
    init_warehouse(spark, settings)
    loaded = store_catalog(spark, settings, load_catalog_file(catalog_file))
    say(f"catalog version {loaded.version} ({'loaded' if loaded.changed else 'unchanged'})")
    for received, path in zip(RECEIPTS, batch_files, strict=True):
        result = land_file(replace(settings, pinned_now=received), path, "default")
        state = "already landed" if result.already_loaded else "landed"
        say(f"{path.name}: {state} as batch {result.batch.batch_id} ({result.batch.lines} lines)")
    run_pipeline(spark, replace(settings, pinned_now=RECEIPTS[-1]), progress=say)
    run = run_invoices(spark, replace(settings, pinned_now=INVOICE_AS_OF), INVOICE_AS_OF)
    refresh_views(spark, replace(settings, pinned_now=INVOICE_AS_OF), progress=say)
    print_summary(spark, settings, run, say)


def print_summary(
    spark: SparkSession, settings: Settings, run: InvoiceRun, say: Callable[[str], None]
) -> None:
    from meterlake import tables
    from meterlake.billing.report import invoice_table
    from meterlake.ingest.summary import ingest_summary

    summary = ingest_summary(spark, settings)
    say("")
    say(f"meterlake summary — warehouse {settings.warehouse}")
    say(f"  landing batches          {summary.landing_batches:>8}")
    blank, skewed = summary.blank_lines, summary.clock_skewed
    say(f"  events read              {summary.events_read:>8}  (+{blank} blank lines skipped)")
    say(f"  events landed in bronze  {summary.bronze_rows:>8}  ({skewed} clock-skew clamped)")
    say(f"  duplicates dropped       {summary.duplicates:>8}")
    say(f"  quarantined              {sum(summary.quarantined_by_reason.values()):>8}")
    for reason, count in summary.quarantined_by_reason.items():
        say(f"    {reason:<24}{count:>6}")
    saved = run.saved
    written = f"{len(saved.written)} written, {len(saved.unchanged)} unchanged" if saved else ""
    say(f"  invoices as of {format_instant(run.as_of)}: {len(run.invoices)} ({written})")
    for row in invoice_table(run.invoices):
        say(f"  {row}")
    say("  (late events are billed as adjustment lines: `meterlake invoices export` shows them)")
    say("  tables (Delta, open by path):")
    for spec in tables.ALL_TABLES:
        say(f"    {spec.qualified_name:<28}{spec.path(settings)}")
    say(f"    {'landing zone':<28}{settings.warehouse}/landing")
