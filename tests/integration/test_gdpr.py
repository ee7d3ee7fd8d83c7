"""GDPR: a user's export covers every tier; erasure leaves no trace of the identifier in
any tier or landing file while event counts, distinct-user counts and invoices stay."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from meterlake import tables
from meterlake.audit.erasure import erase_user
from meterlake.audit.subject_export import subject_document
from meterlake.billing.export import export_document
from meterlake.billing.run import run_invoices
from meterlake.catalog.parse import parse_catalog_text
from meterlake.catalog.store import store_catalog
from meterlake.ingest.integrity import altered_batches
from meterlake.ingest.landing import land_file, manifest_entries
from meterlake.pipeline import run_pipeline
from meterlake.storage import storage_for
from meterlake.tiering.events import events_at
from meterlake.tiering.move import tier_run

SUBJECT = "jane.doe@example.com"
CATALOG = b"""
meters:
  - {key: api_calls, event_type: api_call, aggregation: sum}
  - {key: seats, event_type: api_call, aggregation: unique_count, property: user_id}
plans:
  - id: team
    currency: USD
    charges:
      - {type: usage, meter: api_calls, model: per_unit, unit_price: "0.01"}
      - {type: usage, meter: seats, model: per_unit, unit_price: "5.00"}
customers:
  - {id: acme, timezone: UTC, billing_anchor: calendar,
     subscriptions: [{plan: team, start: "2026-01-01T00:00:00Z", end: null}]}
