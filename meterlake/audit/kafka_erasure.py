"""Erasure's reach into the Kafka topic.

A Kafka record cannot be rewritten. But every record the stream has archived is in
landing, which erasure rewrites, so the topic's own copies are deleted instead (Kafka's
DeleteRecords, which moves a partition's low watermark): through the lower of what
landing holds and what the stream's checkpoint has committed, so the stream never
finds a record it has still to read gone (it stops on lost data, ``failOnDataLoss``).
Landing is the archive of record; the topic keeps only what the stream has not yet
archived, and verification reports any of those records holding the subject until the
stream has archived them and erasure runs again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from meterlake.audit.subject_fields import USER, holds_subject
from meterlake.config import Settings
from meterlake.ingest.kafka_source import CHECKPOINTS
from meterlake.ingest.kafka_topic import archived_offsets, client_config, tenant_of
from meterlake.ingest.landing import manifest_entries
from meterlake.storage import storage_for

_TIMEOUT_S = 30.0
_POLL_S = 1.0


@dataclass(frozen=True)
class Truncation:
    topic: str
    deleted: int  # records removed from the topic (every tenant's: landing holds them all)
    low_watermarks: dict[int, int]  # partition → its first record still in the topic


def committed_offsets(settings: Settings) -> dict[int, int]:
    """partition → the next offset the stream reads, from its checkpoint's last committed
    micro-batch (Spark's ``offsets/<n>``: a version line, metadata, then the source's
    offsets as JSON); empty before the first commit."""
    storage = storage_for(settings)
    base = f"{CHECKPOINTS}/{settings.kafka.topic}"
    done = [int(k.rsplit("/", 1)[1]) for k in storage.keys(f"{base}/commits") if k[-1].isdigit()]
    if not done:
        return {}
    body = storage.read(f"{base}/offsets/{max(done)}")
    if body is None:
        return {}
    source = json.loads(body.decode().splitlines()[2])
    return {int(p): int(o) for p, o in source.get(settings.kafka.topic, {}).items()}


def truncate_archived(settings: Settings) -> Truncation | None:
    """Delete the topic's records that are both archived into landing and committed by
    the stream; None when the stream has archived nothing from the topic (no broker is
    asked)."""
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient

    topic = settings.kafka.topic
    archived = archived_offsets(manifest_entries(settings), topic)
    if not archived:
        return None
    committed = committed_offsets(settings)
    cut = {p: min(high + 1, committed.get(p, 0)) for p, high in archived.items()}
    consumer = Consumer(client_config(settings, **{"group.id": "meterlake-erasure"}))
    try:
        before = {p: _watermarks(consumer, topic, p)[0] for p in cut}
    finally:
        consumer.close()
    wanted = [TopicPartition(topic, p, offset) for p, offset in cut.items() if offset > before[p]]
    lows = dict(before)
    if wanted:
        admin = AdminClient(client_config(settings))
        futures = admin.delete_records(
            wanted, request_timeout=_TIMEOUT_S, operation_timeout=_TIMEOUT_S
        )
        for partition, future in futures.items():
            lows[partition.partition] = future.result().low_watermark
    deleted = sum(lows[p] - before[p] for p in lows)
    return Truncation(topic, deleted, lows)


def records_holding(
    settings: Settings, tenant: str, subject: str, kind: str = USER
) -> dict[int, int]:
    """partition → how many of ``tenant``'s records still in the topic hold ``subject`` (read
    once, from each partition's low to its high watermark, committing no offsets)."""
    from confluent_kafka import Consumer, TopicPartition

    topic = settings.kafka.topic
    consumer = Consumer(
        client_config(settings, **{"group.id": "meterlake-verify", "enable.auto.commit": False})
    )
    found: dict[int, int] = {}
    try:
        metadata = consumer.list_topics(topic, timeout=_TIMEOUT_S).topics[topic]
        for partition in sorted(metadata.partitions):
            low, high = _watermarks(consumer, topic, partition)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, low)])
            position, deadline = low, time.monotonic() + _TIMEOUT_S
            while position < high:
                message = consumer.poll(_POLL_S)
                if message is None:  # what is left is control records, or the broker is slow
                    position = consumer.position([TopicPartition(topic, partition)])[0].offset
                    if position < high and time.monotonic() > deadline:
                        raise TimeoutError(f"kafka: partition {partition} unread past {position}")
                    continue
                if message.error() is not None:
                    continue
                position = message.offset() + 1
                mine = tenant_of(message.key()) == tenant
                if mine and holds_subject(message.value() or b"", subject, kind):
                    found[partition] = found.get(partition, 0) + 1
    finally:
        consumer.close()
    return found


def _watermarks(consumer: object, topic: str, partition: int) -> tuple[int, int]:
    from confluent_kafka import TopicPartition

    return consumer.get_watermark_offsets(  # type: ignore[attr-defined]
        TopicPartition(topic, partition), timeout=_TIMEOUT_S
    )
