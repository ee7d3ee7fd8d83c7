"""Read and validate a catalog YAML file without starting Spark.

Validation is two layers: ``schemas/catalog.json`` (shapes and types) and the
cross-reference rules below (plans exist, subscriptions do not overlap, tiers ascend).
Every error names the field as a user finds it: ``customers[0].subscriptions[1].end``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from meterlake.catalog.model import (
    Catalog,
    Charge,
    Credit,
    Customer,
    Meter,
    Plan,
    Subscription,
    Tenant,
    Tier,
    TierAges,
)
from meterlake.clock import parse_instant
from meterlake.currency import MINOR_UNITS
from meterlake.errors import CatalogError, ConfigError, InputFileError
from meterlake.paths import schemas_dir


class _StringTimestampLoader(yaml.SafeLoader):
    """SafeLoader that keeps ISO timestamps as text, so offsets are never silently dropped."""


_StringTimestampLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def format_path(parts: Iterable[str | int]) -> str:
    """``["customers", 0, "end"]`` → ``customers[0].end``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@cache
def _catalog_validator():
    from jsonschema import Draft202012Validator

    schema = json.loads((schemas_dir() / "catalog.json").read_text())
    return Draft202012Validator(schema)


def load_catalog_file(path: str | Path) -> Catalog:
    """Parse and validate ``path``; raise `CatalogError` naming the first bad field."""
    file = Path(path)
    if not file.exists():
        raise InputFileError(f"{file}: no such file")
    if file.is_dir():
        raise InputFileError(f"{file}: is a directory, expected a catalog YAML file")
    return parse_catalog_text(file.read_bytes(), str(file))


