"""Deliver the outbox's "billing period closed" events to webhook endpoints, signed.

Every event of ``billing.outbox`` not yet delivered is POSTed to each endpoint of
``METERLAKE_WEBHOOK_URLS``: the body is the event's stored JSON payload, byte for byte,
signed in ``Meterlake-Signature`` (`meterlake.integrations.signature`), with its id in
``Meterlake-Event-Id``. A 2xx answer is a delivery; network errors, 408, 429 and 5xx are
retried with backoff; every attempt is logged in ``billing.webhook_deliveries``. Once an
event reached every endpoint its ``delivered_at`` is set and it is never sent again; an
endpoint that already took it is not sent it again either (a crash between a delivery and
its log entry can repeat that one delivery: receivers deduplicate on the event id).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.integrations.retry import GaveUp, with_retries
from meterlake.integrations.signature import HEADER, sign

if TYPE_CHECKING:
    import httpx
    from pyspark.sql import SparkSession

    from meterlake.config import Settings

RETRY_STATUS = {408, 429}


class DeliveryFailed(Exception):
    """The endpoint answered, but not with a 2xx."""

    def __init__(self, status: int, elapsed_ms: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.elapsed = elapsed_ms


def transient(exc: BaseException) -> bool:
    import httpx

    if isinstance(exc, DeliveryFailed):
        return exc.status in RETRY_STATUS or exc.status >= 500
    return isinstance(exc, httpx.TransportError)


@dataclass
class DeliveryResult:
    delivered: list[tuple[str, str]] = field(default_factory=list)  # (event id, endpoint)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # + the error
    completed_events: int = 0  # events now delivered to every endpoint
    attempts: int = 0


def deliver_outbox(
    spark: SparkSession,
    settings: Settings,
    *,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[str], None] = lambda _: None,
) -> DeliveryResult:
    """Send every undelivered outbox event to every configured endpoint (see above)."""
    import httpx
    from pyspark.sql import functions as F

    config = settings.billing_system
    result = DeliveryResult()
    if not config.webhook_urls:
        return result
    events = (
        tables.read(spark, settings, tables.BILLING_OUTBOX)
        .where(F.col("delivered_at").isNull())
        .orderBy("created_at", "event_id")
        .collect()
    )
    log = tables.read(spark, settings, tables.BILLING_WEBHOOK_DELIVERIES)
    tried: dict[tuple[str, str], int] = {}
    done: set[tuple[str, str]] = set()
    for row in (
        log.groupBy("event_id", "endpoint")
        .agg(F.max("attempt").alias("attempts"), F.max(F.col("delivered").cast("int")).alias("ok"))
        .collect()
    ):
        tried[row.event_id, row.endpoint] = row.attempts
        if row.ok:
            done.add((row.event_id, row.endpoint))
    http = client or httpx.Client(timeout=10.0)
    completed = []
    try:
        for event in events:
            _log(
                spark,
                settings,
                _deliver_event(http, settings, event, tried, done, result, sleep, progress),
            )
            if all((event.event_id, url) in done for url in config.webhook_urls):
                completed.append(event.event_id)
    finally:
        if client is None:
            http.close()
    if completed:
        from meterlake.delta_io import update_where

        update_where(
            spark,
            settings,
            tables.BILLING_OUTBOX,
            F.col("event_id").isin(completed) & F.col("delivered_at").isNull(),
            {"delivered_at": F.lit(settings.now())},
        )
    result.completed_events = len(completed)
    return result


def _headers(settings: Settings, event, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "meterlake-webhooks",
        "Meterlake-Event-Id": event.event_id,
        "Meterlake-Event-Type": event.event_type,
        HEADER: sign(settings.billing_system.webhook_secret or "", body, int(time.time())),
    }


def _deliver_event(http, settings, event, tried, done, result, sleep, progress) -> list[tuple]:
    """Deliver one event to the endpoints that lack it; returns its log rows."""
    config = settings.billing_system
    body = event.payload.encode()
    rows: list[tuple] = []
    for url in config.webhook_urls:
        if (event.event_id, url) in done:
            continue
        number = itertools.count(tried.get((event.event_id, url), 0) + 1)

        def post(url: str = url, number=number) -> None:
            started = time.monotonic()
            response = http.post(url, content=body, headers=_headers(settings, event, body))
            elapsed = int((time.monotonic() - started) * 1000)
            if not 200 <= response.status_code < 300:
                raise DeliveryFailed(response.status_code, elapsed)
            rows.append(_row(event, url, next(number), response.status_code, None, True, elapsed))

        def failed(_: int, exc: BaseException, url: str = url, number=number) -> None:
            if isinstance(exc, DeliveryFailed):
                rows.append(_row(event, url, next(number), exc.status, None, False, exc.elapsed))
            else:
                error = f"{type(exc).__name__}: {exc}"[:500]
                rows.append(_row(event, url, next(number), None, error, False, 0))

        try:
            with_retries(
                post,
                attempts=config.max_attempts,
                base_ms=config.retry_base_ms,
                transient=transient,
                sleep=sleep,
                on_failure=failed,
            )
        except GaveUp as failure:
            result.failed.append((event.event_id, url, str(failure)))
            progress(f"  FAILED {event.event_id} → {url}: {failure}")
        else:
            done.add((event.event_id, url))
            result.delivered.append((event.event_id, url))
            progress(f"  delivered {event.event_id} → {url}")
    result.attempts += len(rows)
    return rows


def _row(event, url: str, attempt: int, status, error, delivered: bool, elapsed: int) -> tuple:
    return (event.event_id, url, attempt, datetime.now(UTC), status, error, delivered, elapsed)


def _log(spark: SparkSession, settings: Settings, rows: list[tuple]) -> None:
    if not rows:
        return
    from meterlake.delta_io import append

    frame = spark.createDataFrame(rows, tables.nullable_schema(tables.BILLING_WEBHOOK_DELIVERIES))
    append(frame, settings, tables.BILLING_WEBHOOK_DELIVERIES)
