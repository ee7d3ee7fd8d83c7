"""Three landing batches through the streaming pipeline: exact counts in bronze and quarantine."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from meterlake import tables
from meterlake.catalog.parse import parse_catalog
from meterlake.catalog.store import current, store_catalog
from meterlake.config import Settings
from meterlake.demo import DEMO_CATALOG
from meterlake.ingest.landing import land_file
from meterlake.ingest.quarantine_replay import replay_quarantine
from meterlake.ingest.stream import run_landing_to_bronze
from tests.helpers import event, line

T1 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
T2 = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
T3 = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


def catalog(extra_customer: str | None = None):
    document = yaml.safe_load(DEMO_CATALOG)
    if extra_customer:
        document["customers"].append(
            {
                "id": extra_customer,
                "timezone": "UTC",
                "billing_anchor": "calendar",
                "subscriptions": [{"plan": "pro", "start": "2026-01-01T00:00:00Z"}],
            }
        )
    return parse_catalog(document, sha256=f"sha-{extra_customer}", source="test")


def land(settings: Settings, tmp_path: Path, name: str, lines: list, at: datetime) -> str:
    path = tmp_path / name
    path.write_bytes(b"\n".join(line(v) for v in lines) + b"\n")
    return land_file(replace(settings, pinned_now=at), path, "default").batch.batch_id


def ev(n: int, **overrides) -> dict:
    return event(**{"event_id": f"e-{n}", "timestamp": "2026-03-01T10:00:00Z", **overrides})


def land_three_batches(spark, warehouse: Settings, tmp_path: Path) -> dict[str, str]:
    store_catalog(spark, warehouse, catalog())
    ids = {}
    ids["b1"] = land(
        warehouse,
        tmp_path,
        "b1.jsonl",
        [ev(1), ev(2), ev(3), ev(1), "{oops", ev(4, quantity=-1), "", ev(5, customer_id="initech")],
        T1,
    )
    ids["b2"] = land(
        warehouse,
        tmp_path,
        "b2.jsonl",
        [
            ev(2),  # duplicate across batches
            ev(3, quantity=99),  # conflict with batch 1
            ev(6, timestamp="2026-03-03T13:00:00Z"),  # 1 h ahead of receipt: clock skew
            ev(7, timestamp="2026-01-01T00:00:00Z"),  # too old
            ev(8, timestamp="2026-03-03T12:00:00"),  # no offset
            b'{"event_id": "\xff"}',
            ev(9),
            ev(9, quantity=5),  # conflict inside one batch
        ],
        T2,
    )
    ids["b3"] = land(
        warehouse,
        tmp_path,
        "b3.jsonl",
        [ev(10), ev(6, timestamp="2026-03-03T13:00:00Z"), ev(11, customer_id="initech")],
        T3,
    )
    return ids


@pytest.fixture
def three_batches(spark, warehouse: Settings, tmp_path: Path) -> dict[str, str]:
    """Three landed (not yet processed) batches in a fresh warehouse of this test."""
    return land_three_batches(spark, warehouse, tmp_path)


@pytest.fixture(scope="module")
def processed(spark, tmp_path_factory):
    """The three batches landed and processed once; shared by the read-only tests."""
    from meterlake.warehouse import init_warehouse
    from tests.conftest import FIXED_NOW

    root = tmp_path_factory.mktemp("scenario")
    settings = replace(Settings.load(env={}).with_warehouse(str(root / "wh")), pinned_now=FIXED_NOW)
    init_warehouse(spark, settings)
    ids = land_three_batches(spark, settings, root)
    tally = run_landing_to_bronze(spark, settings, progress=lambda _: None)
    return settings, ids, tally


def quarantine_reasons(spark, settings: Settings) -> dict[str, int]:
    rows = tables.read(spark, settings, tables.BRONZE_QUARANTINE).groupBy("reason").count()
    return {row.reason: row["count"] for row in rows.collect()}


def test_three_batches_exact_counts(spark, processed) -> None:
    warehouse, _, tally = processed
    assert (tally.batches, tally.events_read, tally.blank_lines) == (3, 18, 1)
    assert (tally.bronze_rows, tally.duplicates) == (6, 3)
    assert dict(tally.quarantined) == {
        "malformed_json": 1,
        "negative_quantity": 1,
        "unknown_customer": 2,
        "duplicate_conflict": 2,
        "too_old": 1,
        "timestamp_without_offset": 1,
        "invalid_utf8": 1,
    }
    assert quarantine_reasons(spark, warehouse) == dict(tally.quarantined)
    bronze = tables.read(spark, warehouse, tables.BRONZE_EVENTS).collect()
    assert sorted(r.event_id for r in bronze) == ["e-1", "e-10", "e-2", "e-3", "e-6", "e-9"]
    assert tally.customers == {(r.tenant_id, r.customer_id) for r in bronze}


def test_bronze_rows_carry_lineage_and_first_copy_wins(spark, processed) -> None:
    warehouse, three_batches, _ = processed
    rows = {r.event_id: r for r in tables.read(spark, warehouse, tables.BRONZE_EVENTS).collect()}
    assert (
        rows["e-3"].quantity == 3
    )  # batch 1's copy stays; batch 2's conflicting one is quarantined
    assert (rows["e-3"].batch_id, rows["e-3"].line_number) == (three_batches["b1"], 3)
    assert rows["e-10"].line_number == 1 and rows["e-10"].batch_id == three_batches["b3"]
    assert f"/{three_batches['b3']}." in rows["e-10"].landing_file
    assert rows["e-9"].quantity == 3 and rows["e-9"].line_number == 7
    skewed = rows["e-6"]
    assert skewed.clock_skew and skewed.billing_time == datetime(2026, 3, 3, 12, 0)
    assert skewed.event_time == datetime(2026, 3, 3, 13, 0)
    assert skewed.received_at == datetime(2026, 3, 3, 12, 0)


def test_quarantine_keeps_original_bytes_and_lineage(spark, processed) -> None:
    warehouse, three_batches, _ = processed
    rows = tables.read(spark, warehouse, tables.BRONZE_QUARANTINE).collect()
    by_reason = {r.reason: r for r in rows}
    assert bytes(by_reason["invalid_utf8"].raw) == b'{"event_id": "\xff"}'
    assert bytes(by_reason["malformed_json"].raw) == b"{oops"
    assert by_reason["malformed_json"].line_number == 5
    conflict = [r for r in rows if r.reason == "duplicate_conflict" and r.event_id == "e-3"]
    assert json.loads(bytes(conflict[0].raw))["quantity"] == 99
    assert conflict[0].batch_id == three_batches["b2"]


def test_accounting_balances_per_batch(spark, processed) -> None:
    warehouse, three_batches, _ = processed
    batches = {
        r.batch_id: r for r in tables.read(spark, warehouse, tables.BRONZE_BATCHES).collect()
    }
    first = batches[three_batches["b1"]]
    assert (first.lines, first.blank_lines, first.events_read) == (8, 1, 7)
    assert (first.bronze_rows, first.duplicates, first.quarantined) == (3, 1, 3)
    assert first.quarantined_by_reason == {
        "malformed_json": 1,
        "negative_quantity": 1,
        "unknown_customer": 1,
    }
    for row in batches.values():
        assert row.events_read == row.bronze_rows + row.duplicates + row.quarantined
        assert row.events_read == row.lines - row.blank_lines


def test_rerun_and_new_batch_are_exactly_once(
    spark, warehouse: Settings, three_batches, tmp_path: Path
) -> None:
    run_landing_to_bronze(spark, warehouse, progress=lambda _: None)
    again = run_landing_to_bronze(spark, warehouse, progress=lambda _: None)
    assert again.batches == 0
    land(warehouse, tmp_path, "b4.jsonl", [ev(1), ev(12)], datetime(2026, 3, 5, tzinfo=UTC))
    later = run_landing_to_bronze(spark, warehouse, progress=lambda _: None)
    assert (later.bronze_rows, later.duplicates) == (1, 1)
    numbers = {
        r.batch_id: r.ingest_seq
        for r in tables.read(spark, warehouse, tables.BRONZE_BATCHES).collect()
    }
    assert None not in numbers.values() and len(numbers) == 4, numbers
    earlier = [seq for batch, seq in numbers.items() if batch in three_batches.values()]
    assert set(numbers.values()) - set(earlier) == {max(earlier) + 1}  # the next in commit order
    bronze = tables.read(spark, warehouse, tables.BRONZE_EVENTS)
    assert bronze.count() == bronze.select("tenant_id", "event_id").distinct().count() == 7


def test_a_micro_batch_like_the_last_compiles_next_to_nothing(
    spark, warehouse: Settings, three_batches, tmp_path: Path
) -> None:
    """Its plans are in the compiled-code cache: at Spark's default of 100 entries a
    micro-batch's ~150 classes evicted each other and were all compiled again each time."""
    from meterlake.spark import compiled_classes

    run_landing_to_bronze(spark, warehouse, progress=lambda _: None)
    land(warehouse, tmp_path, "b4.jsonl", [ev(20), ev(21)], datetime(2026, 3, 5, tzinfo=UTC))
    run_landing_to_bronze(spark, warehouse, progress=lambda _: None)
    land(warehouse, tmp_path, "b5.jsonl", [ev(22), ev(23)], datetime(2026, 3, 6, tzinfo=UTC))
    before = compiled_classes(spark)
    assert run_landing_to_bronze(spark, warehouse, progress=lambda _: None).bronze_rows == 2
    assert compiled_classes(spark) - before < 20


