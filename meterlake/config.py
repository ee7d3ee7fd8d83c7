"""Settings in one place: environment variables ``METERLAKE_*`` overridden by CLI flags.

Nothing is read at import time; `Settings.load` is called once by each entry point.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from meterlake.clock import now, parse_instant
from meterlake.errors import ConfigError


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: {raw!r} is not an integer") from exc
    if value < 0:
        raise ConfigError(f"{name}: must not be negative, got {value}")
    return value


def _switch(env: Mapping[str, str], name: str, default: str = "off") -> bool:
    raw = (env.get(name) or default).strip().lower()
    if raw not in ("on", "off"):
        raise ConfigError(f"{name}: {raw!r} must be on or off")
    return raw == "on"


@dataclass(frozen=True)
class S3Settings:
    """Where an ``s3a://`` warehouse lives; credentials come from the AWS chain, never from here."""

    endpoint: str | None = None
    path_style: bool = True
    region: str = "us-east-1"


@dataclass(frozen=True)
class ApiSettings:
    """Limits of the HTTP capture API (``meterlake serve``); see README, "Capture API"."""

    max_events: int = 1000  # per request
    max_bytes: int = 1024 * 1024  # per request body
    rate: int = 20_000  # events per second per tenant (token bucket refill)
    burst: int = 40_000  # bucket size: events a tenant may send at once
    max_backlog_events: int = 2_000_000  # landed but not yet in bronze → 503
    min_free_mb: int = 256  # free space the landing disk must keep → 503
    metrics_tenants: bool = False  # /metrics labels counters by tenant (names every tenant)
    key_lookups: int = 20  # per second per client address, for keys not cached (burst ×5)
    header_timeout_seconds: int = 10  # a request's headers must arrive within this → 408
    body_timeout_seconds: int = 30  # and its body within this → 408

    @classmethod
    def load(cls, env: Mapping[str, str]) -> ApiSettings:
        d = cls()
        return cls(
            max_events=max(1, _int(env, "METERLAKE_API_MAX_EVENTS", d.max_events)),
            max_bytes=max(1, _int(env, "METERLAKE_API_MAX_BYTES", d.max_bytes)),
            rate=max(1, _int(env, "METERLAKE_API_RATE", d.rate)),
            burst=max(1, _int(env, "METERLAKE_API_BURST", d.burst)),
            max_backlog_events=_int(env, "METERLAKE_API_MAX_BACKLOG", d.max_backlog_events),
            min_free_mb=_int(env, "METERLAKE_API_MIN_FREE_MB", d.min_free_mb),
            metrics_tenants=_switch(env, "METERLAKE_API_METRICS_TENANTS"),
            key_lookups=max(1, _int(env, "METERLAKE_API_KEY_LOOKUPS", d.key_lookups)),
            header_timeout_seconds=max(
                1, _int(env, "METERLAKE_API_HEADER_TIMEOUT_SECONDS", d.header_timeout_seconds)
            ),
            body_timeout_seconds=max(
                1, _int(env, "METERLAKE_API_BODY_TIMEOUT_SECONDS", d.body_timeout_seconds)
            ),
        )


SINKS = ("landing", "kafka", "both")  # where the capture API puts accepted events
SOURCES = ("landing", "kafka")  # what the bronze stream reads
TOPIC_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


@dataclass(frozen=True)
class KafkaSettings:
    """Where accepted events go as Kafka records and how the stream reads them; see README,
    "Kafka". ``sink`` is what the capture API writes: landing files, the topic, or both."""

    bootstrap: str = "127.0.0.1:9092"
    topic: str = "meterlake.usage-events"
    partitions: int = 4  # when meterlake creates the topic
    sink: str = "landing"
    max_records_per_batch: int = 100_000  # per stream micro-batch (archived as one file each)

    @classmethod
    def load(cls, env: Mapping[str, str]) -> KafkaSettings:
        d = cls()
        sink = (env.get("METERLAKE_CAPTURE_SINK") or d.sink).strip().lower()
        if sink not in SINKS:
            raise ConfigError(f"METERLAKE_CAPTURE_SINK: {sink!r} must be one of {', '.join(SINKS)}")
        topic = env.get("METERLAKE_KAFKA_TOPIC") or d.topic
        if not TOPIC_PATTERN.match(topic):
            raise ConfigError(
                f"METERLAKE_KAFKA_TOPIC: {topic!r} must be 1-249 letters, digits, '.', '_' or '-'"
            )
        return cls(
            bootstrap=env.get("METERLAKE_KAFKA_BOOTSTRAP") or d.bootstrap,
            topic=topic,
            partitions=max(1, _int(env, "METERLAKE_KAFKA_PARTITIONS", d.partitions)),
            sink=sink,
            max_records_per_batch=max(
                1, _int(env, "METERLAKE_KAFKA_MAX_RECORDS_PER_BATCH", d.max_records_per_batch)
            ),
        )


