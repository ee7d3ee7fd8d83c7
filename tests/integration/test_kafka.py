"""Kafka on a real broker (Apache Kafka in KRaft mode, started by infra/kafka.sh): the
capture API publishing accepted events to the topic, and the bronze stream reading it
exactly once across a SIGKILL, billing as the landing-file path does."""

from __future__ import annotations

import json
import random
import signal
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from meterlake import synthetic, tables
from meterlake.audit.access import create_key
from meterlake.billing.run import require_kafka_archived, run_invoices
from meterlake.catalog.parse import parse_catalog
from meterlake.catalog.store import store_catalog
from meterlake.config import Settings
from meterlake.demo import DEMO_CATALOG
from meterlake.errors import StaleDataError
from meterlake.ingest.kafka_topic import ensure_topic, record_key
from meterlake.ingest.landing import land_file, manifest_entries
from meterlake.pipeline import run_pipeline
from meterlake.warehouse import init_warehouse
from tests.capture_server import ApiServer
from tests.e2e.cli import cli_env, spawn

RECEIVED = datetime(2026, 3, 2, 12, tzinfo=UTC)  # the suite's pinned now (FIXED_NOW)


def on_topic(settings: Settings, bootstrap: str, topic: str) -> Settings:
    kafka = replace(settings.kafka, bootstrap=bootstrap, topic=topic, partitions=3)
    return replace(settings, kafka=kafka)


def with_catalog(spark, settings: Settings) -> Settings:
    store_catalog(spark, settings, parse_catalog(yaml.safe_load(DEMO_CATALOG), sha256="t"))
    return settings


def produce(settings: Settings, records: list[tuple[bytes, bytes]], at: datetime) -> None:
    """Each (key, value) as a record stamped ``at``, acknowledged by the broker."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap, "enable.idempotence": True})
    for key, value in records:
        producer.produce(
            settings.kafka.topic, value=value, key=key, timestamp=int(at.timestamp() * 1000)
        )
    assert producer.flush(30) == 0


def consume_all(settings: Settings, expected: int) -> list:
    """The topic's records from the start (waits for ``expected`` of them)."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap,
            "group.id": f"test-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([settings.kafka.topic])
    found, deadline = [], time.monotonic() + 60
    while len(found) < expected and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            found.append(message)
    consumer.close()
    return found


def test_capture_api_publishes_accepted_events_keyed_by_tenant_and_customer(
    spark, warehouse: Settings, kafka_bootstrap: str
) -> None:
    settings = with_catalog(spark, on_topic(warehouse, kafka_bootstrap, "api-events"))
    key = create_key(settings, "default", "ingest")[0]
    server = ApiServer(
        settings.warehouse,
        METERLAKE_CAPTURE_SINK="kafka",
        METERLAKE_KAFKA_BOOTSTRAP=kafka_bootstrap,
        METERLAKE_KAFKA_TOPIC="api-events",
        METERLAKE_NOW=RECEIVED.isoformat(),
    ).start()
    try:
        events = [
            {"event_id": "k1", "customer_id": "acme", "event_type": "api_call", "quantity": 3,
             "timestamp": "2026-03-01T10:00:00Z"},
            {"event_id": "k2", "customer_id": "globex", "event_type": "api_call", "quantity": 4,
             "timestamp": "2026-03-01T11:00:00Z"},
            {"event_id": "k3", "customer_id": "acme", "event_type": "api_call"},  # no timestamp
        ]  # fmt: skip
        headers = {"Authorization": f"Bearer {key}"}
        answer = httpx.post(
            f"{server.url}/v1/events", json={"events": events}, headers=headers, timeout=30
        )
    finally:
        server.stop()
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert (body["accepted"], body["rejected"], body["batch_id"]) == (2, 1, None)
    records = consume_all(settings, 2)
    assert sorted((r.key(), json.loads(r.value())["event_id"]) for r in records) == [
        (b"default/acme", "k1"),
        (b"default/globex", "k2"),
    ]
    received_ms = {r.timestamp()[1] for r in records}
    assert received_ms == {int(datetime.fromisoformat(body["received_at"]).timestamp() * 1000)}
    assert list(manifest_entries(settings)) == []  # the topic only: nothing landed as files

    run_pipeline(spark, settings, source="kafka")
    bronze = tables.read(spark, settings, tables.BRONZE_EVENTS).collect()
    assert sorted((r.event_id, r.customer_id, r.quantity) for r in bronze) == [
        ("k1", "acme", 3),
        ("k2", "globex", 4),
    ]
    (archived,) = manifest_entries(settings)
    assert (archived.source, archived.tenant_id, archived.lines) == ("kafka", "default", 2)
    offsets: dict[int, list[int]] = {}
    for record in records:
        offsets.setdefault(record.partition(), []).append(record.offset())
    spans = [f"p{p}={min(o)}-{max(o)}" for p, o in sorted(offsets.items())]
    assert archived.original_name == "kafka:api-events:" + ",".join(spans)
    # The archive is the Kafka stream's: the landing stream leaves it alone.
    assert run_pipeline(spark, settings).tally.batches == 0


