"""Faults in what reaches landing: every event delivered ten times, out of order, over days;
landing files changed after they were acknowledged."""

from __future__ import annotations

import random
import shutil
from datetime import timedelta
from pathlib import Path

from meterlake import tables
from meterlake.config import Settings
from meterlake.ingest import reasons
from meterlake.ingest.stream import run_landing_to_bronze
from meterlake.pipeline import run_pipeline
from tests.chaos.conftest import QUIET, RECEIVED, Size, bill, land, make_events, new_warehouse

BILLED_AT = RECEIVED + timedelta(days=40)  # February and March are closed and final


def test_duplicate_storm_leaves_invoices_unchanged(
    spark, settings: Settings, tmp_path: Path, size: Size
) -> None:
    """Each event arrives ``size.copies`` times, shuffled into batches received over
    ``size.days`` days across February's close (bronze runs after each day), so copies
    meet in one batch, across the batches of one run and against bronze. The reference
    lands each event once, in the batch that held its first copy, at the same time (when
    an event first arrives decides whether it is late); the invoices are equal."""
    events = make_events(size.events, seed=31)
    deliveries = [e for e in events for _ in range(size.copies)]
    random.Random(5).shuffle(deliveries)
    per_day = 4
    count = size.days * per_day
    batches = [deliveries[i::count] for i in range(count)]
    storm = new_warehouse(spark, settings, "storm")
    reference = new_warehouse(spark, settings, "reference")
    seen: set[str] = set()
    for n, batch in enumerate(batches):
        at = RECEIVED + timedelta(days=n // per_day, minutes=n % per_day)
        land(storm, tmp_path, f"storm-{n}", batch, at)
        first = [e for e in batch if e["event_id"] not in seen and not seen.add(e["event_id"])]
        if first:
            land(reference, tmp_path, f"reference-{n}", first, at)
        if n % per_day == per_day - 1:
            run_landing_to_bronze(spark, storm, **QUIET)

    assert bill(spark, storm, BILLED_AT) == bill(spark, reference, BILLED_AT)
    bronze = tables.read(spark, storm, tables.BRONZE_EVENTS)
    assert bronze.count() == bronze.select("event_id").distinct().count() == len(events)
    accounts = tables.read(spark, storm, tables.BRONZE_BATCHES).collect()
    assert sum(b.duplicates for b in accounts) == (size.copies - 1) * len(events)
    assert sum(b.quarantined for b in accounts) == 0


def _tamper(settings: Settings, landing_file: str) -> None:
    """Change one quantity in place, as a bad restore or an edit would."""
    path = Path(settings.warehouse) / landing_file
    body = path.read_bytes()
    start = body.index(b'"quantity":') + len(b'"quantity":')
    path.write_bytes(body[:start] + b"9" + body[start:])


def test_changed_landing_files_are_quarantined_and_never_billed(
    spark, settings: Settings, tmp_path: Path
) -> None:
    """Batch one is billed, then tampered with; batch two is tampered with before bronze
    read it. With the stream's checkpoint lost, both are read again: each is reported and
    its lines quarantined, bronze keeps batch one's original events once, nothing of batch
    two is billed: the invoices are those of batch one alone. (An erasure's rewrite is not
    tampering: tests/integration/test_gdpr.py.)"""
    events = make_events(400, seed=41)
    first, second = events[:200], events[200:]
    warehouse = new_warehouse(spark, settings, "tampered")
    one = land(warehouse, tmp_path, "one", first, RECEIVED)
    want = bill(spark, warehouse, BILLED_AT)

    two = land(warehouse, tmp_path, "two", second, RECEIVED + timedelta(minutes=5))
    _tamper(warehouse, one)
    _tamper(warehouse, two)
    shutil.rmtree(Path(warehouse.warehouse) / "_checkpoints")
    result = run_pipeline(spark, warehouse, **QUIET)

    assert sorted(a.landing_file for a in result.tally.altered) == sorted([one, two])
    assert result.tally.quarantined == {reasons.LANDING_CHECKSUM_MISMATCH: len(events)}
    quarantine = tables.read(spark, warehouse, tables.BRONZE_QUARANTINE).collect()
    assert {(q.landing_file, q.reason) for q in quarantine} == {
        (one, reasons.LANDING_CHECKSUM_MISMATCH),
        (two, reasons.LANDING_CHECKSUM_MISMATCH),
    }
    assert all("changed after it was landed" in q.detail for q in quarantine)
    tampered = [q for q in quarantine if q.landing_file == two and q.line_number == 1]
    assert bytes(tampered[0].raw).startswith(b'{"event_id"') and b'"quantity":9' in tampered[0].raw
    bronze = tables.read(spark, warehouse, tables.BRONZE_EVENTS)
    assert bronze.count() == bronze.select("event_id").distinct().count() == len(first)
    assert bill(spark, warehouse, BILLED_AT) == want
