"""Invoices per DESIGN.md section 4: a pure function of catalog, usage and ``as_of``.

For each period of a customer that has ended by ``as_of``:

- its own lines price the usage received before its close (a draft, while ``as_of`` is
  before the close, prices what was received up to ``as_of``);
- for every earlier period whose late usage it carries, ``adjustment`` lines hold the
  difference between pricing that period's usage received before this invoice's close
  and before the previous invoice's close: one line per charge (or commitment true-up)
  whose amount changed;
- credits are applied over final invoices in period order (`credits.apply_credits`);
  a draft shows what it would use;
- a customer invoiced in another currency has the finished invoice converted
  (`meterlake.billing.fx`), the rate and its rounding recorded on it.

Everything is computed from `UsageRow`s (gold), so the same rows always give the same
invoices, to the cent and to the line id.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from meterlake.billing.credits import InvoiceDue, apply_credits
from meterlake.billing.fx import Conversion, FxRates, convert_amounts, last_day
from meterlake.billing.lines import Line, segment_lines
from meterlake.billing.periods import segments
from meterlake.billing.schedule import ScheduledPeriod, schedule
from meterlake.billing.usage import UsageRow, quantity
from meterlake.catalog.model import Catalog, Customer
from meterlake.currency import round_money

# A draft prices usage received up to and including as_of; lineage stores the window as
# half-open [from, before), so a draft's bound is as_of plus the smallest time step.
_INCLUSIVE = timedelta(microseconds=1)


@dataclass(frozen=True)
class InvoiceLine:
    kind: str
    plan: str | None
    meter: str | None
    quantity: Decimal
    amount: Decimal
    period_start: datetime
    period_end: datetime
    event_type: str | None = None
    received_from: datetime | None = None
    received_before: datetime | None = None
    source_amount: Decimal | None = None  # before conversion (converted invoices only)

    @classmethod
    def traced(
        cls,
        catalog: Catalog,
        line: Line,
        received_from: datetime | None,
        received_before: datetime,
        **changes,
    ) -> InvoiceLine:
        """``line`` with the events it prices: its meter's type, received in the window."""
        event_type = catalog.meter(line.meter).event_type if line.meter else None
        fields = {**asdict(line), **changes}
        return cls(
            **fields,
            event_type=event_type,
            received_from=received_from,
            received_before=received_before,
        )


