"""Catalog + events → pipeline → invoices (draft, then final after grace) → late events →
adjustments on the next invoice → export, through the CLI. Every amount below was
computed by hand from the catalog; the comments show the arithmetic.

The commands run through ``meterlake.cli.main`` in this process (a JVM start per command
would cost 15–40 s each and test nothing more: tests/e2e/test_cli.py runs the command as
a process); one-line errors that come before Spark run as processes. Dry runs and reruns
are checked at library level in tests/integration/test_billing_pipeline.py."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import httpx
import pytest

from tests.capture_server import ApiServer
from tests.e2e.cli import cli_env, meterlake, meterlake_here
from tests.e2e.test_cli import one_line_error

CATALOG = """\
meters:
  - {key: api_calls, event_type: api_call, aggregation: sum}
plans:
  - id: starter
    currency: USD
    charges:
      - {type: flat, amount: "30.00"}
      - {type: usage, meter: api_calls, model: graduated,
         tiers: [{up_to: 100, unit_price: "0"}, {up_to: null, unit_price: "0.05"}]}
  - id: growth
    currency: USD
    minimum_commitment: "120.00"
    charges:
      - {type: flat, amount: "90.00"}
      - {type: usage, meter: api_calls, model: volume,
         tiers: [{up_to: 1000, unit_price: "0.04"}, {up_to: null, unit_price: "0.03"}]}
  - id: kw
    currency: KWD
    charges:
      - {type: flat, amount: "12.345"}
      - {type: usage, meter: api_calls, model: per_unit, unit_price: "0.0125"}
customers:
  - id: acme
    timezone: UTC
    billing_anchor: anniversary
    subscriptions:   # upgraded ten days in
      - {plan: starter, start: "2026-01-15T00:00:00Z", end: "2026-01-25T00:00:00Z"}
      - {plan: growth, start: "2026-01-25T00:00:00Z", end: null}
  - id: kuwait
    timezone: Asia/Kuwait
    billing_anchor: calendar
    subscriptions: [{plan: kw, start: "2026-01-01T00:00:00+03:00", end: null}]
"""


def api(n: int, customer: str, when: str, quantity: int) -> str:
    event = {"event_id": f"e{n}", "customer_id": customer, "event_type": "api_call"}
    return json.dumps({**event, "timestamp": when, "quantity": quantity}) + "\n"


@pytest.fixture(scope="module")
def cli(tmp_path_factory, spark):
    folder = tmp_path_factory.mktemp("invoices")
    env = cli_env(folder / "warehouse")

    def run(*args: str, now: str | None = None):
        result = meterlake_here(*(("--now", now) if now else ()), *args, env=env)
        assert result.returncode == 0, result.stderr
        return result.stdout

    (folder / "catalog.yaml").write_text(CATALOG)
    (folder / "first.jsonl").write_text(
        api(1, "acme", "2026-01-20T00:00:00Z", 150)  # starter segment
        + api(2, "acme", "2026-02-01T00:00:00Z", 500)  # growth segment
        + api(3, "kuwait", "2026-01-20T00:00:00Z", 100)
    )
    (folder / "late.jsonl").write_text(
        api(4, "acme", "2026-02-10T00:00:00Z", 600)  # first period, after its close
        + api(5, "acme", "2026-02-20T00:00:00Z", 50)  # second period
    )
    run("init")
    run("catalog", "load", str(folder / "catalog.yaml"))
    run("events", "load", str(folder / "first.jsonl"), now="2026-02-15T06:00:00Z")
    run("pipeline", "run", now="2026-02-15T06:00:00Z")
    return folder, run, env


def by_period(document: dict) -> dict[tuple[str, str], dict]:
    return {(i["customer_id"], i["period_start"]): i for i in document["invoices"]}


def export(cli, spark) -> dict[tuple[str, str], dict]:
    """The export document, made in this process from the CLI's warehouse."""
    from meterlake.billing.export import export_document
    from meterlake.config import Settings

    _, _, env = cli
    return by_period(export_document(spark, Settings.load(env=env)))


def lines(invoice: dict) -> list[tuple]:
    return [(li["kind"], li["plan"], li["quantity"], li["amount"]) for li in invoice["lines"]]


ACME_1 = ("acme", "2026-01-15T00:00:00Z")
ACME_2 = ("acme", "2026-02-15T00:00:00Z")
KUWAIT_JAN = ("kuwait", "2025-12-31T21:00:00Z")
KUWAIT_FEB = ("kuwait", "2026-01-31T21:00:00Z")


