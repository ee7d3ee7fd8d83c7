"""The usage-events topic: how its records are keyed, and making sure it exists.

A record is one accepted event: the value is the event's JSON line exactly as accepted,
the key ``<tenant>/<customer_id>`` (so one customer's events stay in one partition, in
order), the timestamp the moment it was received. The tenant is the key's part before
the first ``/`` (tenant ids cannot hold one); a record without a usable key is archived
under `UNKEYED` and quarantined there, never dropped or credited to another tenant.
"""

from __future__ import annotations

from meterlake.config import Settings
from meterlake.errors import ConfigError
from meterlake.ingest.landing import TENANT_PATTERN

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
