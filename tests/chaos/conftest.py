"""Fault injection: each test breaks something real and compares the warehouse with a clean
run of the same events. Sizes: small in ``make test``, full under ``make chaos``
(``pytest tests/chaos --chaos-full``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from meterlake import synthetic
from meterlake.billing.export import export_document
from meterlake.billing.run import run_invoices
from meterlake.catalog.parse import parse_catalog
from meterlake.catalog.store import store_catalog
from meterlake.config import Settings
from meterlake.demo import DEMO_CATALOG
from meterlake.ingest.landing import land_file
from meterlake.pipeline import run_pipeline
from meterlake.warehouse import init_warehouse

RECEIVED = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
CUSTOMERS = ("acme", "globex")
QUIET = {"progress": lambda _: None}


@dataclass(frozen=True)
class Size:
    events: int  # distinct events of a scenario
    kills: int  # SIGKILLs of the stream
    copies: int  # deliveries of each event in the duplicate storm
    days: int  # days the storm's deliveries are received over
    outage: int  # seconds the object store is down
    requests: int  # generated API requests of the fuzzer
    writer_rounds: int  # rounds of two pipeline processes started together


SMALL = Size(events=1_000, kills=2, copies=10, days=2, outage=15, requests=500, writer_rounds=1)
FULL = Size(
    events=60_000, kills=20, copies=10, days=5, outage=60, requests=10_000, writer_rounds=20
)


@pytest.fixture(scope="session")
def size(request) -> Size:
    return FULL if request.config.getoption("--chaos-full") else SMALL


def make_events(count: int, seed: int) -> list[dict]:
    """``count`` synthetic events over the ten days before `RECEIVED`."""
    start = RECEIVED - timedelta(days=10)
    return list(synthetic.events(count, CUSTOMERS, start, timedelta(days=10), seed=seed))


def new_warehouse(spark, settings: Settings, name: str) -> Settings:
    """An initialised warehouse next to ``settings``'s with the demo catalog loaded."""
    other = replace(settings.with_warehouse(f"{settings.warehouse}-{name}"), pinned_now=RECEIVED)
    init_warehouse(spark, other)
    store_catalog(spark, other, parse_catalog(yaml.safe_load(DEMO_CATALOG), sha256="chaos"))
    return other


def land(settings: Settings, folder: Path, name: str, events: list[dict], at: datetime) -> str:
    """Land ``events`` as one batch received at ``at``; returns its landing file (relative)."""
    path = folder / f"{name}.jsonl"
    synthetic.write_jsonl(path, (synthetic.dump(e) for e in events))
    return land_file(replace(settings, pinned_now=at), path, "default").batch.landing_file


def invoices(spark, settings: Settings) -> list[tuple]:
    """Every invoice with its lines, in a form two warehouses can be compared by."""
    return sorted(
        (i["customer_id"], i["period_start"], i["status"], i["total"], json.dumps(i["lines"]))
        for i in export_document(spark, settings)["invoices"]
    )


def bill(spark, settings: Settings, at: datetime) -> list[tuple]:
    """Run the pipeline and an invoice run at ``at``; the invoices."""
    now = replace(settings, pinned_now=at)
    run_pipeline(spark, now, **QUIET)
    run_invoices(spark, now, at)
    return invoices(spark, now)
