"""The usage-events topic: how its records are keyed, and making sure it exists.

A record is one accepted event: the value is the event's JSON line exactly as accepted,
the key ``<tenant>/<customer_id>`` (so one customer's events stay in one partition, in
order), the timestamp the moment it was received. The tenant is the key's part before
the first ``/`` (tenant ids cannot hold one); a record without a usable key is archived
under `UNKEYED` and quarantined there, never dropped or credited to another tenant.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from meterlake.config import Settings
from meterlake.errors import ConfigError
from meterlake.ingest.landing import TENANT_PATTERN, LandingBatch

UNKEYED = "_unkeyed"
_TIMEOUT_S = 10.0


def client_config(settings: Settings, **extra: object) -> dict[str, object]:
    """librdkafka settings for meterlake's clients: the bootstrap servers, and its own log
    lines (one per failed connection attempt) off: failures reach meterlake as errors."""
    return {"bootstrap.servers": settings.kafka.bootstrap, "log_level": 0, **extra}


def record_key(tenant: str, customer_id: str) -> bytes:
    return f"{tenant}/{customer_id}".encode()


def tenant_of(key: bytes | None) -> str:
    """The tenant a record belongs to, or `UNKEYED`."""
    tenant = (key or b"").split(b"/", 1)[0].decode("utf-8", "replace")
    return tenant if key and b"/" in key and TENANT_PATTERN.match(tenant) else UNKEYED


def ensure_topic(settings: Settings) -> None:
    """Create the topic with ``METERLAKE_KAFKA_PARTITIONS`` partitions if it does not exist
    (brokers should not auto-create it: a mistyped name would then swallow events)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    kafka = settings.kafka
    admin = AdminClient(client_config(settings))
    try:
        if kafka.topic in admin.list_topics(timeout=_TIMEOUT_S).topics:
            return
        topic = NewTopic(kafka.topic, num_partitions=kafka.partitions)
        admin.create_topics([topic], operation_timeout=_TIMEOUT_S)[kafka.topic].result()
    except KafkaException as exc:
        error = exc.args[0]
        if getattr(error, "name", lambda: "")() == "TOPIC_ALREADY_EXISTS":
            return  # created meanwhile by another process
        raise ConfigError(
            f"METERLAKE_KAFKA_BOOTSTRAP: {kafka.bootstrap}: {getattr(error, 'str', str)()}"
        ) from exc


def archived_offsets(batches: Iterable[LandingBatch], topic: str) -> dict[int, int]:
    """partition → the highest offset archived into landing from ``topic``, read from the
    names the Kafka stream gives its batches (``kafka:<topic>:p0=12-40,p3=7-9``)."""
    found: dict[int, int] = {}
    prefix = f"kafka:{topic}:"
    for batch in batches:
        if batch.source != "kafka" or not batch.original_name.startswith(prefix):
            continue
        for span in batch.original_name[len(prefix) :].split(","):
            partition, _, offsets = span.partition("=")
            high = int(offsets.rsplit("-", 1)[-1])
            key = int(partition.removeprefix("p"))
            found[key] = max(found.get(key, -1), high)
    return found


def unarchived_before(
    settings: Settings, as_of: datetime, archived: dict[int, int]
) -> list[tuple[int, int, int]]:
    """(partition, archived through, needed through) for each partition of the topic that
    still holds a record with a timestamp at or before ``as_of`` the stream has not
    archived; empty when every such record is in landing."""
    from confluent_kafka import Consumer, TopicPartition

    kafka = settings.kafka
    consumer = Consumer(client_config(settings, **{"group.id": "meterlake-watermark"}))
    try:
        metadata = consumer.list_topics(kafka.topic, timeout=_TIMEOUT_S).topics[kafka.topic]
        after = int(as_of.timestamp() * 1000) + 1
        asked = [TopicPartition(kafka.topic, p, after) for p in sorted(metadata.partitions)]
        firsts = consumer.offsets_for_times(asked, timeout=_TIMEOUT_S)
        behind = []
        for found in firsts:
            if found.offset < 0:  # no record after as_of: every record up to the end counts
                _, high = consumer.get_watermark_offsets(found, timeout=_TIMEOUT_S)
                needed = high - 1
            else:
                needed = found.offset - 1
            if needed >= 0 and archived.get(found.partition, -1) < needed:
                behind.append((found.partition, archived.get(found.partition, -1), needed))
        return behind
    finally:
        consumer.close()
