from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from meterlake.catalog.parse import load_catalog_file, parse_catalog
from meterlake.demo import DEMO_CATALOG
from meterlake.errors import CatalogError, InputFileError


def demo() -> dict:
    return yaml.safe_load(DEMO_CATALOG)


def test_demo_catalog_parses_to_decimals_and_utc() -> None:
    catalog = parse_catalog(demo())
    pro = catalog.plan("pro")
    assert pro.minimum_commitment == Decimal("100.00")
    assert pro.charges[1].tiers[1].up_to is None
    acme = catalog.customers[0]
    assert acme.subscriptions[0].start.isoformat() == "2026-01-31T05:00:00+00:00"
    assert acme.subscriptions[1].end is None
    assert acme.credits[0].amount == Decimal("20.00")


def _error(document: dict) -> str:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(document)
    return str(caught.value)


def test_float_money_is_refused_naming_the_field() -> None:
    document = demo()
    document["plans"][0]["charges"][0]["amount"] = 49.0
    assert _error(document).startswith("plans[0].charges[0].amount: 49.0 must be a quoted decimal")


def test_missing_required_field_is_named() -> None:
    document = demo()
    del document["customers"][1]["timezone"]
    assert _error(document) == "customers[1].timezone: is required"


def test_unknown_plan_in_subscription() -> None:
    document = demo()
    document["customers"][0]["subscriptions"][1]["plan"] = "enterprise"
    assert _error(document) == "customers[0].subscriptions[1].plan: unknown plan 'enterprise'"


def test_overlapping_subscriptions() -> None:
    document = demo()
    document["customers"][0]["subscriptions"][1]["start"] = "2026-03-01T00:00:00Z"
    assert _error(document) == (
        "customers[0].subscriptions[1].start: overlaps the previous subscription"
    )


def test_bad_timezone_and_naive_instant() -> None:
    document = demo()
    document["customers"][0]["timezone"] = "Mars/Olympus"
    assert _error(document).startswith("customers[0].timezone: 'Mars/Olympus'")
    document = demo()
    document["customers"][1]["subscriptions"][0]["start"] = "2026-02-10T09:00:00"
    assert "customers[1].subscriptions[0].start" in _error(document)
    assert "no UTC offset" in _error(document)


def test_tiers_must_ascend_and_end_unbounded() -> None:
    document = demo()
    tiers = document["plans"][0]["charges"][1]["tiers"]
    tiers[1]["up_to"] = 500
    assert _error(document) == (
        "plans[0].charges[1].tiers[1].up_to: the last tier must be null (unbounded)"
    )
    tiers.insert(1, {"up_to": 10, "unit_price": "1"})
    tiers[2]["up_to"] = None
    assert "plans[0].charges[1].tiers[1].up_to: must be greater" in _error(document)


def test_usage_charge_needs_known_meter_and_model_fields() -> None:
    document = demo()
    document["plans"][1]["charges"][2]["meter"] = "bandwidth"
    assert _error(document) == "plans[1].charges[2].meter: unknown meter 'bandwidth'"
    document = demo()
    del document["plans"][1]["charges"][2]["package_size"]
    assert _error(document) == "plans[1].charges[2].package_size: is required for the package model"


def test_unknown_currency_and_field() -> None:
    document = demo()
    document["plans"][0]["currency"] = "XYZ"
    assert _error(document) == "plans[0].currency: 'XYZ' is not an ISO 4217 code"
    document = demo()
    document["meters"][0]["unit"] = "calls"
    assert _error(document).startswith("meters[0]: unknown field")


def test_unique_count_needs_property() -> None:
    document = demo()
    del document["meters"][1]["property"]
    assert _error(document) == "meters[1].property: unique_count needs a property"


def test_files_missing_directory_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such file"):
        load_catalog_file(tmp_path / "nope.yaml")
    with pytest.raises(InputFileError, match="is a directory"):
        load_catalog_file(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("meters: [\n")
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog_file(bad)


def test_unquoted_yaml_timestamp_keeps_its_offset(tmp_path: Path) -> None:
    text = DEMO_CATALOG.replace('"2026-02-10T09:00:00Z"', "2026-02-10T10:00:00+01:00")
    file = tmp_path / "catalog.yaml"
    file.write_text(text)
    catalog = load_catalog_file(file)
    assert catalog.customers[1].subscriptions[0].start.isoformat() == "2026-02-10T09:00:00+00:00"
    assert len(catalog.sha256) == 64


def test_negative_prices_and_over_precise_credits_are_refused() -> None:
    document = demo()
    document["plans"][0]["charges"][0]["amount"] = "-49.00"
    assert _error(document).startswith("plans[0].charges[0].amount:")
    document = demo()
    document["customers"][0]["credits"][0]["amount"] = "20.005"
    assert _error(document) == (
        "customers[0].credits[0].amount: '20.005' has more decimals than USD allows (2)"
    )


def test_tenant_grace_defaults_to_48_hours() -> None:
    document = demo()
    document["tenants"] = [{"id": "eu", "grace_hours": 6}]
    catalog = parse_catalog(document)
    assert catalog.grace("eu").total_seconds() == 6 * 3600
    assert catalog.grace("default").total_seconds() == 48 * 3600
    document["tenants"][0]["grace_hours"] = -1
    assert _error(document).startswith("tenants[0].grace_hours:")
