"""Property: the Spark-compiled event schema agrees with a reference JSON Schema validator."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from meterlake.config import Settings
from meterlake.ingest.event_schema import load_event_schemas
from tests.helpers import event, parse

SCHEMA_REASONS = {"missing_field", "wrong_type", "invalid_value", "unknown_field"}
FIELDS = [
    "event_id",
    "customer_id",
    "event_type",
    "quantity",
    "timestamp",
    "resource_id",
    "user_id",
    "session_id",
    "region",
    "properties",
    "schema_version",
    "sdk",
    "extra_key",
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.text(max_size=3)
    | st.sampled_from(["", "1", "x", "2026-03-01T00:00:00Z"]),
    lambda inner: (
        st.lists(inner, max_size=2)
        | st.dictionaries(st.sampled_from(["name", "version", "k"]), inner, max_size=2)
    ),
    max_leaves=4,
)
mutation = st.tuples(st.sampled_from(["drop", "set"]), st.sampled_from(FIELDS), json_values)
events = st.lists(st.lists(mutation, max_size=3), min_size=20, max_size=20)


def mutate(changes) -> dict:
    value = event(sdk={"name": "py", "version": "1"})
    for action, field, new in changes:
        if action == "drop":
            value.pop(field, None)
        else:
            value[field] = new
    return value


@hsettings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=events)
def test_spark_schema_checks_match_jsonschema(spark, settings: Settings, batch) -> None:
    reference = Draft202012Validator(load_event_schemas()["1"].document)
    values = [mutate(changes) for changes in batch]
    rows = parse(spark, settings, values, datetime(2026, 3, 2, 12, tzinfo=UTC))
    for value, row in zip(values, rows, strict=True):
        if value.get("schema_version", "1") != "1":
            continue  # dispatched to another (unknown) version, not judged by v1
        assert reference.is_valid(value) == (row.reason not in SCHEMA_REASONS), (value, row.reason)