"""
QUIET = {"progress": lambda _: None}


def _call(n: int, day: int, user: str, customer: str = "acme") -> dict:
    return {
        "event_id": f"e{n}",
        "customer_id": customer,
        "event_type": "api_call",
        "quantity": n,
        "timestamp": (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=day)).isoformat(),
        "user_id": user,
        "properties": {"invited_by": SUBJECT if n % 2 else "admin"},
    }


def _snapshot(spark, settings) -> tuple:
    from pyspark.sql import functions as F

    every = events_at(spark, settings)
    users = every.agg(F.count("*"), F.sum("quantity"), F.countDistinct("user_id")).first()
    unique = tables.read(spark, settings, tables.SILVER_USAGE_DAY).where(
        F.col("meter_key") == "seats"
    )
    days = sorted((r.window_date, r.unique_count) for r in unique.collect())
    invoices = [
        (i["period_start"], i["status"], i["total"])
        for i in export_document(spark, settings)["invoices"]
    ]
    return tuple(users), days, invoices


def test_export_then_erase_a_user_in_every_tier(spark, warehouse, tmp_path: Path) -> None:
    from pyspark.sql import functions as F

    received = replace(warehouse, pinned_now=datetime(2026, 2, 4, tzinfo=UTC))
    settings = replace(warehouse, pinned_now=datetime(2026, 2, 10, tzinfo=UTC))
    store_catalog(spark, settings, parse_catalog_text(CATALOG, "catalog.yaml"))
    events = [_call(n, n, SUBJECT if n % 3 == 0 else f"user{n % 4}") for n in range(1, 40)]
    events.append(_call(99, 38, SUBJECT, customer="nobody"))  # quarantined: unknown customer
    source = tmp_path / "usage.jsonl"
    source.write_text("".join(json.dumps(e) + "\n" for e in events))
    land_file(received, source, "default")
    run_pipeline(spark, settings, **QUIET)
    run_invoices(spark, settings, settings.now())
    tier_run(spark, settings, settings.now(), **QUIET)  # days before Jan 11 go cold

    exported = subject_document(spark, settings, "default", user=SUBJECT)
    mentioning = {e["event_id"] for e in events[:-1] if SUBJECT in json.dumps(e)}
    assert {e["event_id"] for e in exported["events"]} == mentioning
    assert {e["tier"] for e in exported["events"]} == {"hot", "cold"}
    assert len(exported["quarantined"]) == 1
    customer = subject_document(spark, settings, "default", customer="acme")
    assert len(customer["events"]) == 39 and customer["invoices"]
    before = _snapshot(spark, settings)

    erasure = erase_user(spark, settings, "default", SUBJECT, requested_by="test", reason="DSR-1")
    assert erasure.rows["bronze.events"] + erasure.rows["cold.events"] == len(mentioning)
    assert erasure.rows["bronze.quarantine"] == 1 and len(erasure.files) == 1

    quoted = json.dumps(SUBJECT)
    for spec in (tables.BRONZE_EVENTS, tables.COLD_EVENTS):
        frame = tables.read(spark, settings, spec)
        assert frame.where(F.col("user_id") == SUBJECT).count() == 0
        assert frame.where(F.col("properties").contains(SUBJECT)).count() == 0
    raw = tables.read(spark, settings, tables.BRONZE_QUARANTINE).select(F.col("raw").cast("string"))
    assert raw.where(F.col("raw").contains(SUBJECT)).count() == 0
    storage = storage_for(settings)
    assert all(SUBJECT.encode() not in storage.read(key) for key in storage.keys("landing/events/"))
    # The rewrite is recorded, so bronze's integrity check does not take it for tampering.
    assert altered_batches(spark, settings, list(manifest_entries(settings))) == {}
    record = tables.read(spark, settings, tables.AUDIT_ERASURES).collect()
    assert len(record) == 1 and SUBJECT not in json.dumps(record[0].asDict(), default=str)
    assert quoted not in json.dumps(subject_document(spark, settings, "default", customer="acme"))

    assert subject_document(spark, settings, "default", user=SUBJECT)["events"] == []
    pseudonymous = subject_document(spark, settings, "default", user=erasure.pseudonym)
    assert len(pseudonymous["events"]) == len(mentioning)
    run_invoices(spark, settings, settings.now())
    assert _snapshot(spark, settings) == before


def test_erasure_is_field_exact_complete_and_verified(spark, warehouse, tmp_path: Path) -> None:
    """A non-ASCII user (sent raw and \\u-escaped) and a user whose id equals a customer's:
    only the user fields change, every copy goes (landing, bronze, quarantine, the query
    log, superseded files once vacuumed), a backup made before is listed, and a replay
    from the rewritten landing zone bills the same totals."""
    from meterlake.audit.access import LOCAL_OPERATOR
    from meterlake.audit.erasure_verify import verify_erased
    from meterlake.audit.query_log import log_query
    from meterlake.recovery.backup import create_backup
    from meterlake.recovery.replay import replay
    from meterlake.tiering.vacuum import vacuum_all

    settings = replace(warehouse, pinned_now=datetime(2026, 2, 10, tzinfo=UTC))
    store_catalog(spark, settings, parse_catalog_text(CATALOG, "catalog.yaml"))
    muller = "jürgen.müller"
    lines = [json.dumps(_call(n, n, muller if n % 2 else "acme"), ensure_ascii=n % 4 == 1)
             for n in range(1, 21)]  # fmt: skip
    lines.append(json.dumps(_call(50, 5, muller, customer="nobody"), ensure_ascii=False))
    source = tmp_path / "usage.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    land_file(replace(warehouse, pinned_now=datetime(2026, 2, 4, tzinfo=UTC)), source, "default")
    run_pipeline(spark, settings, **QUIET)
    run_invoices(spark, settings, settings.now())
    log_query(spark, settings, LOCAL_OPERATOR, "gdpr export", {"user": muller}, "default", 1)
    before = _snapshot(spark, settings)
    create_backup(spark, settings, settings.with_warehouse(str(tmp_path / "backup")), print)

    assert not verify_erased(spark, settings, "default", muller).clean
    first = erase_user(spark, settings, "default", muller, requested_by="test")
    second = erase_user(spark, settings, "default", "acme", requested_by="test")
    assert first.rows["bronze.events"] == 10 and first.rows["bronze.quarantine"] == 1
    assert first.rows["audit.query_log"] == 1 and second.rows["bronze.events"] == 10
    bronze = tables.read(spark, settings, tables.BRONZE_EVENTS)
    assert {r.customer_id for r in bronze.collect()} == {"acme"}  # the customer is untouched
    assert bronze.where(bronze.user_id.isin(muller, "acme")).count() == 0

    run_invoices(spark, settings, settings.now())
    assert _snapshot(spark, settings) == before
    replayed = replay(spark, settings, settings.with_warehouse(str(tmp_path / "replayed")),
                      lambda _: None)  # fmt: skip
    assert replayed.differences == [] and replayed.invoices > 0

    copies = verify_erased(spark, settings, "default", muller).copies
    assert any("superseded files" in c.where for c in copies)  # until VACUUM
    assert [c.where for c in copies if "backup" in c.note] == [str(tmp_path / "backup")]
    vacuum_all(spark, replace(settings, vacuum_retention_hours=0), lambda _: None)
    remaining = verify_erased(spark, settings, "default", muller).copies
    assert [c.where for c in remaining] == [str(tmp_path / "backup")], remaining
    storage = storage_for(settings)
    landed = b"".join(storage.read(k) for k in storage.keys("landing/events/"))
    assert muller.encode() not in landed and b"m\\u00fcller" not in landed
    assert landed.count(b'"customer_id": "acme"') == 20  # the other field kept, byte for byte


def test_a_settled_customer_is_erased_everywhere_once_and_never_billed_again(
    spark, warehouse, tmp_path: Path, monkeypatch
) -> None:
    """A customer whose id is also another customer's user, once sent \\u-escaped (customer
    ids are ASCII; the user tests cover non-ASCII ones): refused while billed, then renamed
    in every table, landing line, quarantined line, catalog text, the query log and the
    published usage, with the user of the same value untouched; a kill midway
    resumes with the same pseudonym; a second erasure beside it is refused by its lease;
    invoices bill the same; verify is clean after VACUUM; the id cannot
    come back through a catalog."""
    import subprocess
    import sys

    import pytest

    from meterlake.audit import customer_erasure
    from meterlake.audit.access import LOCAL_OPERATOR
    from meterlake.audit.customer_erasure import erase_customer
    from meterlake.audit.erasure_verify import verify_erased
    from meterlake.audit.query_log import log_query
    from meterlake.billing.current_usage import publish_usage, read_usage
    from meterlake.errors import CatalogError, ConfigError, LeaseHeldError
    from meterlake.tiering.vacuum import vacuum_all

    gone = "j.doe"
    listed = (
        CATALOG
        + f"""
  - {{id: {gone}, timezone: UTC, billing_anchor: calendar,
     subscriptions: [{{plan: team, start: "2026-01-01T00:00:00Z", end: "2026-02-01T00:00:00Z"}}]}}
