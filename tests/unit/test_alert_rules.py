"""The alerting rules in infra/prometheus/ are the ones `meterlake status` evaluates, and
Prometheus's own rule engine (promtool) accepts them and fires each at its threshold."""

from __future__ import annotations

import subprocess
from pathlib import Path

from meterlake.monitoring.rules import RULES, prometheus_rules

ROOT = Path(__file__).resolve().parents[2]


def test_committed_alert_rules_are_the_generated_ones() -> None:
    committed = ROOT / "infra/prometheus/meterlake-alerts.yml"
    assert committed.read_text() == prometheus_rules(), "run `make alert-rules`"


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    checked = subprocess.run(
        ["bash", str(ROOT / "infra/promtool.sh"), "check"], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(RULES)} rules found" in checked.stdout
    tested = (ROOT / "infra/prometheus/meterlake-alerts.test.yml").read_text()
    untested = {r.alert for r in RULES if f"alertname: {r.alert}" not in tested}
    assert untested == set(), "every rule has a promtool unit test"
