"""Post-invoice reconciliation against Stripe: what Stripe holds for each synced invoice
must equal the meterlake invoice, line by line and in total.

For every invoice whose sync finished, the Stripe invoice and its invoice items are
fetched; each meterlake line must have exactly one item (matched by the
``meterlake_line_id`` metadata the sync wrote) with the same amount and currency, Stripe
must hold no other item, and the Stripe invoice's total must equal the meterlake total.
Each disagreement is one ``mismatch`` finding of the ``stripe`` check (expected: meterlake,
actual: Stripe), stored in ``recon.results`` with the other checks.

The comparison (`compare_invoice`) is a pure function of the two sides, so it is tested on
recorded Stripe answers as well as over the wire.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from meterlake import tables
from meterlake.currency import minor_units
from meterlake.reconcile.checks import Finding, summarise

if TYPE_CHECKING:
    import stripe
    from pyspark.sql import SparkSession

    from meterlake.billing.invoices import Invoice
    from meterlake.config import Settings

CHECK = "stripe"
# What the comparison needs of one Stripe invoice: {"total", "currency", "items": [...]},
# each item {"id", "amount", "currency", "metadata"}.
StripeInvoice = dict[str, Any]


def _major(amount_minor: int, currency: str) -> Decimal:
    return Decimal(amount_minor).scaleb(-minor_units(currency.upper()))


def compare_invoice(invoice: Invoice, stripe_id: str, theirs: StripeInvoice) -> list[Finding]:
    """Findings for one invoice (empty when Stripe agrees)."""
    found = []
    scope = f"{invoice.invoice_id} ({stripe_id})"
    items: dict[str, list[dict]] = {}
    for item in theirs["items"]:
        line_id = (item.get("metadata") or {}).get("meterlake_line_id") or ""
        items.setdefault(line_id, []).append(item)
    for number, line in enumerate(invoice.lines, start=1):
        line_id = invoice.line_id(number)
        matches = items.pop(line_id, [])
        if len(matches) != 1:
            actual = (
                sum((_major(i["amount"], i["currency"]) for i in matches), Decimal(0))
                if matches
                else None
            )
            detail = f"{len(matches)} Stripe items for line {line_id} (expected 1)"
            found.append(Finding(CHECK, scope, line.amount, actual, "mismatch", detail))
            continue
        item = matches[0]
        actual = _major(item["amount"], item["currency"])
        if item["currency"].upper() != invoice.currency or actual != line.amount:
            detail = f"line {line_id} is {actual} {item['currency'].upper()} in Stripe"
            found.append(Finding(CHECK, scope, line.amount, actual, "mismatch", detail))
    for line_id, extra in sorted(items.items()):
        for item in extra:
            actual = _major(item["amount"], item["currency"])
            detail = f"Stripe item {item['id']} matches no meterlake line ({line_id or 'no id'})"
            found.append(Finding(CHECK, scope, Decimal(0), actual, "mismatch", detail))
    total = _major(theirs["total"], theirs["currency"])
    if theirs["currency"].upper() != invoice.currency or total != invoice.total:
        detail = f"Stripe invoice total {total} {theirs['currency'].upper()}"
        found.append(Finding(CHECK, scope, invoice.total, total, "mismatch", detail))
    return found


def fetch_from_stripe(client: stripe.StripeClient) -> Callable[[str], StripeInvoice]:
    """A fetcher reading one Stripe invoice and all its invoice items over the API."""

    from meterlake.integrations.stripe_sync import list_invoice_items

    def fetch(stripe_id: str) -> StripeInvoice:
        invoice = client.v1.invoices.retrieve(stripe_id)
        items = list_invoice_items(client, stripe_id)
        return {"total": invoice.total, "currency": invoice.currency, "items": items}

    return fetch


def stripe_findings(
    spark: SparkSession,
    settings: Settings,
    *,
    fetch: Callable[[str], StripeInvoice] | None = None,
) -> list[Finding]:
    """Compare every fully synced invoice with Stripe (``fetch``: by default the API)."""
    from pyspark.sql import functions as F

    from meterlake.billing.store import stored_invoices
    from meterlake.integrations.stripe_sync import SYNC_DONE, stripe_client

    sync = tables.read(spark, settings, tables.BILLING_STRIPE_SYNC)
    done = sync.where((F.col("object_key") == SYNC_DONE) & (F.col("status") == "synced"))
    pushed = {
        r.invoice_id: r.stripe_id
        for r in sync.where((F.col("object_key") == "invoice") & (F.col("status") == "synced"))
        .join(done.select("invoice_id"), "invoice_id", "left_semi")
        .collect()
    }
    if not pushed:
        return [Finding(CHECK, "all", Decimal(0), Decimal(0), "ok", "no invoice items in Stripe")]
    fetch = fetch or fetch_from_stripe(stripe_client(settings))
    invoices = stored_invoices(spark, settings)
    found = []
    for invoice_id, stripe_id in sorted(pushed.items()):
        found += compare_invoice(invoices[invoice_id], stripe_id, fetch(stripe_id))
    return summarise(CHECK, found, len(pushed), "invoices in Stripe")
