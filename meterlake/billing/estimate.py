"""``usage show``: a customer's current-period usage and an estimated amount.

The estimate prices the usage received so far in the period containing ``as_of`` as if
the period ended now with no more usage, with the flat fees of the whole period; it is
labelled an estimate because it is one until the period's invoice is final.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from meterlake.billing.invoices import price_period
from meterlake.billing.lines import Line
from meterlake.billing.periods import Segment, segments
from meterlake.billing.run import select_customers, usage_rows
from meterlake.billing.schedule import ScheduledPeriod, schedule
from meterlake.billing.usage import UsageRow, format_quantity, quantity
from meterlake.catalog.model import Customer
from meterlake.clock import format_instant
from meterlake.currency import format_money
from meterlake.errors import ConfigError
from meterlake.tiering.events import events_at

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from meterlake.catalog.store import StoredCatalog
    from meterlake.config import Settings


@dataclass(frozen=True)
class Estimate:
    customer: Customer
    currency: str
    period: ScheduledPeriod
    as_of: datetime
    usage: dict[tuple[Segment, str], Decimal]  # per segment (tiers restart) and meter
    lines: list[Line]
    bronze_version: int
    stored: StoredCatalog
    rows: list[UsageRow]  # the customer's gold rows of every period, as of as_of

    @property
    def amount(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal(0))


def segment_usage(
    stored: StoredCatalog, customer: Customer, period: ScheduledPeriod, rows: list[UsageRow]
) -> dict[tuple[Segment, str], Decimal]:
    """Each meter's quantity per segment of ``period`` over ``rows`` (any carriers)."""
    return {
        (segment, meter.key): quantity(
            meter.aggregation,
            [r for r in rows if r.segment_start == segment.start and r.meter == meter.key],
        )
        for segment in segments(customer, period.period)
        for meter in stored.catalog.meters
    }


def one_customer(stored: StoredCatalog, customer: str, tenant: str | None) -> Customer:
    found = select_customers(stored, [customer], tenant)
    if len(found) > 1:
        tenants = ", ".join(sorted(c.tenant for c in found))
        raise ConfigError(f"--customer: {customer!r} exists in tenants {tenants}; add --tenant")
    return found[0]


def current_period(customer: Customer, stored: StoredCatalog, as_of: datetime):
    """The customer's billing period containing ``as_of``, or None (no subscription then)."""
    grace = stored.catalog.grace(customer.tenant)
    return next((p for p in schedule(customer, grace, as_of) if p.start <= as_of < p.end), None)


def estimates(
    spark: SparkSession,
    settings: Settings,
    stored: StoredCatalog,
    customers: list[Customer],
    as_of: datetime,
    *,
    from_bronze: bool = False,
) -> list[Estimate]:
    """Current-period estimates of ``customers`` (those with a period containing ``as_of``)
    in one read; ``from_bronze`` prices bronze directly, not waiting for the rollups."""
    from meterlake.tiering.events import bronze_version

    current = [(c, p) for c in customers if (p := current_period(c, stored, as_of)) is not None]
    if not current:
        return []
    version = bronze_version(spark, settings)
    # From bronze, read only the current periods' days (partition pruning): the estimate
    # needs no earlier period's rows.
    since = min(p.start for _, p in current) if from_bronze else None
    found = usage_rows(
        spark,
        settings,
        stored,
        [c for c, _ in current],
        as_of,
        version,
        from_bronze=from_bronze,
        since=since,
    )
    out = []
    for customer, period in current:
        rows = found.get((customer.tenant, customer.id), [])
        mine = [r for r in rows if r.period_start == period.start]
        usage = segment_usage(stored, customer, period, mine)
        lines = list(price_period(stored.catalog, customer, period, mine).values())
        currency = stored.catalog.plan(customer.subscriptions[0].plan).currency
        out.append(Estimate(customer, currency, period, as_of, usage, lines, version, stored, rows))
    return out


def current_estimate(
    spark: SparkSession,
    settings: Settings,
    customer_id: str,
    as_of: datetime,
    tenant: str | None = None,
) -> Estimate:
    from meterlake.catalog.store import read_catalog

    stored = read_catalog(spark, settings)
    customer = one_customer(stored, customer_id, tenant)
    found = estimates(spark, settings, stored, [customer], as_of)
    if not found:
        raise ConfigError(
            f"--as-of: {customer_id!r} has no billing period containing {format_instant(as_of)}"
        )
    return found[0]