def test_draft_before_close_then_final(cli) -> None:
    folder, run, _ = cli
    run("invoices", "run", "--as-of", "2026-02-16T00:00:00Z", now="2026-02-16T00:00:00Z")
    run("invoices", "export", "--format", "json", "--out", str(folder / "out.json"))
    invoices = by_period(json.loads((folder / "out.json").read_text()))
    acme = invoices[ACME_1]
    assert (acme["status"], acme["period_end"]) == ("draft", "2026-02-15T00:00:00Z")
    assert lines(acme) == [
        ("flat", "starter", "1", "9.68"),  # 30.00 × 10 d / 31 d = 9.677…
        ("usage", "starter", "150", "2.50"),  # 100 free, 50 × 0.05
        ("flat", "growth", "1", "60.97"),  # 90.00 × 21 / 31 = 60.967…
        ("usage", "growth", "500", "20.00"),  # volume: 500 × 0.04
        ("commitment", "growth", "1", "0.32"),  # 120 × 21 / 31 = 81.29 − 80.97
    ]
    assert (acme["subtotal"], acme["credits"], acme["total"]) == ("93.47", "0.00", "93.47")
    # Closed 2026-02-02T21:00Z: final, in three decimals; its January event arrived on
    # Feb 15, after the close, so February's invoice will carry it.
    kuwait = invoices[KUWAIT_JAN]
    assert (kuwait["status"], kuwait["currency"], kuwait["total"]) == ("final", "KWD", "12.345")
    assert [li["amount"] for li in kuwait["lines"]] == ["12.345", "0.000"]
    out = run("invoices", "run", "--as-of", "2026-02-18T00:00:00Z", now="2026-02-18T00:00:00Z")
    assert "1 finalised; 1 unchanged" in out


def test_late_usage_adjusts_the_next_invoice_and_finals_never_change(cli, spark) -> None:
    folder, run, _ = cli
    before = export(cli, spark)
    assert before[ACME_1]["status"] == "final"
    run("events", "load", str(folder / "late.jsonl"), now="2026-02-20T00:00:00Z")
    run("pipeline", "run", now="2026-02-20T00:00:00Z")
    as_of = "2026-03-18T00:00:00Z"
    out = run("invoices", "run", "--as-of", as_of, now=as_of)
    assert "written: 2 new" in out
    invoices = export(cli, spark)
    assert invoices[ACME_1] == before[ACME_1]
    second = invoices[ACME_2]
    assert lines(second) == [
        ("flat", "growth", "1", "90.00"),
        ("usage", "growth", "50", "2.00"),
        ("commitment", "growth", "1", "28.00"),  # 120 − 92
        ("adjustment", "growth", "600", "13.00"),  # volume at 1,100: 33.00 − 20.00
        ("adjustment", "growth", "0", "-0.32"),  # the first period's true-up is no longer due
    ]
    assert second["lines"][3]["period_start"] == "2026-01-25T00:00:00Z"
    assert (second["status"], second["total"]) == ("final", "132.68")
    kuwait = invoices[KUWAIT_FEB]
    assert [li["amount"] for li in kuwait["lines"]] == ["12.345", "0.000", "1.250"]  # 100 × 0.0125
    assert kuwait["total"] == "13.595"
    line_id = second["lines"][3]["line_id"]
    trace = run("lineage", "--invoice-line", line_id)
    assert "late.jsonl" not in trace  # landing keeps its own names: the batch file is shown
    assert "1 event(s) from 1 landing file(s)" in trace and "matches the line" in trace
    # The same trace through the API, for a tenant-scoped finance key.
    key = run("keys", "create", "--tenant", "default", "--role", "finance").strip()
    server = ApiServer(str(folder / "warehouse"), METERLAKE_ACCESS_CONTROL="on").start()
    try:
        url = f"{server.url}/v1/invoices/{second['invoice_id']}/lineage"
        auth = {"Authorization": f"Bearer {key}"}
        traced = httpx.get(url, params={"line_id": line_id}, headers=auth, timeout=300)
        assert traced.status_code == 200, traced.text
        report = traced.json()["report"]  # the CLI's, and where the events went
        named = "  full event list (1 event(s)) written to events.jsonl"
        assert [r for r in report if r != named] == trace.strip().splitlines() and named in report
        assert [e["quantity"] for e in traced.json()["events"]] == ["600.000000000"]  # exact
        wrong = httpx.get(url, params={"line_id": "in_elsewhere-001"}, headers=auth)
        assert wrong.status_code == 400 and "is not a line of invoice" in wrong.text
        assert httpx.get(url, params={"line_id": line_id}).status_code == 401
    finally:
        server.stop()
    checked = run("reconcile", "--as-of", as_of, now=as_of)
    assert "result: all checks agree" in checked and "post_invoice" in checked


def test_usage_show_labels_an_estimate_until_the_invoice_is_final(cli) -> None:
    _, run, _ = cli
    out = run(
        "usage", "show", "--customer", "acme", "--window", "tumbling:1d", now="2026-03-20T00:00:00Z"
    )
    assert "ESTIMATE" in out and "estimated total" in out and "data fresh as of" in out
    assert "api_calls" in out and "tumbling windows" in out
    # acme's first period (Jan 15 → Feb 15) was finalised by the tests above
    final = run("usage", "show", "--customer", "acme", "--as-of", "2026-02-01T00:00:00Z")
    assert "FINAL: invoice" in final and "ESTIMATE" not in final


