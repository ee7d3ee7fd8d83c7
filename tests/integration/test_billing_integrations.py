"""Billing integration on one warehouse with final invoices: Stripe sync against
stripe-mock (through a recording proxy that can fail requests), reconciliation against
Stripe (over the wire and on recorded answers), signed webhooks to a local receiver,
invoices converted with ref.fx_rates, and shadow billing against two real invoice runs."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from meterlake import tables
from meterlake.billing.close import finalise_due
from meterlake.billing.fx import parse_rates, store_rates
from meterlake.billing.run import run_invoices
from meterlake.billing.shadow import report_document, shadow_run
from meterlake.billing.store import stored_invoices
from meterlake.catalog.parse import parse_catalog_text
from meterlake.catalog.store import store_catalog
from meterlake.config import BillingSystemSettings, LeaseSettings, Settings
from meterlake.ingest.landing import land_file
from meterlake.integrations.signature import verify_signature
from meterlake.integrations.stripe_recon import compare_invoice, stripe_findings
from meterlake.integrations.stripe_sync import stripe_client, sync_invoices
from meterlake.integrations.webhooks import deliver_outbox
from meterlake.pipeline import run_pipeline
from meterlake.warehouse import init_warehouse
from tests.billing_systems import RecordingProxy, WebhookReceiver

CATALOG = b"""
meters:
  - {key: api_calls, event_type: api_call, aggregation: sum}
plans:
  - id: basic
    currency: USD
    charges:
      - {type: flat, amount: "10.00"}
      - {type: usage, meter: api_calls, model: per_unit, unit_price: "0.013"}
customers:
  - {id: mapped, timezone: UTC, billing_anchor: calendar, stripe_customer_id: cus_known,
     subscriptions: [{plan: basic, start: "2026-01-01T00:00:00Z", end: null}]}
  - {id: fresh, timezone: UTC, billing_anchor: calendar,
     subscriptions: [{plan: basic, start: "2026-01-01T00:00:00Z", end: null}]}
  - {id: paris, timezone: Europe/Paris, billing_anchor: calendar, invoice_currency: EUR,
     subscriptions: [{plan: basic, start: "2025-12-31T23:00:00Z", end: null}]}
"""
# A proposed catalog: cheaper usage, a higher flat fee.
PROPOSED = CATALOG.replace(b'amount: "10.00"', b'amount: "12.00"').replace(b"0.013", b"0.011")
RATES = b"date,base,quote,rate\n2026-01-30,USD,EUR,0.9\n2026-01-31,USD,EUR,0.92113\n"
RECEIVED = datetime(2026, 2, 1, 6, tzinfo=UTC)
AS_OF = datetime(2026, 2, 5, tzinfo=UTC)  # January closed on Feb 3 (48 h grace)


def january_file(folder: Path) -> Path:
    """82 API calls per customer in January, in one landing file."""
    events = folder / "january.jsonl"
    events.write_text(
        "".join(
            json.dumps(
                {"event_id": f"{customer}-{n}", "customer_id": customer, "event_type": "api_call",
                 "timestamp": f"2026-01-{10 + n:02d}T12:00:00Z", "quantity": quantity}
            ) + "\n"
            for customer in ("mapped", "fresh", "paris")
            for n, quantity in ((1, 77), (2, 5))
        )
    )  # fmt: skip
    return events


@pytest.fixture(scope="module")
def billed(spark, tmp_path_factory) -> Settings:
    """January's final invoices of three customers (one in EUR) and their outbox events."""
    folder = tmp_path_factory.mktemp("billing_systems")
    settings = replace(
        Settings.load(env={}).with_warehouse(str(folder / "warehouse")), pinned_now=AS_OF
    )
    init_warehouse(spark, settings)
    store_catalog(spark, settings, parse_catalog_text(CATALOG, "catalog.yaml"))
    store_rates(spark, settings, parse_rates(RATES, "rates.csv"))
    land_file(replace(settings, pinned_now=RECEIVED), january_file(folder), "default")
    run_pipeline(spark, settings)
    finalise_due(spark, settings, AS_OF)
    return settings


def with_stripe(settings: Settings, url: str) -> Settings:
    system = BillingSystemSettings(
        stripe_api_key="sk_test_123", stripe_api_base=url, max_attempts=2, retry_base_ms=1
    )
    return replace(settings, billing_system=system)