@dataclass(frozen=True)
class BillingSystemSettings:
    """Where final invoices go (Stripe, webhooks) and how deliveries retry; see README,
    "Billing integration". Secrets are only ever read from the environment."""

    stripe_api_key: str | None = field(default=None, repr=False)
    stripe_api_base: str = "https://api.stripe.com"
    stripe_push: tuple[str, ...] = ("invoice_items",)  # and/or "meter_events"
    stripe_finalize: bool = True  # finalise the Stripe invoice once its items are in
    webhook_urls: tuple[str, ...] = ()
    webhook_secret: str | None = field(default=None, repr=False)
    max_attempts: int = 5  # per delivery, within one run
    retry_base_ms: int = 500  # first backoff; doubles per attempt, with jitter
    fx_max_age_days: int = 7  # a rate older than this at the period end is refused

    @classmethod
    def load(cls, env: Mapping[str, str]) -> BillingSystemSettings:
        d = cls()
        push = tuple(
            p.strip() for p in (env.get("METERLAKE_STRIPE_PUSH") or "invoice_items").split(",")
        )
        unknown = sorted(set(push) - {"invoice_items", "meter_events"})
        if unknown or not push:
            raise ConfigError(
                f"METERLAKE_STRIPE_PUSH: {','.join(unknown) or 'empty'} is not invoice_items"
                " or meter_events"
            )
        urls = tuple(u.strip() for u in (env.get("METERLAKE_WEBHOOK_URLS") or "").split(","))
        urls = tuple(u for u in urls if u)
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"METERLAKE_WEBHOOK_URLS: {url!r} is not an http(s) URL")
        secret = env.get("METERLAKE_WEBHOOK_SECRET") or None
        if urls and not secret:
            raise ConfigError("METERLAKE_WEBHOOK_SECRET: required when webhooks are configured")
        return cls(
            stripe_api_key=env.get("METERLAKE_STRIPE_API_KEY") or None,
            stripe_api_base=(env.get("METERLAKE_STRIPE_API_BASE") or d.stripe_api_base).rstrip("/"),
            stripe_push=push,
            stripe_finalize=_switch(env, "METERLAKE_STRIPE_FINALIZE", "on"),
            webhook_urls=urls,
            webhook_secret=secret,
            max_attempts=max(1, _int(env, "METERLAKE_DELIVERY_MAX_ATTEMPTS", d.max_attempts)),
            retry_base_ms=_int(env, "METERLAKE_DELIVERY_RETRY_MS", d.retry_base_ms),
            fx_max_age_days=_int(env, "METERLAKE_FX_MAX_AGE_DAYS", d.fx_max_age_days),
        )


@dataclass(frozen=True)
class LeaseSettings:
    """Writer leases (`meterlake.lease`): how long a lease outlives its last renewal, how
    much earlier its holder stops committing, how long a second writer waits for it."""

    ttl_seconds: float = 30.0
    wait_seconds: float = 0.0
    landing_commit_seconds: float = 60.0  # a landing writer in flight blocks final runs this long

    @property
    def margin_seconds(self) -> float:
        return self.ttl_seconds / 3

    @classmethod
    def load(cls, env: Mapping[str, str], wait: float | None = None) -> LeaseSettings:
        d = cls()
        return cls(
            ttl_seconds=max(1, _int(env, "METERLAKE_LEASE_TTL_SECONDS", int(d.ttl_seconds))),
            wait_seconds=wait
            if wait is not None
            else _int(env, "METERLAKE_LEASE_WAIT_SECONDS", int(d.wait_seconds)),
            landing_commit_seconds=max(
                1, _int(env, "METERLAKE_LANDING_COMMIT_SECONDS", int(d.landing_commit_seconds))
            ),
        )


