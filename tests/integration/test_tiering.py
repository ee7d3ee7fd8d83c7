"""Tiering on a fake clock: 156 days of events for two tenants with different hot ages,
moved hot → cold as the clock runs, with late events for days already moved and resends
of moved events; reads across tiers, invoices and lineage must not notice. And a move
killed between copy and delete, or between the delete and its log entry, loses and
duplicates nothing."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from meterlake import tables
from meterlake.billing.export import export_document
from meterlake.billing.lineage import lineage_report
from meterlake.billing.run import run_invoices
from meterlake.catalog.parse import parse_catalog_text
from meterlake.catalog.store import store_catalog
from meterlake.config import Settings
from meterlake.ingest.landing import land_file
from meterlake.pipeline import run_pipeline
from meterlake.tiering import log
from meterlake.tiering import move as tier_move
from meterlake.tiering.events import events_at
from meterlake.tiering.move import tier_run
from meterlake.warehouse import init_warehouse
from tests.helpers import BASIC_CATALOG

START = datetime(2026, 1, 1, tzinfo=UTC)
STEP_DAYS = 68  # under the backfill limit set below, so every generated event is admitted
CATALOG = BASIC_CATALOG.replace(
    b"customers:",
    b"""tenants:
  - {id: default, hot_days: 30, warm_days: 90}
  - {id: t2, hot_days: 10, warm_days: 40}
