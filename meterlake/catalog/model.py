"""Typed, frozen catalog objects; money and quantities are Decimal, instants aware UTC."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

DEFAULT_GRACE = timedelta(hours=48)


@dataclass(frozen=True)
class Meter:
    key: str
    event_type: str
    aggregation: str
    property: str | None = None


@dataclass(frozen=True)
class Tier:
    up_to: Decimal | None
    unit_price: Decimal
    flat_price: Decimal | None = None


@dataclass(frozen=True)
class Charge:
    type: str
    meter: str | None = None
    model: str | None = None
    amount: Decimal | None = None
    unit_price: Decimal | None = None
    package_size: Decimal | None = None
    package_price: Decimal | None = None
    tiers: tuple[Tier, ...] | None = None


@dataclass(frozen=True)
class Plan:
    id: str
    currency: str
    interval: str
    charges: tuple[Charge, ...]
    minimum_commitment: Decimal | None = None


@dataclass(frozen=True)
class Subscription:
    plan: str
    start: datetime
    end: datetime | None


@dataclass(frozen=True)
class Credit:
    amount: Decimal
    expires: datetime | None


@dataclass(frozen=True)
class Customer:
    id: str
    tenant: str
    timezone: str
    billing_anchor: str
    subscriptions: tuple[Subscription, ...]
    credits: tuple[Credit, ...] = ()
    stripe_customer_id: str | None = None
    invoice_currency: str | None = None  # None: invoiced in its plans' currency


@dataclass(frozen=True)
class TierAges:
    """How old (by billing time, in days) a tenant's data is when it changes tier: raw
    events leave the hot tier (bronze) for cold storage at ``hot_days``, the minute
    rollups go too (warm keeps hourly ones); hourly rollups go at ``warm_days``; cold raw
    events are deleted after ``retention_days``. Defaults are the seed's 30/180 days and
    seven years of retention."""

    hot_days: int = 30
    warm_days: int = 180
    retention_days: int = 2557


@dataclass(frozen=True)
class Tenant:
    id: str
    grace: timedelta = DEFAULT_GRACE
    tiers: TierAges = TierAges()


@dataclass(frozen=True)
class Catalog:
    meters: tuple[Meter, ...]
    plans: tuple[Plan, ...]
    customers: tuple[Customer, ...]
    sha256: str
    source_file: str
    tenants: tuple[Tenant, ...] = ()
    text: str = ""  # the YAML it was parsed from, stored with each catalog version

    def plan(self, plan_id: str) -> Plan:
        return next(p for p in self.plans if p.id == plan_id)

    def meter(self, key: str) -> Meter:
        return next(m for m in self.meters if m.key == key)

    def grace(self, tenant: str) -> timedelta:
        """How long after a period ends its tenant's late events still count as on time."""
        return next((t.grace for t in self.tenants if t.id == tenant), DEFAULT_GRACE)

    def tiers(self, tenant: str) -> TierAges:
        return next((t.tiers for t in self.tenants if t.id == tenant), TierAges())
