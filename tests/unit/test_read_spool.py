"""The API's read records are audit.query_log's rows, column for column."""

from __future__ import annotations

from meterlake import tables
from meterlake.audit.read_spool import FIELDS


def test_spooled_fields_are_the_query_logs_columns_in_order() -> None:
    assert tuple(tables.AUDIT_QUERY_LOG.schema.fieldNames()) == FIELDS
