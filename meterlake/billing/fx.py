"""Invoicing in another currency than the plans': dated rates and the conversion rule.

A customer with ``invoice_currency`` in the catalog is priced exactly as any other, in its
plans' currency; the finished invoice is then converted at the rate in effect on the
period's last day (in the customer's timezone): the newest rate dated on or before that
day, refused when older than ``METERLAKE_FX_MAX_AGE_DAYS``. Each line is converted and
rounded half-up to the target currency's minor unit (a line is what Stripe and the
customer see), the subtotal is the sum of converted lines, and the difference between it
and the converted exact subtotal is recorded as ``fx_rounding``. A credit that covered the
whole subtotal still covers the whole converted subtotal (rounding never leaves a cent due).

Rates come from a CSV file (``date,base,quote,rate``; 1 base = rate quote) loaded into
``ref.fx_rates`` like the catalog: each load is a version, identical files load nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from meterlake import tables
from meterlake.currency import MINOR_UNITS, round_money
from meterlake.delta_io import append
from meterlake.errors import ConfigError
from meterlake.lease import CATALOG, hold

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from meterlake.config import Settings

_HEADER = ["date", "base", "quote", "rate"]


class FxError(ConfigError):
    """No usable rate for a conversion an invoice needs."""


@dataclass(frozen=True)
class Conversion:
    """How an invoice was converted: recorded on it for auditors."""

    source_currency: str
    rate: Decimal
    rate_date: date
    rounding: Decimal


@dataclass(frozen=True)
class FxRates:
    """A version of the rate table: per (base, quote), rates in date order."""

    version: int = 0
    by_pair: dict[tuple[str, str], list[tuple[date, Decimal]]] = field(default_factory=dict)
    sha256: str = ""
    source_file: str = ""

    def rate_on(self, base: str, quote: str, day: date, max_age_days: int) -> tuple[date, Decimal]:
        """The newest ``base``→``quote`` rate dated on or before ``day``, at most
        ``max_age_days`` old."""
        series = self.by_pair.get((base, quote), [])
        index = bisect_right([d for d, _ in series], day)
        where = f"in ref.fx_rates version {self.version}" if self.version else "(no rates loaded)"
        if index == 0:
            raise FxError(f"fx: no {base}→{quote} rate on or before {day} {where}")
        dated, rate = series[index - 1]
        if day - dated > timedelta(days=max_age_days):
            raise FxError(
                f"fx: the newest {base}→{quote} rate on or before {day} is from {dated},"
                f" more than {max_age_days} days old {where}; load current rates"
            )
        return dated, rate


def parse_rates(data: bytes, source_file: str) -> FxRates:
    """Validate a rate file; a bad row stops the load naming its line and field."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source_file}: not UTF-8 text") from exc
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    if header != _HEADER:
        raise ConfigError(f"{source_file}:1: header must be {','.join(_HEADER)}, got {header}")
    pairs: dict[tuple[str, str], dict[date, Decimal]] = {}
    for number, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        at = f"{source_file}:{number}"
        if len(row) != 4:
            raise ConfigError(f"{at}: expected 4 fields ({','.join(_HEADER)}), got {len(row)}")
        day_text, base, quote, rate_text = (cell.strip() for cell in row)
        try:
            day = date.fromisoformat(day_text)
        except ValueError as exc:
            raise ConfigError(f"{at}: date {day_text!r} is not YYYY-MM-DD") from exc
        for name, code in (("base", base), ("quote", quote)):
            if code not in MINOR_UNITS:
                raise ConfigError(f"{at}: {name} {code!r} is not an ISO 4217 code")
        if base == quote:
            raise ConfigError(f"{at}: base and quote are both {base}")
        try:
            rate = Decimal(rate_text)
        except InvalidOperation as exc:
            raise ConfigError(f"{at}: rate {rate_text!r} is not a decimal number") from exc
        if not rate.is_finite() or rate <= 0:
            raise ConfigError(f"{at}: rate must be positive, got {rate_text!r}")
        if -rate.as_tuple().exponent > 12 or rate >= Decimal(10) ** 26:
            raise ConfigError(f"{at}: rate {rate_text!r} exceeds 26 digits before / 12 after")
        series = pairs.setdefault((base, quote), {})
        if day in series:
            raise ConfigError(f"{at}: a second {base}→{quote} rate for {day}")
        series[day] = rate
    if not pairs:
        raise ConfigError(f"{source_file}: no rates")
    return FxRates(
        0,
        {pair: sorted(series.items()) for pair, series in pairs.items()},
        hashlib.sha256(data).hexdigest(),
        source_file,
    )


