"""The ``meterlake`` command: parses flags, calls one library function, prints the outcome.

Commands that do not need Spark (``--help``, ``catalog validate``, ``events load``) never
start a JVM. Errors a user can fix are one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from meterlake.clock import format_instant
from meterlake.config import SOURCES, Settings
from meterlake.errors import ConfigError, MeterlakeError, root_cause

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from meterlake.audit.access import Principal

Command = Callable[[argparse.Namespace, Settings], int]
WAIT_HELP = (
    "wait up to this long for another writer's lease (default $METERLAKE_LEASE_WAIT_SECONDS"
    " or 0: exit 75 at once, naming the holder)"
)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more seconds")
    return value


def _spark(settings: Settings, *, kafka: bool = False) -> SparkSession:
    from meterlake.spark import build_session

    return build_session(settings, kafka=kafka)


def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.warehouse import init_warehouse

    for spec, created in init_warehouse(_spark(settings), settings):
        print(
            f"{'created' if created else 'exists '} {spec.qualified_name:<27} {spec.path(settings)}"
        )
    return 0


def cmd_catalog_validate(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.catalog.parse import load_catalog_file

    catalog = load_catalog_file(args.file)
    print(
        f"{args.file}: valid — {len(catalog.meters)} meters, {len(catalog.plans)} plans,"
        f" {len(catalog.customers)} customers"
    )
    return 0


def cmd_catalog_load(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.catalog.parse import load_catalog_file
    from meterlake.catalog.store import store_catalog
    from meterlake.warehouse import require_tables

    catalog = load_catalog_file(args.file)
    spark = _spark(settings)
    require_tables(spark, settings)
    result = store_catalog(spark, settings, catalog)
    if result.changed:
        print(f"catalog version {result.version} loaded from {args.file}")
    else:
        print(f"{args.file}: identical to current catalog version {result.version}; nothing loaded")
    return 0


def cmd_events_load(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.ingest.landing import land_file

    result = land_file(settings, args.file, args.tenant or settings.default_tenant)
    batch = result.batch
    if result.already_loaded:
        print(
            f"{args.file}: these bytes were already landed as batch {batch.batch_id}"
            f" at {batch.received_at}; skipped"
        )
    else:
        print(
            f"landed {args.file} as batch {batch.batch_id}: {batch.lines} lines,"
            f" {batch.bytes} bytes, sha256 {batch.sha256}, received {batch.received_at}"
        )
    return 0


def _print_tally(tally, started: float) -> None:
    print(
        f"pipeline: {tally.batches} landing batch(es), {tally.events_read} events read →"
        f" {tally.bronze_rows} into bronze, {tally.duplicates} duplicates dropped,"
        f" {tally.quarantined_total} quarantined, {tally.blank_lines} blank lines skipped"
        f" ({time.monotonic() - started:.1f}s)"
    )
    for reason, count in sorted(tally.quarantined.items()):
        print(f"  quarantined {reason}: {count}")
    for altered in tally.altered:
        print(f"  ALTERED batch {altered.batch_id}: {altered.detail}")


def cmd_pipeline_run(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.pipeline import run_pipeline

    started = time.monotonic()
    spark = _spark(settings, kafka=args.source == "kafka")
    result = run_pipeline(spark, settings, source=args.source)
    _print_tally(result.tally, started)
    if result.rollups is not None:
        rollups = result.rollups
        how = "rebuilt" if rollups.rebuilt else "up to date"
        print(
            f"rollups: silver and gold {how} at bronze version {rollups.bronze_version}"
            f" ({rollups.batches} incremental batch(es), {rollups.days} customer-day(s))"
        )
    return 0


def cmd_pipeline_stream(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.pipeline import run_continuous

    started = time.monotonic()
    source = f"Kafka topic {settings.kafka.topic}" if args.source == "kafka" else "landing"
    print(
        f"streaming {source} → bronze every {settings.stream_interval_seconds}s, rollups every"
        f" {settings.rollup_interval_seconds}s, usage published per batch; SIGTERM stops"
    )
    spark = _spark(settings, kafka=args.source == "kafka")
    tally = run_continuous(spark, settings, source=args.source)
    _print_tally(tally, started)
    return 0


def cmd_quarantine_replay(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.ingest.quarantine_replay import replay_quarantine

    tally = replay_quarantine(_spark(settings), settings)
    print(
        f"quarantine replay: {tally.events_read} row(s) replayed →"
        f" {tally.bronze_rows} admitted, {tally.duplicates} duplicates,"
        f" {tally.quarantined_total} rejected again"
    )
    return 0


def cmd_quarantine_quality(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.ingest.quality_quarantine import quarantine_failing

    moved = quarantine_failing(_spark(settings), settings)
    print(
        f"quarantine quality: {moved} bronze row(s) failing the bronze suite moved to"
        " quarantine (reason quality_failed); `meterlake quarantine replay` re-derives them"
    )
    return 0


def _instant(text: str, flag: str):
    from meterlake.clock import parse_instant

    return parse_instant(text, flag)


def cmd_invoices_run(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.billing.report import run_report
    from meterlake.billing.run import run_invoices

    as_of = _instant(args.as_of, "--as-of")  # a bad flag is refused before Spark starts
    run = run_invoices(
        _spark(settings),
        settings,
        as_of,
        customers=[args.customer] if args.customer else None,
        tenant=args.tenant,
        dry_run=args.dry_run,
        reason=args.reason,
    )
    print("\n".join(run_report(run, lines=args.lines or args.dry_run)))
    return 0


def cmd_invoices_export(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.billing.export import write_export

    spark = _spark(settings)
    count = write_export(spark, settings, args.out, args.tenant)
    _log_read(args, settings, spark, count)
    print(f"exported {count} invoice(s) to {args.out}")
    return 0


def cmd_usage_show(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.billing.estimate import estimate_report
    from meterlake.rollups.windows import parse_window

    as_of = _instant(args.as_of, "--as-of") if args.as_of else settings.now()
    if args.window not in (None, "period"):
        parse_window(args.window)  # a bad flag is refused before Spark starts
    spark = _spark(settings)
    if args.format == "json":
        from meterlake.billing.current_usage import pull_document

        document = pull_document(spark, settings, args.customer, as_of, args.tenant)
        _log_read(args, settings, spark, 1)
        print(json.dumps(document, indent=2))
        return 0
    lines = estimate_report(
        spark,
        settings,
        args.customer,
        as_of,
        tenant=args.tenant,
        window=args.window,
        meter=args.meter,
    )
    _log_read(args, settings, spark, len(lines))
    print("\n".join(lines))
    return 0


def cmd_lineage(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.billing.lineage import lineage_report

    spark = _spark(settings)
    lines = lineage_report(
        spark, settings, args.invoice_line, tenant=args.tenant, out_file=args.out
    )
    _log_read(args, settings, spark, len(lines))
    print("\n".join(lines))
    return 0


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.reconcile.run import reconcile, report

    as_of = _instant(args.as_of, "--as-of")
    if args.stripe and not settings.billing_system.stripe_api_key:
        raise ConfigError("--stripe: set METERLAKE_STRIPE_API_KEY (and METERLAKE_STRIPE_API_BASE)")
    spark = _spark(settings)
    run = reconcile(spark, settings, as_of, stripe=args.stripe)
    _log_read(args, settings, spark, len(run.findings))
    print("\n".join(report(run)))
    return 3 if run.mismatches else 0


def cmd_stripe_sync(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.integrations.stripe_sync import stripe_client, sync_invoices

    as_of = _instant(args.as_of, "--as-of")
    client = stripe_client(settings)  # a missing key stops here, before the JVM
    started = time.monotonic()
    result = sync_invoices(_spark(settings), settings, as_of, client=client, progress=print)
    print(
        f"stripe sync as of {format_instant(as_of)}: {len(result.synced)} invoice(s) synced,"
        f" {len(result.failed)} failed, {result.already} already in Stripe;"
        f" {result.requests} request(s) to {settings.billing_system.stripe_api_base}"
        f" ({time.monotonic() - started:.1f}s)"
    )
    for invoice_id, error in result.failed:
        print(f"  not synced {invoice_id}: {error} (the next run resumes it)")
    return 3 if result.failed else 0


def cmd_webhooks_deliver(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.integrations.webhooks import deliver_outbox

    if not settings.billing_system.webhook_urls:
        raise ConfigError("METERLAKE_WEBHOOK_URLS: no endpoint configured")
    result = deliver_outbox(_spark(settings), settings, progress=print)
    print(
        f"webhooks: {len(result.delivered)} delivery(ies), {len(result.failed)} failed,"
        f" {result.completed_events} event(s) now delivered everywhere,"
        f" {result.attempts} attempt(s) logged in billing.webhook_deliveries"
    )
    return 3 if result.failed else 0


def cmd_fx_load(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.billing.fx import load_rates_file, store_rates

    rates = load_rates_file(args.file)  # a bad row stops here, before the JVM
    version, changed = store_rates(_spark(settings), settings, rates)
    pairs = ", ".join(f"{b}→{q}" for b, q in sorted(rates.by_pair))
    if changed:
        print(f"fx rates version {version} loaded from {args.file}: {pairs}")
    else:
        print(f"{args.file}: identical to current fx rates version {version}; nothing loaded")
    return 0


def cmd_shadow(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.billing.shadow import report_lines, shadow_run
    from meterlake.catalog.parse import load_catalog_file

    catalog = load_catalog_file(args.catalog)
    as_of = _instant(args.as_of, "--as-of")
    report = shadow_run(_spark(settings), settings, catalog, as_of)
    print("\n".join(report_lines(report, args.out)))
    return 0


def cmd_tier_run(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.tiering.move import summary, tier_run

    as_of = _instant(args.as_of, "--as-of")  # a bad flag is refused before Spark starts
    report = tier_run(_spark(settings), settings, as_of)
    print("\n".join(summary(report)))
    return 0


def cmd_tier_lifecycle(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.tiering.lifecycle import apply_lifecycle

    for rule in apply_lifecycle(settings, basic=args.basic):
        print(f"{rule['ID']}: {json.dumps({k: v for k, v in rule.items() if k != 'ID'})}")
    return 0


def cmd_gdpr_export(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.audit.subject_export import subject_document, write_subject

    spark = _spark(settings)
    tenant = args.tenant or settings.default_tenant
    document = subject_document(spark, settings, tenant, customer=args.customer, user=args.user)
    events = write_subject(document, args.out)
    _log_read(args, settings, spark, events)
    print(f"{args.out}: {events} event(s), {len(document['quarantined'])} quarantined line(s)")
    return 0


def cmd_gdpr_erase(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.audit.customer_erasure import erase_customer
    from meterlake.audit.erasure import erase_user

    erase = erase_customer if args.customer else erase_user
    erasure = erase(
        _spark(settings),
        settings,
        args.tenant or settings.default_tenant,
        args.customer or args.user,
        requested_by=args.principal.key_id,
        reason=args.reason,
    )
    kind = "customer" if args.customer else "user"
    print(f"erasure {erasure.erasure_id}: {kind} replaced by {erasure.pseudonym}")
    for table, rows in erasure.rows.items():
        print(f"  {table:<24}{rows:>8} row(s)")
    print(f"  landing files rewritten {len(erasure.files):>8}")
    return 0


def cmd_gdpr_verify(args: argparse.Namespace, settings: Settings) -> int:
    import hashlib

    from meterlake.audit.erasure_verify import report, verify_erased

    spark = _spark(settings)
    tenant = args.tenant or settings.default_tenant
    kind, subject = ("customer", args.customer) if args.customer else ("user", args.user)
    verification = verify_erased(spark, settings, tenant, subject, kind)
    print("\n".join(report(verification, f"{kind} {subject!r} of tenant {tenant}")))
    # Logged, but not with the identifier the check is about: an erasure removed it there.
    setattr(args, kind, "sha256:" + hashlib.sha256(subject.encode()).hexdigest()[:16])
    _log_read(args, settings, spark, len(verification.copies))
    return 0 if verification.clean else 3


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.recovery.replay import replay

    source = settings.with_warehouse(args.source) if args.source else settings
    started = time.monotonic()
    result = replay(_spark(settings), source, settings.with_warehouse(args.to))
    _print_tally(result.tally, started)
    print(
        f"replay: {result.landing.batches} landing batches ({result.landing.bytes / 1e6:.1f} MB),"
        f" {result.keys} keys, {result.runs} invoice runs into {args.to}"
    )
    if result.differences:
        print(f"invoices: {len(result.differences)} of {result.invoices} differ from the source:")
        for line in result.differences:
            print(f"  {line}")
        return 3
    print(f"invoices: all {result.invoices} equal to the source's, to the cent")
    return 0


def cmd_backup_create(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.recovery.backup import create_backup

    made = create_backup(_spark(settings), settings, settings.with_warehouse(args.to))
    print(
        f"backup of {made.source} at {made.created_at}: {len(made.versions)} tables,"
        f" {made.landing_batches} landing batches in {args.to}"
    )
    return 0


def cmd_backup_verify(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.recovery.backup import verify_backup

    checked = verify_backup(_spark(settings), settings, settings.with_warehouse(args.backup))
    print(
        f"backup {args.backup}: {checked.tables} tables, {checked.partitions} partitions,"
        f" {checked.rows} rows, {checked.landing_files} landing files checked;"
        f" {checked.newer_batches} batch(es) landed since"
    )
    for problem in checked.problems:
        print(f"  PROBLEM {problem}")
    print("backup verified" if not checked.problems else f"{len(checked.problems)} problem(s)")
    return 3 if checked.problems else 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.monitoring.health import collect

    health = collect(_spark(settings), settings)
    firing = health.firing()
    if args.format == "prometheus":
        _write_or_print(health.prometheus(), args.out)
    else:
        lines = [f"meterlake status of {settings.warehouse} at {format_instant(health.at)}"]
        for s in health.samples:
            labels = ",".join(f"{k}={v}" for k, v in s.labels)
            name = f"{s.name}{{{labels}}}" if labels else s.name
            lines.append(f"  {name:<52} {s.value:>14g}  {s.help}")
        lines.append(f"alerts firing: {len(firing)}")
        for rule, value in firing:
            lines.append(
                f"  {rule.severity.upper()} {rule.alert}: {rule.metric} = {value:g}"
                f" ({rule.op} {rule.threshold:g}): {rule.summary}"
            )
        _write_or_print("\n".join(lines) + "\n", args.out)
    return 3 if any(rule.severity == "critical" for rule, _ in firing) else 0


def cmd_alert_rules(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.monitoring.rules import prometheus_rules

    _write_or_print(prometheus_rules(), args.out)
    return 0


def _write_or_print(text: str, out: str | None) -> None:
    if out:
        Path(out).write_text(text)
    else:
        print(text, end="")


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.audit.access import create_key

    expires = _instant(args.expires, "--expires") if args.expires else None
    secret, principal = create_key(
        settings, args.tenant, args.role, by=args.principal, expires_at=expires
    )
    print(secret)
    until = f", expires {format_instant(expires)}" if principal.expires_at else ""
    print(
        f"key {principal.key_id}: role {principal.role}, tenant {principal.tenant}{until}"
        " (shown once; only its hash is stored)",
        file=sys.stderr,
    )
    return 0


def cmd_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.analytics.table import text_table
    from meterlake.audit.access import list_keys

    columns = ["key_id", "tenant", "role", "status", "created_at", "created_by", "expires_at"]
    rows = [
        (
            r.principal.key_id, r.principal.tenant, r.principal.role, r.status,
            format_instant(r.created_at), r.created_by,
            format_instant(r.principal.expires_at) if r.principal.expires_at else "never",
        )
        for r in list_keys(settings, args.principal, args.tenant)
    ]  # fmt: skip
    print("\n".join(text_table(columns, rows)))
    return 0


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.audit.access import revoke_key

    record = revoke_key(settings, args.key_id, args.principal, args.tenant)
    when = format_instant(record.revoked_at) if record.revoked_at else "?"
    print(f"key {record.principal.key_id} revoked at {when} by {record.revoked_by}")
    return 0


def _log_read(args: argparse.Namespace, settings: Settings, spark: SparkSession, rows: int) -> None:
    """Record a read (who, what, which tenant, rows) in audit.query_log."""
    from meterlake.audit.query_log import log_query

    internal = {"func", "action", "command", "key", "principal"}
    arguments = {k: v for k, v in vars(args).items() if k not in internal and v is not None}
    tenant = getattr(args, "tenant", None)
    log_query(spark, settings, args.principal, args.command, arguments, tenant, rows)


def _authorize(args: argparse.Namespace, settings: Settings, principal: Principal | None) -> None:
    """Check the caller against the command (no-op unless access control is on): its key,
    or the ``principal`` the server authenticated; a tenant-scoped key limits commands that
    take ``--tenant`` to its tenant."""
    from meterlake.audit.access import LOCAL_OPERATOR, AccessDenied, authenticate, authorize

    if principal is None:
        principal = authenticate(settings, args.key or os.environ.get("METERLAKE_KEY"))
    args.principal = principal
    if settings.pinned_now is not None and principal != LOCAL_OPERATOR and not settings.test_clock:
        raise AccessDenied(
            "--now: only the operator pins the clock (access control off), or a test"
            " warehouse with METERLAKE_TEST_CLOCK=on"
        )
    scopable = hasattr(args, "tenant")
    tenant = authorize(principal, args.action, getattr(args, "tenant", None), scopable=scopable)
    if scopable:
        args.tenant = tenant


def cmd_views_refresh(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.analytics.views import refresh_views

    refresh_views(_spark(settings), settings)
    return 0


def cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.analytics.sql import run_query
    from meterlake.analytics.table import text_table

    spark = _spark(settings)
    result = run_query(spark, settings, args.query, args.tenant, limit=args.limit)
    _log_read(args, settings, spark, len(result.rows))
    if args.format == "json":
        print(json.dumps([r.asDict() for r in result.rows], default=str, indent=2))
    else:
        print("\n".join(text_table(result.columns, result.rows)))
    if result.truncated:
        print(f"(first {args.limit} rows; --limit shows more)", file=sys.stderr)
    return 0


def cmd_anomalies(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.analytics.anomalies import detect_anomalies, report

    since = _instant(args.since, "--since")  # a bad flag is refused before Spark starts
    spark = _spark(settings)
    tuning = {"k": args.k, "baseline_hours": args.baseline_hours}
    run = detect_anomalies(
        spark,
        settings,
        since,
        tenant=args.tenant,
        **{name: value for name, value in tuning.items() if value is not None},
    )
    _log_read(args, settings, spark, len(run.found))
    print("\n".join(report(run)))
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.capture.app import serve
    from meterlake.server_mode import add_command_routes

    serve(settings, args.host, args.port, add_command_routes)
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from meterlake.demo import run_demo

    run_demo(_spark(settings), settings)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meterlake", description="Usage metering and billing on a Delta lakehouse."
    )
    parser.add_argument(
        "--warehouse", help="warehouse root (default $METERLAKE_WAREHOUSE or ./warehouse)"
    )
    parser.add_argument("--now", help="pin the current instant (ISO 8601 with offset)")
    parser.add_argument("--key", help="access key (default $METERLAKE_KEY; see keys create)")
    parser.add_argument(
        "--server",
        help="run the command on this meterlake serve (default $METERLAKE_SERVER; the key"
        " is the only credential this machine needs)",
    )
    parser.add_argument(
        "--master", help="Spark master (default $METERLAKE_SPARK_MASTER or local[2])"
    )
    parser.add_argument("--wait", type=_seconds, metavar="SECONDS", help=WAIT_HELP)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str,
        func: Command,
        help_text: str,
        parent=commands,
        *,
        action: str | None,
        writes: bool = False,
    ) -> argparse.ArgumentParser:
        """A command; ``action`` is what access control checks (None: reads no data);
        ``writes``: it takes a writer lease, so it accepts ``--wait`` too."""
        sub = parent.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(func=func, action=action, command=sub.prog.removeprefix("meterlake "))
        if writes:
            sub.add_argument(
                "--wait",
                type=_seconds,
                metavar="SECONDS",
                default=argparse.SUPPRESS,
                help=WAIT_HELP,
            )
        return sub

    add("init", cmd_init, "create all tables (idempotent)", action="warehouse.admin")
    catalog = commands.add_parser("catalog", help="validate or load the catalog")
    catalog_commands = catalog.add_subparsers(dest="catalog_command", required=True)
    add(
        "validate",
        cmd_catalog_validate,
        "check a catalog file (no Spark)",
        catalog_commands,
        action=None,
    ).add_argument("file")
    add(
        "load",
        cmd_catalog_load,
        "load a catalog file as a new version",
        catalog_commands,
        action="warehouse.admin",
        writes=True,
    ).add_argument("file")
    events = commands.add_parser("events", help="land usage events")
    event_commands = events.add_subparsers(dest="events_command", required=True)
    load = add(
        "load",
        cmd_events_load,
        "append one immutable landing batch, received now",
        event_commands,
        action="events.write",
    )
    load.add_argument("file")
    load.add_argument("--tenant", help="tenant the events belong to (default: default)")
    pipeline = commands.add_parser("pipeline", help="landing (or Kafka) → bronze → gold")
    pipeline_commands = pipeline.add_subparsers(dest="pipeline_command", required=True)
    for name, func, help_text in (
        ("run", cmd_pipeline_run, "process everything landed (or in the topic), then stop"),
        ("stream", cmd_pipeline_stream, "keep processing until SIGTERM"),
    ):
        add(
            name, func, help_text, pipeline_commands, action="events.write", writes=True
        ).add_argument(
            "--source",
            choices=SOURCES,
            default="landing",
            help="landing batches (default), or the Kafka topic $METERLAKE_KAFKA_TOPIC at"
            " $METERLAKE_KAFKA_BOOTSTRAP, archived into landing as it is read",
        )
    quarantine = commands.add_parser("quarantine", help="work with quarantined events")
    quarantine_commands = quarantine.add_subparsers(dest="quarantine_command", required=True)
    add(
        "replay",
        cmd_quarantine_replay,
        "re-admit unknown_customer rows whose customer now exists and quality_failed rows",
        quarantine_commands,
        action="events.write",
        writes=True,
    )
    add(
        "quality",
        cmd_quarantine_quality,
        "move bronze rows failing the bronze data-quality suite to quarantine",
        quarantine_commands,
        action="events.write",
        writes=True,
    )
    invoices = commands.add_parser("invoices", help="compute and export invoices")
    invoice_commands = invoices.add_subparsers(dest="invoices_command", required=True)
    run = add(
        "run",
        cmd_invoices_run,
        "invoice every ended period as of an instant",
        invoice_commands,
        action="invoices.run",
        writes=True,
    )
    run.add_argument("--as-of", required=True, help="ISO 8601 instant with offset")
    run.add_argument("--customer", help="only this customer")
    run.add_argument("--tenant", help="only customers of this tenant")
    run.add_argument("--dry-run", action="store_true", help="print, write nothing")
    run.add_argument("--reason", help="why this run; kept with it in billing.runs")
    run.add_argument("--lines", action="store_true", help="print each invoice's lines")
    export = add(
        "export",
        cmd_invoices_export,
        "write every invoice's current state",
        invoice_commands,
        action="invoices.read",
    )
    export.add_argument("--format", choices=["json"], default="json")
    export.add_argument("--out", required=True, help="file to write")
    export.add_argument("--tenant", help="only this tenant's invoices (a tenant key: its own)")
    usage = commands.add_parser("usage", help="current-period usage")
    usage_commands = usage.add_subparsers(dest="usage_command", required=True)
    show = add(
        "show",
        cmd_usage_show,
        "current-period usage and an estimated amount",
        usage_commands,
        action="usage.read",
    )
    show.add_argument("--customer", required=True)
    show.add_argument("--tenant", help="the customer's tenant (needed when ids repeat)")
    show.add_argument("--as-of", help="ISO 8601 instant (default: now)")
    show.add_argument(
        "--window",
        help="also list usage in windows: tumbling:1h, sliding:1h/15m, session:30m or period",
    )
    show.add_argument("--meter", help="only this meter in --window output")
    show.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="json: the period's usage and priced lines for a billing system that pulls",
    )
    lineage = add(
        "lineage",
        cmd_lineage,
        "trace an invoice line to aggregates, events and landing files",
        action="lineage.read",
    )
    lineage.add_argument("--invoice-line", required=True, metavar="ID")
    lineage.add_argument("--tenant", help="the line's tenant (a tenant key implies its own)")
    lineage.add_argument("--out", help="write every event behind the line here (JSON lines)")
    recon = add(
        "reconcile",
        cmd_reconcile,
        "check layers and invoices agree (exit 3 on a mismatch)",
        action="reconcile.run",
    )
    recon.add_argument("--as-of", required=True, help="ISO 8601 instant with offset")
    recon.add_argument(
        "--stripe", action="store_true", help="also compare synced invoices with Stripe"
    )
    stripe = commands.add_parser("stripe", help="push final invoices to Stripe")
    stripe_commands = stripe.add_subparsers(dest="stripe_command", required=True)
    add(
        "sync",
        cmd_stripe_sync,
        "push final invoices not yet in Stripe (exit 3 when some failed)",
        stripe_commands,
        action="billing.sync",
        writes=True,
    ).add_argument("--as-of", required=True, help="ISO 8601 instant with offset")
    webhooks = commands.add_parser("webhooks", help="signed billing-period-closed webhooks")
    webhook_commands = webhooks.add_subparsers(dest="webhooks_command", required=True)
    add(
        "deliver",
        cmd_webhooks_deliver,
        "send undelivered outbox events to METERLAKE_WEBHOOK_URLS (exit 3 on failures)",
        webhook_commands,
        action="billing.sync",
    )
    fx = commands.add_parser("fx", help="exchange rates for invoice_currency customers")
    fx_commands = fx.add_subparsers(dest="fx_command", required=True)
    add(
        "load",
        cmd_fx_load,
        "load a rate file (CSV: date,base,quote,rate) as a new ref.fx_rates version",
        fx_commands,
        action="fx.load",
        writes=True,
    ).add_argument("file")
    shadow = add(
        "shadow",
        cmd_shadow,
        "price the same usage under another catalog; writes nothing",
        action="invoices.read",
    )
    shadow.add_argument("--catalog", required=True, metavar="NEW.yaml")
    shadow.add_argument("--as-of", required=True, help="ISO 8601 instant with offset")
    shadow.add_argument("--out", help="write the JSON report (every line) here")
    tier = commands.add_parser("tier", help="hot/warm/cold tiering")
    tier_commands = tier.add_subparsers(dest="tier_command", required=True)
    add(
        "run",
        cmd_tier_run,
        "move data between tiers by age: copy, verify, log, then delete",
        tier_commands,
        action="warehouse.admin",
        writes=True,
    ).add_argument("--as-of", required=True, help="ISO 8601 instant with offset")
    add(
        "lifecycle",
        cmd_tier_lifecycle,
        "apply infra/lifecycle.json to the cold tier's bucket (boto3; no Spark)",
        tier_commands,
        action="warehouse.admin",
    ).add_argument(
        "--basic",
        action="store_true",
        help="expiration rules only (servers without archive classes, e.g. MinIO)",
    )
    gdpr = commands.add_parser("gdpr", help="data-subject export and erasure")
    gdpr_commands = gdpr.add_subparsers(dest="gdpr_command", required=True)
    subject_export = add(
        "export",
        cmd_gdpr_export,
        "all data of one customer or user, every tier, as JSON",
        gdpr_commands,
        action="gdpr.export",
    )
    who = subject_export.add_mutually_exclusive_group(required=True)
    who.add_argument("--customer", metavar="ID")
    who.add_argument("--user", metavar="ID")
    subject_export.add_argument("--tenant", help="the subject's tenant (default: default)")
    subject_export.add_argument("--out", required=True, help="file to write")
    erase = add(
        "erase",
        cmd_gdpr_erase,
        "replace a user's or a settled customer's id by a pseudonym in every tier (totals"
        " unchanged)",
        gdpr_commands,
        action="gdpr.erase",
        writes=True,
    )
    subject = erase.add_mutually_exclusive_group(required=True)
    subject.add_argument("--user", metavar="ID")
    subject.add_argument(
        "--customer", metavar="ID", help="out of the catalog, its invoices final and synced"
    )
    erase.add_argument("--tenant", help="the subject's tenant (default: default)")
    erase.add_argument("--reason", help="why (e.g. the request's reference); kept in the record")
    verify = add(
        "verify",
        cmd_gdpr_verify,
        "scan every table, superseded file, landing file and backup for a user or customer;"
        " exit 3 while a copy remains",
        gdpr_commands,
        action="gdpr.export",
    )
    subject = verify.add_mutually_exclusive_group(required=True)
    subject.add_argument("--user", metavar="ID")
    subject.add_argument("--customer", metavar="ID")
    verify.add_argument("--tenant", help="the subject's tenant (default: default)")
    keys = commands.add_parser("keys", help="access keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = add(
        "create",
        cmd_keys_create,
        "print a new access key (stored hashed)",
        key_commands,
        action="warehouse.admin",
    )
    create.add_argument("--tenant", required=True, help="the tenant it sees, or * for all")
    create.add_argument(
        "--role", default="analyst", help="engineer, analyst, auditor, finance or ingest (API)"
    )
    create.add_argument("--expires", help="refused from this instant on (ISO 8601; default never)")
    listing = add("list", cmd_keys_list, "the keys you may see (never a secret)", key_commands,
                  action="warehouse.admin")  # fmt: skip
    listing.add_argument("--tenant", help="only this tenant's keys (a tenant key implies its own)")
    revoke = add(
        "revoke",
        cmd_keys_revoke,
        "refuse a key from its next request on (kept in keys list as revoked)",
        key_commands,
        action="warehouse.admin",
    )
    revoke.add_argument("key_id", help="the key's id as keys list prints it (12 hex digits)")
    revoke.add_argument("--tenant", help="the key's tenant (a tenant key implies its own)")
    serve = add(
        "serve",
        cmd_serve,
        "the HTTP capture and usage API (keys: keys create --role ingest)",
        action=None,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    recover = add(
        "replay",
        cmd_replay,
        "rebuild a new warehouse from this one's landing zone and compare its invoices",
        action="warehouse.recover",
    )
    recover.add_argument("--to", required=True, metavar="NEW_WAREHOUSE", help="an empty place")
    recover.add_argument(
        "--from", dest="source", metavar="WAREHOUSE", help="replay another (e.g. a backup)"
    )
    backup = commands.add_parser("backup", help="copy the warehouse and check copies")
    backup_commands = backup.add_subparsers(dest="backup_command", required=True)
    add(
        "create",
        cmd_backup_create,
        "copy every table (at one version), the landing zone and the keys",
        backup_commands,
        action="warehouse.recover",
    ).add_argument("--to", required=True, metavar="PATH", help="an empty place")
    add(
        "verify",
        cmd_backup_verify,
        "compare a backup with this warehouse: counts and checksums per partition, landing",
        backup_commands,
        action="backup.verify",
    ).add_argument("--backup", required=True, metavar="PATH")
    status = add(
        "status",
        cmd_status,
        "health summary: event flow, lag, completeness, quarantine, reconciliation, freshness"
        " (exit 3 when a critical alert fires)",
        action="status.read",
    )
    status.add_argument("--format", choices=("text", "prometheus"), default="text")
    status.add_argument("--out", help="write to this file (e.g. for a textfile collector)")
    add(
        "alert-rules",
        cmd_alert_rules,
        "print the Prometheus alerting rules the status metrics are watched by (no Spark)",
        action=None,
    ).add_argument("--out", help="write to this file")
    views = commands.add_parser("views", help="materialised views analysts query")
    add(
        "refresh",
        cmd_views_refresh,
        "rebuild views.current_usage, views.usage_by_dimension, views.tenant_daily_usage",
        views.add_subparsers(dest="views_command", required=True),
        action="events.write",
    )
    sql = add(
        "sql",
        cmd_sql,
        "run a read-only Spark SQL query over the warehouse's tables (logged)",
        action="sql.query",
    )
    sql.add_argument("query", help='e.g. "SELECT * FROM views.tenant_daily_usage"')
    sql.add_argument("--tenant", help="only this tenant's rows (a tenant key implies its own)")
    sql.add_argument("--limit", type=int, default=1000, help="rows to show (default 1000)")
    sql.add_argument("--format", choices=["text", "json"], default="text")
    anomalies = add(
        "anomalies",
        cmd_anomalies,
        "find hours of usage beyond k standard deviations of the hours before (stored)",
        action="sql.query",
    )
    anomalies.add_argument("--since", required=True, help="first hour to judge (ISO 8601)")
    anomalies.add_argument("--tenant", help="only this tenant (a tenant key implies its own)")
    anomalies.add_argument("--k", type=float, help="standard deviations (default 3)")
    anomalies.add_argument(
        "--baseline-hours", type=int, help="hours each hour is compared with (default 168)"
    )
    add(
        "demo",
        cmd_demo,
        "generate data and run everything end to end",
        action="warehouse.admin",
        writes=True,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    server = args.server or os.environ.get("METERLAKE_SERVER")
    if server:
        from meterlake.server_client import call_server

        key = args.key or os.environ.get("METERLAKE_KEY")
        return call_server(server, key, _without_client_flags(argv), getattr(args, "out", None))
    try:
        settings = Settings.load(
            warehouse=args.warehouse, now=args.now, spark_master=args.master, wait=args.wait
        )
    except MeterlakeError as exc:
        print(f"meterlake: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return execute(args, settings)


def _without_client_flags(argv: list[str]) -> list[str]:
    """``argv`` without ``--server`` and ``--key`` (the server is reached, the key sent as
    the bearer; neither belongs to the command it runs)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--server", "--key"):
            skip = True
        elif not arg.startswith(("--server=", "--key=")):
            kept.append(arg)
    return kept


def execute(
    args: argparse.Namespace, settings: Settings, principal: Principal | None = None
) -> int:
    """Authorise and run a parsed command; errors become one line and an exit code. The
    one path for the direct CLI and the server's (``principal``: whom the server
    authenticated)."""
    try:
        if args.action is not None:
            _authorize(args, settings, principal)
        return args.func(args, settings)
    except MeterlakeError as exc:
        print(f"meterlake: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("METERLAKE_DEBUG"):
            raise
        print(
            f"meterlake: failed: {root_cause(exc)} (METERLAKE_DEBUG=1 shows the traceback;"
            " Spark's log is in $METERLAKE_LOG_DIR, default ~/.cache/meterlake/logs)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
