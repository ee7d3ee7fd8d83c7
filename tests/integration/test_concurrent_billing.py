"""Billing beside other writers: invoice runs racing a period close, rollups racing a
bronze commit, and a landing batch that commits after the final invoice it was on time
for. Each test works on a copy of one warehouse with January's usage in bronze."""

from __future__ import annotations

import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from meterlake import tables
from meterlake.billing.close import finalise_due
from meterlake.billing.export import export_document
from meterlake.billing.run import run_invoices
from meterlake.catalog.parse import parse_catalog_text
from meterlake.catalog.store import store_catalog
from meterlake.config import Settings
from meterlake.ingest.landing import land_file, manifest_entries
from meterlake.pipeline import run_pipeline
from meterlake.warehouse import init_warehouse
from tests.helpers import BASIC_CATALOG, event, hold_first_calls, line

JANUARY = datetime(2026, 1, 20, 12, tzinfo=UTC)  # when January's usage was received
CLOSED = datetime(2026, 2, 5, tzinfo=UTC)  # January closed on Feb 3 (end + 48 h)
QUIET = {"progress": lambda _: None}


def land(settings: Settings, folder: Path, name: str, events: list[dict], at: datetime) -> None:
    path = folder / f"{name}.jsonl"
    path.write_bytes(b"\n".join(line(e) for e in events) + b"\n")
    land_file(replace(settings, pinned_now=at), path, "default")


def calls(prefix: str, count: int, customer: str = "c1") -> list[dict]:
    """``count`` API calls of quantity 10 on January 15."""
    return [
        event(event_id=f"{prefix}{i}", customer_id=customer, quantity=10,
              timestamp="2026-01-15T10:00:00Z")
        for i in range(count)
    ]  # fmt: skip


@pytest.fixture(scope="module")
def january(spark, tmp_path_factory) -> Settings:
    """c1 and c2 with 30 and 20 calls in January, landed and rolled up (nothing invoiced)."""
    folder = tmp_path_factory.mktemp("january")
    settings = replace(
        Settings.load(env={}).with_warehouse(str(folder / "warehouse")), pinned_now=CLOSED
    )
    init_warehouse(spark, settings)
    store_catalog(spark, settings, parse_catalog_text(BASIC_CATALOG, "catalog.yaml"))
    land(settings, folder, "january", calls("a", 30) + calls("b", 20, "c2"), JANUARY)
    run_pipeline(spark, settings, **QUIET)
    return settings


def copy_of(settings: Settings, folder: Path, name: str) -> Settings:
    """A copy of the warehouse; the landing stream's checkpoint names files by absolute
    path, so the copy starts it afresh (it finds every batch in bronze already)."""
    target = settings.with_warehouse(str(folder / name))
    shutil.copytree(settings.warehouse, target.warehouse)
    shutil.rmtree(Path(target.warehouse) / "_checkpoints/landing_to_bronze")
    return target


def invoices(spark, settings: Settings) -> list[tuple]:
    return sorted(
        (i["invoice_id"], i["status"], i["subtotal"], i["total"], json.dumps(i["lines"]))
        for i in export_document(spark, settings)["invoices"]
    )


def usage_quantity(spark, settings: Settings, invoice_period: str, kind: str) -> list:
    return [
        (line["kind"], line["quantity"], line["amount"])
        for i in export_document(spark, settings)["invoices"]
        if i["customer_id"] == "c1" and i["period_start"] == invoice_period
        for line in i["lines"]
        if line["kind"] == kind
    ]


def test_invoice_runs_racing_a_period_close_write_each_line_once(
    spark, january, tmp_path, monkeypatch
) -> None:
    """A period close and two finance runs, all priced before any of them writes (today's
    main: a final invoice with its lines twice, or a failed MERGE after the lines)."""
    from meterlake.billing import run as billing_run

    reference = copy_of(january, tmp_path, "reference")
    racing = copy_of(january, tmp_path, "racing")
    run_invoices(spark, reference, CLOSED)
    hold_first_calls(monkeypatch, billing_run, "save_invoices", 3)
    with ThreadPoolExecutor(3) as pool:
        runs = [
            pool.submit(finalise_due, spark, racing, CLOSED),
            pool.submit(run_invoices, spark, racing, CLOSED, reason="finance"),
            pool.submit(run_invoices, spark, racing, CLOSED, reason="finance again"),
        ]
        for run in runs:
            run.result()
    lines = tables.read(spark, racing, tables.BILLING_INVOICE_LINES)
    keys = lines.groupBy("invoice_id", "revision", "line_no").count()
    assert keys.where("count > 1").count() == 0
    assert invoices(spark, racing) == invoices(spark, reference)
    for invoice in export_document(spark, racing)["invoices"]:
        amounts = sum(Decimal(li["amount"]) for li in invoice["lines"] if li["kind"] != "credit")
        assert amounts == Decimal(invoice["subtotal"])
    outbox = tables.read(spark, racing, tables.BILLING_OUTBOX)
    assert outbox.count() == outbox.select("event_id").distinct().count() == 2