def parse_catalog_text(raw: bytes, source: str) -> Catalog:
    """Parse and validate catalog YAML; the text is kept so a stored version can be read
    back by this same parser."""
    try:
        document = yaml.load(raw, Loader=_StringTimestampLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise CatalogError("", f"{source}: not valid YAML{where}") from exc
    catalog = parse_catalog(document, sha256=hashlib.sha256(raw).hexdigest(), source=source)
    return replace(catalog, text=raw.decode("utf-8", errors="replace"))


def parse_catalog(document: Any, *, sha256: str = "", source: str = "") -> Catalog:
    """Validate a catalog document (already parsed YAML/JSON) and build the typed `Catalog`."""
    if not isinstance(document, dict):
        raise CatalogError("", "the catalog must be a mapping with meters, plans and customers")
    errors = sorted(_catalog_validator().iter_errors(document), key=lambda e: list(e.path))
    if errors:
        raise _schema_error(errors[0])
    meters = tuple(_meter(m) for m in document["meters"])
    plans = tuple(_plan(p, i) for i, p in enumerate(document["plans"]))
    _unique((m.key for m in meters), "meters", "key")
    _unique((p.id for p in plans), "plans", "id")
    meter_keys = {m.key for m in meters}
    for index, meter in enumerate(meters):
        if meter.aggregation == "unique_count" and not meter.property:
            raise CatalogError(f"meters[{index}].property", "unique_count needs a property")
    for p_index, plan in enumerate(plans):
        for c_index, charge in enumerate(plan.charges):
            if charge.type == "usage" and charge.meter not in meter_keys:
                raise CatalogError(
                    f"plans[{p_index}].charges[{c_index}].meter",
                    f"unknown meter {charge.meter!r}",
                )
    plans_by_id = {p.id: p for p in plans}
    customers = tuple(_customer(c, i, plans_by_id) for i, c in enumerate(document["customers"]))
    _unique(((c.tenant, c.id) for c in customers), "customers", "id")
    tenants = tuple(_tenant(t, i) for i, t in enumerate(document.get("tenants", [])))
    _unique((t.id for t in tenants), "tenants", "id")
    return Catalog(
        meters,
        plans,
        customers,
        sha256=sha256,
        source_file=source,
        tenants=tenants,
        text=json.dumps(document, default=str),  # JSON is YAML: storable and re-parseable
    )


def _tenant(raw: dict, index: int) -> Tenant:
    defaults = TierAges()
    ages = TierAges(
        raw.get("hot_days", defaults.hot_days),
        raw.get("warm_days", defaults.warm_days),
        raw.get("retention_days", defaults.retention_days),
    )
    if not ages.hot_days < ages.warm_days <= ages.retention_days:
        raise CatalogError(
            f"tenants[{index}].warm_days",
            f"tier ages must rise: hot_days {ages.hot_days} < warm_days {ages.warm_days}"
            f" <= retention_days {ages.retention_days}",
        )
    return Tenant(raw["id"], timedelta(hours=raw.get("grace_hours", 48)), ages)


def _schema_error(error) -> CatalogError:
    path = format_path(error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1]
        return CatalogError(format_path([*error.absolute_path, missing]), "is required")
    if error.validator == "additionalProperties":
        return CatalogError(path, error.message.replace("Additional properties", "unknown field"))
    if error.schema.get("pattern", "").startswith("^[0-9]+(\\.") or (
        error.validator == "oneOf" and isinstance(error.instance, float)
    ):
        return CatalogError(
            path, f'{error.instance!r} must be a quoted decimal string such as "49.00"'
        )
    if error.validator == "enum":
        return CatalogError(path, f"{error.instance!r} is not one of {error.validator_value}")
    return CatalogError(path, error.message)


def _unique(values: Iterable[Any], section: str, field: str) -> None:
    seen: set[Any] = set()
    for index, value in enumerate(values):
        if value in seen:
            shown = value[-1] if isinstance(value, tuple) else value
            raise CatalogError(f"{section}[{index}].{field}", f"duplicate {field} {shown!r}")
        seen.add(value)


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _meter(raw: dict[str, Any]) -> Meter:
    return Meter(raw["key"], raw["event_type"], raw["aggregation"], raw.get("property"))


def _plan(raw: dict[str, Any], index: int) -> Plan:
    where = f"plans[{index}]"
    if raw["currency"] not in MINOR_UNITS:
        raise CatalogError(f"{where}.currency", f"{raw['currency']!r} is not an ISO 4217 code")
    charges = tuple(_charge(c, f"{where}.charges[{i}]") for i, c in enumerate(raw["charges"]))
    return Plan(
        id=raw["id"],
        currency=raw["currency"],
        interval=raw.get("interval", "month"),
        charges=charges,
        minimum_commitment=_decimal(raw.get("minimum_commitment")),
    )


_REQUIRED_BY_MODEL = {
    "per_unit": ("unit_price",),
    "package": ("package_size", "package_price"),
    "graduated": ("tiers",),
    "volume": ("tiers",),
}


def _charge(raw: dict[str, Any], where: str) -> Charge:
    if raw["type"] == "flat":
        extra = sorted(set(raw) - {"type", "amount"})
        if "amount" not in raw:
            raise CatalogError(f"{where}.amount", "is required for a flat charge")
        if extra:
            raise CatalogError(f"{where}.{extra[0]}", "is not allowed on a flat charge")
        return Charge(type="flat", amount=_decimal(raw["amount"]))
    for needed in ("meter", "model"):
        if needed not in raw:
            raise CatalogError(f"{where}.{needed}", "is required for a usage charge")
    model = raw["model"]
    allowed = {"type", "meter", "model", *_REQUIRED_BY_MODEL[model]}
    for needed in _REQUIRED_BY_MODEL[model]:
        if needed not in raw:
            raise CatalogError(f"{where}.{needed}", f"is required for the {model} model")
    extra = sorted(set(raw) - allowed)
    if extra:
        raise CatalogError(f"{where}.{extra[0]}", f"is not used by the {model} model")
    tiers = _tiers(raw["tiers"], f"{where}.tiers") if "tiers" in raw else None
    return Charge(
        type="usage",
        meter=raw["meter"],
        model=model,
        unit_price=_decimal(raw.get("unit_price")),
        package_size=_decimal(raw.get("package_size")),
        package_price=_decimal(raw.get("package_price")),
        tiers=tiers,
    )


def _tiers(raw: list[dict[str, Any]], where: str) -> tuple[Tier, ...]:
    tiers = tuple(
        Tier(_decimal(t["up_to"]), Decimal(t["unit_price"]), _decimal(t.get("flat_price")))
        for t in raw
    )
    previous = Decimal(0)
    for index, tier in enumerate(tiers):
        last = index == len(tiers) - 1
        if tier.up_to is None and not last:
            raise CatalogError(f"{where}[{index}].up_to", "null is only allowed on the last tier")
        if tier.up_to is not None and last:
            raise CatalogError(f"{where}[{index}].up_to", "the last tier must be null (unbounded)")
        if tier.up_to is not None and tier.up_to <= previous:
            raise CatalogError(
                f"{where}[{index}].up_to", f"must be greater than the previous tier ({previous})"
            )
        previous = tier.up_to if tier.up_to is not None else previous
    return tiers


def _instant(value: str, where: str) -> datetime:
    try:
        return parse_instant(str(value), where)
    except ConfigError as exc:
        raise CatalogError(where, str(exc).split(": ", 1)[1]) from exc


def _customer(raw: dict[str, Any], index: int, plans: dict[str, Plan]) -> Customer:
    where = f"customers[{index}]"
    try:
        ZoneInfo(raw["timezone"])
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CatalogError(
            f"{where}.timezone", f"{raw['timezone']!r} is not an IANA time zone"
        ) from exc
    subscriptions = []
    for s_index, sub in enumerate(raw["subscriptions"]):
        at = f"{where}.subscriptions[{s_index}]"
        if sub["plan"] not in plans:
            raise CatalogError(f"{at}.plan", f"unknown plan {sub['plan']!r}")
        start = _instant(sub["start"], f"{at}.start")
        end = _instant(sub["end"], f"{at}.end") if sub.get("end") is not None else None
        if end is not None and end <= start:
            raise CatalogError(f"{at}.end", "must be after start")
        if subscriptions:
            before = subscriptions[-1]
            if before.end is None:
                raise CatalogError(
                    f"{where}.subscriptions[{s_index - 1}].end",
                    "is open (null) but a later subscription follows",
                )
            if start < before.end:
                raise CatalogError(f"{at}.start", "overlaps the previous subscription")
        subscriptions.append(Subscription(sub["plan"], start, end))
    if not subscriptions:
        raise CatalogError(f"{where}.subscriptions", "needs at least one subscription")
    currencies = {plans[s.plan].currency for s in subscriptions}
    if len(currencies) > 1:
        raise CatalogError(
            f"{where}.subscriptions", f"plans mix currencies {sorted(currencies)}; use one"
        )
    currency = currencies.pop()
    invoice_currency = raw.get("invoice_currency")
    if invoice_currency is not None and invoice_currency not in MINOR_UNITS:
        raise CatalogError(
            f"{where}.invoice_currency", f"{invoice_currency!r} is not an ISO 4217 code"
        )
    for c_index, raw_credit in enumerate(raw.get("credits", [])):
        if -Decimal(raw_credit["amount"]).as_tuple().exponent > MINOR_UNITS[currency]:
            raise CatalogError(
                f"{where}.credits[{c_index}].amount",
                f"{raw_credit['amount']!r} has more decimals than {currency} allows"
                f" ({MINOR_UNITS[currency]})",
            )
    credits = tuple(
        Credit(
            Decimal(c["amount"]),
            _instant(c["expires"], f"{where}.credits[{i}].expires") if c["expires"] else None,
        )
        for i, c in enumerate(raw.get("credits", []))
    )
    return Customer(
        id=raw["id"],
        tenant=raw.get("tenant", "default"),
        timezone=raw["timezone"],
        billing_anchor=raw["billing_anchor"],
        subscriptions=tuple(subscriptions),
        credits=credits,
        stripe_customer_id=raw.get("stripe_customer_id"),
        # Invoicing in the plans' own currency is no conversion at all.
        invoice_currency=invoice_currency if invoice_currency != currency else None,
    )
