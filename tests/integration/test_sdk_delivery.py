"""100,000 events from the SDK through a server killed twice and a network that drops
requests and answers: bronze ends with every event exactly once."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path

from meterlake import tables
from meterlake.audit.access import create_key
from meterlake.config import Settings
from meterlake.ingest.stream import run_landing_to_bronze
from meterlake.sdk import Client
from tests.capture_server import ApiServer, FlakyProxy, PoisonProxy, landed_lines
from tests.e2e.test_crash_and_stream import prepare

EVENTS = 100_000


def test_sdk_delivers_every_event_exactly_once_through_crashes(spark, warehouse, tmp_path: Path):
    prepare(spark, warehouse)
    key, _ = create_key(warehouse, "default", "ingest")
    server = ApiServer(warehouse.warehouse).start()
    proxy = FlakyProxy(server.port, fail=0.01, seed=7).start()
    client = Client(
        key,
        proxy.url,
        spool_dir=tmp_path / "spool",
        batch_size=500,
        flush_interval=0.2,
        max_backoff=1.0,
    )
    ids: list[str] = []

    def produce() -> None:
        for i in range(EVENTS):
            ids.append(client.track(("acme", "globex")[i % 2], "api_call", i % 7))

    producer = threading.Thread(target=produce)
    try:
        producer.start()
        kills = 0
        for threshold in (EVENTS * 3 // 10, EVENTS * 65 // 100):
            deadline = time.monotonic() + 300
            while client.stats.delivered < threshold and time.monotonic() < deadline:
                time.sleep(0.05)
            server.kill()  # SIGKILL mid-stream: requests in flight get no answer
            kills += 1
            time.sleep(1.0)  # the SDK keeps spooling and retrying meanwhile
            server.start()
        producer.join()
        assert client.flush(timeout=600), client.stats
        client.close()
    finally:
        server.stop()
        proxy.close()
    assert kills == 2 and proxy.dropped > 0 and client.stats.retries > 0
    assert client.stats.rejected == 0 and not (tmp_path / "spool/dead-letter.jsonl").exists()
    assert client.stats.delivered + client.stats.duplicates >= EVENTS
    assert len(landed_lines(warehouse.warehouse, "default")) >= EVENTS

    run_landing_to_bronze(
        spark, replace(warehouse, manifests_per_batch=1000), progress=lambda _: None
    )
    bronze = tables.read(spark, warehouse, tables.BRONZE_EVENTS)
    assert bronze.count() == EVENTS
    assert {row.event_id for row in bronze.select("event_id").collect()} == set(ids)
    assert tables.read(spark, warehouse, tables.BRONZE_QUARANTINE).count() == 0


def test_sdk_works_offline_and_drains_after_a_restart(tmp_path: Path) -> None:
    settings = Settings.load(env={}).with_warehouse(str(tmp_path / "warehouse"))
    key, _ = create_key(settings, "shop", "ingest")
    server = ApiServer(settings.warehouse)  # not started: the API is down
    offline = Client(key, server.url, spool_dir=tmp_path / "spool", close_timeout=1.0)
    ids = [offline.track("c1", "api_call", n) for n in range(10)]
    assert not offline.flush(timeout=1.0) and offline.stats.retries > 0
    offline.close()  # the process exits with the events still on disk
    assert offline.spool.pending() == 10

    server.start()
    try:
        restarted = Client(key, server.url, spool_dir=tmp_path / "spool")
        assert restarted.flush(timeout=30)
        restarted.close()
    finally:
        server.stop()
    landed = [json.loads(line) for line in landed_lines(settings.warehouse, "shop")]
    assert [e["event_id"] for e in landed] == ids
    assert landed[0]["sdk"]["name"] == "meterlake-python"


def test_sdk_isolates_an_event_the_server_keeps_failing_on(tmp_path: Path) -> None:
    """One event among 17 triggers a server error every time: it ends alone in
    the dead-letter file with its reason, and every other event, before and after it, is
    delivered."""
    settings = Settings.load(env={}).with_warehouse(str(tmp_path / "warehouse"))
    key, _ = create_key(settings, "shop", "ingest")
    server = ApiServer(settings.warehouse).start()
    proxy = PoisonProxy(server.url, marker=b"poison-").start()
    client = Client(key, proxy.url, spool_dir=tmp_path / "spool", batch_size=8,
                    max_backoff=0.5)  # fmt: skip
    try:
        ids = [client.track("c1", "api_call", n, event_id=f"e{n}") for n in range(5)]
        client.track("c1", "api_call", 1, event_id="poison-1")
        ids += [client.track("c1", "api_call", n, event_id=f"e{n}") for n in range(5, 16)]
        assert client.flush(timeout=120), client.stats
        client.close()
    finally:
        proxy.close()
        server.stop()
    assert (client.stats.delivered, client.stats.rejected, client.stats.isolated) == (16, 1, 1)
    (dead,) = [json.loads(line) for line in (tmp_path / "spool/dead-letter.jsonl").open()]
    assert dead["reason"] == "http_500" and json.loads(dead["event"])["event_id"] == "poison-1"
    landed = [json.loads(line)["event_id"] for line in landed_lines(settings.warehouse, "shop")]
    assert sorted(landed) == sorted(ids)  # each request is its own landing batch
    # 3 tries of the 8-event batch, then of each half holding it (4, 2, 1 events)
    assert proxy.refused == 12