@pytest.mark.slow
def test_kafka_stream_is_exactly_once_across_a_sigkill_and_bills_as_the_file_path(
    spark, warehouse: Settings, kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = with_catalog(spark, on_topic(warehouse, kafka_bootstrap, "usage-events"))
    ensure_topic(settings)
    stream = synthetic.events(
        3000, ["acme", "globex"], RECEIVED - timedelta(days=10), timedelta(days=10), seed=11
    )
    lines = [synthetic.dump(e).encode() for e in stream]
    rng = random.Random(5)
    redelivered = rng.sample(lines, 300)  # the same events sent again (an SDK's retries)
    values = lines + redelivered + [b"{not json"]
    keys = [record_key("default", json.loads(v)["customer_id"]) for v in lines + redelivered]
    produce(settings, list(zip([*keys, b"default/acme"], values, strict=True)), RECEIVED)

    env = cli_env(
        settings.warehouse,
        METERLAKE_NOW=RECEIVED.isoformat(),
        METERLAKE_KAFKA_BOOTSTRAP=kafka_bootstrap,
        METERLAKE_KAFKA_TOPIC="usage-events",
        METERLAKE_KAFKA_MAX_RECORDS_PER_BATCH="400",
        METERLAKE_ROLLUP_INTERVAL_SECONDS="3600",
    )
    streaming = spawn("pipeline", "stream", "--source", "kafka", env=env)
    try:
        deadline = time.monotonic() + 300
        while tables.read(spark, settings, tables.BRONZE_EVENTS).count() == 0:
            assert streaming.poll() is None, streaming.communicate()[1]
            assert time.monotonic() < deadline, "no bronze rows within 300 s"
            time.sleep(0.5)
        streaming.send_signal(signal.SIGKILL)  # midway: no shutdown, no flush
        streaming.wait(timeout=30)
    finally:
        if streaming.poll() is None:
            streaming.kill()
    midway = tables.read(spark, settings, tables.BRONZE_EVENTS).count()
    assert 0 < midway < 3000
    # Records the API acknowledged by RECEIVED are still in the topic only: no final run.
    with pytest.raises(StaleDataError, match="not in landing yet"):
        require_kafka_archived(settings, RECEIVED, list(manifest_entries(settings)))

    run_pipeline(spark, settings, source="kafka")  # the rest, in one micro-batch
    bronze = tables.read(spark, settings, tables.BRONZE_EVENTS)
    assert bronze.count() == 3000
    assert {r.event_id for r in bronze.select("event_id").collect()} == {
        json.loads(v)["event_id"] for v in lines
    }
    (bad,) = tables.read(spark, settings, tables.BRONZE_QUARANTINE).collect()
    assert bad.reason == "malformed_json"
    archived = [b for b in manifest_entries(settings) if b.source == "kafka"]
    assert sum(b.lines for b in archived) == len(values)  # each record archived once

    files = tmp_path / "files"
    by_file = settings.with_warehouse(str(files))
    init_warehouse(spark, by_file)
    with_catalog(spark, by_file)
    batch = tmp_path / "events.jsonl"
    batch.write_bytes(b"".join(v + b"\n" for v in values))
    land_file(by_file, batch, "default")
    run_pipeline(spark, by_file)

    def rows(s: Settings) -> list[tuple]:
        frame = tables.read(spark, s, tables.BRONZE_EVENTS)
        return sorted(frame.select("event_id", "customer_id", "quantity", "billing_time").collect())

    assert rows(settings) == rows(by_file)
    from_kafka = run_invoices(spark, settings, RECEIVED, dry_run=True).invoices
    from_files = run_invoices(spark, by_file, RECEIVED, dry_run=True).invoices
    assert from_kafka and from_kafka == from_files


def test_erasure_deletes_the_topics_archived_records_and_verify_reads_the_rest(
    spark, warehouse: Settings, kafka_bootstrap: str
) -> None:
    from meterlake.audit.erasure import erase_user
    from meterlake.audit.erasure_verify import verify_erased
    from meterlake.audit.kafka_erasure import committed_offsets

    settings = with_catalog(spark, on_topic(warehouse, kafka_bootstrap, "erasure-events"))
    ensure_topic(settings)

    def record(n: int, user: str) -> tuple[bytes, bytes]:
        event = {"event_id": f"e{n}", "customer_id": "acme", "event_type": "api_call",
                 "quantity": 1, "timestamp": "2026-03-01T10:00:00Z", "user_id": user}  # fmt: skip
        return record_key("default", "acme"), json.dumps(event).encode()

    produce(settings, [record(1, "bob"), record(2, "alice"), record(3, "bob")], RECEIVED)
    run_pipeline(spark, settings, source="kafka")
    assert sum(committed_offsets(settings).values()) == 3  # the stream's next offsets
    produce(settings, [record(4, "bob")], RECEIVED)  # in the topic, not yet archived

    first = erase_user(spark, settings, "default", "bob", requested_by="test")
    assert first.rows["kafka:erasure-events"] == 3  # every archived record, alice's too

    def left() -> list[tuple[str, int]]:  # superseded files wait for VACUUM (test_gdpr.py)
        copies = verify_erased(spark, settings, "default", "bob").copies
        return [(c.where.split(" partition ")[0], c.count) for c in copies
                if "superseded" not in c.where]  # fmt: skip

    assert left() == [("kafka:erasure-events", 1)]
    # The stream reads on from what the topic still holds (no lost data), then erasure
    # deletes that record too and nothing of bob is left.
    run_pipeline(spark, settings, source="kafka")
    bronze = tables.read(spark, settings, tables.BRONZE_EVENTS)
    assert bronze.count() == 4 and bronze.where("user_id = 'bob'").count() == 1
    second = erase_user(spark, settings, "default", "bob", requested_by="test")
    assert second.rows["kafka:erasure-events"] == 1
    assert left() == []
    assert bronze.where("user_id = 'alice'").count() == 1
