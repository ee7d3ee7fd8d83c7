"""Backups: a backup verifies against the live warehouse even after more events arrived,
and a damaged backup is caught (a landing file's checksum, a table partition's rows).
(Replay through the CLI: tests/e2e/test_invoices_cli.py.)"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from meterlake import tables
from meterlake.config import Settings
from meterlake.delta_io import append
from meterlake.recovery.backup import create_backup, verify_backup
from meterlake.recovery.replay import invoice_differences
from tests.chaos.conftest import QUIET, RECEIVED, bill, land, make_events, new_warehouse

BILLED_AT = RECEIVED + timedelta(days=40)


def test_backup_verifies_then_catches_damage(spark, settings: Settings, tmp_path: Path) -> None:
    from pyspark.sql import functions as F

    source = new_warehouse(spark, settings, "source")
    events = make_events(300, seed=71)
    land(source, tmp_path, "one", events[:150], RECEIVED)
    land(source, tmp_path, "two", events[150:], RECEIVED + timedelta(minutes=1))
    bill(spark, source, BILLED_AT)

    backup = replace(source.with_warehouse(str(tmp_path / "backup")), pinned_now=BILLED_AT)
    made = create_backup(spark, replace(source, pinned_now=BILLED_AT), backup, **QUIET)
    assert made.landing_batches == 2 and len(made.versions) == len(tables.ALL_TABLES)
    land(source, tmp_path, "three", make_events(10, seed=72), BILLED_AT + timedelta(hours=1))
    clean = verify_backup(spark, source, backup)
    assert clean.problems == [] and clean.newer_batches == 1, clean.problems
    assert clean.landing_files == 2 and clean.rows > 300

    # Damage the backup: one landing file changed, one bronze partition with a row too many.
    bronze = tables.read(spark, backup, tables.BRONZE_EVENTS)
    victim = bronze.orderBy("event_id").first()
    append(bronze.where(F.col("event_id") == victim.event_id), backup, tables.BRONZE_EVENTS)
    path = Path(backup.warehouse) / victim.landing_file
    path.write_bytes(path.read_bytes().replace(b'"quantity":', b'"quantity":1', 1))
    damaged = verify_backup(spark, source, backup)
    partition = f"bronze.events partition {victim.billing_date}"
    assert any(p.startswith(partition) and "rows" in p for p in damaged.problems)
    assert any(victim.landing_file in p and "sha256" in p for p in damaged.problems)
    assert len(damaged.problems) == 2, damaged.problems


def test_invoice_differences_name_changed_missing_and_extra_invoices() -> None:
    def invoice(invoice_id: str, total: str, status: str = "final") -> dict:
        return {"invoice_id": invoice_id, "customer_id": "acme", "status": status, "total": total}

    source = [invoice("a", "10.00"), invoice("b", "5.00"), invoice("c", "1.00")]
    replayed = [invoice("a", "10.00"), invoice("b", "4.99"), invoice("d", "2.00", "draft")]
    assert invoice_differences(source, replayed) == [
        "b (acme): source final 5.00, replay final 4.99",
        "c (acme, 1.00): source only",
        "d (acme, 2.00): replay only",
    ]
    assert invoice_differences(source, list(reversed(source))) == []
