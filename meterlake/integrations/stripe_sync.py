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

Exactly once, whatever happens between two runs:

- Every request carries an idempotency key derived from meterlake ids
  (``meterlake:line:<line_id>`` …), so a retry, or a rerun within Stripe's 24-hour key
  window, never creates anything twice.
- Beyond that window the keys are forgotten, so a create is never sent blind a second
  time: before each create an *intent* is written to the sync journal
  (``_stripe/journal/`` in the warehouse's storage, one small object per invoice,
  rewritten at every step); an object with an intent or a failure on record is first
  looked up in Stripe by its meterlake id (invoices and customers by the ids in their
  metadata, invoice items on their Stripe invoice, finalisation by the invoice's
  status) and only created when it is not there. A meter event cannot be looked up;
  Stripe keeps its ``identifier`` unique, and an answer saying so counts as delivered.
- The journal is merged into ``billing.stripe_sync`` at the start of a run, every
  `FLUSH_EVERY` invoices and at the end, so a SIGKILL loses no progress.
- Runs hold the Stripe lease (`meterlake.lease`), and an invoice whose stored lines do
  not add up to its subtotal, or repeat a line number, is refused by name, not pushed.

Transient failures (network, 409, 429, 5xx) are retried with backoff; an invoice that
still fails is recorded with its attempts and last error and reported, and the next run
resumes it.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from meterlake import tables
from meterlake.clock import format_instant
from meterlake.currency import minor_units
from meterlake.errors import ConfigError
from meterlake.integrations.retry import GaveUp, with_retries
from meterlake.lease import STRIPE, Lease, hold
from meterlake.storage import storage_for

if TYPE_CHECKING:
    import stripe
    from pyspark.sql import SparkSession

    from meterlake.billing.invoices import Invoice
    from meterlake.config import Settings

SYNC_DONE = "sync"  # object key of the row saying an invoice is completely in Stripe
FLUSH_EVERY = 25  # invoices per merge of the journal into the sync table
JOURNAL_DIR = "_stripe/journal"
INTENT = "intent"  # a create is about to be sent (journal only; the table says failed)
INTERRUPTED = "interrupted: the run stopped before Stripe's answer was recorded"

Lookup = Callable[[], str | None]


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


def _search_by_metadata(found: Any, wanted: dict[str, str]) -> str | None:
    """The id of the first search result whose metadata holds ``wanted`` (Stripe's search
    matches loosely, and a mock answers with fixtures: every field is checked here)."""
    for item in found.data:
        metadata = item.metadata.to_dict() if item.metadata else {}
        if all(metadata.get(k) == v for k, v in wanted.items()):
            return item.id
    return None


def _query(wanted: dict[str, str]) -> str:
    return " AND ".join(f"metadata['{k}']:'{v}'" for k, v in wanted.items())


def transient(exc: BaseException) -> bool:
    """Worth retrying: the network, a concurrent request on the same key, rate limits, 5xx."""
    import stripe

    if isinstance(exc, stripe.APIConnectionError):
        return True
    status = getattr(exc, "http_status", None) or 0
    return status in (409, 429) or status >= 500


def duplicate_identifier(exc: BaseException) -> bool:
    """Stripe refused a meter event because one with its ``identifier`` already exists:
    the first one was delivered."""
    message = str(getattr(exc, "user_message", None) or exc).lower()
    code = getattr(exc, "code", None) or ""
    return code == "resource_already_exists" or ("identifier" in message and "already" in message)


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

    @property
    def key(self) -> tuple[str, str]:
        return self.invoice_id, self.object_key


class Journal:
    """The sync's write-ahead log: per invoice, the rows of its objects as they stand,
    in one object of the warehouse's storage rewritten (whole, atomically) at each step."""

    def __init__(self, settings: Settings) -> None:
        self._storage = storage_for(settings)
        self._rows: dict[str, dict[str, SyncRow]] = {}

    @staticmethod
    def _key(invoice_id: str) -> str:
        return f"{JOURNAL_DIR}/{hashlib.sha256(invoice_id.encode()).hexdigest()[:32]}.json"

    def load(self) -> list[SyncRow]:
        """Every row journalled and not yet merged into the sync table."""
        found = []
        for key in self._storage.keys(JOURNAL_DIR + "/"):
            data = self._storage.read(key)
            if data:
                rows = [SyncRow(**row) for row in json.loads(data)]
                self._rows[rows[0].invoice_id] = {r.object_key: r for r in rows}
                found += rows
        return found

    def write(self, row: SyncRow) -> None:
        rows = self._rows.setdefault(row.invoice_id, {})
        rows[row.object_key] = row
        body = json.dumps([asdict(r) for r in rows.values()], sort_keys=True).encode()
        self._storage.write(self._key(row.invoice_id), body)

    def pending(self) -> list[SyncRow]:
        return [row for rows in self._rows.values() for row in rows.values()]

    def drop(self, invoice_ids: set[str]) -> None:
        for invoice_id in invoice_ids:
            self._rows.pop(invoice_id, None)
            self._storage.delete(self._key(invoice_id))