customers:
  - {id: c1, tenant: t2, timezone: UTC, billing_anchor: calendar,
     subscriptions: [{plan: basic, start: "2026-01-01T00:00:00Z", end: null}]}""",
)
QUIET = {"progress": lambda _: None}


def _at(settings: Settings, when: datetime) -> Settings:
    return replace(settings, pinned_now=when)


def _event(tenant: str, customer: str, day: datetime, n: int, quantity: int) -> dict:
    return {
        "event_id": f"{tenant}-{customer}-{day:%Y%m%d}-{n}",
        "customer_id": customer,
        "event_type": "api_call",
        "quantity": quantity,
        "timestamp": (day + timedelta(hours=n)).isoformat(),
    }


def _land(settings: Settings, folder: Path, tenant: str, events: list[dict], name: str) -> None:
    source = folder / f"{tenant}-{name}.jsonl"
    source.write_text("".join(json.dumps(e) + "\n" for e in events))
    land_file(settings, source, tenant)


def _totals(spark, settings: Settings) -> dict[str, tuple[int, Decimal]]:
    from pyspark.sql import functions as F

    rows = events_at(spark, settings).groupBy("tenant_id").agg(F.count("*"), F.sum("quantity"))
    return {r[0]: (r[1], r[2]) for r in rows.collect()}


def _invoices(spark, settings: Settings) -> list:
    return sorted(
        (i["customer_id"], i["period_start"], i["status"], i["total"], json.dumps(i["lines"]))
        for i in export_document(spark, settings)["invoices"]
    )


@pytest.fixture
def tiered(spark, settings: Settings) -> Settings:
    # Vacuum at once (to exercise the floor); accept events 70 days late, so two steps of
    # 68 days and 20 more span 156 days.
    settings = replace(settings, vacuum_retention_hours=0, backfill_days=70)
    init_warehouse(spark, settings)
    store_catalog(spark, settings, parse_catalog_text(CATALOG, "catalog.yaml"))
    return settings


def test_five_months_of_tiering(spark, tiered: Settings, tmp_path: Path) -> None:
    """Each step lands 68 days of events, bills, and tiers 20 days later, so in the second
    step tenant t2 (hot for 10 days) gets events for days already moved; and each tenant's
    newest event of the first step is sent again: a duplicate of a cold row for t2, of a
    hot one for default."""
    from pyspark.sql import functions as F

    customers = {"default": ["c1", "c2"], "t2": ["c1"]}
    expected: dict[str, dict[str, int]] = {tenant: {} for tenant in customers}
    newest: dict[str, dict] = {}
    for step in (1, 2):
        now = START + timedelta(days=STEP_DAYS * step)
        for tenant, ids in customers.items():
            batch = [
                _event(tenant, c, now - timedelta(days=back), n, back % 7 + n)
                for c in ids
                for back in range(1, STEP_DAYS + 1)
                for n in (1, 2)
            ]
            if step > 1:  # t2 moved it to cold already; default still has it hot
                batch.append(newest[tenant])
            newest[tenant] = max(batch, key=lambda e: e["timestamp"])
            expected[tenant].update((e["event_id"], e["quantity"]) for e in batch)
            _land(_at(tiered, now), tmp_path, tenant, batch, f"step{step}")
        at = _at(tiered, now + timedelta(hours=1))
        run_pipeline(spark, at, **QUIET)
        run_invoices(spark, at, at.now())
        later = _at(tiered, now + timedelta(days=20))
        tier_run(spark, later, later.now(), **QUIET)

    final = _at(tiered, now + timedelta(days=20, hours=1))
    want = {t: (len(ids), Decimal(sum(ids.values()))) for t, ids in expected.items()}
    assert _totals(spark, final) == want
    duplicates = tables.read(spark, final, tables.BRONZE_BATCHES).agg(F.sum("duplicates"))
    assert duplicates.first()[0] == 2
    every = events_at(spark, final)
    assert every.select("tenant_id", "event_id").distinct().count() == every.count()
    hot = tables.read(spark, final, tables.BRONZE_EVENTS)
    oldest_hot = dict(hot.groupBy("tenant_id").agg(F.min("billing_date")).collect())
    assert oldest_hot["default"] >= (final.now() - timedelta(days=31)).date()
    assert "t2" not in oldest_hot  # its newest event is 21 days old: all of it is cold
    minutes = tables.read(spark, final, tables.SILVER_USAGE_MINUTE)
    assert (
        minutes.where(F.col("window_date") < (final.now() - timedelta(days=31)).date()).count() == 0
    )
    days = tables.read(spark, final, tables.SILVER_USAGE_DAY).agg(F.sum("events")).first()[0]
    assert days == sum(n for n, _ in want.values())

    steps = {r.step for r in tables.read(spark, final, tables.AUDIT_TIERING_LOG).collect()}
    assert {log.COPIED, log.VERIFIED, log.DELETED, log.DOWNSAMPLED, log.VACUUMED} <= steps

    # An old final line, priced before its events moved and bronze was vacuumed, still traces.
    invoices = export_document(spark, final)["invoices"]
    usage = next(
        line
        for i in invoices
        if i["customer_id"] == "c2" and i["status"] == "final"
        for line in i["lines"]
        if line["kind"] in ("usage", "adjustment") and Decimal(line["quantity"]) > 0
    )
    listing = tmp_path / "line-events.jsonl"
    report = lineage_report(spark, final, usage["line_id"], tenant="default", out_file=listing)
    assert report[-1].endswith("matches the line"), report
    listed = [json.loads(row) for row in listing.read_text().splitlines()]
    assert sum(Decimal(e["quantity"]) for e in listed) == Decimal(usage["quantity"]) > 0
    assert f"full event list ({len(listed)} event(s))" in "\n".join(report)

    # Invoices regenerate identically from the tiers: drop billing, rollups and the stream
    # checkpoints (the landing batches are read again), rebuild, bill again.
    run_invoices(spark, final, final.now())
    before = _invoices(spark, final)
    for spec in (tables.BILLING_INVOICES, tables.BILLING_INVOICE_LINES, tables.GOLD_PERIOD_USAGE):
        shutil.rmtree(spec.path(final))
    shutil.rmtree(Path(final.warehouse) / "_checkpoints")
    init_warehouse(spark, final)
    run_pipeline(spark, final, **QUIET)
    run_invoices(spark, final, final.now())
    assert _invoices(spark, final) == before


def test_a_killed_move_loses_and_duplicates_nothing(
    spark, tiered: Settings, tmp_path: Path, monkeypatch
) -> None:
    """Killed between copy and delete: the copy is discarded and the rerun moves again.
    Killed after the delete committed but before it was logged: the rerun finds the commit
    in bronze's history. Reads see every event once throughout."""
    day0 = START + timedelta(days=40)
    events = [_event("default", "c1", day0 - timedelta(days=back), 1, back) for back in range(30)]
    _land(_at(tiered, day0), tmp_path, "default", events, "small")
    at = _at(tiered, day0 + timedelta(days=25))
    run_pipeline(spark, at, **QUIET)
    before = _totals(spark, at)
    real_delete = tier_move.delete_matching

    def kill(after_delete: bool):
        def killed(*args, **kwargs) -> None:
            if after_delete:
                real_delete(*args, **kwargs)
            raise RuntimeError("killed")

        return killed

    monkeypatch.setattr(tier_move, "delete_matching", kill(after_delete=False))
    with pytest.raises(RuntimeError, match="killed"):
        tier_run(spark, at, at.now(), **QUIET)
    assert tables.read(spark, at, tables.COLD_EVENTS).count() > 0  # copied and verified
    assert _totals(spark, at) == before

    monkeypatch.setattr(tier_move, "delete_matching", kill(after_delete=True))
    with pytest.raises(RuntimeError, match="killed"):
        tier_run(spark, at, at.now(), **QUIET)
    assert len(log.move_states(spark, at).open) == 1
    assert _totals(spark, at) == before  # its delete is found in bronze's history
    monkeypatch.undo()

    report = tier_run(spark, at, at.now(), **QUIET)
    assert sorted(report.recovered.values()) == [log.DELETED]
    assert not report.moved and _totals(spark, at) == before
    cold = tables.read(spark, at, tables.COLD_EVENTS)
    cut = (at.now() - timedelta(days=30)).date()
    moved = sum(1 for e in events if datetime.fromisoformat(e["timestamp"]).date() < cut)
    assert cold.count() == cold.select("event_id").distinct().count() == moved
    assert tables.read(spark, at, tables.BRONZE_EVENTS).count() == len(events) - moved
    files = list(Path(tables.COLD_EVENTS.path(at)).rglob("*.parquet"))
    assert files and all(f.name.endswith(".zstd.parquet") for f in files)