@dataclass(frozen=True)
class Settings:
    """Everything a meterlake command needs to know about its environment.

    Example::

        settings = Settings.load(warehouse="/tmp/wh", now="2026-03-01T00:00:00Z")
    """

    warehouse: str = "warehouse"
    pinned_now: datetime | None = None
    spark_master: str = "local[2]"
    shuffle_partitions: int = 4
    driver_memory: str = "2g"
    executor_memory: str = "2g"  # per executor, on a cluster (local mode runs in the driver)
    ivy_dir: str = field(default_factory=lambda: str(Path.home() / ".cache/meterlake/ivy"))
    log_dir: str = field(default_factory=lambda: str(Path.home() / ".cache/meterlake/logs"))
    s3: S3Settings = field(default_factory=S3Settings)
    max_clock_skew_seconds: int = 300
    backfill_days: int = 35
    max_line_bytes: int = 1024 * 1024
    default_tenant: str = "default"
    manifests_per_batch: int = 64
    stream_interval_seconds: int = 1
    rollup_interval_seconds: int = 60
    access_control: bool = False
    test_clock: bool = False  # --now honoured for keyed callers (tests only; see clock.py)
    cold_root: str | None = None
    vacuum_retention_hours: int = 168
    api: ApiSettings = field(default_factory=ApiSettings)
    billing_system: BillingSystemSettings = field(default_factory=BillingSystemSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    lease: LeaseSettings = field(default_factory=LeaseSettings)

    @classmethod
    def load(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        warehouse: str | None = None,
        now: str | None = None,
        spark_master: str | None = None,
        wait: float | None = None,
    ) -> Settings:
        """Build settings from ``env`` (default: the process environment) and flag values."""
        env = os.environ if env is None else env
        pinned_text = now or env.get("METERLAKE_NOW") or None
        pinned = parse_instant(pinned_text, "--now") if pinned_text else None
        defaults = cls()
        return cls(
            warehouse=_normalise_warehouse(
                warehouse or env.get("METERLAKE_WAREHOUSE") or defaults.warehouse
            ),
            pinned_now=pinned,
            spark_master=spark_master or env.get("METERLAKE_SPARK_MASTER") or "local[2]",
            shuffle_partitions=_int(env, "METERLAKE_SHUFFLE_PARTITIONS", 4),
            driver_memory=env.get("METERLAKE_DRIVER_MEMORY") or defaults.driver_memory,
            executor_memory=env.get("METERLAKE_EXECUTOR_MEMORY") or defaults.executor_memory,
            ivy_dir=env.get("METERLAKE_IVY_DIR") or defaults.ivy_dir,
            log_dir=env.get("METERLAKE_LOG_DIR") or defaults.log_dir,
            s3=S3Settings(
                endpoint=env.get("METERLAKE_S3_ENDPOINT") or None,
                region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            ),
            max_clock_skew_seconds=_int(env, "METERLAKE_MAX_CLOCK_SKEW_SECONDS", 300),
            backfill_days=_int(env, "METERLAKE_BACKFILL_DAYS", 35),
            max_line_bytes=_int(env, "METERLAKE_MAX_LINE_BYTES", 1024 * 1024),
            manifests_per_batch=max(1, _int(env, "METERLAKE_MANIFESTS_PER_BATCH", 64)),
            stream_interval_seconds=max(1, _int(env, "METERLAKE_STREAM_INTERVAL_SECONDS", 1)),
            rollup_interval_seconds=max(1, _int(env, "METERLAKE_ROLLUP_INTERVAL_SECONDS", 60)),
            access_control=_switch(env, "METERLAKE_ACCESS_CONTROL"),
            test_clock=_switch(env, "METERLAKE_TEST_CLOCK"),
            cold_root=_normalise_warehouse(env["METERLAKE_COLD_ROOT"])
            if env.get("METERLAKE_COLD_ROOT")
            else None,
            vacuum_retention_hours=_int(env, "METERLAKE_VACUUM_RETENTION_HOURS", 168),
            api=ApiSettings.load(env),
            billing_system=BillingSystemSettings.load(env),
            kafka=KafkaSettings.load(env),
            lease=LeaseSettings.load(env, wait),
        )

    def with_warehouse(self, warehouse: str) -> Settings:
        return replace(self, warehouse=_normalise_warehouse(warehouse))

    def now(self) -> datetime:
        return now(self.pinned_now)

    @property
    def cold(self) -> str:
        """Where raw events go when they leave the hot tier: ``METERLAKE_COLD_ROOT`` (another
        bucket or prefix, so lifecycle rules can archive it alone), else ``<warehouse>/cold``."""
        return self.cold_root or f"{self.warehouse}/cold"

    @property
    def is_object_store(self) -> bool:
        """The warehouse itself is on object storage."""
        return _on_s3(self.warehouse)

    @property
    def uses_s3(self) -> bool:
        """Spark needs S3A: the warehouse or the cold tier is on object storage."""
        return _on_s3(self.warehouse) or _on_s3(self.cold)


def _on_s3(root: str) -> bool:
    return root.startswith(("s3a://", "s3://"))


def _normalise_warehouse(value: str) -> str:
    """Local warehouses become absolute paths so Spark, Delta and Python agree on them."""
    if "://" in value:
        return value.rstrip("/")
    return str(Path(value).expanduser().resolve())
