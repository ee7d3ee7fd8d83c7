"""The API's metrics text: tenant labels only when the operator asks for them."""

from __future__ import annotations

from meterlake.capture.metrics import Metrics


def test_tenant_labels_are_summed_away_unless_asked_for() -> None:
    metrics = Metrics()
    metrics.inc("meterlake_events_rejected_total", 2, tenant="acme", reason="too_old")
    metrics.inc("meterlake_events_rejected_total", 3, tenant="globex", reason="too_old")
    metrics.inc("meterlake_events_accepted_total", 5, tenant="globex")
    anonymous = metrics.render(tenants=False)
    assert 'meterlake_events_rejected_total{reason="too_old"} 5' in anonymous
    assert "meterlake_events_accepted_total 5" in anonymous
    assert "acme" not in anonymous and "globex" not in anonymous
    named = metrics.render(tenants=True)
    assert 'meterlake_events_rejected_total{reason="too_old",tenant="acme"} 2' in named
    assert 'meterlake_events_rejected_total{reason="too_old",tenant="globex"} 3' in named
