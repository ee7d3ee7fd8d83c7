"""Materialised views against direct aggregation from bronze; `meterlake sql` within the
caller's tenant scope, read-only, logged (both on the suite's `usage_warehouse`); anomaly
detection on series with known spikes and drops and on flat ones."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import yaml

from meterlake import synthetic, tables
from meterlake.analytics.anomalies import detect_anomalies
from meterlake.billing.estimate import current_estimate
from meterlake.catalog.parse import parse_catalog
from meterlake.catalog.store import read_catalog, store_catalog
from meterlake.config import Settings
from meterlake.demo import DEMO_CATALOG
from meterlake.ingest.landing import land_file
from meterlake.pipeline import run_pipeline
from meterlake.warehouse import init_warehouse
from tests.e2e.cli import cli_env, meterlake_here

QUIET = {"progress": lambda _: None}


def _land(settings: Settings, folder: Path, tenant: str, events, name: str) -> None:
    path = folder / f"{name}.jsonl"
    synthetic.write_jsonl(path, (synthetic.dump(e) for e in events))
    land_file(settings, path, tenant)


def _rows(frame, columns: list[str]) -> list[tuple]:
    return sorted(tuple(r) for r in frame.select(*columns).collect())


def test_views_equal_direct_aggregation_from_bronze(spark, usage_warehouse: Settings) -> None:
    from pyspark.sql import functions as F

    from meterlake.rollups.meter_values import metered_events, meters_frame

    settings = usage_warehouse
    meters = read_catalog(spark, settings).catalog.meters
    event_types = meters_frame(spark, meters).select("meter_key", "meter_event_type")
    bronze = tables.read(spark, settings, tables.BRONZE_EVENTS)
    metered = metered_events(bronze, meters).join(event_types, "meter_key")
    day = F.to_date("billing_time").alias("day")
    totals = [
        F.countDistinct("customer_id").alias("customers"),
        F.count("*").alias("events"),
        F.sum("value").alias("sum_value"),
    ]
    by_dimension = metered.groupBy(
        "tenant_id",
        day,
        "meter_key",
        F.col("meter_event_type").alias("event_type"),
        "region",
        "resource_id",
    ).agg(*totals)
    columns = [f.name for f in tables.VIEWS_USAGE_BY_DIMENSION.schema]
    view = tables.read(spark, settings, tables.VIEWS_USAGE_BY_DIMENSION)
    assert _rows(view, columns) == _rows(by_dimension, columns)
    assert view.count() > 100  # regions and resources really split it

    daily = metered.groupBy("tenant_id", day, "meter_key").agg(*totals)
    columns = [f.name for f in tables.VIEWS_TENANT_DAILY_USAGE.schema]
    view = tables.read(spark, settings, tables.VIEWS_TENANT_DAILY_USAGE)
    assert _rows(view, columns) == _rows(daily, columns)

    # The current period's usage and estimate: what `usage show` computes for each customer.
    current = tables.read(spark, settings, tables.VIEWS_CURRENT_USAGE).collect()
    assert {r.customer_id for r in current} == {"acme", "globex", "initech"}
    for customer in ("acme", "globex", "initech"):
        estimate = current_estimate(spark, settings, customer, settings.now())
        mine = [r for r in current if r.customer_id == customer]
        assert {(r.segment_start, r.meter_key): r.quantity for r in mine} == {
            (segment.start.replace(tzinfo=None), meter): quantity
            for (segment, meter), quantity in estimate.usage.items()
        }
        assert {r.estimated_total for r in mine} == {estimate.amount}
        assert sum(r.quantity for r in mine if r.meter_key == "api_calls") > 0


def test_sql_reads_within_the_tenant_scope_and_is_logged(spark, usage_warehouse: Settings) -> None:
    from pyspark.sql import functions as F

    env = cli_env(usage_warehouse.warehouse)
    query = "SELECT tenant_id, sum(events) AS events FROM views.tenant_daily_usage GROUP BY 1"
    everyone = meterlake_here("sql", query, "--format", "json", env=env)
    assert everyone.returncode == 0, everyone.stderr
    events = {r["tenant_id"]: r["events"] for r in json.loads(everyone.stdout)}
    daily = tables.read(spark, usage_warehouse, tables.VIEWS_TENANT_DAILY_USAGE)
    assert events == dict(daily.groupBy("tenant_id").agg(F.sum("events")).collect())
    assert set(events) == {"default", "t2"}
    bronze_rows = tables.read(spark, usage_warehouse, tables.BRONZE_EVENTS).count()

    key = meterlake_here("keys", "create", "--tenant", "t2", "--role", "analyst", env=env)
    scoped = {**env, "METERLAKE_ACCESS_CONTROL": "on", "METERLAKE_KEY": key.stdout.strip()}
    mine = meterlake_here("sql", query, env=scoped)
    assert mine.returncode == 0, mine.stderr
    table = mine.stdout.splitlines()
    assert table[0].split() == ["tenant_id", "events"] and len(table) == 3
    assert table[2].split() == ["t2", str(events["t2"])]
    joined = meterlake_here(  # a CTE and a join over two layers: still only t2's rows
        "sql",
        "WITH e AS (SELECT DISTINCT customer_id FROM bronze.events) SELECT e.customer_id,"
        " m.aggregation, count(*) AS days FROM e JOIN silver.usage_day s USING (customer_id)"
        " JOIN ref.meters m USING (meter_key) GROUP BY 1, 2 ORDER BY 2",
        env=scoped,
    )
    assert joined.returncode == 0, joined.stderr
    customers = {line.split()[0] for line in joined.stdout.splitlines()[2:]}
    assert customers == {"globex"}

    bronze = tables.BRONZE_EVENTS.path(usage_warehouse)
    published = Path(usage_warehouse.warehouse) / "serving" / "usage"
    refused = {
        "DROP TABLE bronze.events": "DropTable",
        "DELETE FROM bronze.events": "DeleteFromTable",
        f"SELECT * FROM delta.`{bronze}`": f"table delta.{bronze.lower()}",
        "SELECT * FROM audit.query_log": "no tenant column",
        "   ": "empty",
        # the reproduction: a secret, another tenant's published file, a write to disk
        "SELECT reflect('java.lang.System', 'getenv', 'AWS_SECRET_ACCESS_KEY')": "reflect",
        "SELECT reflect('org.apache.spark.util.Utils', 'getPropertiesFromFile',"
        f" '{published}/default.json')": "function reflect",
        "SELECT java_method('org.apache.spark.util.Utils', 'createDirectory', '/tmp',"
        " 'x')": "function java_method",
        f"SELECT * FROM table_changes_by_path('{bronze}', 0)": "a table-valued function",
        "SET spark.sql.runSQLOnFiles=true": "SET",
    }
    for statement, message in refused.items():
        result = meterlake_here("sql", statement, env=scoped)
        assert result.returncode == 2, (statement, result.stdout)
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert tables.read(spark, usage_warehouse, tables.BRONZE_EVENTS).count() == bronze_rows

    log = tables.read(spark, usage_warehouse, tables.AUDIT_QUERY_LOG).collect()
    key_id = hashlib.sha256(key.stdout.strip().encode()).hexdigest()[:12]
    logged = [r for r in log if r.command == "sql" and r.key_id == key_id]  # other tests' too
    assert [(r.key_tenant, r.tenant) for r in logged] == [("t2", "t2")] * 2  # refusals: none
    assert {json.loads(r.arguments)["query"]: r.rows for r in logged}[query] == 1


def _hourly(customer: str, start: datetime, hours: int, value) -> list[dict]:
    return [
        {
            "event_id": f"{customer}-{h}",
            "customer_id": customer,
            "event_type": "api_call",
            "quantity": q,
            "timestamp": (start + timedelta(hours=h, minutes=17)).isoformat(),
        }
        for h in range(hours)
        if (q := value(h)) is not None
    ]


def test_anomalies_finds_every_spike_and_drop_and_nothing_on_flat_series(
    spark, settings: Settings, tmp_path: Path
) -> None:
    """Ten days of hourly usage: acme noisy (±10 % around 100, uniform: never beyond
    1.8 deviations) with two spikes and a silent hour; globex perfectly flat."""
    import random

    start = datetime(2026, 3, 1, tzinfo=UTC)
    now = replace(settings, pinned_now=start + timedelta(days=10))
    init_warehouse(spark, now)
    store_catalog(spark, now, parse_catalog(yaml.safe_load(DEMO_CATALOG), sha256="anomalies"))
    rng = random.Random(3)
    spikes, drop = {70: 1000, 190: 400}, 130
    noisy = {h: spikes.get(h, rng.randint(90, 110)) for h in range(240)}
    events = _hourly("acme", start, 240, lambda h: None if h == drop else noisy[h])
    events += _hourly("globex", start, 240, lambda h: 50)
    _land(now, tmp_path, "default", events, "hourly")
    run_pipeline(spark, now, **QUIET)

    run = detect_anomalies(spark, now, start, baseline_hours=48)
    found = {(r.customer_id, r.hour_start, r.direction) for r in run.found}
    at = lambda h: (start + timedelta(hours=h)).replace(tzinfo=None)  # noqa: E731
    assert found == {
        ("acme", at(70), "spike"),
        ("acme", at(190), "spike"),
        ("acme", at(130), "drop"),
    }
    (first,) = [r for r in run.found if r.hour_start == at(70)]
    assert first.value == Decimal(1000) and first.z_score > 3 and first.baseline_hours == 48
    again = detect_anomalies(spark, now, start, baseline_hours=48)
    assert len(again.found) == 3
    assert tables.read(spark, now, tables.ANALYTICS_ANOMALIES).count() == 3  # merged, not doubled

    out = meterlake_here(
        "--now", now.now().isoformat(), "anomalies", "--since", "2026-03-08T00:00:00Z",
        "--baseline-hours", "48", env=cli_env(now.warehouse),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "1 found" in out.stdout and "default/acme" in out.stdout and "spike" in out.stdout