def test_bad_invoice_flags_are_one_line_errors(cli) -> None:
    _, _, env = cli
    started = time.monotonic()
    line = one_line_error(meterlake("invoices", "run", "--as-of", "yesterday", env=env))
    assert "--as-of" in line
    line = one_line_error(
        meterlake("usage", "show", "--customer", "acme", "--window", "hopping", env=env)
    )
    assert "--window" in line
    assert time.monotonic() - started < 10  # refused before a JVM starts (15 s or more)
    line = one_line_error(  # found in the catalog, so after Spark started
        meterlake_here(
            "invoices", "run", "--as-of", "2026-02-18T00:00:00Z", "--customer", "nobody", env=env
        )
    )
    assert "--customer" in line and "nobody" in line


def test_roles_and_tenants_are_enforced_and_reads_are_logged(cli, spark) -> None:
    from meterlake import tables
    from meterlake.config import Settings

    folder, run, env = cli
    analyst, finance = (run("keys", "create", "--tenant", "default", "--role", r).strip()
                        for r in ("analyst", "finance"))  # fmt: skip
    enforced = {**env, "METERLAKE_ACCESS_CONTROL": "on"}

    def as_(key: str | None, *args: str):
        return meterlake_here(*args, env={**enforced, "METERLAKE_KEY": key or ""})

    refused = [
        (None, "usage", "show", "--customer", "acme"),
        (analyst, "invoices", "run", "--as-of", "2026-02-18T00:00:00Z"),
        (analyst, "usage", "show", "--customer", "acme", "--tenant", "other"),
        (finance, "events", "load", str(folder / "late.jsonl")),
        (finance, "reconcile", "--as-of", "2026-02-18T00:00:00Z"),  # spans every tenant
        # a pinned clock is the operator's: a finance key cannot finalise a period early
        (finance, "--now", "2027-01-01T00:00:00Z", "invoices", "run", "--as-of",
         "2026-12-31T00:00:00Z"),
        (analyst, "--now", "2026-02-21T00:00:00Z", "usage", "show", "--customer", "acme"),
    ]  # fmt: skip
    for key, *args in refused:
        result = as_(key, *args)
        assert result.returncode == 4 and result.stderr.count("\n") == 1, (args, result.stderr)
    enforced["METERLAKE_TEST_CLOCK"] = "on"  # a test warehouse may let keyed callers pin it
    shown = as_(analyst, "--now", "2026-02-21T00:00:00Z", "usage", "show", "--customer", "acme")
    assert shown.returncode == 0, shown.stderr
    settings = Settings.load(env=env)
    log = tables.read(spark, settings, tables.AUDIT_QUERY_LOG).collect()
    # earlier tests read as the operator, and as finance through the API
    assert {r.role for r in log} <= {"operator", "analyst", "finance"}
    (logged,) = [r for r in log if r.role == "analyst"]  # refused commands logged nothing
    assert (logged.role, logged.key_tenant, logged.tenant, logged.command) == (
        "analyst", "default", "default", "usage show",
    )  # fmt: skip
    assert logged.rows == len(shown.stdout.splitlines())
    assert json.loads(logged.arguments)["customer"] == "acme"
    # the read said --now 2026-02-21; the log says when it really happened
    assert abs((datetime.now(UTC).replace(tzinfo=None) - logged.at).total_seconds()) < 600


def test_final_invoices_go_to_stripe_once(cli, stripe_mock) -> None:
    _, _, env = cli
    stripe = {
        **env,
        "METERLAKE_STRIPE_API_KEY": "sk_test_123",
        "METERLAKE_STRIPE_API_BASE": f"http://127.0.0.1:{stripe_mock}",
    }
    now = ("--now", "2026-03-20T00:00:00Z")
    synced = meterlake_here(*now, "stripe", "sync", "--as-of", "2026-03-18T00:00:00Z", env=stripe)
    assert synced.returncode == 0, synced.stderr
    # acme's two periods (USD) and kuwait's two (KWD, three decimals) are final.
    assert "4 invoice(s) synced, 0 failed, 0 already in Stripe" in synced.stdout


def test_replay_rebuilds_every_invoice_from_landing(cli, spark, tmp_path) -> None:
    """Disaster recovery: a new warehouse from this one's landing zone and records; its
    three invoice runs replayed (one finalising after grace, one with late events)."""
    from meterlake import tables
    from meterlake.config import Settings

    _, run, _ = cli
    target = tmp_path / "replayed"
    out = run("replay", "--to", str(target))
    assert "replay: 2 landing batches" in out and "3 invoice runs" in out
    assert "invoices: all 4 equal to the source's, to the cent" in out
    synced = tables.read(
        spark, Settings.load(env={}).with_warehouse(str(target)), tables.BILLING_STRIPE_SYNC
    )
    assert synced.where("status = 'synced'").count() > 0  # what Stripe was sent is remembered
