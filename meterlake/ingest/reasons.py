"""Quarantine reasons: every rejected line carries exactly one of these codes."""

from __future__ import annotations

LINE_TOO_LONG = "line_too_long"
INVALID_UTF8 = "invalid_utf8"
MALFORMED_JSON = "malformed_json"
NOT_AN_OBJECT = "not_an_object"
UNKNOWN_SCHEMA_VERSION = "unknown_schema_version"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
INVALID_VALUE = "invalid_value"
UNKNOWN_FIELD = "unknown_field"
INVALID_QUANTITY = "invalid_quantity"
NEGATIVE_QUANTITY = "negative_quantity"
INVALID_TIMESTAMP = "invalid_timestamp"
TIMESTAMP_WITHOUT_OFFSET = "timestamp_without_offset"
TOO_OLD = "too_old"
UNKNOWN_CUSTOMER = "unknown_customer"
DUPLICATE_CONFLICT = "duplicate_conflict"
# Every line of a landing file that no longer hashes to its manifest's sha256.
LANDING_CHECKSUM_MISMATCH = "landing_checksum_mismatch"
# Not an ingest verdict: a bronze row the data-quality suite failed, moved here to be
# re-derived from its landing line by a quarantine replay.
QUALITY_FAILED = "quality_failed"