def test_converted_invoice_records_its_rate_and_is_exact(spark, billed) -> None:
    invoices = {i.customer: i for i in stored_invoices(spark, billed).values()}
    usd, eur = invoices["mapped"], invoices["paris"]
    # 10.00 + 82 × 0.013 = 10.00 + 1.066 → 1.07; total 11.07 USD.
    assert (usd.currency, usd.total, usd.fx) == ("USD", Decimal("11.07"), None)
    # Paris' January ends 2026-01-31T23:00Z, its last day Jan 31: rate 0.92113.
    # 10.00 × 0.92113 = 9.2113 → 9.21; 1.07 × 0.92113 = 0.9856091 → 0.99; sum 10.20;
    # the exact 11.07 × 0.92113 = 10.1969091 → 10.20, so no rounding difference.
    assert (eur.currency, eur.total, eur.fx.rate, str(eur.fx.rate_date)) == (
        "EUR", Decimal("10.20"), Decimal("0.92113"), "2026-01-31",
    )  # fmt: skip
    assert [(li.amount, li.source_amount) for li in eur.lines] == [
        (Decimal("9.21"), Decimal("10.00")),
        (Decimal("0.99"), Decimal("1.07")),
    ]
    assert eur.fx.rounding == Decimal("0")


def test_sync_resumes_after_a_failure_without_sending_anything_twice(
    spark, billed, stripe_mock
) -> None:
    proxy = RecordingProxy(stripe_mock, fail_after=6)
    settings = with_stripe(billed, proxy.url)
    client = stripe_client(settings)
    first = sync_invoices(spark, settings, AS_OF, client=client, sleep=lambda _: None)
    assert first.failed and len(first.synced) + len(first.failed) == 3
    failed_posts = [s for s in proxy.posts() if s.status == 500]
    assert len(failed_posts) >= 2  # retried once, then given up
    sync = {
        (r.invoice_id, r.object_key): r
        for r in tables.read(spark, settings, tables.BILLING_STRIPE_SYNC).collect()
    }
    failed_rows = [r for r in sync.values() if r.status == "failed"]
    assert failed_rows and all(r.attempts == 2 and "injected" in r.last_error for r in failed_rows)
    done_before = {k for k, r in sync.items() if r.status == "synced"}

    proxy.fail_after = None
    start = len(proxy.seen)
    second = sync_invoices(spark, settings, AS_OF, client=client, sleep=lambda _: None)
    assert not second.failed and second.already == len(first.synced)
    resumed = proxy.seen[start:]
    sent_again = {s.idempotency_key for s in resumed if s.method == "POST"}
    recorded = {r.idempotency_key for k, r in sync.items() if k in done_before}
    assert not sent_again & recorded  # nothing that was synced was sent again
    # Every object was created under one key, the same on the first try, its retry and
    # the resumed run; and each key names a meterlake id.
    keys = Counter(s.idempotency_key for s in proxy.posts())
    rows = tables.read(spark, settings, tables.BILLING_STRIPE_SYNC).collect()
    assert {r.idempotency_key for r in rows if r.kind != "sync"} <= set(keys)
    assert all(k and k.startswith("meterlake:") for k in keys)
    by_kind = Counter(r.kind for r in rows if r.status == "synced")
    # 3 invoices × (invoice + 2 lines + finalize), 2 customers created (one is mapped).
    assert by_kind == {"invoice": 3, "invoice_item": 6, "finalize": 3, "customer": 2, "sync": 3}
    customers = [s for s in proxy.posts() if s.path == "/v1/customers"]
    assert len({s.idempotency_key for s in customers}) == 2  # "mapped" uses cus_known
    items = [r for r in rows if r.kind == "invoice_item"]
    paris = [r for r in items if r.customer_id == "paris"]
    assert sorted(r.amount_minor for r in paris) == [99, 921] and paris[0].currency == "EUR"

    third = sync_invoices(spark, settings, AS_OF, client=client, sleep=lambda _: None)
    assert (third.synced, third.failed, third.already, third.requests) == ([], [], 3, 0)
    proxy.close()


