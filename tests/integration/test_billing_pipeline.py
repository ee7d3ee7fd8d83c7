"""Landing → bronze → silver/gold → invoices in one warehouse: two tenants with the same
customer id, late events, incremental rollups equal to a rebuild, and pure invoice runs."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from meterlake import tables
from meterlake.billing.invoices import invoice_id
from meterlake.billing.run import run_invoices
from meterlake.catalog.parse import parse_catalog_text
from meterlake.catalog.store import read_catalog, store_catalog
from meterlake.config import Settings
from meterlake.ingest.landing import land_file
from meterlake.lease import ROLLUPS, hold
from meterlake.pipeline import run_pipeline
from meterlake.rollups.refresh import rebuild
from meterlake.tiering.events import bronze_version
from meterlake.warehouse import init_warehouse

CATALOG = b"""
tenants: [{id: t2, grace_hours: 24}]
meters:
  - {key: api_calls, event_type: api_call, aggregation: sum}
  - {key: seats, event_type: seat, aggregation: unique_count, property: user_id}
  - {key: storage, event_type: storage, aggregation: max, property: gb}
plans:
  - id: basic
    currency: USD
    charges:
      - {type: flat, amount: "10.00"}
      - {type: usage, meter: api_calls, model: per_unit, unit_price: "0.01"}
      - {type: usage, meter: seats, model: per_unit, unit_price: "3.00"}
      - {type: usage, meter: storage, model: per_unit, unit_price: "0.50"}
customers:
  - {id: c1, tenant: t1, timezone: UTC, billing_anchor: calendar,
     subscriptions: [{plan: basic, start: "2026-01-01T00:00:00Z", end: null}]}
  - {id: c1, tenant: t2, timezone: UTC, billing_anchor: calendar,
     subscriptions: [{plan: basic, start: "2026-01-01T00:00:00Z", end: null}]}
