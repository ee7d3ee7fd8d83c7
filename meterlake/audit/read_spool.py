"""The API's reads, each recorded as one file before its answer is sent.

``GET /v1/usage`` and ``GET /v1/dashboard`` are served without a JVM, so they cannot
append to ``audit.query_log`` themselves: each read is written under ``_audit/reads/``
(an exclusive create, durable when it returns) and ``query_log.fold_reads`` moves the
files into the table. This module imports nothing of Spark, so the API stays light.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from meterlake.clock import audit_now
from meterlake.storage import storage_for

if TYPE_CHECKING:
    from meterlake.audit.access import Principal
    from meterlake.config import Settings
    from meterlake.storage import Storage

READS = "_audit/reads"  # the API's reads, each a file until folded into the table
# audit.query_log's columns in order (tests/unit/test_read_spool.py holds the two equal)
FIELDS = ("query_id", "at", "key_id", "role", "key_tenant", "tenant", "command", "arguments",
          "rows")  # fmt: skip


def log_entry(
    principal: Principal, command: str, arguments: dict[str, Any], tenant: str | None, rows: int
) -> tuple:
    """One log row in FIELDS' order, with a new id and the real clock's time."""
    return (
        f"q-{uuid.uuid4().hex[:16]}", audit_now(), principal.key_id, principal.role,
        principal.tenant, tenant, command,
        json.dumps(arguments, sort_keys=True, default=str, ensure_ascii=False), rows,
    )  # fmt: skip


def spool_read(settings: Settings, row: tuple) -> str:
    """Record one read (a `log_entry` row) durably; returns its id. Raises when the record
    cannot be written: a read that cannot be logged is not served."""
    document = dict(zip(FIELDS, row, strict=True)) | {"at": row[1].isoformat()}
    if not storage_for(settings).create(f"{READS}/{row[0]}.json", json.dumps(document).encode()):
        raise FileExistsError(f"audit: read {row[0]} already spooled")  # a uuid repeated: 503
    return row[0]


def spooled_reads(storage: Storage) -> tuple[list[str], list[tuple]]:
    """The spooled files and their rows (in FIELDS' order). A file another fold deleted
    after the listing is skipped: its row is in the table already."""
    keys = list(storage.keys(READS))
    rows = []
    for body in map(storage.read, keys):
        if body is not None:
            entry = json.loads(body)
            entry["at"] = datetime.fromisoformat(entry["at"])
            rows.append(tuple(entry[name] for name in FIELDS))
    return keys, rows
