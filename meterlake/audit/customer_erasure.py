"""GDPR erasure of a customer: its id replaced by one pseudonym in every table and file.

A customer id is a billing key: invoices, lines, rollups, the outbox and Stripe's records
are keyed by it. So a customer is erased only once billing it is over (the customer is
out of the current catalog, every invoice of it final, every Stripe sync of it done), and
then everywhere with the same pseudonym, so invoices, totals and each line's lineage stay
exactly as they were, under the pseudonym:

- ``customer_id`` in every table that has one (events, quarantine, rollups, views,
  invoices and lines, the outbox, Stripe sync, the catalog's customer tables, anomalies);
- free text naming it as a whole word (`FREE_TEXT`: quarantine details, outbox payloads,
  run selections, Stripe keys and errors, query-log arguments, reconciliation scopes,
  data-quality samples), in the customer's tenant where the table has a tenant column;
- landing lines and quarantined raw lines in their ``customer_id`` field only: a user id
  or a property that happens to equal the customer id is the user's and stays;
- the stored catalog texts: the ``customers[].id`` of its tenant, spliced in place;
- the tenant's published current-usage document: the customer's entry removed;
- the Kafka topic's records the stream has archived (`meterlake.audit.kafka_erasure`).

Invoice ids were derived from the customer id when the customer was billed; they are kept,
as finance and the customer refer to invoices by them, and confirm the id only to one who
already has it. A marker (`meterlake.catalog.erased_customers`) is written first: a kill
midway is resumed with the same pseudonym by running the erasure again, and no catalog can
bring the id back.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import yaml

from meterlake import tables
from meterlake.audit.erasure import Erasure, in_tenant, named, record_erasure, rewrite_landing
from meterlake.audit.kafka_erasure import truncate_archived
from meterlake.audit.query_log import fold_reads
from meterlake.audit.subject_fields import CUSTOMER, erase_in_line, holds_subject
from meterlake.catalog.erased_customers import MARKERS, mark_erased, marker_for
from meterlake.delta_io import update_where
from meterlake.errors import ConfigError
from meterlake.lease import CATALOG, ERASURE, ROLLUPS, hold
from meterlake.storage import storage_for
from meterlake.tiering.events import events_at

if TYPE_CHECKING:
    from pyspark.sql import Column, SparkSession
    from pyspark.sql.types import StructType

    from meterlake.catalog.erased_customers import Marker
    from meterlake.config import Settings

# Text columns that may name a customer in passing, by name, whichever table has them.
FREE_TEXT = frozenset(
    {"detail", "payload", "customers", "object_key", "idempotency_key", "last_error",
     "arguments", "scope", "sample_rows"}
)  # fmt: skip


def erase_customer(
    spark: SparkSession,
    settings: Settings,
    tenant: str,
    customer: str,
    *,
    requested_by: str,
    reason: str | None = None,
) -> Erasure:
    """Replace ``customer`` of ``tenant`` by a pseudonym everywhere (module docstring).

    Under the erasure lease, the catalog lease (no load lists the customer meanwhile) and
    the rollups lease (no refresh rewrites the windows being renamed)."""
    if not customer or customer.startswith("erased-"):
        raise ConfigError(f"--customer: {customer!r} is not a customer id that can be erased")
    with hold(settings, ERASURE), hold(settings, CATALOG), hold(settings, ROLLUPS):
        marker = marker_for(settings, tenant, customer)
        if marker is None:
            _require_settled(spark, settings, tenant, customer)
            marker = mark_erased(settings, tenant, customer)
        return _erase(spark, settings, tenant, customer, marker, requested_by, reason)


def _require_settled(spark: SparkSession, settings: Settings, tenant: str, customer: str) -> None:
    """Refuse while billing the customer is not over, or when nothing names it."""
    from pyspark.sql import functions as F

    from meterlake.catalog.store import read_catalog

    where = f"--customer: customer {customer!r} of tenant {tenant!r}"
    listed = read_catalog(spark, settings).catalog.customers
    if any(c.tenant == tenant and c.id == customer for c in listed):
        raise ConfigError(
            f"{where} is in the current catalog; remove it there and `meterlake catalog load`"
            " first (an erased customer is never billed again)"
        )
    mine = (F.col("tenant_id") == tenant) & (F.col("customer_id") == customer)
    invoices = tables.read(spark, settings, tables.BILLING_INVOICES).where(mine)
    drafts = invoices.where(F.col("status") != "final").count()
    if drafts:
        raise ConfigError(f"{where} has {drafts} invoice(s) not final; finalise them first")
    sync = tables.read(spark, settings, tables.BILLING_STRIPE_SYNC).where(mine)
    if sync.where(F.col("status") != "synced").limit(1).count():
        raise ConfigError(f"{where} has a Stripe sync not done; run `meterlake stripe sync`")
    events = events_at(spark, settings).where(mine)
    quarantined = tables.read(spark, settings, tables.BRONZE_QUARANTINE).where(mine)
    if not (invoices.limit(1).count() or events.limit(1).count() or quarantined.limit(1).count()):
        raise ConfigError(f"{where}: no data of it to erase")


def _erase(
    spark: SparkSession,
    settings: Settings,
    tenant: str,
    customer: str,
    marker: Marker,
    requested_by: str,
    reason: str | None,
) -> Erasure:
    from pyspark.sql import functions as F
    from pyspark.sql.types import BinaryType, StringType

    from meterlake.rollups.refresh import refresh_rollups

    pseudonym = marker.pseudonym
    tag = f"gdpr:{marker.erasure_id}"
    # Rows already renamed by an erasure killed midway still lead to their landing files.
    either = (F.col("tenant_id") == tenant) & F.col("customer_id").isin(customer, pseudonym)
    quarantined = tables.read(spark, settings, tables.BRONZE_QUARANTINE)
    landing = set()
    for frame in (events_at(spark, settings), quarantined):
        found = frame.where(either).select("landing_file").distinct().collect()
        landing |= {row.landing_file for row in found}
    files = rewrite_landing(
        settings,
        sorted(landing),
        lambda line: erase_in_line(line, customer, pseudonym, CUSTOMER),
        journal=f"{MARKERS}/{marker.erasure_id}.files.json",
    )
    kafka = truncate_archived(settings)
    fold_reads(spark, settings)  # the API's reads waiting in their spool, so they are here
    rows: dict[str, int] = {}
    erase_raw = F.udf(
        lambda raw: None if raw is None else erase_in_line(bytes(raw), customer, pseudonym,
                                                           CUSTOMER), BinaryType()
    )  # fmt: skip
    for spec in tables.ALL_TABLES:
        condition, values = _rewrite(spec.schema, tenant, customer, pseudonym)
        if spec is tables.BRONZE_QUARANTINE:
            values["raw"] = erase_raw(F.col("raw"))
        if values:
            rows[spec.qualified_name] = update_where(
                spark, settings, spec, condition, values, metadata=tag
            )
    splice = F.udf(lambda text: erase_in_catalog(text, tenant, customer, pseudonym), StringType())
    rows[tables.REF_CATALOG_VERSIONS.qualified_name] = update_where(
        spark,
        settings,
        tables.REF_CATALOG_VERSIONS,
        customer_mentions(tables.REF_CATALOG_VERSIONS.schema, tenant, customer),
        {"source_text": splice(F.col("source_text"))},
        metadata=tag,
    )
    # The rollups (renamed above, as bronze was) past the rewrite commits: they add no events.
    refresh_rollups(spark, settings, progress=lambda _: None)
    rows["serving:current_usage"] = _unpublish(settings, tenant, customer)
    if kafka is not None:
        rows[f"kafka:{kafka.topic}"] = kafka.deleted
    return record_erasure(
        spark, settings, tenant, marker.erasure_id, pseudonym, requested_by, reason, rows, files
    )


def _rewrite(
    schema: StructType, tenant: str, customer: str, pseudonym: str
) -> tuple[Column, dict[str, Column]]:
    """The rows of a table naming the customer (in its tenant) and their new values."""
    from pyspark.sql import functions as F

    word = named(customer)
    condition, values = customer_mentions(schema, tenant, customer), {}
    for field in schema.fields:
        if field.name == "customer_id":
            values["customer_id"] = F.when(F.col("customer_id") == customer, F.lit(pseudonym))\
                .otherwise(F.col("customer_id"))  # fmt: skip
        elif _is_free_text(field):
            values[field.name] = F.regexp_replace(field.name, word, pseudonym)
    return in_tenant(schema, tenant) & condition, values


def _is_free_text(field) -> bool:
    from pyspark.sql.types import StringType

    return field.name in FREE_TEXT and isinstance(field.dataType, StringType)


def customer_mentions(schema: StructType, tenant: str, customer: str) -> Column:
    """Rows naming ``customer``: its ``customer_id``, a free-text column with it as a word,
    a raw line with it in the ``customer_id`` field, a catalog text listing it in ``tenant``."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import BooleanType

    word = named(customer)
    condition = F.lit(False)
    for field in schema.fields:
        if field.name == "customer_id":
            condition = condition | F.coalesce(F.col("customer_id") == customer, F.lit(False))
        elif _is_free_text(field):
            condition = condition | F.coalesce(F.col(field.name).rlike(word), F.lit(False))
        elif field.name == "raw":
            holds = F.udf(
                lambda raw: raw is not None and holds_subject(bytes(raw), customer, CUSTOMER),
                BooleanType(),
            )
            condition = condition | holds(F.col("raw"))
        elif field.name == "source_text":
            lists = F.udf(lambda text: catalog_names(text, tenant, customer), BooleanType())
            condition = condition | lists(F.col("source_text"))
    return condition


