"""GDPR erasure of a user: pseudonymisation in every tier, recorded in ``audit.erasures``.

Billing must not change when a user is forgotten, and a user id is what ``unique_count``
meters count. So the id is replaced, everywhere it appears as a JSON string value, by one
random pseudonym (``erased-<random>``): not derivable from the id, the same for all of the
user's rows, so distinct counts, event counts, sums and invoices stay exactly as they were.
Where it is replaced:

- ``bronze.events`` and ``cold.events``: ``user_id``, and quoted occurrences in
  ``properties`` and ``extra``;
- ``bronze.quarantine``: the raw line;
- the landing files holding the user's lines, rewritten in place (their sha256 before and
  after go to the erasure record, so integrity checks can tell an erasure from tampering);
- silver rollups of the days touched, recomputed (their HLL sketches hashed the id).

``audit.erasures`` keeps the pseudonym, the tenant, who asked, why, and the rows and
files rewritten, but never the identifier. Superseded Delta files keep the old values
until VACUUM removes them after the retention window (`meterlake tier run` vacuums;
``METERLAKE_VACUUM_RETENTION_HOURS``, default 7 days, inside GDPR's one month); until then
only time travel to versions before the erasure can show them. ``payload_sha256`` of the
rewritten events stays as it was, so a resend of an original event is still recognised
as a duplicate.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.clock import audit_now
from meterlake.delta_io import append, delete_where, update_where
from meterlake.errors import ConfigError
from meterlake.lease import ERASURE, ROLLUPS, hold
from meterlake.storage import storage_for
from meterlake.tiering.events import bronze_version, events_at

if TYPE_CHECKING:
    from pyspark.sql import Column, SparkSession

    from meterlake.config import Settings

TEXT_COLUMNS = ("properties", "extra")


@dataclass(frozen=True)
class Erasure:
    erasure_id: str
    pseudonym: str
    rows: dict[str, int]
    files: list[dict[str, str]]


def _quoted(value: str) -> str:
    return json.dumps(value)


def mentions(user: str) -> Column:
    """Rows of an events table where ``user`` appears: its user_id or a quoted value."""
    from pyspark.sql import functions as F

    condition = F.col("user_id") == user
    for column in TEXT_COLUMNS:
        condition = condition | F.coalesce(F.col(column).contains(_quoted(user)), F.lit(False))
    return condition


def mentions_in_raw(tenant: str, user: str) -> Column:
    """Quarantined lines of ``tenant`` whose raw bytes hold ``user`` as a JSON string."""
    from pyspark.sql import functions as F

    return (F.col("tenant_id") == tenant) & F.col("raw").cast("string").contains(_quoted(user))


def _rewrite_landing(settings: Settings, landing_files: list[str], user: str, pseudonym: str):
    storage = storage_for(settings)
    old, new = _quoted(user).encode(), _quoted(pseudonym).encode()
    rewritten = []
    for key in landing_files:
        body = storage.read(key)
        if body is None or old not in body:
            continue
        replaced = body.replace(old, new)
        storage.write(key, replaced)
        rewritten.append(
            {
                "landing_file": key,
                "sha256_before": hashlib.sha256(body).hexdigest(),
                "sha256_after": hashlib.sha256(replaced).hexdigest(),
            }
        )
    return rewritten


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
    files = _rewrite_landing(settings, sorted(landing), user, pseudonym)
    swap = {
        "user_id": F.when(F.col("user_id") == user, F.lit(pseudonym)).otherwise(F.col("user_id"))
    }
    for column in TEXT_COLUMNS:
        swap[column] = F.replace(F.col(column), F.lit(_quoted(user)), F.lit(_quoted(pseudonym)))
    rows = {
        spec.qualified_name: update_where(spark, settings, spec, mine, swap, metadata=tag)
        for spec in (tables.BRONZE_EVENTS, tables.COLD_EVENTS)
    }
    raw = F.replace(F.col("raw").cast("string"), F.lit(_quoted(user)), F.lit(_quoted(pseudonym)))
    rows[tables.BRONZE_QUARANTINE.qualified_name] = update_where(
        spark,
        settings,
        tables.BRONZE_QUARANTINE,
        in_quarantine,
        {"raw": raw.cast("binary")},
        metadata=tag,
    )
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