def test_reconciliation_against_stripe(spark, billed, stripe_mock) -> None:
    settings = with_stripe(billed, f"http://127.0.0.1:{stripe_mock}")
    # Over the wire: stripe-mock answers fixtures, not what was sent, so every synced
    # invoice is reported as differing — the comparison ran on real Stripe objects.
    wire = stripe_findings(spark, settings)
    assert {f.status for f in wire} == {"mismatch"}
    assert {f.scope.split()[0] for f in wire} == {i for i in stored_invoices(spark, settings)}
    # Recorded answers: what Stripe holds when the sync went through (from the sync table).
    rows = tables.read(spark, settings, tables.BILLING_STRIPE_SYNC).collect()

    def recorded(stripe_id: str) -> dict:
        invoice_id = next(r.invoice_id for r in rows if r.stripe_id == stripe_id)  # its rows
        items = [
            {"id": r.stripe_id, "amount": r.amount_minor, "currency": r.currency.lower(),
             "metadata": {"meterlake_line_id": r.object_key}}
            for r in rows if r.invoice_id == invoice_id and r.kind == "invoice_item"
        ]  # fmt: skip
        (invoice,) = [r for r in rows if r.stripe_id == stripe_id and r.kind == "invoice"]
        return {"total": invoice.amount_minor, "currency": invoice.currency.lower(), "items": items}

    agree = stripe_findings(spark, settings, fetch=recorded)
    assert [(f.status, f.detail) for f in agree] == [("ok", "3 invoices in Stripe agree")]
    invoice = next(i for i in stored_invoices(spark, settings).values() if i.customer == "fresh")
    stripe_id = next(
        r.stripe_id for r in rows if r.invoice_id == invoice.invoice_id and r.kind == "invoice"
    )
    usage_line = invoice.line_id(2)  # flat 10.00, then usage 1.07
    answer = recorded(stripe_id)
    for item in answer["items"]:
        item["amount"] += item["metadata"]["meterlake_line_id"] == usage_line  # one cent more
    found = compare_invoice(invoice, stripe_id, {**answer, "total": answer["total"] + 1})
    assert [(f.status, f.expected, f.actual) for f in found] == [
        ("mismatch", Decimal("1.07"), Decimal("1.08")),  # the line
        ("mismatch", Decimal("11.07"), Decimal("11.08")),  # and the total
    ]
    answer = recorded(stripe_id)
    extra = {"id": "ii_x", "amount": 500, "currency": "usd", "metadata": {}}
    found = compare_invoice(
        invoice, stripe_id, {**answer, "items": [*answer["items"], extra], "total": 1607}
    )
    assert [f.detail for f in found] == [
        "Stripe item ii_x matches no meterlake line (no id)",
        "Stripe invoice total 16.07 USD",
    ]


def test_webhooks_are_signed_retried_and_never_delivered_twice(spark, billed) -> None:
    receiver = WebhookReceiver(fail_first=1)
    system = BillingSystemSettings(
        webhook_urls=(receiver.url,), webhook_secret="whsec_test", retry_base_ms=1
    )
    settings = replace(billed, billing_system=system)
    result = deliver_outbox(spark, settings, sleep=lambda _: None)
    assert (len(result.delivered), result.failed, result.completed_events) == (3, [], 3)
    assert [status for _, _, status in receiver.received] == [500, 200, 200, 200]
    for headers, body, _ in receiver.received:
        assert verify_signature("whsec_test", headers["Meterlake-Signature"], body)
        assert json.loads(body)["event_id"] == headers["Meterlake-Event-Id"]
    delivered = {
        json.loads(body)["customer_id"] for _, body, status in receiver.received if status == 200
    }
    assert delivered == {"mapped", "fresh", "paris"}
    log = tables.read(spark, settings, tables.BILLING_WEBHOOK_DELIVERIES).collect()
    assert sorted((r.attempt, r.status_code, r.delivered) for r in log) == [
        (1, 200, True), (1, 200, True), (1, 500, False), (2, 200, True),
    ]  # fmt: skip
    outbox = tables.read(spark, settings, tables.BILLING_OUTBOX).collect()
    assert all(r.delivered_at is not None for r in outbox)
    again = deliver_outbox(spark, settings, sleep=lambda _: None)
    assert (again.delivered, again.attempts, len(receiver.received)) == ([], 0, 4)
    receiver.close()