"""
RECEIVED_A = datetime(2026, 2, 1, 6, tzinfo=UTC)
RECEIVED_C = datetime(2026, 2, 5, tzinfo=UTC)


def ev(n: int, kind: str, when: str, **fields) -> dict:
    return {
        "event_id": f"e{n}",
        "customer_id": "c1",
        "event_type": kind,
        "timestamp": when,
        **fields,
    }


JAN = "2026-01-20T10:00:00Z"
BATCH_A = [
    ev(1, "api_call", JAN, quantity=100),
    ev(2, "api_call", JAN, quantity=50),
    ev(3, "seat", JAN, user_id="u1"),
    ev(4, "seat", JAN, user_id="u2"),
    ev(5, "seat", JAN, user_id="u1"),
    ev(6, "storage", JAN, properties={"gb": 7}),
    ev(7, "storage", "2026-01-21T10:00:00Z", properties={"gb": "9"}),
]
BATCH_B = [ev(1, "api_call", JAN, quantity=1000)]  # tenant t2, same event and customer ids
BATCH_C = [  # after January's close (Feb 3 00:00 for t1)
    ev(8, "api_call", JAN, quantity=25),
    ev(9, "seat", JAN, user_id="u3"),
    ev(10, "seat", JAN, user_id="u1"),
    ev(11, "api_call", "2026-02-04T10:00:00Z", quantity=10),
]


def land(settings: Settings, folder: Path, name: str, events: list, tenant: str, at: datetime):
    path = folder / name
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    land_file(replace(settings, pinned_now=at), path, tenant)


def snapshot(spark, settings: Settings) -> dict[str, list]:
    specs = (tables.SILVER_USAGE_MINUTE, tables.SILVER_USAGE_HOUR, tables.SILVER_USAGE_DAY)
    found = {}
    for spec in (*specs, tables.GOLD_PERIOD_USAGE):
        frame = tables.read(spark, settings, spec)
        found[spec.name] = sorted(map(str, frame.collect()))
    return found


@pytest.fixture(scope="module")
def billed(spark, tmp_path_factory):
    folder = tmp_path_factory.mktemp("billing")
    settings = Settings.load(env={}).with_warehouse(str(folder / "warehouse"))
    settings = replace(settings, shuffle_partitions=2, pinned_now=RECEIVED_A)
    init_warehouse(spark, settings)
    store_catalog(spark, settings, parse_catalog_text(CATALOG, "catalog.yaml"))
    land(settings, folder, "a.jsonl", BATCH_A, "t1", RECEIVED_A)
    land(settings, folder, "b.jsonl", BATCH_B, "t2", RECEIVED_A)
    run_pipeline(spark, settings, progress=lambda _: None)
    feb_2 = datetime(2026, 2, 2, tzinfo=UTC)
    first = run_invoices(spark, replace(settings, pinned_now=feb_2), feb_2)
    later = replace(settings, pinned_now=datetime(2026, 3, 1, tzinfo=UTC))
    land(later, folder, "c.jsonl", BATCH_C, "t1", RECEIVED_C)
    run_pipeline(spark, later, progress=lambda _: None)
    return later, first


def totals(run) -> dict[tuple[str, str], list[tuple[str, Decimal]]]:
    found: dict = {}
    for invoice in run.invoices:
        found.setdefault((invoice.tenant, invoice.customer), []).append(
            (invoice.status, invoice.total)
        )
    return found


def test_tenants_with_equal_customer_ids_are_billed_apart(spark, billed) -> None:
    from meterlake.billing.export import export_document

    settings, first = billed
    assert totals(first) == {
        ("t1", "c1"): [("draft", Decimal("22.00"))],  # 10 + 150×0.01 + 2 seats×3 + 9 GB×0.5
        ("t2", "c1"): [("final", Decimal("20.00"))],  # 24 h grace: closed at as-of
    }
    # One tenant's export holds its invoices, each with all its lines, and nothing else.
    every = export_document(spark, settings)["invoices"]
    for tenant in ("t1", "t2"):
        mine = export_document(spark, settings, tenant)["invoices"]
        assert mine == [i for i in every if i["tenant_id"] == tenant] and mine
    assert export_document(spark, settings, "t3") == {"invoices": []}


def test_late_events_are_adjustments_and_finals_do_not_move(spark, billed) -> None:
    settings, _ = billed
    run = run_invoices(spark, settings, datetime(2026, 3, 1, tzinfo=UTC), tenant="t1")
    jan, feb = run.invoices
    assert (jan.status, jan.total) == ("final", Decimal("22.00"))
    assert [(li.kind, li.meter, li.quantity, li.amount) for li in feb.lines] == [
        ("flat", None, 1, Decimal("10.00")),
        ("usage", "api_calls", 10, Decimal("0.10")),
        ("usage", "seats", 0, Decimal("0.00")),
        ("usage", "storage", 0, Decimal("0.00")),
        ("adjustment", "api_calls", 25, Decimal("0.25")),
        ("adjustment", "seats", 1, Decimal("3.00")),  # u3 is new, u1 was billed already
    ]
    assert feb.status == "draft" and feb.total == Decimal("13.35")
    assert run.saved is not None and [i.invoice_id for i in run.saved.finalized] == [jan.invoice_id]
    again = run_invoices(spark, settings, datetime(2026, 3, 1, tzinfo=UTC), tenant="t1")
    assert again.saved is not None and not again.saved.written
    assert len(again.saved.unchanged) == 2


def test_a_past_as_of_ignores_events_received_after_it(spark, billed) -> None:
    settings, _ = billed
    versions = tables.read(spark, settings, tables.BILLING_INVOICES).inputFiles()
    past = run_invoices(
        spark, settings, datetime(2026, 2, 3, tzinfo=UTC), tenant="t1", dry_run=True
    )
    (jan,) = past.invoices
    assert (jan.status, jan.total) == ("final", Decimal("22.00"))
    assert past.saved is None
    assert tables.read(spark, settings, tables.BILLING_INVOICES).inputFiles() == versions


def test_gold_keeps_late_usage_apart_with_first_arrivals(spark, billed) -> None:
    settings, _ = billed
    rows = (
        tables.read(spark, settings, tables.GOLD_PERIOD_USAGE)
        .where("tenant_id = 't1' AND period_start = '2026-01-01'")
        .orderBy("meter_key", "carrier_period_start")
        .collect()
    )
    assert [
        (r.meter_key, r.carrier_period_start.month, r.on_time, r.events, r.new_unique) for r in rows
    ] == [
        ("api_calls", 1, True, 2, 0),
        ("api_calls", 2, False, 1, 0),
        ("seats", 1, True, 3, 2),
        ("seats", 2, False, 2, 1),
        ("storage", 1, True, 2, 0),
    ]


def test_incremental_rollups_equal_a_rebuild(spark, billed) -> None:
    settings, _ = billed
    incremental = snapshot(spark, settings)
    assert len(incremental["usage_minute"]) > 0
    with hold(settings, ROLLUPS) as lease:
        version = bronze_version(spark, settings)
        rebuild(spark, settings, read_catalog(spark, settings), version, lease)
    assert snapshot(spark, settings) == incremental


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("tumbling:1d", [("2026-01-20", 3, 175), ("2026-02-04", 1, 10)]),
        ("sliding:2d/1d", [
            ("2026-01-19", 3, 175), ("2026-01-20", 3, 175),
            ("2026-02-03", 1, 10), ("2026-02-04", 1, 10),
        ]),
        ("session:30m", [("2026-01-20", 3, 175), ("2026-02-04", 1, 10)]),
    ],
)  # fmt: skip
def test_analyst_windows(spark, billed, spec: str, expected: list) -> None:
    from meterlake.rollups.meter_values import metered_events
    from meterlake.rollups.windows import parse_window, usage_windows

    settings, _ = billed
    bronze = tables.read(spark, settings, tables.BRONZE_EVENTS).where("tenant_id = 't1'")
    metered = metered_events(bronze, read_catalog(spark, settings).catalog.meters)
    rows = usage_windows(metered.where("meter_key = 'api_calls'"), parse_window(spec)).collect()
    assert [(str(r.window_start.date()), r.events, r.sum_value) for r in rows] == expected


def test_quality_gate_blocks_close_until_quarantine_replay_fixes_the_row(spark, billed) -> None:
    from meterlake.billing.close import close_periods
    from meterlake.ingest.quality_quarantine import quarantine_failing
    from meterlake.ingest.quarantine_replay import replay_quarantine
    from meterlake.quality.run import QualityGateError, require_quality

    settings, _ = billed
    report = require_quality(spark, settings)
    assert report.failures == [] and len(report.outcomes) >= 15
    assert (report.docs / "index.html").exists()
    # A bug rewrites one bronze row's billing time 60 days before its receipt.
    bronze = tables.BRONZE_EVENTS.path(settings)
    spark.sql(f"ALTER TABLE delta.`{bronze}` SET TBLPROPERTIES ('delta.appendOnly' = 'false')")
    spark.sql(
        f"UPDATE delta.`{bronze}` SET event_time = received_at - INTERVAL 60 DAYS,"
        " billing_time = received_at - INTERVAL 60 DAYS,"
        " billing_date = to_date(received_at - INTERVAL 60 DAYS)"
        " WHERE tenant_id = 't1' AND event_id = 'e1'"
    )
    spark.sql(f"ALTER TABLE delta.`{bronze}` SET TBLPROPERTIES ('delta.appendOnly' = 'true')")
    with pytest.raises(QualityGateError, match=r"billing_time_in_window.*t1/e1/"):
        close_periods(spark, settings, datetime(2026, 3, 1, tzinfo=UTC))
    assert tables.read(spark, settings, tables.BILLING_OUTBOX).count() == 0  # nothing closed

    assert quarantine_failing(spark, settings) == 1
    assert quarantine_failing(spark, settings) == 0  # the row is out of bronze
    (moved,) = tables.read(spark, settings, tables.BRONZE_QUARANTINE).collect()
    assert (moved.reason, moved.event_id, moved.line_number) == ("quality_failed", "e1", 1)
    assert "billing_time_in_window" in moved.detail and json.loads(moved.raw)["quantity"] == 100

    tally = replay_quarantine(spark, settings)
    assert (tally.events_read, tally.bronze_rows) == (1, 1)
    (fixed,) = (
        tables.read(spark, settings, tables.BRONZE_EVENTS)
        .where("tenant_id = 't1' AND event_id = 'e1'")
        .collect()
    )
    assert fixed.billing_time == datetime(2026, 1, 20, 10)  # re-derived from the landing line
    run_pipeline(spark, settings, progress=lambda _: None)  # rollups follow bronze again
    assert require_quality(spark, settings).failures == []
    failed = tables.read(spark, settings, tables.QUALITY_RESULTS).where("NOT success").collect()
    # The edit also left silver behind bronze (it bypassed the rollups); both were reported.
    assert {(r.suite, r.column) for r in failed} == {
        ("bronze_events", "billing_time_in_window"),
        ("silver_usage_day", "events_match_bronze"),
    }


def test_period_close_waits_for_grace_then_closes_once(spark, billed) -> None:
    from meterlake.billing.close import close_periods, due_periods

    settings, _ = billed
    stored = read_catalog(spark, settings)
    feb_2_noon = datetime(2026, 2, 2, 12, tzinfo=UTC)  # t2's January closed at 00:00, t1's not
    assert [(d.customer.tenant, d.period.start.month) for d in due_periods(
        spark, settings, stored, feb_2_noon
    )] == [("t2", 1)]  # fmt: skip
    as_of = datetime(2026, 3, 1, tzinfo=UTC)
    closed = close_periods(spark, settings, as_of)
    assert sorted((d.customer.tenant, d.period.start.month) for d in closed.due) == [
        ("t1", 1),
        ("t2", 1),
    ]
    outbox = tables.read(spark, settings, tables.BILLING_OUTBOX).orderBy("tenant_id").collect()
    payloads = [json.loads(row.payload) for row in outbox]
    assert [(p["tenant_id"], p["type"], p["total"]) for p in payloads] == [
        ("t1", "billing.period.closed", "22.00"),
        ("t2", "billing.period.closed", "20.00"),
    ]
    again = close_periods(spark, settings, as_of)
    assert again.due == [] and again.run is None
    assert tables.read(spark, settings, tables.BILLING_OUTBOX).count() == 2


def test_reconciliation_agrees_then_catches_corruption(spark, billed) -> None:
    """Runs last in this module: it tampers with the warehouse."""
    from meterlake.reconcile.run import reconcile

    settings, _ = billed
    as_of = datetime(2026, 3, 1, tzinfo=UTC)
    clean = reconcile(spark, settings, as_of)
    assert clean.mismatches == []
    assert {f.check for f in clean.findings} == {
        "completeness", "bronze_silver", "bronze_gold", "pre_invoice", "post_invoice", "late_usage"
    }  # fmt: skip
    # January's late usage waits on February's draft: 25 calls × 0.01 + one new seat × 3.
    pending = [(f.scope, f.actual) for f in clean.findings if f.status == "pending"]
    assert pending == [("t1/c1/2026-01-01T00:00:00Z", Decimal("3.25"))]
    silver = tables.SILVER_USAGE_DAY.path(settings)
    spark.sql(
        f"UPDATE delta.`{silver}` SET sum_value = sum_value + 1"
        " WHERE tenant_id = 't1' AND meter_key = 'api_calls'"
        " AND window_date = DATE'2026-01-20' AND region IS NULL"
    )
    lines = tables.BILLING_INVOICE_LINES.path(settings)
    spark.sql(f"ALTER TABLE delta.`{lines}` SET TBLPROPERTIES ('delta.appendOnly' = 'false')")
    spark.sql(
        f"UPDATE delta.`{lines}` SET amount = amount + 0.01"
        " WHERE tenant_id = 't2' AND kind = 'usage' AND meter_key = 'api_calls'"
    )
    caught = reconcile(spark, settings, as_of)
    assert sorted((f.check, f.scope) for f in caught.mismatches) == [
        ("bronze_silver", "t1/c1/api_calls/2026-01-20 total"),
        ("post_invoice", invoice_id("t2", "c1", datetime(2026, 1, 1, tzinfo=UTC))),
    ]