def load_rates_file(path: str | Path) -> FxRates:
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{file}: {exc.strerror}") from exc
    return parse_rates(data, str(file))


def store_rates(spark: SparkSession, settings: Settings, rates: FxRates) -> tuple[int, bool]:
    """Write ``rates`` as the next version; (version, changed). Identical to current: nothing.
    Under the catalog lease, as catalog loads: two loads at once would pick one version."""
    from pyspark.sql import functions as F

    with hold(settings, CATALOG) as lease:
        latest = (
            tables.read(spark, settings, tables.REF_FX_RATES)
            .select("version", "sha256")
            .distinct()
            .orderBy(F.col("version").desc())
            .limit(1)
            .collect()
        )
        if latest and latest[0].sha256 == rates.sha256:
            return latest[0].version, False
        version = (latest[0].version if latest else 0) + 1
        now = settings.now()
        rows = [
            (version, day, base, quote, rate, rates.sha256, rates.source_file, now)
            for (base, quote), series in rates.by_pair.items()
            for day, rate in series
        ]
        frame = spark.createDataFrame(rows, tables.nullable_schema(tables.REF_FX_RATES))
        lease.check()
        append(frame, settings, tables.REF_FX_RATES, txn=("meterlake-fx", version))
        return version, True


def read_rates(spark: SparkSession, settings: Settings) -> FxRates:
    """The current rate table (empty when none was loaded)."""
    from pyspark.sql import functions as F

    table = tables.read(spark, settings, tables.REF_FX_RATES)
    top = table.agg(F.max("version")).first()[0]
    if top is None:
        return FxRates()
    by_pair: dict[tuple[str, str], list[tuple[date, Decimal]]] = {}
    rows = table.where(F.col("version") == top).orderBy("rate_date").collect()
    for row in rows:
        by_pair.setdefault((row.base, row.quote), []).append((row.rate_date, row.rate))
    return FxRates(top, by_pair, rows[0].sha256, rows[0].source_file)


def last_day(period_end: datetime, timezone: str) -> date:
    """The period's last calendar day where the customer is (its end is exclusive)."""
    return (period_end - timedelta(microseconds=1)).astimezone(ZoneInfo(timezone)).date()


def convert_amounts(
    amounts: list[Decimal], credit: Decimal, rate: Decimal, target: str
) -> tuple[list[Decimal], Decimal, Decimal]:
    """(converted lines, converted credit, rounding) per the module docstring; ``amounts``
    are the lines before credits, ``credit`` what the credits took of their sum."""
    converted = [round_money(a * rate, target) for a in amounts]
    subtotal = sum(amounts, Decimal(0))
    converted_subtotal = sum(converted, Decimal(0))
    rounding = converted_subtotal - round_money(subtotal * rate, target)
    converted_credit = round_money(credit * rate, target)
    if credit and (credit == subtotal or converted_credit > converted_subtotal):
        converted_credit = converted_subtotal
    return converted, converted_credit, rounding


def rates_for(spark: SparkSession, settings: Settings, customers) -> FxRates:
    """The rate table when any of ``customers`` is invoiced in another currency (one read);
    else an empty one (most warehouses never load rates)."""
    if any(c.invoice_currency for c in customers):
        return read_rates(spark, settings)
    return FxRates()
