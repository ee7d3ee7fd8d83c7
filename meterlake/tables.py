"""Every table's name, schema, partitioning, properties and constraints, declared once.

Tables live by path at ``<warehouse>/<layer>/<name>`` so analysts and other engines
(delta-rs, DuckDB, Trino) can open them without a metastore.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from meterlake.config import Settings

MONEY = DecimalType(38, 9)
QUANTITY = DecimalType(38, 9)


def _schema(*fields: tuple[str, DataType, bool]) -> StructType:
    return StructType([StructField(name, kind, nullable) for name, kind, nullable in fields])


@dataclass(frozen=True, eq=False)
class TableSpec:
    """A Delta table meterlake owns: where it lives and what it must look like.

    Specs are module constants compared by identity (``eq=False`` keeps them hashable).
    """

    layer: str
    name: str
    schema: StructType
    partition_by: tuple[str, ...] = ()
    properties: dict[str, str] = field(default_factory=dict)
    constraints: dict[str, str] = field(default_factory=dict)
    description: str = ""
    cold: bool = False  # lives under the cold tier's root, not the warehouse
    compression: str | None = None  # Parquet codec for its data files (None: Spark's default)

    @property
    def qualified_name(self) -> str:
        return f"{self.layer}.{self.name}"

    def path(self, settings: Settings) -> str:
        if self.cold:
            return f"{settings.cold}/{self.name}"
        return f"{settings.warehouse}/{self.layer}/{self.name}"


APPEND_ONLY = {"delta.appendOnly": "true"}

BRONZE_EVENTS = TableSpec(
    layer="bronze",
    name="events",
    description="Accepted usage events, raw and immutable, one row per (tenant_id, event_id).",
    schema=_schema(
        ("tenant_id", StringType(), False),
        ("event_id", StringType(), False),
        ("customer_id", StringType(), False),
        ("event_type", StringType(), False),
        ("quantity", QUANTITY, False),
        ("event_time", TimestampType(), False),
        ("billing_time", TimestampType(), False),
        ("billing_date", DateType(), False),
        ("received_at", TimestampType(), False),
        ("clock_skew", BooleanType(), False),
        ("resource_id", StringType(), True),
        ("user_id", StringType(), True),
        ("session_id", StringType(), True),
        ("region", StringType(), True),
        ("properties", StringType(), True),
        ("extra", StringType(), True),
        ("schema_version", StringType(), False),
        ("sdk_name", StringType(), True),
        ("sdk_version", StringType(), True),
        ("payload_sha256", StringType(), False),
        ("batch_id", StringType(), False),
        ("landing_file", StringType(), False),
        ("line_number", LongType(), False),
        ("ingested_at", TimestampType(), False),
        # When the source itself received the line, where that differs from landing's
        # receipt: the newest Kafka record timestamp of its archived batch.
        ("source_time", TimestampType(), True),
    ),
    partition_by=("billing_date",),
    properties={
        **APPEND_ONLY,
        "delta.checkpointInterval": "20",
        # File statistics only where queries filter: tenant, customer, meter, times, lineage.
        "delta.dataSkippingStatsColumns": (
            "tenant_id,customer_id,event_type,billing_time,received_at,batch_id,line_number"
        ),
    },
    constraints={
        "event_id_not_blank": "length(event_id) > 0",
        "customer_id_not_blank": "length(customer_id) > 0",
        "quantity_not_negative": "quantity >= 0",
        "billing_date_matches_time": "billing_date = to_date(billing_time)",
        "billing_time_is_event_or_receipt": (
            "billing_time = event_time OR (clock_skew AND billing_time = received_at)"
        ),
        "line_number_positive": "line_number > 0",
    },
)

COLD_EVENTS = TableSpec(
    layer="cold",
    name="events",
    cold=True,
    compression="zstd",
    description=(
        "Raw events moved out of the hot tier: bronze's columns, the move that copied them,"
        " zstd-compressed Parquet partitioned for per-tenant retention."
    ),
    schema=StructType(
        [
            *BRONZE_EVENTS.schema.fields,
            StructField("move_id", StringType(), False),
            StructField("moved_at", TimestampType(), False),
        ]
    ),
    partition_by=("tenant_id", "billing_date"),
    properties={
        "delta.dataSkippingStatsColumns": (
            "customer_id,event_type,billing_time,received_at,batch_id,move_id"
        ),
    },
)

BRONZE_QUARANTINE = TableSpec(
    layer="bronze",
    name="quarantine",
    description="Rejected lines with their reason and original bytes; nothing is dropped silently.",
    schema=_schema(
        ("tenant_id", StringType(), False),
        ("batch_id", StringType(), False),
        ("landing_file", StringType(), False),
        ("line_number", LongType(), False),
        ("reason", StringType(), False),
        ("detail", StringType(), False),
        ("raw", BinaryType(), False),
        ("event_id", StringType(), True),
        ("customer_id", StringType(), True),
        ("received_at", TimestampType(), False),
        ("quarantined_at", TimestampType(), False),
        ("replayed_at", TimestampType(), True),
        ("replay_outcome", StringType(), True),
    ),
    constraints={"reason_not_blank": "length(reason) > 0"},
)

BRONZE_BATCHES = TableSpec(
    layer="bronze",
    name="batches",
    description="Per landing batch: events read = bronze rows + duplicates + quarantined.",
    schema=_schema(
        ("batch_id", StringType(), False),
        ("tenant_id", StringType(), False),
        ("landing_file", StringType(), False),
        ("sha256", StringType(), False),
        ("received_at", TimestampType(), False),
        ("lines", LongType(), False),
        ("blank_lines", LongType(), False),
        ("events_read", LongType(), False),
        ("bronze_rows", LongType(), False),
        ("duplicates", LongType(), False),
        ("quarantined", LongType(), False),
        ("quarantined_by_reason", MapType(StringType(), LongType()), False),
        ("epoch", LongType(), False),
        ("processed_at", TimestampType(), False),
        # The micro-batch's number in commit order (under the ingest lease): a final invoice
        # records the highest it saw, so a batch that committed after it is recognisable.
        ("ingest_seq", LongType(), True),
    ),
    properties=dict(APPEND_ONLY),
    constraints={"accounting_balances": "events_read = bronze_rows + duplicates + quarantined"},
)

REF_CATALOG_VERSIONS = TableSpec(
    layer="ref",
    name="catalog_versions",
    description="One row per catalog load that changed something; the highest version is current.",
    schema=_schema(
        ("version", LongType(), False),
        ("sha256", StringType(), False),
        ("source_file", StringType(), False),
        ("loaded_at", TimestampType(), False),
        ("meters", IntegerType(), False),
        ("plans", IntegerType(), False),
        ("customers", IntegerType(), False),
        ("source_text", StringType(), False),
    ),
    properties=dict(APPEND_ONLY),
)

REF_METERS = TableSpec(
    layer="ref",
    name="meters",
    schema=_schema(
        ("version", LongType(), False),
        ("meter_key", StringType(), False),
        ("event_type", StringType(), False),
        ("aggregation", StringType(), False),
        ("property", StringType(), True),
    ),
    properties=dict(APPEND_ONLY),
)

# Delta refuses NOT NULL inside arrays; the catalog validator enforces unit_price instead.
TIER = StructType(
    [
        StructField("up_to", QUANTITY, True),
        StructField("unit_price", MONEY, True),
        StructField("flat_price", MONEY, True),
    ]
)

REF_PLANS = TableSpec(
    layer="ref",
    name="plans",
    schema=_schema(
        ("version", LongType(), False),
        ("plan_id", StringType(), False),
        ("currency", StringType(), False),
        ("interval", StringType(), False),
        ("minimum_commitment", MONEY, True),
    ),
    properties=dict(APPEND_ONLY),
)

REF_PLAN_CHARGES = TableSpec(
    layer="ref",
    name="plan_charges",
    schema=_schema(
        ("version", LongType(), False),
        ("plan_id", StringType(), False),
        ("charge_index", IntegerType(), False),
        ("charge_type", StringType(), False),
        ("meter_key", StringType(), True),
        ("model", StringType(), True),
        ("amount", MONEY, True),
        ("unit_price", MONEY, True),
        ("package_size", QUANTITY, True),
        ("package_price", MONEY, True),
        ("tiers", ArrayType(TIER, True), True),
    ),
    properties=dict(APPEND_ONLY),
)

REF_CUSTOMERS = TableSpec(
    layer="ref",
    name="customers",
    schema=_schema(
        ("version", LongType(), False),
        ("tenant_id", StringType(), False),
        ("customer_id", StringType(), False),
        ("timezone", StringType(), False),
        ("billing_anchor", StringType(), False),
        ("stripe_customer_id", StringType(), True),
        ("invoice_currency", StringType(), True),
    ),
    properties=dict(APPEND_ONLY),
)

REF_SUBSCRIPTIONS = TableSpec(
    layer="ref",
    name="subscriptions",
    schema=_schema(
        ("version", LongType(), False),
        ("tenant_id", StringType(), False),
        ("customer_id", StringType(), False),
        ("seq", IntegerType(), False),
        ("plan_id", StringType(), False),
        ("start", TimestampType(), False),
        ("end", TimestampType(), True),
    ),
    properties=dict(APPEND_ONLY),
)

REF_CREDITS = TableSpec(
    layer="ref",
    name="credits",
    schema=_schema(
        ("version", LongType(), False),
        ("tenant_id", StringType(), False),
        ("customer_id", StringType(), False),
        ("seq", IntegerType(), False),
        ("amount", MONEY, False),
        ("expires", TimestampType(), True),
    ),
    properties=dict(APPEND_ONLY),
)

REF_TENANTS = TableSpec(
    layer="ref",
    name="tenants",
    description="Per-tenant settings from the catalog; tenants not listed use the defaults.",
    schema=_schema(
        ("version", LongType(), False),
        ("tenant_id", StringType(), False),
        ("grace_seconds", LongType(), False),
    ),
    properties=dict(APPEND_ONLY),
)


FX_RATE = DecimalType(38, 12)

REF_FX_RATES = TableSpec(
    layer="ref",
    name="fx_rates",
    description=(
        "Dated exchange rates, loaded like the catalog: every load is a new version (an"
        " identical file loads nothing) and the highest version is current. 1 base = rate quote."
    ),
    schema=_schema(
        ("version", LongType(), False),
        ("rate_date", DateType(), False),
        ("base", StringType(), False),
        ("quote", StringType(), False),
        ("rate", FX_RATE, False),
        ("sha256", StringType(), False),
        ("source_file", StringType(), False),
        ("loaded_at", TimestampType(), False),
    ),
    properties=dict(APPEND_ONLY),
    constraints={"rate_positive": "rate > 0"},
)


def _usage_rollup(name: str, grain: str) -> TableSpec:
    """One silver rollup grain; all three share the schema and differ in window length."""
    return TableSpec(
        layer="silver",
        name=name,
        description=(
            f"Usage per {grain} (UTC windows) per tenant, customer, meter, region and resource."
        ),
        schema=_schema(
            ("tenant_id", StringType(), False),
            ("customer_id", StringType(), False),
            ("meter_key", StringType(), False),
            ("region", StringType(), True),
            ("resource_id", StringType(), True),
            ("window_start", TimestampType(), False),
            ("window_end", TimestampType(), False),
            ("window_date", DateType(), False),
            ("events", LongType(), False),
            ("sum_value", QUANTITY, True),
            ("min_value", QUANTITY, True),
            ("max_value", QUANTITY, True),
            ("unique_count", LongType(), False),
            ("unique_sketch", BinaryType(), True),
            ("latest_value", QUANTITY, True),
            ("latest_time", TimestampType(), False),
            ("latest_event_id", StringType(), False),
            ("p50", DoubleType(), True),
            ("p95", DoubleType(), True),
            ("p99", DoubleType(), True),
        ),
        partition_by=("window_date",),
        constraints={
            "window_ordered": "window_start < window_end",
            "events_positive": "events > 0",
        },
    )


SILVER_USAGE_MINUTE = _usage_rollup("usage_minute", "minute")
SILVER_USAGE_HOUR = _usage_rollup("usage_hour", "hour")
SILVER_USAGE_DAY = _usage_rollup("usage_day", "day")

GOLD_PERIOD_USAGE = TableSpec(
    layer="gold",
    name="period_usage",
    description=(
        "Usage per subscription segment of a billing period and meter, split by carrier: the"
        " invoice that bills it (the period itself when received before its close, else the"
        " first later invoice whose close is after arrival; null when no such period exists)."
    ),
    schema=_schema(
        ("tenant_id", StringType(), False),
        ("customer_id", StringType(), False),
        ("timezone", StringType(), False),
        ("period_start", TimestampType(), False),
        ("period_end", TimestampType(), False),
        ("period_start_local", StringType(), False),
        ("close_at", TimestampType(), False),
        ("segment_start", TimestampType(), False),
        ("segment_end", TimestampType(), False),
        ("plan_id", StringType(), False),
        ("meter_key", StringType(), False),
        ("aggregation", StringType(), False),
        ("carrier_period_start", TimestampType(), True),
        ("on_time", BooleanType(), False),
        ("events", LongType(), False),
        ("sum_value", QUANTITY, True),
        ("min_value", QUANTITY, True),
        ("max_value", QUANTITY, True),
        ("latest_value", QUANTITY, True),
        ("latest_time", TimestampType(), False),
        ("latest_event_id", StringType(), False),
        ("new_unique", LongType(), False),
        ("first_received", TimestampType(), False),
        ("last_received", TimestampType(), False),
        ("catalog_version", LongType(), False),
    ),
    constraints={
        "segment_inside_period": (
            "period_start <= segment_start AND segment_end <= period_end"
            " AND segment_start < segment_end"
        ),
        "on_time_carrier": "on_time = (carrier_period_start <=> period_start)",
        "events_positive": "events > 0",
    },
)

BILLING_INVOICES = TableSpec(
    layer="billing",
    name="invoices",
    description=(
        "One row per (customer, ended period): its current state. Drafts are replaced by later"
        " runs; a final invoice is never rewritten. Lines: billing.invoice_lines at `revision`."
    ),
    schema=_schema(
        ("invoice_id", StringType(), False),
        ("tenant_id", StringType(), False),
        ("customer_id", StringType(), False),
        ("currency", StringType(), False),
        ("period_start", TimestampType(), False),
        ("period_end", TimestampType(), False),
        ("close_at", TimestampType(), False),
        ("status", StringType(), False),
        ("subtotal", MONEY, False),
        ("credits", MONEY, False),
        ("total", MONEY, False),
        ("revision", StringType(), False),
        ("as_of", TimestampType(), False),
        ("catalog_version", LongType(), False),
        ("bronze_version", LongType(), False),
        ("written_at", TimestampType(), False),
        # Set when the customer is invoiced in another currency than its plans': lines were
        # priced in source_currency and converted at fx_rate (1 source = fx_rate currency),
        # the rate of fx_rate_date; fx_rounding is what rounding each line moved the subtotal.
        ("source_currency", StringType(), True),
        ("fx_rate", FX_RATE, True),
        ("fx_rate_date", DateType(), True),
        ("fx_rounding", MONEY, True),
        # The landing batches bronze held for this revision: bronze.batches up to this
        # ingest_seq (see meterlake.billing.late_commits).
        ("ingest_seq", LongType(), True),
    ),
    constraints={
        "status_known": "status IN ('draft', 'final')",
        "total_is_subtotal_less_credits": "total = subtotal - credits",
        "credits_not_negative": "credits >= 0",
        "period_ordered": "period_start < period_end AND period_end <= close_at",
    },
)

BILLING_INVOICE_LINES = TableSpec(
    layer="billing",
    name="invoice_lines",
    description=(
        "Invoice lines per invoice revision (drafts keep their history), with lineage: the"
        " events they price (type, billing and receipt window, bronze version) and the rollup"
        " windows covering them."
    ),
    schema=_schema(
        ("invoice_id", StringType(), False),
        ("revision", StringType(), False),
        ("line_id", StringType(), False),
        ("line_no", IntegerType(), False),
        ("tenant_id", StringType(), False),
        ("customer_id", StringType(), False),
        ("kind", StringType(), False),
        ("plan_id", StringType(), True),
        ("meter_key", StringType(), True),
        ("quantity", QUANTITY, False),
        ("amount", MONEY, False),
        ("period_start", TimestampType(), False),
        ("period_end", TimestampType(), False),
        ("event_type", StringType(), True),
        ("received_from", TimestampType(), True),
        ("received_before", TimestampType(), True),
        ("bronze_version", LongType(), False),
        ("rollup_table", StringType(), True),
        ("window_from", TimestampType(), True),
        ("window_until", TimestampType(), True),
        ("source_amount", MONEY, True),  # before conversion, in the invoice's source_currency
    ),
    properties=dict(APPEND_ONLY),
    constraints={
        "kind_known": "kind IN ('flat', 'usage', 'commitment', 'adjustment', 'credit')",
        "credit_lines_negative": "kind <> 'credit' OR amount < 0",
    },
)

BILLING_RUNS = TableSpec(
    layer="billing",
    name="runs",
    description=(
        "Every invoice run that wrote (dry runs write nothing): who asked (source), why"
        " (reason), for which customers and as of when, and what it changed."
    ),
    schema=_schema(
        ("run_id", StringType(), False),
        ("run_at", TimestampType(), False),
        ("as_of", TimestampType(), False),
        ("source", StringType(), False),
        ("reason", StringType(), True),
        ("customers", StringType(), True),
        ("tenant_id", StringType(), True),
        ("catalog_version", LongType(), False),
        ("bronze_version", LongType(), False),
        ("invoices", IntegerType(), False),
        ("created", IntegerType(), False),
        ("updated", IntegerType(), False),
        ("finalized", IntegerType(), False),
        ("unchanged", IntegerType(), False),
    ),
    properties=dict(APPEND_ONLY),
)

RECON_RESULTS = TableSpec(
    layer="recon",
    name="results",
    description="Every reconciliation finding: which check, where, expected, actual, status.",
    schema=_schema(
        ("run_id", StringType(), False),
        ("as_of", TimestampType(), False),
        ("run_at", TimestampType(), False),
        ("check", StringType(), False),
        ("scope", StringType(), False),
        ("expected", MONEY, True),
        ("actual", MONEY, True),
        ("diff", MONEY, True),
        ("status", StringType(), False),
        ("detail", StringType(), False),
    ),
    properties=dict(APPEND_ONLY),
    constraints={"status_known": "status IN ('ok', 'mismatch', 'pending', 'unbilled')"},
)

QUALITY_RESULTS = TableSpec(
    layer="quality",
    name="results",
    description="Every Great Expectations outcome per run: suite, expectation, offending rows.",
    schema=_schema(
        ("run_id", StringType(), False),
        ("run_at", TimestampType(), False),
        ("suite", StringType(), False),
        ("expectation", StringType(), False),
        ("column", StringType(), False),
        ("success", BooleanType(), False),
        ("unexpected_count", LongType(), False),
        ("sample_rows", StringType(), False),
    ),
    properties=dict(APPEND_ONLY),
)

BILLING_OUTBOX = TableSpec(
    layer="billing",
    name="outbox",
    description=(
        "Events for billing systems, one per closed period (billing.period.closed), written"
        " once; delivery (webhooks) records delivered_at."
    ),
    schema=_schema(
        ("event_id", StringType(), False),
        ("event_type", StringType(), False),
        ("tenant_id", StringType(), False),
        ("customer_id", StringType(), False),
        ("invoice_id", StringType(), False),
        ("period_start", TimestampType(), False),
        ("period_end", TimestampType(), False),
        ("close_at", TimestampType(), False),
        ("payload", StringType(), False),
        ("created_at", TimestampType(), False),
        ("delivered_at", TimestampType(), True),
    ),
)

BILLING_STRIPE_SYNC = TableSpec(
    layer="billing",
    name="stripe_sync",
    description=(
        "What meterlake pushed to Stripe, one row per object (customer, invoice, invoice item,"
        " meter event, finalisation) of a final invoice: its idempotency key, the Stripe id,"
        " attempts and the last error. An invoice is synced when its `invoice` row is."
    ),
    schema=_schema(
        ("invoice_id", StringType(), False),
        ("object_key", StringType(), False),  # "invoice", "finalize", a line id, "customer"
        ("kind", StringType(), False),
        ("tenant_id", StringType(), False),
        ("customer_id", StringType(), False),
        ("idempotency_key", StringType(), False),
        ("stripe_id", StringType(), True),
        ("amount_minor", LongType(), True),
        ("currency", StringType(), True),
        ("status", StringType(), False),
        ("attempts", IntegerType(), False),
        ("last_error", StringType(), True),
        ("updated_at", TimestampType(), False),
    ),
    constraints={"sync_status_known": "status IN ('synced', 'failed')"},
)

BILLING_WEBHOOK_DELIVERIES = TableSpec(
    layer="billing",
    name="webhook_deliveries",
    description=(
        "Every attempt to deliver an outbox event to a webhook endpoint: when, the HTTP status"
        " or error, and whether it was delivered (2xx)."
    ),
    schema=_schema(
        ("event_id", StringType(), False),
        ("endpoint", StringType(), False),
        ("attempt", IntegerType(), False),
        ("at", TimestampType(), False),
        ("status_code", IntegerType(), True),
        ("error", StringType(), True),
        ("delivered", BooleanType(), False),
        ("duration_ms", LongType(), False),
    ),
    properties=dict(APPEND_ONLY),
)

AUDIT_QUERY_LOG = TableSpec(
    layer="audit",
    name="query_log",
    description=(
        "Every read through the CLI or API: who (key id, role, the key's tenant scope), what"
        " (command and arguments), which tenant it was limited to, when, and rows returned."
    ),
    schema=_schema(
        ("query_id", StringType(), False),
        ("at", TimestampType(), False),
        ("key_id", StringType(), False),
        ("role", StringType(), False),
        ("key_tenant", StringType(), False),
        ("tenant", StringType(), True),
        ("command", StringType(), False),
        ("arguments", StringType(), False),
        ("rows", LongType(), False),
    ),
    properties=dict(APPEND_ONLY),
)

AUDIT_TIERING_LOG = TableSpec(
    layer="audit",
    name="tiering_log",
    description=(
        "Every step of every tier move: copied, verified (rows and content checksum per"
        " partition), deleted from the source, abandoned, downsampled, expired, vacuumed."
    ),
    schema=_schema(
        ("move_id", StringType(), False),
        ("at", TimestampType(), False),
        ("tenant_id", StringType(), True),
        ("step", StringType(), False),
        ("source", StringType(), False),
        ("target", StringType(), True),
        ("billing_date", DateType(), True),
        ("rows", LongType(), False),
        ("checksum", StringType(), True),
        ("bronze_version", LongType(), True),
        ("detail", StringType(), True),
    ),
    properties=dict(APPEND_ONLY),
)

AUDIT_ERASURES = TableSpec(
    layer="audit",
    name="erasures",
    description=(
        "GDPR erasures: which tenant, the pseudonym that replaced the user's identifier (never"
        " the identifier), who asked and why, rows rewritten per table, landing files"
        " rewritten with their sha256 before and after."
    ),
    schema=_schema(
        ("erasure_id", StringType(), False),
        ("at", TimestampType(), False),
        ("tenant_id", StringType(), False),
        ("pseudonym", StringType(), False),
        ("requested_by", StringType(), False),
        ("reason", StringType(), True),
        ("rows", MapType(StringType(), LongType()), False),
        ("files", StringType(), False),
    ),
    properties=dict(APPEND_ONLY),
)

VIEWS_CURRENT_USAGE = TableSpec(
    layer="views",
    name="current_usage",
    description=(
        "Materialised: each customer's usage so far in its current billing period, per"
        " subscription segment and meter, with the period's estimated total (an estimate:"
        " the period is open). Rebuilt from gold by `meterlake.analytics.views`."
    ),
    schema=_schema(
        ("tenant_id", StringType(), False),
        ("customer_id", StringType(), False),
        ("period_start", TimestampType(), False),
        ("period_end", TimestampType(), False),
        ("segment_start", TimestampType(), False),
        ("segment_end", TimestampType(), False),
        ("plan_id", StringType(), False),
        ("meter_key", StringType(), False),
        ("quantity", QUANTITY, False),
        ("currency", StringType(), False),
        ("estimated_total", MONEY, False),
        ("as_of", TimestampType(), False),
        ("bronze_version", LongType(), False),
    ),
)


def _daily_usage(name: str, description: str, *dimensions: tuple[str, DataType, bool]):
    """A materialised daily usage view; the two differ in their dimension columns."""
    return TableSpec(
        layer="views",
        name=name,
        description=description,
        schema=_schema(
            ("tenant_id", StringType(), False),
            ("day", DateType(), False),
            ("meter_key", StringType(), False),
            *dimensions,
            ("customers", LongType(), False),
            ("events", LongType(), False),
            ("sum_value", QUANTITY, True),
        ),
    )


VIEWS_USAGE_BY_DIMENSION = _daily_usage(
    "usage_by_dimension",
    "Materialised: usage per tenant, UTC day, meter, event type, region and resource"
    " (customers, events, sum of metered values), from silver.usage_day.",
    ("event_type", StringType(), False),
    ("region", StringType(), True),
    ("resource_id", StringType(), True),
)
VIEWS_TENANT_DAILY_USAGE = _daily_usage(
    "tenant_daily_usage",
    "Materialised: usage per tenant, UTC day and meter, from silver.usage_day.",
)

ANALYTICS_ANOMALIES = TableSpec(
    layer="analytics",
    name="anomalies",
    description=(
        "Hours whose usage of a meter by a customer lies more than k standard deviations"
        " from the mean of the hours before it (spike above, drop below)."
    ),
    schema=_schema(
        ("tenant_id", StringType(), False),
        ("customer_id", StringType(), False),
        ("meter_key", StringType(), False),
        ("hour_start", TimestampType(), False),
        ("value", QUANTITY, False),
        ("baseline_mean", DoubleType(), False),
        ("baseline_stddev", DoubleType(), False),
        ("baseline_hours", LongType(), False),
        ("z_score", DoubleType(), True),
        ("direction", StringType(), False),
        ("k", DoubleType(), False),
        ("detected_at", TimestampType(), False),
    ),
    constraints={"direction_known": "direction IN ('spike', 'drop')"},
)

ALL_TABLES: tuple[TableSpec, ...] = (
    BRONZE_EVENTS,
    BRONZE_QUARANTINE,
    BRONZE_BATCHES,
    REF_CATALOG_VERSIONS,
    REF_METERS,
    REF_PLANS,
    REF_PLAN_CHARGES,
    REF_CUSTOMERS,
    REF_SUBSCRIPTIONS,
    REF_CREDITS,
    REF_TENANTS,
    REF_FX_RATES,
    SILVER_USAGE_MINUTE,
    SILVER_USAGE_HOUR,
    SILVER_USAGE_DAY,
    GOLD_PERIOD_USAGE,
    BILLING_INVOICES,
    BILLING_INVOICE_LINES,
    BILLING_OUTBOX,
    BILLING_RUNS,
    BILLING_STRIPE_SYNC,
    BILLING_WEBHOOK_DELIVERIES,
    RECON_RESULTS,
    QUALITY_RESULTS,
    AUDIT_QUERY_LOG,
    AUDIT_TIERING_LOG,
    AUDIT_ERASURES,
    VIEWS_CURRENT_USAGE,
    VIEWS_USAGE_BY_DIMENSION,
    VIEWS_TENANT_DAILY_USAGE,
    ANALYTICS_ANOMALIES,
    COLD_EVENTS,
)


def create_table(spark: SparkSession, settings: Settings, spec: TableSpec) -> bool:
    """Create ``spec`` at its path if absent and make sure its constraints exist.

    Returns True when the table was created by this call. Safe to call any number of times.
    Constraints are declared as ``delta.constraints.*`` properties at creation (one commit,
    no table scan); a table created by an older meterlake gets the missing ones by ALTER.
    """
    from delta.tables import DeltaTable

    path = spec.path(settings)
    created = not DeltaTable.isDeltaTable(spark, path)
    if created:
        builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(spec.schema)
        if spec.partition_by:
            builder = builder.partitionedBy(*spec.partition_by)
        properties = {
            **spec.properties,
            **{f"delta.constraints.{name}": rule for name, rule in spec.constraints.items()},
        }
        for key, value in properties.items():
            builder = builder.property(key, value)
        if spec.description:
            builder = builder.comment(spec.description)
        builder.execute()
        return True
    _add_missing_columns(spark, path, spec)
    existing = _constraint_names(spark, path)
    for name, expression in spec.constraints.items():
        if name not in existing:
            spark.sql(f"ALTER TABLE delta.`{path}` ADD CONSTRAINT {name} CHECK ({expression})")
    return False


def _add_missing_columns(spark: SparkSession, path: str, spec: TableSpec) -> None:
    """Columns a newer meterlake declares (always nullable) join a table made by an older
    one, so ``meterlake init`` upgrades a warehouse in place."""
    present = {f.name for f in spark.read.format("delta").load(path).schema}
    missing = [f for f in spec.schema if f.name not in present]
    if missing:
        columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in missing)
        spark.sql(f"ALTER TABLE delta.`{path}` ADD COLUMNS ({columns})")


def _constraint_names(spark: SparkSession, path: str) -> set[str]:
    rows = spark.sql(f"SHOW TBLPROPERTIES delta.`{path}`").collect()
    prefix = "delta.constraints."
    return {row.key[len(prefix) :] for row in rows if row.key.startswith(prefix)}


def nullable_schema(spec: TableSpec) -> StructType:
    """``spec``'s schema with every field nullable, for frames built from Python rows
    (`delta_io.append` casts them to the declared schema, where Delta enforces NOT NULL)."""
    return StructType([StructField(f.name, f.dataType, True) for f in spec.schema])


def read(spark: SparkSession, settings: Settings, spec: TableSpec):
    """The current snapshot of a meterlake table as a DataFrame."""
    return spark.read.format("delta").load(spec.path(settings))
