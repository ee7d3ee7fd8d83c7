"""Two writers of bronze at once: the same landing batch, classified by both before either
commits, is landed exactly once, with its quarantine and accounting rows once each."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from meterlake import tables
from meterlake.catalog.parse import load_catalog_file
from meterlake.catalog.store import store_catalog
from meterlake.ingest import bronze
from meterlake.ingest.landing import land_file, manifest_entries
from tests.helpers import BASIC_CATALOG, event, hold_first_calls, line

RECEIVED = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)


def landed_batch(spark, settings, tmp_path, rejects: list):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_bytes(BASIC_CATALOG)
    store_catalog(spark, settings, load_catalog_file(catalog))
    rows = [event(event_id=f"e{i}", customer_id="c1") for i in range(50)] + rejects
    path = tmp_path / "batch.jsonl"
    path.write_bytes(b"\n".join(line(r) for r in rows) + b"\n")
    land_file(replace(settings, pinned_now=RECEIVED), path, "default")
    return list(manifest_entries(settings))


def counts(spark, settings) -> tuple[int, int, int, int]:
    events = tables.read(spark, settings, tables.BRONZE_EVENTS)
    return (
        events.count(),
        events.select("event_id").distinct().count(),
        tables.read(spark, settings, tables.BRONZE_QUARANTINE).count(),
        tables.read(spark, settings, tables.BRONZE_BATCHES).count(),
    )


REJECTS = [event(event_id="e0", customer_id="c1", quantity=99), "{not json"]


@pytest.mark.parametrize("rejects", [[], REJECTS], ids=["valid", "with-quarantine"])
def test_two_writers_of_one_batch_both_classifying_first(
    spark, warehouse, tmp_path, monkeypatch, rejects
) -> None:
    """Forced interleaving: each writer has classified the batch (nothing in bronze yet)
    before either writes bronze; the second must not append the 50 events again (today's
    main: 100 rows for 50 events, or a conflict error when quarantine rows race too)."""
    batches = landed_batch(spark, warehouse, tmp_path, rejects)
    hold_first_calls(monkeypatch, bronze, "bronze_rows", 2)
    with ThreadPoolExecutor(2) as pool:
        tallies = list(
            pool.map(lambda epoch: bronze.process_batches(spark, warehouse, batches, epoch), (0, 1))
        )
    assert counts(spark, warehouse) == (50, 50, len(rejects), 1)
    for tally in tallies:  # both report what the batch holds, as a rerun would
        assert (tally.bronze_rows, tally.quarantined_total) == (50, len(rejects))
    accounting = tables.read(spark, warehouse, tables.BRONZE_BATCHES).first()
    assert accounting.events_read == accounting.bronze_rows + accounting.quarantined