@dataclass
class SyncResult:
    synced: list[str] = field(default_factory=list)  # invoice ids finished in this run
    failed: list[tuple[str, str]] = field(default_factory=list)  # (invoice id, error)
    already: int = 0  # final invoices synced by earlier runs
    requests: int = 0


class _InvoiceSync:
    """One invoice's steps, skipping what is recorded as done."""

    def __init__(self, run: StripeSync, invoice: Invoice, stripe_customer: str) -> None:
        self.run = run
        self.invoice = invoice
        self.customer = stripe_customer
        self._on_stripe: dict[str, str] | None = None

    def step(
        self,
        object_key: str,
        kind: str,
        key: str,
        send: Callable[[], Any],
        lookup: Lookup | None,
        **extra,
    ) -> str | None:
        """Send one object of this invoice unless recorded as synced; its Stripe id."""
        invoice = self.invoice
        row = SyncRow(
            invoice.invoice_id, object_key, kind, invoice.tenant, invoice.customer, key, **extra
        )
        return self.run.send_once(row, send, lookup)

    def invoice_items(self) -> None:
        invoice, client = self.invoice, self.run.client
        currency = invoice.currency.lower()
        ids = {
            "meterlake_invoice_id": invoice.invoice_id,
            "meterlake_tenant_id": invoice.tenant,
            "meterlake_customer_id": invoice.customer,
        }
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
                    "metadata": ids,
                },
                options={"idempotency_key": f"meterlake:invoice:{invoice.invoice_id}"},
            ),
            lambda: _search_by_metadata(
                client.v1.invoices.search(params={"query": _query(ids)}), ids
            ),
            amount_minor=minor(invoice.total, invoice.currency), currency=invoice.currency,
        )  # fmt: skip
        for number, line in enumerate(invoice.lines, start=1):
            line_id = invoice.line_id(number)
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
                lambda line_id=line_id: self._items_on(stripe_invoice).get(line_id),
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
                lambda: self._finalized(stripe_invoice),
            )  # fmt: skip

    def _items_on(self, stripe_invoice: str) -> dict[str, str]:
        """meterlake line id → Stripe item id of the items already on ``stripe_invoice``
        (listed once per invoice, when the first item with an attempt on record comes)."""
        if self._on_stripe is None:
            items, _ = self.run.call(lambda: list_invoice_items(self.run.client, stripe_invoice))
            self._on_stripe = {
                item["metadata"]["meterlake_line_id"]: item["id"]
                for item in items
                if item["metadata"].get("meterlake_line_id")
            }
        return self._on_stripe

    def _finalized(self, stripe_invoice: str) -> str | None:
        found, _ = self.run.call(lambda: self.run.client.v1.invoices.retrieve(stripe_invoice))
        return found.id if getattr(found, "status", "draft") != "draft" else None

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
                None,
            )  # fmt: skip