def test_shadow_diff_equals_two_independent_invoice_runs(spark, billed, tmp_path) -> None:
    proposed = parse_catalog_text(PROPOSED, "proposed.yaml")
    report = shadow_run(spark, billed, proposed, AS_OF)
    document = report_document(report)
    before = {
        i.customer: i.total for i in run_invoices(spark, billed, AS_OF, dry_run=True).invoices
    }
    # The independent run: the proposed catalog loaded into a copy of the warehouse state.
    other = billed.with_warehouse(str(tmp_path / "warehouse"))
    init_warehouse(spark, other)
    store_catalog(spark, other, proposed)
    store_rates(spark, other, parse_rates(RATES, "rates.csv"))
    land_file(replace(other, pinned_now=RECEIVED), january_file(tmp_path), "default")
    run_pipeline(spark, other)
    after = {i.customer: i.total for i in run_invoices(spark, other, AS_OF, dry_run=True).invoices}
    for entry in document["customers"]:
        customer = entry["customer_id"]
        assert Decimal(entry["old_total"]) == before[customer]
        assert Decimal(entry["new_total"]) == after[customer]
        assert Decimal(entry["difference"]) == after[customer] - before[customer]
    # 12.00 + 82 × 0.011 = 12.902 → 12.90 vs 11.07: +1.83 for the USD customers.
    assert {e["customer_id"]: e["difference"] for e in document["customers"]}["fresh"] == "1.83"
    assert len(stored_invoices(spark, billed)) == 3  # shadow wrote nothing


def fresh_sync_copy(spark, billed: Settings, folder: Path) -> Settings:
    """``billed``'s warehouse copied, with nothing recorded as pushed to Stripe."""
    import shutil

    from meterlake.delta_io import delete_where
    from meterlake.integrations.stripe_sync import JOURNAL_DIR

    copy = billed.with_warehouse(str(folder / "warehouse"))
    shutil.copytree(billed.warehouse, copy.warehouse)
    shutil.rmtree(Path(copy.warehouse) / JOURNAL_DIR, ignore_errors=True)
    shutil.rmtree(Path(copy.warehouse) / "_leases", ignore_errors=True)
    from pyspark.sql import functions as F

    delete_where(spark, copy, tables.BILLING_STRIPE_SYNC, F.lit(True))
    return copy


@pytest.mark.parametrize("kill_after", [2, 6], ids=["item", "invoice"])
def test_sync_killed_between_create_and_answer_resumes_without_a_second_object(
    spark, billed, tmp_path, kill_after
) -> None:
    """SIGKILL right after Stripe performed a create and before the answer reached the
    sync (create 2: the first invoice's first item; create 6: the second invoice), then a
    resume after Stripe forgot every idempotency key: one Stripe invoice per final
    invoice, one item per line, nothing twice (today's main: a second invoice or item)."""
    import signal

    from tests.e2e.cli import cli_env, spawn
    from tests.stateful_stripe import StatefulStripe

    copy = fresh_sync_copy(spark, billed, tmp_path)
    victim = []

    def kill_the_sync(made: int, path: str) -> None:
        if made == kill_after and victim:
            victim[0].send_signal(signal.SIGKILL)
            victim[0].wait()

    stripe = StatefulStripe(after_create=kill_the_sync)
    env = cli_env(
        copy.warehouse,
        METERLAKE_NOW=AS_OF.isoformat(),
        METERLAKE_STRIPE_API_KEY="sk_test_123",
        METERLAKE_STRIPE_API_BASE=stripe.url,
        METERLAKE_LEASE_TTL_SECONDS="3",  # the killed sync's lease lapses 3 s after it died
    )
    victim.append(spawn("stripe", "sync", "--as-of", AS_OF.isoformat(), env=env))
    victim[0].wait(timeout=300)
    assert victim[0].returncode == -signal.SIGKILL, victim[0].stderr.read()
    assert sum(stripe.creates.values()) == kill_after
    stripe.forget_idempotency_keys()

    settings = replace(with_stripe(copy, stripe.url), lease=LeaseSettings(wait_seconds=30))
    resumed = sync_invoices(spark, settings, AS_OF, client=stripe_client(settings))
    # The killed run's progress came back from its journal: what it finished counts.
    assert (len(resumed.synced) + resumed.already, resumed.failed) == (3, [])
    finals = {i.invoice_id: i for i in stored_invoices(spark, copy).values()}
    pushed = Counter(o["metadata"]["meterlake_invoice_id"] for o in stripe.of("invoice"))
    assert pushed == dict.fromkeys(finals, 1)
    items = Counter(o["metadata"]["meterlake_line_id"] for o in stripe.of("invoiceitem"))
    assert items == {
        invoice.line_id(n): 1
        for invoice in finals.values()
        for n in range(1, len(invoice.lines) + 1)
    }
    assert len(stripe.of("customer")) == 2  # "mapped" uses the catalog's cus_known
    assert {o["status"] for o in stripe.of("invoice")} == {"open"}
    again = sync_invoices(spark, settings, AS_OF, client=stripe_client(settings))
    assert (again.synced, again.already, again.requests) == ([], 3, 0)
    stripe.close()
