"""``audit.query_log``: one append-only row per read, so an auditor can answer "who looked
at which tenant's data, when, and how much of it"."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from meterlake import tables
from meterlake.clock import audit_now
from meterlake.delta_io import append

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from meterlake.audit.access import Principal
    from meterlake.config import Settings


def log_query(
    spark: SparkSession,
    settings: Settings,
    principal: Principal,
    command: str,
    arguments: dict[str, Any],
    tenant: str | None,
    rows: int,
) -> str:
    """Append one read to the log; returns its id."""
    query_id = f"q-{uuid.uuid4().hex[:16]}"
    row = (
        query_id, audit_now(), principal.key_id, principal.role, principal.tenant, tenant,
        command, json.dumps(arguments, sort_keys=True, default=str, ensure_ascii=False), rows,
    )  # fmt: skip
    frame = spark.createDataFrame([row], tables.nullable_schema(tables.AUDIT_QUERY_LOG))
    append(frame, settings, tables.AUDIT_QUERY_LOG)
    return query_id
