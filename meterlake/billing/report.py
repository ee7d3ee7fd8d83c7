"""Plain-text views of invoices for the CLI and the demo summary."""

from __future__ import annotations

from collections.abc import Iterable

from meterlake.billing.invoices import Invoice
from meterlake.billing.run import InvoiceRun
from meterlake.billing.usage import format_quantity
from meterlake.clock import format_instant
from meterlake.currency import format_money


def invoice_table(invoices: Iterable[Invoice], *, lines: bool = False) -> list[str]:
    """One row per invoice (and, with ``lines``, its lines indented below it)."""
    out = [
        f"  {'invoice':<24}{'customer':<14}{'period (UTC)':<45}{'status':<7}"
        f"{'subtotal':>12}{'credits':>10}{'total':>12}"
    ]
    for i in invoices:
        period = f"{format_instant(i.period_start)} → {format_instant(i.period_end)}"
        money = [format_money(v, i.currency) for v in (i.subtotal, i.credits, i.total)]
        out.append(
            f"  {i.invoice_id:<24}{i.customer:<14}{period:<45}{i.status:<7}"
            f"{money[0]:>12}{money[1]:>10}{money[2]:>12} {i.currency}"
        )
        if lines:
            for n, line in enumerate(i.lines, start=1):
                what = line.meter or line.plan or ""
                quantity = format_quantity(line.quantity)
                out.append(
                    f"      {n:>3} {line.kind:<11}{what:<14}qty {quantity:<14}"
                    f"{format_money(line.amount, i.currency):>12}"
                    f"  [{format_instant(line.period_start)}, {format_instant(line.period_end)})"
                )
    return out


def run_report(run: InvoiceRun, *, lines: bool = False) -> list[str]:
    """What an invoice run computed and what it wrote."""
    out = [
        f"invoices as of {format_instant(run.as_of)} (catalog version {run.catalog_version},"
        f" bronze version {run.bronze_version}): {len(run.invoices)} invoice(s)"
    ]
    out += invoice_table(run.invoices, lines=lines)
    saved = run.saved
    if saved is None:
        out.append("dry run: nothing written")
        return out
    out.append(
        f"written: {len(saved.created)} new, {len(saved.updated)} draft(s) updated,"
        f" {len(saved.finalized)} finalised; {len(saved.unchanged)} unchanged"
    )
    for invoice in saved.final_differs:
        out.append(
            f"  warning: final invoice {invoice.invoice_id} ({invoice.customer}) differs from a"
            " recomputation (catalog changed?); it stays as finalised"
        )
    return out