@dataclass(frozen=True)
class Invoice:
    tenant: str
    customer: str
    currency: str
    period_start: datetime
    period_end: datetime
    close: datetime
    status: str
    lines: tuple[InvoiceLine, ...]
    subtotal: Decimal
    credits: Decimal
    total: Decimal = field(init=False)
    fx: Conversion | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "total", self.subtotal - self.credits)

    @property
    def invoice_id(self) -> str:
        return invoice_id(self.tenant, self.customer, self.period_start)

    def line_id(self, number: int) -> str:
        return f"{self.invoice_id}-{number:03d}"

    @property
    def revision(self) -> str:
        """A digest of everything the invoice says; equal revisions are equal invoices.
        (Conversion fields are left out when unset, so invoices in their plans' currency
        keep the revisions they had before conversion existed.)"""
        content = {k: v for k, v in asdict(self).items() if k != "close"}
        if content["fx"] is None:
            del content["fx"]
        for line in content["lines"]:
            if line["source_amount"] is None:
                del line["source_amount"]
        text = json.dumps(content, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def invoice_id(tenant: str, customer: str, period_start: datetime) -> str:
    """Stable id of a customer's invoice for the period starting at ``period_start``."""
    key = f"{tenant}\0{customer}\0{period_start.isoformat()}"
    return "in_" + hashlib.sha256(key.encode()).hexdigest()[:20]


LineKey = tuple[datetime, int | str]


def price_period(
    catalog: Catalog, customer: Customer, period: ScheduledPeriod, rows: Iterable[UsageRow]
) -> dict[LineKey, Line]:
    """Lines of ``period`` from ``rows``, keyed by (segment start, charge index or
    "commitment") so two pricings of the same period can be compared line by line."""
    by_cell: dict[tuple[datetime, str], list[UsageRow]] = defaultdict(list)
    for row in rows:
        by_cell[row.segment_start, row.meter].append(row)
    priced: dict[LineKey, Line] = {}
    for segment in segments(customer, period.period):
        plan = catalog.plan(segment.plan)
        usage = {
            meter.key: quantity(meter.aggregation, by_cell.get((segment.start, meter.key), ()))
            for meter in catalog.meters
        }
        for index, line in enumerate(segment_lines(plan, segment, usage)):
            key = "commitment" if line.kind == "commitment" else index
            priced[segment.start, key] = line
    return priced


def _own_lines(
    catalog: Catalog,
    customer: Customer,
    period: ScheduledPeriod,
    rows: list[UsageRow],
    received_before: datetime,
) -> list[InvoiceLine]:
    on_time = [r for r in rows if r.carrier == period.start]
    return [
        InvoiceLine.traced(catalog, line, None, received_before)
        for line in price_period(catalog, customer, period, on_time).values()
    ]


def _adjustments(
    catalog: Catalog,
    customer: Customer,
    earlier: ScheduledPeriod,
    rows: list[UsageRow],
    carrier: ScheduledPeriod,
    received_from: datetime,
    received_before: datetime,
) -> list[InvoiceLine]:
    """What ``carrier``'s invoice adds for ``earlier``: the change in each line between the
    usage received before the previous close and before this one."""
    if not any(r.carrier == carrier.start for r in rows):
        return []
    billed = [r for r in rows if r.carrier is not None and r.carrier < carrier.start]
    before = price_period(catalog, customer, earlier, billed)
    after = price_period(
        catalog, customer, earlier, billed + [r for r in rows if r.carrier == carrier.start]
    )
    lines = []
    for key in sorted(before.keys() | after.keys(), key=lambda k: (k[0], str(k[1]))):
        old, new = before.get(key), after.get(key)
        line = new or old
        change = (new.amount if new else 0) - (old.amount if old else 0)
        if change == 0:
            continue
        moved = (new.quantity - old.quantity) if line.kind == "usage" else Decimal(0)
        lines.append(
            InvoiceLine.traced(
                catalog,
                line,
                received_from,
                received_before,
                kind="adjustment",
                quantity=moved,
                amount=change,
            )
        )
    return lines


def customer_invoices(
    catalog: Catalog,
    customer: Customer,
    rows: Iterable[UsageRow],
    as_of: datetime,
    rates: FxRates | None = None,
    max_rate_age_days: int = 7,
) -> list[Invoice]:
    """Every invoice of ``customer`` as of ``as_of``, in period order (converted with
    ``rates`` when the customer has an ``invoice_currency``)."""
    by_period: dict[datetime, list[UsageRow]] = defaultdict(list)
    for row in rows:
        by_period[row.period_start].append(row)
    grace = catalog.grace(customer.tenant)
    ended = [p for p in schedule(customer, grace, as_of) if p.end <= as_of]
    currency = catalog.plan(customer.subscriptions[0].plan).currency
    drafts = []
    for index, period in enumerate(ended):
        final = as_of >= period.close
        received_before = period.close if final else as_of + _INCLUSIVE
        lines = _own_lines(catalog, customer, period, by_period[period.start], received_before)
        for earlier in ended[:index]:
            lines += _adjustments(
                catalog,
                customer,
                earlier,
                by_period[earlier.start],
                period,
                ended[index - 1].close,
                received_before,
            )
        subtotal = sum((line.amount for line in lines), Decimal(0))
        drafts.append((period, final, lines, subtotal))
    applied = apply_credits(
        customer.credits,
        [InvoiceDue(period.end, subtotal, final) for period, final, _, subtotal in drafts],
    )
    invoices = []
    for (period, final, lines, subtotal), exact in zip(drafts, applied, strict=True):
        credit = round_money(exact, currency)  # whole minor units already: the catalog checks
        invoice = Invoice(
            customer.tenant,
            customer.id,
            currency,
            period.start,
            period.end,
            period.close,
            "final" if final else "draft",
            tuple(lines),
            subtotal,
            credit,
        )
        if customer.invoice_currency:
            day = last_day(period.end, customer.timezone)
            dated, rate = (rates or FxRates()).rate_on(
                currency, customer.invoice_currency, day, max_rate_age_days
            )
            invoice = converted(invoice, customer.invoice_currency, rate, dated)
        invoices.append(with_credit_line(invoice, credit))
    return invoices


def converted(invoice: Invoice, target: str, rate: Decimal, rate_date: date) -> Invoice:
    """``invoice`` (before its credit line) in ``target`` at ``rate`` (see `billing.fx`)."""
    amounts, credit, rounding = convert_amounts(
        [line.amount for line in invoice.lines], invoice.credits, rate, target
    )
    lines = tuple(
        replace(line, amount=amount, source_amount=line.amount)
        for line, amount in zip(invoice.lines, amounts, strict=True)
    )
    return replace(
        invoice,
        currency=target,
        lines=lines,
        subtotal=sum(amounts, Decimal(0)),
        credits=credit,
        fx=Conversion(invoice.currency, rate, rate_date, rounding),
    )


def with_credit_line(invoice: Invoice, source_credit: Decimal) -> Invoice:
    """The invoice with its credits as a negative last line (``source_credit``: the credit
    before conversion, kept on the line of a converted invoice)."""
    if not invoice.credits:
        return invoice
    line = InvoiceLine(
        "credit",
        None,
        None,
        Decimal(1),
        -invoice.credits,
        invoice.period_start,
        invoice.period_end,
        source_amount=-source_credit if invoice.fx else None,
    )
    return replace(invoice, lines=(*invoice.lines, line))


def pending_adjustments(
    catalog: Catalog, customer: Customer, rows: Iterable[UsageRow], as_of: datetime
) -> list[tuple[datetime, Decimal, datetime | None]]:
    """Late usage of periods final at ``as_of`` that no final invoice has billed yet:
    (period start, amount of the adjustment to come, carrier period start or None when
    the customer has no later period and the usage stays unbilled)."""
    by_period: dict[datetime, list[UsageRow]] = defaultdict(list)
    for row in rows:
        by_period[row.period_start].append(row)
    grace = catalog.grace(customer.tenant)
    # Carriers start before the arrivals they carry, and arrivals are at most as_of.
    plan = schedule(customer, grace, as_of + _INCLUSIVE)
    found = []
    for index, period in enumerate(plan):
        if period.end > as_of or as_of < period.close:
            continue
        mine = by_period[period.start]
        for carrier_index in range(index + 1, len(plan)):
            carrier = plan[carrier_index]
            if carrier.end <= as_of and as_of >= carrier.close:
                continue  # billed on a final invoice already
            waiting = _adjustments(
                catalog, customer, period, mine, carrier,
                plan[carrier_index - 1].close, carrier.close,
            )  # fmt: skip
            if waiting:
                amount = sum((line.amount for line in waiting), Decimal(0))
                found.append((period.start, amount, carrier.start))
        orphans = [r for r in mine if r.carrier is None]
        if orphans:
            billed = [r for r in mine if r.carrier is not None]
            before = price_period(catalog, customer, period, billed)
            after = price_period(catalog, customer, period, billed + orphans)
            amount = sum((li.amount for li in after.values()), Decimal(0)) - sum(
                (li.amount for li in before.values()), Decimal(0)
            )
            found.append((period.start, amount, None))
    return found
