"""The CLI contract end to end: flags, exit codes, one-line errors, the landing → bronze flow."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from meterlake.demo import DEMO_CATALOG
from tests.e2e.cli import cli_env, meterlake, meterlake_here


def one_line_error(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("meterlake: error: ")
    return lines[0]


def test_help_answers_fast_without_a_jvm(tmp_path: Path) -> None:
    started = time.monotonic()
    result = meterlake("--help", env=cli_env(tmp_path / "wh"))
    assert result.returncode == 0
    assert time.monotonic() - started < 5
    commands = ("init", "catalog", "events", "pipeline", "quarantine", "invoices", "usage")
    for command in (*commands, "lineage", "demo"):
        assert command in result.stdout
    assert "Using incubator modules" not in result.stderr  # no JVM was started


def test_catalog_validate_names_the_bad_field(tmp_path: Path) -> None:
    good = tmp_path / "catalog.yaml"
    good.write_text(DEMO_CATALOG)
    started = time.monotonic()
    result = meterlake("catalog", "validate", str(good), env=cli_env(tmp_path / "wh"))
    assert result.returncode == 0 and "valid — 3 meters, 2 plans, 2 customers" in result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO_CATALOG.replace('amount: "49.00"', "amount: 49.00"))
    line = one_line_error(meterlake("catalog", "validate", str(bad), env=cli_env(tmp_path / "wh")))
    assert "plans[0].charges[0].amount" in line
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.jsonl", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: (d / "empty.jsonl", (d / "empty.jsonl").write_bytes(b""))[0], "file is empty"),
        (lambda d: (d / "a.csv", (d / "a.csv").write_text("a,b\n1,2\n"))[0], "not JSONL"),
    ],
)
def test_events_load_refuses_bad_files_in_one_line(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    line = one_line_error(meterlake("events", "load", str(path), env=cli_env(tmp_path / "wh")))
    assert message in line


def test_bad_now_flag_is_named(tmp_path: Path) -> None:
    line = one_line_error(
        meterlake("--now", "yesterday", "events", "load", "x", env=cli_env(tmp_path / "wh"))
    )
    assert "--now" in line


def test_landing_to_bronze_through_the_cli(tmp_path: Path, spark) -> None:
    from meterlake.catalog.parse import load_catalog_file
    from meterlake.catalog.store import store_catalog
    from meterlake.config import Settings
    from meterlake.warehouse import init_warehouse

    # The Spark commands run in this process (the demo test below runs one as a process);
    # `events load` never starts a JVM, so it runs as a process.
    env = cli_env(tmp_path / "wh")
    assert "created bronze.events" in meterlake_here("init", env=env).stdout
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(DEMO_CATALOG)
    loaded = meterlake_here("catalog", "load", str(catalog), env=env)
    assert "catalog version 1 loaded" in loaded.stdout
    # Repeats change nothing.
    settings = Settings.load(env=env)
    assert not any(created for _, created in init_warehouse(spark, settings))
    again = store_catalog(spark, settings, load_catalog_file(catalog))
    assert (again.changed, again.version) == (False, 1)
    events = tmp_path / "events.jsonl"
    rows = [
        {
            "event_id": "a",
            "customer_id": "acme",
            "event_type": "api_call",
            "timestamp": "2026-03-01T10:00:00Z",
        },
        {
            "event_id": "a",
            "customer_id": "acme",
            "event_type": "api_call",
            "timestamp": "2026-03-01T10:00:00Z",
        },
        {
            "event_id": "b",
            "customer_id": "nobody",
            "event_type": "api_call",
            "timestamp": "2026-03-01T10:00:00Z",
        },
    ]
    events.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    now = ["--now", "2026-03-02T00:00:00Z"]
    landed = meterlake(*now, "events", "load", str(events), "--tenant", "default", env=env)
    assert landed.returncode == 0 and "4 lines" in landed.stdout
    assert "received 2026-03-02T00:00:00Z" in landed.stdout
    again = meterlake(*now, "events", "load", str(events), env=env)
    assert again.returncode == 0 and "already landed" in again.stdout and "skipped" in again.stdout
    run = meterlake_here("pipeline", "run", env=env)
    assert run.returncode == 0, run.stderr
    assert "4 events read → 1 into bronze, 1 duplicates dropped, 2 quarantined" in run.stdout
    assert "quarantined malformed_json: 1" in run.stdout
    assert "quarantined unknown_customer: 1" in run.stdout


def test_pipeline_before_init_is_one_clear_line(tmp_path: Path, spark) -> None:
    line = one_line_error(meterlake_here("pipeline", "run", env=cli_env(tmp_path / "wh")))
    assert "run `meterlake init`" in line


def test_demo_summary_and_rerun_changes_nothing(demo_run, spark) -> None:
    warehouse, first = demo_run
    assert first.returncode == 0, first.stderr
    for text in ("events landed in bronze       894", "unknown_customer             5"):
        assert text in first.stdout
    assert "invoices as of 2026-04-05T00:00:00Z: 4 (4 written, 0 unchanged)" in first.stdout
    totals = [line.split()[-2] for line in first.stdout.splitlines() if " final " in line]
    assert totals == ["293.00", "374.00", "137.87", "205.39"]
    assert "views.current_usage" in first.stdout and "dashboard published" in first.stdout
    # Run again, with the function the command calls: nothing changes.
    from meterlake.config import Settings
    from meterlake.demo import run_demo

    said: list[str] = []
    run_demo(spark, Settings.load(env=cli_env(warehouse)), say=said.append)
    assert any("4 (0 written, 4 unchanged)" in line for line in said), said
