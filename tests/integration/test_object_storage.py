"""The warehouse's own files on a real S3 server (MinIO on loopback) and on local disk:
the same contract for both, and landing on S3 with its exactly-once manifest."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from meterlake.config import Settings
from meterlake.ingest.landing import land_file, manifest_entries
from meterlake.storage import LocalStorage, Storage, storage_for
from tests.helpers import BASIC_CATALOG, bucket_settings


@pytest.fixture
def s3_settings(s3_endpoint: str, tmp_path: Path) -> Settings:
    return bucket_settings(s3_endpoint, "t")


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "wh", tmp_path / "wh" / ".tmp")
    return storage_for(request.getfixturevalue("s3_settings"))


def test_create_is_exclusive_and_write_replaces(storage: Storage) -> None:
    assert storage.read("a/one.json") is None
    assert storage.create("a/one.json", b"first") is True
    assert storage.create("a/one.json", b"second") is False
    assert storage.read("a/one.json") == b"first"
    storage.write("a/one.json", b"third")
    assert storage.read("a/one.json") == b"third"


def test_keys_put_file_and_delete(storage: Storage, tmp_path: Path) -> None:
    local = tmp_path / "batch.jsonl"
    local.write_bytes(b'{"a": 1}\n')
    storage.put_file(local, "landing/events/x/1.jsonl")
    assert not local.exists()
    storage.write("landing/events/x/2.jsonl", b"")
    storage.write("landing/other.json", b"{}")
    assert list(storage.keys("landing/events/")) == [
        "landing/events/x/1.jsonl",
        "landing/events/x/2.jsonl",
    ]
    storage.delete("landing/events/x/1.jsonl")
    assert storage.read("landing/events/x/1.jsonl") is None
    storage.delete_tree("landing/events")
    assert list(storage.keys("landing/")) == ["landing/other.json"]


def test_landing_on_s3_is_byte_exact_and_loaded_once(s3_settings: Settings, tmp_path) -> None:
    body = b'{"event_id": "e1", "customer_id": "c", "event_type": "x", "quantity": 1}\n'
    source = tmp_path / "usage.jsonl"
    source.write_bytes(body)
    first = land_file(s3_settings, source, "acme")
    again = land_file(s3_settings, source, "acme")
    assert not first.already_loaded and again.already_loaded
    assert again.batch == first.batch
    (entry,) = manifest_entries(s3_settings)
    assert entry == first.batch and entry.sha256 == hashlib.sha256(body).hexdigest()
    assert storage_for(s3_settings).read(entry.landing_file) == body


def test_ingest_to_invoice_on_s3a(spark, s3_settings: Settings, tmp_path: Path) -> None:
    """The whole flow with the warehouse in the bucket: tables through S3A, landing and
    rollup state through boto3; one duplicate and one unknown customer along the way."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from meterlake import tables
    from meterlake.billing.run import run_invoices
    from meterlake.catalog.parse import parse_catalog_text
    from meterlake.catalog.store import store_catalog
    from meterlake.pipeline import run_pipeline
    from meterlake.reconcile.run import reconcile
    from meterlake.spark import build_session
    from meterlake.warehouse import init_warehouse

    settings = replace(s3_settings, shuffle_partitions=2)
    assert build_session(settings) is spark
    init_warehouse(spark, settings)
    store_catalog(spark, settings, parse_catalog_text(BASIC_CATALOG, "catalog.yaml"))
    line = '{"event_id": "%s", "customer_id": "%s", "event_type": "api_call", "quantity": 100,'
    line += ' "timestamp": "2026-01-20T10:00:00Z"}\n'
    source = tmp_path / "usage.jsonl"
    source.write_text(line % ("e1", "c1") + line % ("e1", "c1") + line % ("e2", "nobody"))
    land_file(replace(settings, pinned_now=datetime(2026, 2, 1, 6, tzinfo=UTC)), source, "default")
    later = replace(settings, pinned_now=datetime(2026, 2, 4, tzinfo=UTC))
    tally = run_pipeline(spark, later, progress=lambda _: None).tally
    assert (tally.bronze_rows, tally.duplicates, tally.quarantined_total) == (1, 1, 1)
    run = run_invoices(spark, later, later.now())
    assert [(i.customer, i.status, i.total) for i in run.invoices] == [
        ("c1", "final", Decimal("11.00")),
        ("c2", "final", Decimal("10.00")),
    ]
    assert reconcile(spark, later, later.now()).mismatches == []
    bronze = tables.BRONZE_EVENTS.path(later)
    assert (
        bronze.startswith("s3a://meterlake/")
        and spark.read.format("delta").load(bronze).count() == 1
    )


def test_cold_tier_lifecycle_rules_on_the_server(s3_settings: Settings) -> None:
    """The policy from infra/lifecycle.json reaches the bucket through boto3; MinIO has no
    archive class without a configured remote tier nor a multipart rule, and the full policy
    is refused in one line."""
    from meterlake.errors import ConfigError
    from meterlake.tiering.lifecycle import apply_lifecycle

    prefix = s3_settings.cold.split("/", 3)[3] + "/"
    held = apply_lifecycle(s3_settings, basic=True)
    mine = {r["ID"]: r for r in held if r["Filter"].get("Prefix") == prefix}
    assert set(mine) == {"meterlake-cold-noncurrent"}
    assert mine["meterlake-cold-noncurrent"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30
    with pytest.raises(ConfigError, match="lifecycle on bucket meterlake"):
        apply_lifecycle(s3_settings)
