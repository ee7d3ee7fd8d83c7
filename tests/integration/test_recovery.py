"""Backups: a backup verifies against the live warehouse even after more events arrived,
and a damaged backup is caught (a landing file's checksum, a table partition's rows).
(Replay through the CLI: tests/e2e/test_invoices_cli.py.)"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from meterlake import tables
from meterlake.clock import format_instant
from meterlake.config import Settings
from meterlake.delta_io import append
from meterlake.recovery.replay import invoice_differences
from tests.chaos.conftest import RECEIVED, bill, land, make_events, new_warehouse
from tests.e2e.cli import cli_env, meterlake_here

BILLED_AT = RECEIVED + timedelta(days=40)


def test_backup_verifies_then_catches_damage(spark, settings: Settings, tmp_path: Path) -> None:
    """Through `meterlake backup create|verify` (in this process: see tests/e2e/cli.py)."""
    from pyspark.sql import functions as F

    source = new_warehouse(spark, settings, "source")
    events = make_events(300, seed=71)
    land(source, tmp_path, "one", events[:150], RECEIVED)
    land(source, tmp_path, "two", events[150:], RECEIVED + timedelta(minutes=1))
    bill(spark, source, BILLED_AT)
    env = cli_env(source.warehouse)
    now = ("--now", format_instant(BILLED_AT))

    target = tmp_path / "backup"
    made = meterlake_here(*now, "backup", "create", "--to", str(target), env=env)
    assert made.returncode == 0, made.stderr
    assert f"{len(tables.ALL_TABLES)} tables, 2 landing batches in {target}" in made.stdout
    land(source, tmp_path, "three", make_events(10, seed=72), BILLED_AT + timedelta(hours=1))
    clean = meterlake_here("backup", "verify", "--backup", str(target), env=env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "2 landing files checked; 1 batch(es) landed since" in clean.stdout
    assert clean.stdout.rstrip().endswith("backup verified")

    # Damage the backup: one landing file changed, one bronze partition with a row too many.
    backup = source.with_warehouse(str(target))
    bronze = tables.read(spark, backup, tables.BRONZE_EVENTS)
    victim = bronze.orderBy("event_id").first()
    append(bronze.where(F.col("event_id") == victim.event_id), backup, tables.BRONZE_EVENTS)
    path = Path(backup.warehouse) / victim.landing_file
    path.write_bytes(path.read_bytes().replace(b'"quantity":', b'"quantity":1', 1))
    damaged = meterlake_here("backup", "verify", "--backup", str(target), env=env)
    assert damaged.returncode == 3
    problems = [line for line in damaged.stdout.splitlines() if "PROBLEM" in line]
    partition = f"PROBLEM bronze.events partition {victim.billing_date}"
    assert any(partition in p and "rows" in p for p in problems), problems
    assert any(victim.landing_file in p and "sha256" in p for p in problems)
    assert len(problems) == 2 and "2 problem(s)" in damaged.stdout, problems


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