def test_rollups_racing_a_bronze_commit_leave_it_for_the_next_refresh(
    spark, january, tmp_path, monkeypatch
) -> None:
    """A bronze commit made while a rollup micro-batch runs is not claimed as rolled up:
    the next refresh takes it, and January's invoice bills all 40 calls of c1 (today's
    main: the refresh recorded bronze's newer version, gold never saw the 5 calls that
    raced it, and the final invoice billed 35)."""
    from pyspark.sql.classic.dataframe import DataFrame as ClassicDataFrame

    from meterlake.ingest.bronze import process_batches
    from meterlake.rollups.refresh import load_state, refresh_rollups
    from meterlake.tiering.events import bronze_version

    settings = copy_of(january, tmp_path, "racing")

    def landed(name: str, hour: int) -> list:
        land(settings, tmp_path, name, calls(name, 5), datetime(2026, 2, 1, hour, tzinfo=UTC))
        return [
            b
            for b in manifest_entries(settings)
            if b.received_at.startswith(f"2026-02-01T{hour:02d}")
        ]

    process_batches(spark, settings, landed("first", 8), 900)  # in bronze, not rolled up
    racer = landed("racer", 9)
    real_collect = ClassicDataFrame.collect
    raced = []

    def bronze_commits_meanwhile(frame):
        # The rollup handler's first action on its micro-batch (it runs off the main
        # thread): another writer commits to bronze right then.
        if not raced and threading.current_thread() is not threading.main_thread():
            raced.append(None)
            raced[0] = process_batches(spark, settings, racer, 901)
        return real_collect(frame)

    monkeypatch.setattr(ClassicDataFrame, "collect", bronze_commits_meanwhile)
    refresh_rollups(spark, settings, **QUIET)
    monkeypatch.setattr(ClassicDataFrame, "collect", real_collect)
    assert raced and raced[0].bronze_rows == 5
    assert load_state(settings).bronze_version < bronze_version(spark, settings)
    run_pipeline(spark, settings, **QUIET)  # the next refresh, as any later run makes
    run_invoices(spark, settings, CLOSED)
    # 30 + 5 + 5 calls of 10 on c1 at 0.01: 400 units, 4.00.
    assert usage_quantity(spark, settings, "2026-01-01T00:00:00Z", "usage") == [
        ("usage", "400", "4.00")
    ]


def test_batch_committed_after_the_final_run_is_billed_on_the_next_invoice(
    spark, january, tmp_path
) -> None:
    """A batch received on Feb 2 (before January's close on Feb 3) that only commits after
    January's final run: January stays as it was, reconciliation lists the usage as
    pending, and February's invoice bills it as an adjustment (today's main: billed
    nowhere)."""
    from meterlake.reconcile.run import reconcile

    settings = copy_of(january, tmp_path, "late")
    run_invoices(spark, settings, CLOSED)
    january_before = usage_quantity(spark, settings, "2026-01-01T00:00:00Z", "usage")
    assert january_before == [("usage", "300", "3.00")]
    late = datetime(2026, 2, 2, 12, tzinfo=UTC)
    land(settings, tmp_path, "late", calls("late", 7), late)  # received then, committed now
    later = replace(settings, pinned_now=datetime(2026, 2, 6, tzinfo=UTC))
    run_pipeline(spark, later, **QUIET)
    recon = reconcile(spark, later, later.now())
    pending = [f for f in recon.findings if f.check == "late_usage"]
    assert [(f.scope, f.actual, f.status) for f in pending] == [
        ("default/c1/2026-01-01T00:00:00Z", Decimal("0.70"), "pending")
    ]
    assert not recon.mismatches
    march = replace(settings, pinned_now=datetime(2026, 3, 5, tzinfo=UTC))
    run_invoices(spark, march, march.now())
    assert usage_quantity(spark, march, "2026-01-01T00:00:00Z", "usage") == january_before
    assert usage_quantity(spark, march, "2026-02-01T00:00:00Z", "adjustment") == [
        ("adjustment", "70", "0.70")
    ]
    assert not reconcile(spark, march, march.now()).mismatches