def test_quarantine_replay_admits_once_customer_exists(
    spark, warehouse: Settings, three_batches
) -> None:
    run_landing_to_bronze(spark, warehouse, progress=lambda _: None)
    assert replay_quarantine(spark, warehouse).events_read == 0  # initech still unknown
    store_catalog(spark, warehouse, catalog(extra_customer="initech"))
    replayed = replay_quarantine(spark, warehouse)
    assert (replayed.events_read, replayed.bronze_rows) == (2, 2)
    assert replay_quarantine(spark, warehouse).events_read == 0  # once only
    bronze = {r.event_id: r for r in tables.read(spark, warehouse, tables.BRONZE_EVENTS).collect()}
    assert bronze["e-5"].customer_id == "initech"
    assert bronze["e-5"].batch_id == three_batches["b1"] and bronze["e-5"].line_number == 8
    assert bronze["e-11"].received_at == datetime(2026, 3, 4, 12, 0)
    outcomes = (
        tables.read(spark, warehouse, tables.BRONZE_QUARANTINE)
        .where("reason = 'unknown_customer'")
        .select("replay_outcome")
        .collect()
    )
    assert [r.replay_outcome for r in outcomes] == ["admitted", "admitted"]


def test_catalog_versions_keep_history(spark, warehouse: Settings) -> None:
    first = store_catalog(spark, warehouse, catalog())
    same = store_catalog(spark, warehouse, catalog())
    assert (first.version, first.changed, same.version, same.changed) == (1, True, 1, False)
    second = store_catalog(spark, warehouse, catalog(extra_customer="initech"))
    assert second.version == 2
    all_customers = tables.read(spark, warehouse, tables.REF_CUSTOMERS)
    assert all_customers.where("version = 1").count() == 2
    now_ids = sorted(
        r.customer_id for r in current(spark, warehouse, tables.REF_CUSTOMERS).collect()
    )
    assert now_ids == ["acme", "globex", "initech"]
    subscriptions = tables.read(spark, warehouse, tables.REF_SUBSCRIPTIONS)
    assert subscriptions.where("customer_id = 'acme'").count() == 4  # 2 per version, history kept