def erase_in_catalog(text: str | None, tenant: str, customer: str, pseudonym: str) -> str | None:
    """A catalog's YAML with the ``customers[].id`` of ``customer`` in ``tenant`` replaced,
    every other character kept (the text is what was loaded, the record of it)."""
    if text is None:
        return None
    spans = sorted(_id_spans(text, tenant, customer), reverse=True)
    for start, end in spans:
        text = text[:start] + pseudonym + text[end:]
    return text


def catalog_names(text: str | None, tenant: str, customer: str) -> bool:
    return bool(text) and bool(_id_spans(text, tenant, customer))


def _id_spans(text: str, tenant: str, customer: str) -> list[tuple[int, int]]:
    """Where the customer's id scalar is in the catalog text, as (start, end) offsets."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return []
    spans = []
    for key, value in getattr(root, "value", []) if isinstance(root, yaml.MappingNode) else []:
        if key.value != "customers" or not isinstance(value, yaml.SequenceNode):
            continue
        for item in value.value:
            if not isinstance(item, yaml.MappingNode):
                continue
            fields = {k.value: v for k, v in item.value if isinstance(v, yaml.ScalarNode)}
            node = fields.get("id")
            owner = fields["tenant"].value if "tenant" in fields else "default"
            if node is not None and node.value == customer and owner == tenant:
                spans.append((node.start_mark.index, node.end_mark.index))
    return spans


def _unpublish(settings: Settings, tenant: str, customer: str) -> int:
    """Remove the customer from the tenant's published current usage; entries removed."""
    from meterlake.billing.current_usage import usage_key

    storage = storage_for(settings)
    body = storage.read(usage_key(tenant))
    document = json.loads(body) if body else {"customers": {}}
    if document["customers"].pop(customer, None) is None:
        return 0
    storage.write(usage_key(tenant), json.dumps(document, sort_keys=True).encode())
    return 1
