"""Push final invoices to Stripe with the official ``stripe`` library, exactly once.

For each final invoice (closed by ``as_of``) without a finished sync, per
``METERLAKE_STRIPE_PUSH``:

- ``invoice_items``: a draft Stripe invoice (items pending elsewhere excluded), then one
  invoice item per line (amount in minor units, the line's period, its ids in metadata),
  then finalisation (``METERLAKE_STRIPE_FINALIZE``);
- ``meter_events``: one billing meter event per usage/adjustment line with a quantity
  (event name = meter key, Stripe's ``identifier`` = line id).

The Stripe customer is the catalog's ``stripe_customer_id``, else the one meterlake
created on an earlier sync, else a new one (created once, remembered in the sync table).

Every request carries an idempotency key derived from meterlake ids
(``meterlake:line:<line_id>`` …), so a retry, a rerun or a second worker never bills twice
within Stripe's 24-hour key window; beyond it, objects recorded as synced in
``billing.stripe_sync`` are never sent again, and before adding items to an invoice synced
earlier the items already on it (by ``meterlake_line_id`` metadata) are skipped. Transient
failures (network, 409, 429, 5xx) are retried with backoff; an invoice that still fails is
recorded with its attempts and last error and reported, and the next run resumes it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from meterlake import tables
from meterlake.clock import format_instant
from meterlake.currency import minor_units
from meterlake.errors import ConfigError
from meterlake.integrations.retry import GaveUp, with_retries

if TYPE_CHECKING:
    import stripe
    from pyspark.sql import SparkSession

    from meterlake.billing.invoices import Invoice
    from meterlake.config import Settings

SYNC_DONE = "sync"  # object key of the row saying an invoice is completely in Stripe
FLUSH_EVERY = 25  # invoices per write of the sync table


def stripe_client(settings: Settings) -> stripe.StripeClient:
    """The official client at ``METERLAKE_STRIPE_API_BASE`` (its own retries off: ours
    count attempts into the sync table)."""
    import stripe

    config = settings.billing_system
    if not config.stripe_api_key:
        raise ConfigError("METERLAKE_STRIPE_API_KEY: not set; Stripe sync needs a secret key")
    return stripe.StripeClient(
        config.stripe_api_key,
        base_addresses={"api": config.stripe_api_base},
        max_network_retries=0,
    )


def list_invoice_items(client: stripe.StripeClient, stripe_invoice: str) -> list[dict[str, Any]]:
    """Every invoice item on ``stripe_invoice`` as plain dicts (id, amount, currency,
    metadata), all pages."""
    listed = client.v1.invoice_items.list(params={"invoice": stripe_invoice, "limit": 100})
    return [
        {
            "id": item.id,
            "amount": item.amount,
            "currency": item.currency,
            "metadata": item.metadata.to_dict() if item.metadata else {},
        }
        for item in listed.auto_paging_iter()
    ]


def transient(exc: BaseException) -> bool:
    """Worth retrying: the network, a concurrent request on the same key, rate limits, 5xx."""
    import stripe

    if isinstance(exc, stripe.APIConnectionError):
        return True
    status = getattr(exc, "http_status", None) or 0
    return status in (409, 429) or status >= 500


def minor(amount: Decimal, currency: str) -> int:
    """``amount`` in the currency's minor units, exactly (amounts are whole minor units)."""
    scaled = amount.scaleb(minor_units(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} {currency} is not a whole number of minor units")
    return int(scaled)


@dataclass
class SyncRow:
    invoice_id: str
    object_key: str
    kind: str
    tenant_id: str
    customer_id: str
    idempotency_key: str
    stripe_id: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    status: str = "failed"
    attempts: int = 0
    last_error: str | None = None


@dataclass
class SyncResult:
    synced: list[str] = field(default_factory=list)  # invoice ids finished in this run
    failed: list[tuple[str, str]] = field(default_factory=list)  # (invoice id, error)
    already: int = 0  # final invoices synced by earlier runs
    requests: int = 0


class _InvoiceSync:
    """One invoice's steps, skipping what the sync table says is done."""

    def __init__(self, run: StripeSync, invoice: Invoice, stripe_customer: str) -> None:
        self.run = run
        self.invoice = invoice
        self.customer = stripe_customer
        self.rows: list[SyncRow] = []

    def step(
        self, object_key: str, kind: str, key: str, send: Callable[[], Any], **extra
    ) -> str | None:
        """Send one object of this invoice unless recorded as synced; its Stripe id."""
        invoice = self.invoice
        row = SyncRow(
            invoice.invoice_id, object_key, kind, invoice.tenant, invoice.customer, key, **extra
        )
        return self.run.send_once(row, send, self.rows)

    def invoice_items(self) -> None:
        invoice, client = self.invoice, self.run.client
        currency = invoice.currency.lower()
        earlier = self.run.state.get((invoice.invoice_id, "invoice"))
        resumed = earlier is not None and earlier.status == "synced"
        stripe_invoice = self.step(
            "invoice", "invoice", f"meterlake:invoice:{invoice.invoice_id}",
            lambda: client.v1.invoices.create(
                params={
                    "customer": self.customer,
                    "currency": currency,
                    "auto_advance": False,
                    "pending_invoice_items_behavior": "exclude",
                    "description": f"Usage {format_instant(invoice.period_start)} →"
                    f" {format_instant(invoice.period_end)}",
                    "metadata": {
                        "meterlake_invoice_id": invoice.invoice_id,
                        "meterlake_tenant_id": invoice.tenant,
                        "meterlake_customer_id": invoice.customer,
                    },
                },
                options={"idempotency_key": f"meterlake:invoice:{invoice.invoice_id}"},
            ),
            amount_minor=minor(invoice.total, invoice.currency), currency=invoice.currency,
        )  # fmt: skip
        on_stripe = self._items_on(stripe_invoice) if resumed else {}
        for number, line in enumerate(invoice.lines, start=1):
            line_id = invoice.line_id(number)
            known = self.run.state.get((invoice.invoice_id, line_id))
            if line_id in on_stripe and not (known and known.status == "synced"):
                # In Stripe already (a run that died before recording it): record, not resend.
                self.rows.append(
                    SyncRow(
                        invoice.invoice_id, line_id, "invoice_item", invoice.tenant,
                        invoice.customer, f"meterlake:line:{line_id}", on_stripe[line_id],
                        minor(line.amount, invoice.currency), invoice.currency, "synced",
                        known.attempts if known else 0,
                    )
                )  # fmt: skip
                continue
            amount = minor(line.amount, invoice.currency)
            params = {
                "customer": self.customer,
                "invoice": stripe_invoice,
                "amount": amount,
                "currency": currency,
                "description": " ".join(
                    str(p) for p in (line.kind, line.meter or "", line.plan or "") if p
                ),
                "period": {
                    "start": int(line.period_start.timestamp()),
                    "end": int(line.period_end.timestamp()),
                },
                "metadata": {
                    "meterlake_invoice_id": invoice.invoice_id,
                    "meterlake_line_id": line_id,
                    "quantity": str(line.quantity),
                },
            }
            self.step(
                line_id, "invoice_item", f"meterlake:line:{line_id}",
                lambda params=params, line_id=line_id: client.v1.invoice_items.create(
                    params=params, options={"idempotency_key": f"meterlake:line:{line_id}"}
                ),
                amount_minor=amount, currency=invoice.currency,
            )  # fmt: skip
        if self.run.settings.billing_system.stripe_finalize:
            self.step(
                "finalize", "finalize", f"meterlake:finalize:{invoice.invoice_id}",
                lambda: client.v1.invoices.finalize_invoice(
                    stripe_invoice,
                    params={"auto_advance": False},
                    options={"idempotency_key": f"meterlake:finalize:{invoice.invoice_id}"},
                ),
            )  # fmt: skip

    def _items_on(self, stripe_invoice: str) -> dict[str, str]:
        """meterlake line id → Stripe item id of the items already on ``stripe_invoice``."""
        items, _ = self.run.call(lambda: list_invoice_items(self.run.client, stripe_invoice))
        return {
            item["metadata"]["meterlake_line_id"]: item["id"]
            for item in items
            if item["metadata"].get("meterlake_line_id")
        }

    def meter_events(self) -> None:
        invoice, client = self.invoice, self.run.client
        for number, line in enumerate(invoice.lines, start=1):
            if line.meter is None or line.kind not in ("usage", "adjustment") or not line.quantity:
                continue
            line_id = invoice.line_id(number)
            params = {
                "event_name": line.meter,
                "identifier": line_id,
                "timestamp": int(line.period_end.timestamp()) - 1,
                "payload": {"stripe_customer_id": self.customer, "value": str(line.quantity)},
            }
            self.step(
                f"meter:{line_id}", "meter_event", f"meterlake:meter:{line_id}",
                lambda params=params, line_id=line_id: client.v1.billing.meter_events.create(
                    params=params, options={"idempotency_key": f"meterlake:meter:{line_id}"}
                ),
            )  # fmt: skip


class StripeSync:
    """A sync run: the client, the sync table as read at the start, the rows to write."""

    def __init__(
        self,
        spark: SparkSession,
        settings: Settings,
        client: stripe.StripeClient,
        *,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        import time

        self.spark, self.settings, self.client = spark, settings, client
        self.sleep = sleep or time.sleep
        self.rng = random.Random()
        self.state = {
            (r.invoice_id, r.object_key): SyncRow(
                r.invoice_id, r.object_key, r.kind, r.tenant_id, r.customer_id,
                r.idempotency_key, r.stripe_id, r.amount_minor, r.currency, r.status,
                r.attempts, r.last_error,
            )
            for r in tables.read(spark, settings, tables.BILLING_STRIPE_SYNC).collect()
        }  # fmt: skip
        self.pending: list[SyncRow] = []
        self.requests = 0

    def call(self, send: Callable[[], Any]) -> tuple[Any, int]:
        config = self.settings.billing_system

        def counted():
            self.requests += 1
            return send()

        return with_retries(
            counted,
            attempts=config.max_attempts,
            base_ms=config.retry_base_ms,
            transient=transient,
            sleep=self.sleep,
            rng=self.rng,
        )

    def customer_id(self, invoice: Invoice, catalog_ids: dict[tuple[str, str], str]) -> str:
        """The Stripe customer of ``invoice``'s customer (created once when unknown)."""
        key = (invoice.tenant, invoice.customer)
        if key in catalog_ids:
            return catalog_ids[key]
        marker = f"customer:{invoice.tenant}:{invoice.customer}"
        idempotency = f"meterlake:customer:{invoice.tenant}:{invoice.customer}"
        row = SyncRow(marker, "customer", "customer", invoice.tenant, invoice.customer, idempotency)
        return self.send_once(
            row,
            lambda: self.client.v1.customers.create(
                params={
                    "name": invoice.customer,
                    "metadata": {
                        "meterlake_tenant_id": invoice.tenant,
                        "meterlake_customer_id": invoice.customer,
                    },
                },
                options={"idempotency_key": idempotency},
            ),
            self.pending,
            remember=True,
        )

    def send_once(
        self, row: SyncRow, send: Callable[[], Any], rows: list[SyncRow], *, remember: bool = False
    ) -> str:
        """Send ``row``'s object unless the sync table has it as synced; returns its Stripe
        id. The row (attempts added to earlier ones, the last error) joins ``rows``; with
        ``remember`` a success also serves later invoices of this run."""
        known = self.state.get((row.invoice_id, row.object_key))
        if known is not None and known.status == "synced":
            return known.stripe_id
        row.attempts = known.attempts if known else 0
        rows.append(row)
        try:
            created, used = self.call(send)
        except GaveUp as failure:
            row.attempts += failure.attempts
            row.last_error = f"{type(failure.error).__name__}: {failure.error}"[:1000]
            raise
        row.attempts += used
        row.status, row.stripe_id, row.last_error = "synced", created.id, None
        if remember:
            self.state[row.invoice_id, row.object_key] = row
        return created.id

    def flush(self) -> None:
        """Write the rows gathered so far (one MERGE)."""
        if not self.pending:
            return
        now = self.settings.now()
        rows = [
            (
                r.invoice_id, r.object_key, r.kind, r.tenant_id, r.customer_id,
                r.idempotency_key, r.stripe_id, r.amount_minor, r.currency, r.status,
                r.attempts, r.last_error, now,
            )
            for r in self.pending
        ]  # fmt: skip
        frame = self.spark.createDataFrame(rows, tables.nullable_schema(tables.BILLING_STRIPE_SYNC))
        from meterlake.delta_io import upsert

        upsert(
            frame,
            self.settings,
            tables.BILLING_STRIPE_SYNC,
            ("invoice_id", "object_key"),
            changed="t.status <> 'synced'",
        )
        self.pending = []

    def sync(self, invoice: Invoice, catalog_ids: dict[tuple[str, str], str]) -> None:
        """All of ``invoice``'s steps; a `GaveUp` leaves the rows for a later resume."""
        steps = _InvoiceSync(self, invoice, self.customer_id(invoice, catalog_ids))
        try:
            if "invoice_items" in self.settings.billing_system.stripe_push:
                steps.invoice_items()
            if "meter_events" in self.settings.billing_system.stripe_push:
                steps.meter_events()
        finally:
            self.pending += steps.rows
        done = SyncRow(
            invoice.invoice_id, SYNC_DONE, SYNC_DONE, invoice.tenant, invoice.customer,
            f"meterlake:invoice:{invoice.invoice_id}", status="synced",
        )  # fmt: skip
        self.pending.append(done)


def unsynced_final_invoices(
    spark: SparkSession, settings: Settings, as_of: datetime
) -> tuple[list[Invoice], int]:
    """(final invoices closed by ``as_of`` not fully synced, in close order; how many are)."""
    from meterlake.billing.store import stored_invoices

    done = {
        r.invoice_id
        for r in tables.read(spark, settings, tables.BILLING_STRIPE_SYNC)
        .where(f"object_key = '{SYNC_DONE}' AND status = 'synced'")
        .select("invoice_id")
        .collect()
    }
    finals = [
        i
        for i in stored_invoices(spark, settings).values()
        if i.status == "final" and i.close <= as_of
    ]
    todo = sorted(
        (i for i in finals if i.invoice_id not in done), key=lambda i: (i.close, i.invoice_id)
    )
    return todo, len(finals) - len(todo)


def sync_invoices(
    spark: SparkSession,
    settings: Settings,
    as_of: datetime,
    *,
    client: stripe.StripeClient | None = None,
    progress: Callable[[str], None] = lambda _: None,
    sleep: Callable[[float], None] | None = None,
) -> SyncResult:
    """Push every final invoice not yet in Stripe (see the module docstring)."""
    from meterlake.catalog.store import read_catalog

    catalog = read_catalog(spark, settings).catalog
    catalog_ids = {
        (c.tenant, c.id): c.stripe_customer_id for c in catalog.customers if c.stripe_customer_id
    }
    run = StripeSync(spark, settings, client or stripe_client(settings), sleep=sleep)
    todo, already = unsynced_final_invoices(spark, settings, as_of)
    result = SyncResult(already=already)
    try:
        for count, invoice in enumerate(todo, start=1):
            try:
                run.sync(invoice, catalog_ids)
            except GaveUp as failure:
                result.failed.append((invoice.invoice_id, str(failure)))
                progress(f"  FAILED {invoice.invoice_id} ({invoice.customer}): {failure}")
            else:
                result.synced.append(invoice.invoice_id)
                progress(f"  synced {invoice.invoice_id} ({invoice.customer}, {count}/{len(todo)})")
            if count % FLUSH_EVERY == 0:
                run.flush()
    finally:
        run.flush()
        result.requests = run.requests
    return result