class StripeSync:
    """A sync run: the client, what is recorded as synced, the journal of this run."""

    def __init__(
        self,
        spark: SparkSession,
        settings: Settings,
        client: stripe.StripeClient,
        lease: Lease,
        *,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        import time

        self.spark, self.settings, self.client, self.lease = spark, settings, client, lease
        self.sleep = sleep or time.sleep
        self.rng = random.Random()
        self.journal = Journal(settings)
        self.state = {
            (r.invoice_id, r.object_key): SyncRow(
                r.invoice_id, r.object_key, r.kind, r.tenant_id, r.customer_id,
                r.idempotency_key, r.stripe_id, r.amount_minor, r.currency, r.status,
                r.attempts, r.last_error,
            )
            for r in tables.read(spark, settings, tables.BILLING_STRIPE_SYNC).collect()
        }  # fmt: skip
        for row in self.journal.load():  # newer than the table: a run that did not finish
            self.state[row.key] = row
        self.flush()
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
        ids = {"meterlake_tenant_id": invoice.tenant, "meterlake_customer_id": invoice.customer}
        row = SyncRow(marker, "customer", "customer", invoice.tenant, invoice.customer, idempotency)
        return self.send_once(
            row,
            lambda: self.client.v1.customers.create(
                params={"name": invoice.customer, "metadata": ids},
                options={"idempotency_key": idempotency},
            ),
            lambda: _search_by_metadata(
                self.client.v1.customers.search(params={"query": _query(ids)}), ids
            ),
        )

    def send_once(self, row: SyncRow, send: Callable[[], Any], lookup: Lookup | None) -> str:
        """``row``'s object in Stripe, created unless it is there already; its Stripe id.

        Synced on record: nothing is sent. An earlier attempt on record (an intent or a
        failure): looked up first. Otherwise, or when the lookup finds nothing, the intent
        is journalled and the create sent."""
        known = self.state.get(row.key)
        if known is not None and known.status == "synced":
            return known.stripe_id
        row.attempts = known.attempts if known else 0
        if known is not None and lookup is not None:
            found, used = self.call(lookup)
            if found:
                return self._record(row, "synced", found, None)
        row.status = INTENT
        self.lease.check()
        self.journal.write(row)
        try:
            created, used = self.call(send)
        except GaveUp as failure:
            row.attempts += failure.attempts
            if row.kind == "meter_event" and duplicate_identifier(failure.error):
                return self._record(row, "synced", None, None)
            error = f"{type(failure.error).__name__}: {failure.error}"[:1000]
            self._record(row, "failed", None, error)
            raise
        row.attempts += used
        return self._record(row, "synced", created.id, None)

    def _record(self, row: SyncRow, status: str, stripe_id: str | None, error: str | None):
        row.status, row.stripe_id, row.last_error = status, stripe_id, error
        self.journal.write(row)
        self.state[row.key] = row
        return stripe_id

    def flush(self) -> None:
        """Merge the journal into the sync table (one MERGE), then clear it. An intent
        without an answer is recorded as a failed attempt, so the next run looks first."""
        pending = self.journal.pending()
        if not pending:
            return
        now = self.settings.now()
        rows = [
            (
                r.invoice_id, r.object_key, r.kind, r.tenant_id, r.customer_id,
                r.idempotency_key, r.stripe_id, r.amount_minor, r.currency,
                "failed" if r.status == INTENT else r.status, r.attempts,
                INTERRUPTED if r.status == INTENT else r.last_error, now,
            )
            for r in pending
        ]  # fmt: skip
        frame = self.spark.createDataFrame(rows, tables.nullable_schema(tables.BILLING_STRIPE_SYNC))
        from meterlake.delta_io import upsert

        upsert(
            frame,
            self.settings,
            tables.BILLING_STRIPE_SYNC,
            ("invoice_id", "object_key"),
            changed="t.status <> 'synced'",
            fence=self.lease,
        )
        self.journal.drop({r.invoice_id for r in pending})

    def sync(self, invoice: Invoice, catalog_ids: dict[tuple[str, str], str]) -> None:
        """All of ``invoice``'s steps; a `GaveUp` leaves them on record for a resume."""
        steps = _InvoiceSync(self, invoice, self.customer_id(invoice, catalog_ids))
        if "invoice_items" in self.settings.billing_system.stripe_push:
            steps.invoice_items()
        if "meter_events" in self.settings.billing_system.stripe_push:
            steps.meter_events()
        done = SyncRow(
            invoice.invoice_id, SYNC_DONE, SYNC_DONE, invoice.tenant, invoice.customer,
            f"meterlake:invoice:{invoice.invoice_id}",
        )  # fmt: skip
        self._record(done, "synced", None, None)


def malformed_invoices(spark: SparkSession, settings: Settings, invoices: list[Invoice]) -> dict:
    """invoice id → why its stored lines cannot be pushed: a line number twice in its
    revision, or lines that do not add up to its subtotal and credits."""
    from pyspark.sql import functions as F

    from meterlake.billing.store import current_lines

    wanted = [i.invoice_id for i in invoices]
    repeated = (
        current_lines(spark, settings)
        .where(F.col("invoice_id").isin(wanted))
        .groupBy("invoice_id", "line_no")
        .count()
        .where(F.col("count") > 1)
        .collect()
    )
    found = {
        row.invoice_id: f"its line {row.line_no} is stored {row['count']} times" for row in repeated
    }
    for invoice in invoices:
        charged = sum((li.amount for li in invoice.lines if li.kind != "credit"), Decimal(0))
        credited = -sum((li.amount for li in invoice.lines if li.kind == "credit"), Decimal(0))
        if invoice.invoice_id not in found and (charged, credited) != (
            invoice.subtotal,
            invoice.credits,
        ):
            found[invoice.invoice_id] = (
                f"its lines add up to {charged} less {credited} credits, but its subtotal is"
                f" {invoice.subtotal} less {invoice.credits}"
            )
    return found


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
    with hold(settings, STRIPE) as lease:
        run = StripeSync(spark, settings, client or stripe_client(settings), lease, sleep=sleep)
        todo, already = unsynced_final_invoices(spark, settings, as_of)
        refused = malformed_invoices(spark, settings, todo)
        result = SyncResult(already=already)
        try:
            for count, invoice in enumerate(todo, start=1):
                if invoice.invoice_id in refused:
                    why = f"refused: {refused[invoice.invoice_id]}; nothing sent"
                    result.failed.append((invoice.invoice_id, why))
                    progress(f"  REFUSED {invoice.invoice_id} ({invoice.customer}): {why}")
                    continue
                try:
                    run.sync(invoice, catalog_ids)
                except GaveUp as failure:
                    result.failed.append((invoice.invoice_id, str(failure)))
                    progress(f"  FAILED {invoice.invoice_id} ({invoice.customer}): {failure}")
                else:
                    result.synced.append(invoice.invoice_id)
                    progress(
                        f"  synced {invoice.invoice_id} ({invoice.customer}, {count}/{len(todo)})"
                    )
                if count % FLUSH_EVERY == 0:
                    run.flush()
        finally:
            run.flush()
            result.requests = run.requests
    return result