def estimate_report(
    spark: SparkSession,
    settings: Settings,
    customer_id: str,
    as_of: datetime,
    *,
    tenant: str | None = None,
    window: str | None = None,
    meter: str | None = None,
) -> list[str]:
    """The text ``usage show`` prints."""
    from meterlake.billing.invoices import invoice_id
    from meterlake.ingest.progress import read_progress
    from meterlake.rollups.refresh import load_state
    from meterlake.rollups.windows import parse_window

    spec = parse_window(window) if window and window != "period" else None
    estimate = current_estimate(spark, settings, customer_id, as_of, tenant)
    c, p = estimate.customer, estimate.period
    local = p.start.astimezone(_zone(c)).isoformat()
    out = [
        f"customer {c.id} (tenant {c.tenant}, {c.timezone}, {c.billing_anchor} anchor)",
        f"current period {format_instant(p.start)} → {format_instant(p.end)}"
        f" (starts {local} local; closes {format_instant(p.close)})",
        f"usage received up to {format_instant(as_of)} (bronze version {estimate.bronze_version}):",
    ]
    mark = read_progress(settings)
    out.append(f"data fresh as of {mark.received_through if mark else 'unknown (no stream run)'}")
    state = load_state(settings)
    if state is None or state.bronze_version < estimate.bronze_version:
        out.append("  (rollups lag bronze: run `meterlake pipeline run` for the latest usage)")
    out += _usage_lines(estimate.usage)
    final = final_invoice(spark, settings, invoice_id(c.tenant, c.id, p.start))
    if final is not None:
        out.append(f"FINAL: invoice {final} is final; recomputed here, {estimate.currency}:")
    else:
        out.append(f"ESTIMATE (not an invoice) for the period so far, {estimate.currency}:")
    for line in estimate.lines:
        label = f"{line.kind} {line.meter or line.plan}"
        out.append(f"  {label:<32}{format_money(line.amount, estimate.currency):>14}")
    out.append(f"  {'estimated total':<32}{format_money(estimate.amount, estimate.currency):>14}")
    if window == "period":
        out += _period_windows(estimate)
    elif spec is not None:
        out += _event_windows(spark, settings, estimate, spec, meter)
    return out


def final_invoice(spark: SparkSession, settings: Settings, wanted: str) -> str | None:
    """``wanted`` if that invoice exists and is final (an estimate is labelled until then)."""
    from pyspark.sql import functions as F

    from meterlake import tables

    invoices = tables.read(spark, settings, tables.BILLING_INVOICES)
    found = invoices.where((F.col("invoice_id") == wanted) & (F.col("status") == "final"))
    return wanted if found.limit(1).count() else None


def _usage_lines(usage: dict[tuple[Segment, str], Decimal]) -> list[str]:
    return [
        f"  [{format_instant(segment.start)}, {format_instant(segment.end)}) {segment.plan:<10}"
        f" {meter:<16}{format_quantity(amount):>16}"
        for (segment, meter), amount in usage.items()
    ]


def _zone(customer: Customer):
    from zoneinfo import ZoneInfo

    return ZoneInfo(customer.timezone)


def _event_windows(spark, settings, estimate: Estimate, spec, meter) -> list[str]:
    from pyspark.sql import functions as F

    from meterlake.rollups.meter_values import metered_events
    from meterlake.rollups.windows import usage_windows

    customer, period = estimate.customer, estimate.period
    meters = estimate.stored.catalog.meters
    events = events_at(spark, settings).where(
        (F.col("tenant_id") == customer.tenant)
        & (F.col("customer_id") == customer.id)
        & (F.col("billing_time") >= F.lit(period.start))
        & (F.col("billing_time") < F.lit(period.end))
    )
    metered = metered_events(events, meters)
    if meter:
        metered = metered.where(F.col("meter_key") == meter)
    out = [f"{spec.kind} windows ({spec.size}{' / ' + spec.slide if spec.slide else ''}):"]
    for row in usage_windows(metered, spec).collect():
        out.append(
            f"  {row.meter_key:<14}{row.window_start:%Y-%m-%d %H:%M:%S} → "
            f"{row.window_end:%Y-%m-%d %H:%M:%S}  events {row.events:>6}"
            f"  sum {format_quantity(row.sum_value or Decimal(0)):>14}"
            f"  max {format_quantity(row.max_value or Decimal(0)):>10}"
        )
    return out


def _period_windows(estimate: Estimate) -> list[str]:
    """Usage per billing period so far (all arrivals), from the gold rows already read."""
    stored, customer = estimate.stored, estimate.customer
    out = ["billing periods (usage by event time, all arrivals so far):"]
    grace = stored.catalog.grace(customer.tenant)
    for period in schedule(customer, grace, estimate.as_of):
        mine = [r for r in estimate.rows if r.period_start == period.start]
        out.append(f"  period {format_instant(period.start)} → {format_instant(period.end)}")
        out += _usage_lines(segment_usage(stored, customer, period, mine))
    return out
