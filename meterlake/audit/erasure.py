"""GDPR erasure of a user: pseudonymisation in every tier, recorded in ``audit.erasures``.

Billing must not change when a user is forgotten, and a user id is what ``unique_count``
meters count. So the id is replaced, everywhere it appears as a JSON string value, by one
random pseudonym (``erased-<random>``): not derivable from the id, the same for all of the
user's rows, so distinct counts, event counts, sums and invoices stay exactly as they were.
Where it is replaced: where it is the user's (`meterlake.audit.subject_fields`), never in
the fields that bill (a customer id equal to the user id stays), non-ASCII ids included:

- ``bronze.events`` and ``cold.events``: ``user_id``, and string values in
  ``properties`` and ``extra``;
- ``bronze.quarantine``: the raw line, field by field;
- the landing files holding the user's lines, rewritten in place line by line, every
  other byte kept (their sha256 before and after go to the erasure record, so integrity
  checks can tell an erasure from tampering);
- silver rollups of the days touched, recomputed (their HLL sketches hashed the id);
- ``audit.query_log`` arguments naming the user (a ``gdpr export --user``, a SQL filter).

``audit.erasures`` keeps the pseudonym, the tenant, who asked, why, and the rows and
files rewritten, but never the identifier. Superseded Delta files keep the old values
until VACUUM removes them after the retention window (`meterlake tier run` vacuums every
table an erasure rewrites; ``METERLAKE_VACUUM_RETENTION_HOURS``, default 7 days, inside
GDPR's one month); until then only time travel to versions before the erasure can show
them, and ``meterlake gdpr verify`` lists them as pending. ``payload_sha256`` of the
rewritten events stays as it was, so a resend of an original event is still recognised
as a duplicate.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.audit.kafka_erasure import truncate_archived
from meterlake.audit.query_log import fold_reads
from meterlake.audit.subject_fields import PROTECTED, erase_in_line, quoted_forms
from meterlake.clock import audit_now
from meterlake.delta_io import append, delete_where, update_where
from meterlake.errors import ConfigError
from meterlake.lease import ERASURE, ROLLUPS, hold
from meterlake.storage import storage_for
from meterlake.tiering.events import bronze_version, events_at

if TYPE_CHECKING:
    from pyspark.sql import Column, SparkSession
    from pyspark.sql.types import StructType

    from meterlake.config import Settings

TEXT_COLUMNS = ("properties", "extra")  # JSON documents: string values are the user's
TENANT_COLUMNS = ("tenant_id", "tenant")  # the query log names the read's tenant `tenant`


@dataclass(frozen=True)
class Erasure:
    erasure_id: str
    pseudonym: str
    rows: dict[str, int]
    files: list[dict[str, str]]


def named(user: str) -> str:
    """A Java regex for ``user`` as a whole word of free text (a query's argument), as
    written or \\u-escaped inside JSON: not inside a longer id (``bob`` in ``bobby``,
    ``bob@x.io``). ``re.escape`` escapes only punctuation, which Java reads the same way."""
    forms = sorted({user, json.dumps(user)[1:-1]})
    return rf"(?<![\w.@+-])({'|'.join(re.escape(f) for f in forms)})(?![\w.@+-])"


def _contains_any(column: Column, user: str) -> Column:
    from pyspark.sql import functions as F

    condition = F.lit(False)
    for form in quoted_forms(user):
        condition = condition | F.coalesce(column.contains(form), F.lit(False))
    return condition


def mentions(user: str) -> Column:
    """Rows of an events table where ``user`` appears: its user_id or a string value in a
    free-form column (ASCII-escaped or not)."""
    from pyspark.sql import functions as F

    condition = F.col("user_id") == user
    for column in TEXT_COLUMNS:
        condition = condition | _contains_any(F.col(column), user)
    return condition


def mentions_in_raw(tenant: str, user: str) -> Column:
    """Quarantined lines of ``tenant`` whose raw bytes may hold ``user``."""
    from pyspark.sql import functions as F

    return (F.col("tenant_id") == tenant) & _contains_any(F.col("raw").cast("string"), user)


def _erase_text(column: Column, user: str, pseudonym: str) -> Column:
    """``column`` (a JSON document) with ``user``'s string tokens replaced."""
    from pyspark.sql import functions as F

    for form in quoted_forms(user):
        column = F.replace(column, F.lit(form), F.lit(json.dumps(pseudonym)))
    return column


def mentions_anywhere(schema: StructType, user: str) -> Column:
    """Rows of any table holding ``user``: ``user_id`` equal to it, or a text column that
    is not a billing field (`PROTECTED`) holding it as a whole word or a JSON string."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import BinaryType, StringType

    word = named(user)
    condition = F.lit(False)
    for field in schema.fields:
        if field.name == "user_id":
            condition = condition | F.coalesce(F.col("user_id") == user, F.lit(False))
        elif field.name not in PROTECTED and isinstance(field.dataType, StringType | BinaryType):
            text = F.col(field.name).cast("string")
            found = F.coalesce(text.rlike(word), F.lit(False))
            condition = condition | found | _contains_any(text, user)
    return condition


def in_tenant(schema: StructType, tenant: str) -> Column:
    """Rows of ``tenant`` where the table has a tenant column (a null one: every tenant's)."""
    from pyspark.sql import functions as F

    for column in TENANT_COLUMNS:
        if column in schema.fieldNames():
            return F.coalesce(F.col(column) == tenant, F.lit(True))
    return F.lit(True)


def rewrite_landing(
    settings: Settings,
    landing_files: list[str],
    erase_line: Callable[[bytes], bytes],
    journal: str | None = None,
) -> list[dict[str, str]]:
    """Rewrite each landing file line by line (lines end at ``\n`` only, as bronze's reader
    splits them); the files changed, with their sha256 before and after.

    With a ``journal`` (an erasure that resumes after a kill), each file's entry is written
    there before the file is: a rerun finds the files an earlier attempt rewrote, so the
    erasure's record names them and bronze's integrity check accepts them."""
    storage = storage_for(settings)
    earlier = json.loads(storage.read(journal) or b"[]") if journal else []
    rewritten = {entry["landing_file"]: entry for entry in earlier}
    for key in landing_files:
        body = storage.read(key)
        if body is None:
            continue
        replaced = b"\n".join(erase_line(line) for line in body.split(b"\n"))
        if replaced == body:
            continue
        rewritten[key] = {
            "landing_file": key,
            "sha256_before": hashlib.sha256(body).hexdigest(),
            "sha256_after": hashlib.sha256(replaced).hexdigest(),
        }
        if journal:
            storage.write(journal, json.dumps(list(rewritten.values())).encode())
        storage.write(key, replaced)
    return list(rewritten.values())


def erase_user(
    spark: SparkSession,
    settings: Settings,
    tenant: str,
    user: str,
    *,
    requested_by: str,
    reason: str | None = None,
) -> Erasure:
    """Replace ``user`` of ``tenant`` by a pseudonym in every tier (module docstring),
    under the erasure lease (and the rollups lease for the windows it recomputes)."""
    with hold(settings, ERASURE):
        return _erase(spark, settings, tenant, user, requested_by, reason)


def _erase(
    spark: SparkSession,
    settings: Settings,
    tenant: str,
    user: str,
    requested_by: str,
    reason: str | None,
) -> Erasure:
    from pyspark.sql import functions as F
    from pyspark.sql.types import BinaryType

    from meterlake.catalog.store import read_catalog
    from meterlake.rollups.refresh import refresh_rollups, refresh_touched
    from meterlake.rollups.silver import GRAINS

    if not user or user.startswith("erased-"):
        raise ConfigError(f"--user: {user!r} is not a user id that can be erased")
    pseudonym = f"erased-{secrets.token_hex(12)}"
    mine = (F.col("tenant_id") == tenant) & mentions(user)
    found = (
        events_at(spark, settings).where(mine).select("customer_id", "billing_date", "landing_file")
    )
    touched: dict[tuple[str, str], set[date]] = defaultdict(set)
    landing: set[str] = set()
    for row in found.distinct().collect():
        touched[tenant, row.customer_id].add(row.billing_date)
        landing.add(row.landing_file)
    in_quarantine = mentions_in_raw(tenant, user)
    quarantined = tables.read(spark, settings, tables.BRONZE_QUARANTINE).where(in_quarantine)
    landing |= {r.landing_file for r in quarantined.select("landing_file").distinct().collect()}
    if not touched and not landing:
        raise ConfigError(f"--user: no data of user {user!r} in tenant {tenant!r}")

    erasure_id = secrets.token_hex(8)
    tag = f"gdpr:{erasure_id}"
    files = rewrite_landing(
        settings, sorted(landing), lambda line: erase_in_line(line, user, pseudonym)
    )
    kafka = truncate_archived(settings)
    swap = {
        "user_id": F.when(F.col("user_id") == user, F.lit(pseudonym)).otherwise(F.col("user_id"))
    }
    for column in TEXT_COLUMNS:
        swap[column] = _erase_text(F.col(column), user, pseudonym)
    rows = {
        spec.qualified_name: update_where(spark, settings, spec, mine, swap, metadata=tag)
        for spec in (tables.BRONZE_EVENTS, tables.COLD_EVENTS)
    }
    erase_raw = F.udf(lambda raw: erase_in_line(bytes(raw), user, pseudonym), BinaryType())
    rows[tables.BRONZE_QUARANTINE.qualified_name] = update_where(
        spark,
        settings,
        tables.BRONZE_QUARANTINE,
        in_quarantine,
        {"raw": erase_raw(F.col("raw"))},
        metadata=tag,
    )
    word = named(user)
    fold_reads(spark, settings)  # the API's reads waiting in their spool, so they are here
    rows[tables.AUDIT_QUERY_LOG.qualified_name] = update_where(
        spark,
        settings,
        tables.AUDIT_QUERY_LOG,
        F.col("arguments").rlike(word),
        {"arguments": F.regexp_replace("arguments", word, pseudonym)},
        metadata=tag,
    )
    if kafka is not None:
        rows[f"kafka:{kafka.topic}"] = kafka.deleted
    with hold(settings, ROLLUPS) as rollups:
        # Rollups past the rewrite commits (they add no events), then the touched windows.
        refresh_rollups(spark, settings, progress=lambda _: None)
        if touched:
            # Windows keep their event counts, so the merge would skip them: drop, rebuild.
            for grain in GRAINS:
                rows[grain.spec.qualified_name] = _drop_windows(
                    spark, settings, grain.spec, touched
                )
            version = bronze_version(spark, settings)
            stored = read_catalog(spark, settings)
            refresh_touched(spark, settings, stored, touched, version, fence=rollups)
    return record_erasure(
        spark, settings, tenant, erasure_id, pseudonym, requested_by, reason, rows, files
    )


def record_erasure(
    spark: SparkSession,
    settings: Settings,
    tenant: str,
    erasure_id: str,
    pseudonym: str,
    requested_by: str,
    reason: str | None,
    rows: dict[str, int],
    files: list[dict[str, str]],
) -> Erasure:
    """Append the erasure's record to ``audit.erasures`` (never the identifier)."""
    record = spark.createDataFrame(
        [(erasure_id, audit_now(), tenant, pseudonym, requested_by, reason, rows,
          json.dumps(files))],
        schema=tables.nullable_schema(tables.AUDIT_ERASURES),
    )  # fmt: skip
    append(record, settings, tables.AUDIT_ERASURES)
    return Erasure(erasure_id, pseudonym, rows, files)


def _drop_windows(
    spark: SparkSession,
    settings: Settings,
    spec: tables.TableSpec,
    touched: dict[tuple[str, str], set[date]],
) -> int:
    """Delete ``spec``'s windows on the touched (tenant, customer, day)s; rows deleted."""
    from pyspark.sql import functions as F

    condition = F.lit(False)
    for (tenant, customer), days in touched.items():
        condition = condition | (
            (F.col("tenant_id") == tenant)
            & (F.col("customer_id") == customer)
            & F.col("window_date").isin(sorted(days))
        )
    return delete_where(spark, settings, spec, condition)