""".encode()
    )
    settings = replace(warehouse, pinned_now=datetime(2026, 1, 20, tzinfo=UTC))
    store_catalog(spark, settings, parse_catalog_text(listed, "catalog.yaml"))
    lines = [json.dumps(_call(n, n % 15, f"u{n % 3}", customer=gone), ensure_ascii=n % 2 == 0)
             for n in range(1, 13)]  # fmt: skip
    lines += [json.dumps(_call(n, n % 15, gone)) for n in range(13, 19)]  # acme's user
    escaped = json.dumps(_call(41, 4, "u2", customer=gone))
    lines.append(escaped.replace(f'"customer_id": "{gone}"', '"customer_id": "\\u006a.doe"'))
    bad = {**_call(40, 3, "u1", customer=gone), "quantity": "many"}  # quarantined
    lines.append(json.dumps(bad, ensure_ascii=False))
    source = tmp_path / "usage.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    land_file(replace(warehouse, pinned_now=datetime(2026, 1, 16, tzinfo=UTC)), source, "default")
    run_pipeline(spark, settings, **QUIET)
    publish_usage(spark, settings, None, None)
    assert read_usage(settings, "default", gone) is not None
    settings = replace(settings, pinned_now=datetime(2026, 2, 10, tzinfo=UTC))
    run_invoices(spark, settings, settings.now())
    log_query(spark, settings, LOCAL_OPERATOR, "usage show", {"customer": gone}, "default", 1)
    invoices = export_document(spark, settings)["invoices"]
    assert {i["customer_id"] for i in invoices} == {"acme", gone}
    assert all(i["status"] == "final" for i in invoices)

    with pytest.raises(ConfigError, match="is in the current catalog"):
        erase_customer(spark, settings, "default", gone, requested_by="test")
    store_catalog(spark, settings, parse_catalog_text(CATALOG, "catalog.yaml"))
    run_pipeline(spark, settings, **QUIET)  # rollups follow the catalog without the customer

    # Killed after the landing rewrite: the rerun resumes under the same pseudonym.
    def killed(_settings):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(customer_erasure, "truncate_archived", killed)
    with pytest.raises(KeyboardInterrupt):
        erase_customer(spark, settings, "default", gone, requested_by="test")
    monkeypatch.undo()
    twin = subprocess.Popen(  # a second erasure in another process, holding the lease
        [sys.executable, "-c", _HOLD_ERASURE, settings.warehouse],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert twin.stdout.readline().strip() == "held"
    with pytest.raises(LeaseHeldError):
        erase_customer(spark, settings, "default", gone, requested_by="twin")
    twin.communicate("done\n", timeout=60)
    erasure = erase_customer(spark, settings, "default", gone, requested_by="test", reason="DSR-9")
    pseudonym = erasure.pseudonym
    assert erasure.rows["bronze.events"] == 13 and erasure.rows["bronze.quarantine"] == 1
    assert erasure.rows["billing.invoices"] == 1 and erasure.rows["audit.query_log"] == 1
    assert erasure.rows["ref.catalog_versions"] == 1
    assert erasure.rows["serving:current_usage"] == 1
    assert read_usage(settings, "default", gone) is None

    bronze = tables.read(spark, settings, tables.BRONZE_EVENTS).collect()
    assert sorted({r.customer_id for r in bronze}) == sorted({"acme", pseudonym})
    assert sum(r.user_id == gone for r in bronze) == 6  # acme's user of the same value
    after = export_document(spark, settings)["invoices"]
    renamed = {gone: pseudonym, "acme": "acme"}
    assert sorted((renamed[i["customer_id"]], i["total"]) for i in invoices) == sorted(
        (i["customer_id"], i["total"]) for i in after
    )
    run_invoices(spark, settings, settings.now())
    assert export_document(spark, settings)["invoices"] == after
    # The killed attempt's landing rewrite is in the record too: not taken for tampering.
    assert altered_batches(spark, settings, list(manifest_entries(settings))) == {}

    storage = storage_for(settings)
    landed = b"".join(storage.read(k) for k in storage.keys("landing/events/"))
    assert gone.encode() not in landed.replace(f'"user_id": "{gone}"'.encode(), b"")
    assert b"u006a.doe" not in landed
    assert landed.count(f'"user_id": "{gone}"'.encode()) == 6  # byte for byte
    assert any("superseded files" in c.where for c in verify_erased(
        spark, settings, "default", gone, "customer").copies)  # fmt: skip
    vacuum_all(spark, replace(settings, vacuum_retention_hours=0), lambda _: None)
    verification = verify_erased(spark, settings, "default", gone, "customer")
    assert verification.clean, verification.copies
    assert not verify_erased(spark, settings, "default", gone, "user").clean  # acme's user

    with pytest.raises(CatalogError, match=r"customers\[1\]\.id: .*was erased"):
        store_catalog(spark, settings, parse_catalog_text(listed, "again.yaml"))
    with pytest.raises(ConfigError, match="no data of it"):
        erase_customer(spark, settings, "default", "never-here", requested_by="test")


_HOLD_ERASURE = """
import sys
from meterlake.config import Settings
from meterlake.lease import ERASURE, hold
with hold(Settings.load(env={}).with_warehouse(sys.argv[1]), ERASURE):
    print("held", flush=True)
    sys.stdin.readline()
"""
