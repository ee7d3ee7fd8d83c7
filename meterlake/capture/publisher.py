"""Accepted events as Kafka records (``METERLAKE_CAPTURE_SINK=kafka`` or ``both``).

A request is answered "accepted" only once every one of its records is acknowledged by
all in-sync replicas (``acks=all``); the producer is idempotent, so its own retries never
write a record twice. One thread serves librdkafka's delivery reports and settles each
request's future on the event loop. Records are keyed and stamped as
`meterlake.ingest.kafka_topic` describes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime

from meterlake.config import Settings
from meterlake.ingest.kafka_topic import client_config, ensure_topic, record_key

_PRODUCER = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,  # a few ms of batching across concurrent requests
    "compression.type": "lz4",
    "delivery.timeout.ms": 30_000,  # then the request fails with 503 and the client retries
}


class PublishError(RuntimeError):
    """Some records of a request were not acknowledged: the request is refused (503). Those
    of its records that were acknowledged stay in the topic; the client's retry sends them
    again, and bronze drops the second copy by event id."""


class _Delivery:
    """One request's outstanding records; ``report`` is librdkafka's delivery callback."""

    def __init__(self, loop: asyncio.AbstractEventLoop, records: int) -> None:
        self._loop = loop
        self._pending = records
        self._errors: list[str] = []
        self._lock = threading.Lock()
        self.done: asyncio.Future[None] = loop.create_future()

    def report(self, error, _message) -> None:
        with self._lock:
            if error is not None:
                self._errors.append(error.str())
            self._pending -= 1
            last = self._pending == 0
        if last:
            self._loop.call_soon_threadsafe(self._settle)

    def _settle(self) -> None:
        if self.done.done():
            return
        if self._errors:
            count, first = len(self._errors), self._errors[0]
            self.done.set_exception(PublishError(f"{count} record(s) not acknowledged: {first}"))
        else:
            self.done.set_result(None)


class KafkaPublisher:
    def __init__(self, settings: Settings) -> None:
        from confluent_kafka import Producer

        ensure_topic(settings)
        self._topic = settings.kafka.topic
        self._producer = Producer(client_config(settings, **_PRODUCER))
        threading.Thread(target=self._serve, name="meterlake-kafka", daemon=True).start()

    def _serve(self) -> None:  # for the server's lifetime; acknowledged records are durable
        while True:
            self._producer.poll(0.1)

    async def publish(
        self, tenant: str, records: list[tuple[str, bytes]], received: datetime
    ) -> None:
        """Return once each ``(customer_id, line)`` is acknowledged as a record of ``tenant``
        received at ``received``; raise `PublishError` otherwise."""
        delivery = _Delivery(asyncio.get_running_loop(), len(records))
        stamp = int(received.timestamp() * 1000)
        await asyncio.to_thread(self._produce, tenant, records, stamp, delivery.report)
        await delivery.done

    def _produce(
        self, tenant: str, records: list[tuple[str, bytes]], stamp: int, delivered
    ) -> None:
        for customer, line in records:
            while True:
                try:
                    self._producer.produce(
                        self._topic,
                        value=line,
                        key=record_key(tenant, customer),
                        timestamp=stamp,
                        on_delivery=delivered,
                    )
                    break
                except BufferError:  # the local queue is full: wait for deliveries
                    time.sleep(0.01)
