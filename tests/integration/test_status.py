"""``meterlake status``: metrics computed from the warehouse, alerts from the shared rules,
the Prometheus text format. (The rules themselves: tests/unit/test_alert_rules.py.)"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from meterlake.cli import main
from meterlake.config import Settings
from meterlake.ingest import reasons
from meterlake.monitoring.health import collect
from meterlake.monitoring.rules import RULES
from meterlake.pipeline import run_pipeline
from tests.chaos.conftest import QUIET, RECEIVED, land, make_events, new_warehouse

NOW = RECEIVED + timedelta(hours=3)


def test_status_sees_a_stalled_stream_then_a_healthy_one(
    spark, settings: Settings, tmp_path: Path, capsys, monkeypatch
) -> None:
    warehouse = replace(new_warehouse(spark, settings, "status"), pinned_now=NOW)
    events = make_events(300, seed=81)
    bad = events[0] | {"quantity": -1, "event_id": "negative"}
    land(warehouse, tmp_path, "a", [*events[:100], bad], RECEIVED)  # processed below
    run_pipeline(spark, replace(warehouse, pinned_now=RECEIVED), **QUIET)
    land(warehouse, tmp_path, "b", events[100:200], NOW - timedelta(minutes=90))  # waiting
    land(warehouse, tmp_path, "c", events[200:], NOW - timedelta(minutes=5))  # waiting

    stalled = collect(spark, warehouse)
    assert stalled.value("meterlake_landing_batches") == 3
    assert stalled.value("meterlake_landing_events") == 301
    assert stalled.value("meterlake_landing_batches_waiting") == 2
    assert stalled.value("meterlake_bronze_lag_seconds") == 90 * 60
    assert stalled.value("meterlake_freshness_seconds") == 3 * 3600
    assert stalled.value("meterlake_completeness_ratio") == 101 / 201  # a and b are settled
    assert stalled.value("meterlake_quarantine_ratio_24h") == 1 / 101
    quarantined = [s for s in stalled.samples if s.name == "meterlake_quarantined"]
    assert [(s.labels, s.value) for s in quarantined] == [
        ((("reason", reasons.NEGATIVE_QUANTITY),), 1)
    ]
    assert {rule.alert for rule, _ in stalled.firing()} == {
        "MeterlakeIncomplete",
        "MeterlakeBronzeLagging",
        "MeterlakeStale",
        "MeterlakeQuarantineHigh",
    }

    # The command: exit 3 on a critical alert; Prometheus text names every rule's metric
    # that has a value (no reconciliation or quality run yet).
    monkeypatch.setenv("METERLAKE_WAREHOUSE", warehouse.warehouse)
    monkeypatch.setenv("METERLAKE_NOW", "2026-03-02T15:00:00Z")
    out = tmp_path / "meterlake.prom"
    assert main(["status", "--format", "prometheus", "--out", str(out)]) == 3
    text = out.read_text()
    assert "# TYPE meterlake_bronze_lag_seconds gauge\nmeterlake_bronze_lag_seconds 5400\n" in text
    assert f'meterlake_quarantined{{reason="{reasons.NEGATIVE_QUANTITY}"}} 1' in text
    emitted = {line.split()[0].split("{")[0] for line in text.splitlines() if line[0] != "#"}
    assert {r.metric for r in RULES} - emitted == {
        "meterlake_reconciliation_mismatches",
        "meterlake_reconciliation_age_seconds",
        "meterlake_quality_failures",
    }

    run_pipeline(spark, warehouse, **QUIET)
    healthy = collect(spark, warehouse)
    assert healthy.value("meterlake_landing_batches_waiting") == 0
    assert healthy.value("meterlake_completeness_ratio") == 1
    assert healthy.value("meterlake_rollup_lag_versions") == 0
    assert healthy.value("meterlake_quarantine_ratio_24h") == 1 / 301
    assert {rule.alert for rule, _ in healthy.firing()} == {"MeterlakeQuarantineHigh"}
    assert main(["status"]) == 0
    summary = capsys.readouterr().out
    assert "alerts firing: 1" in summary and "WARNING MeterlakeQuarantineHigh" in summary
