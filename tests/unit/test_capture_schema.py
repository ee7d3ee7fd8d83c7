"""The API's compiled schema check agrees with ``jsonschema`` on event-like documents."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from meterlake.capture.validate import compile_schema
from meterlake.ingest.event_schema import load_event_schemas

SCHEMA = load_event_schemas()["1"].document
FIELDS = [*SCHEMA["properties"], "tenant_id", "extra"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.decimals(allow_nan=False, allow_infinity=False, places=3),
    st.text(max_size=3),
    st.just(""),
    st.just("1"),
    st.just("x" * 130),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=2),
        st.dictionaries(st.sampled_from(["name", "version", "k"]), inner, max_size=3),
    ),
    max_leaves=4,
)
documents = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), values, max_size=len(FIELDS)),
    st.fixed_dictionaries(
        {
            "event_id": st.text(min_size=1, max_size=3),
            "customer_id": st.text(min_size=0, max_size=3),
            "event_type": st.just("api_call"),
            "timestamp": st.just("2026-03-02T11:00:00Z"),
        },
        optional={
            "quantity": st.one_of(st.decimals(allow_nan=False, allow_infinity=False), st.text()),
            "schema_version": st.sampled_from(["1", "2", 1]),
            "sdk": values,
            "properties": values,
            "region": values,
        },
    ),
    values,
)


@settings(max_examples=400, deadline=None)
@given(documents)
def test_compiled_check_agrees_with_jsonschema(document) -> None:
    expected = Draft202012Validator(SCHEMA).is_valid(document)
    assert compile_schema(SCHEMA)(document) == expected


@given(scalars)  # the API parses numbers to int or Decimal, never float
def test_types_agree_with_jsonschema(value) -> None:
    for name in ("integer", "number", "string", "boolean", "null", "object", "array"):
        schema = {"type": name}
        assert compile_schema(schema)(value) == Draft202012Validator(schema).is_valid(value)


def test_decimal_two_point_zero_is_not_an_integer_as_in_bronze() -> None:
    assert not compile_schema({"type": "integer"})(Decimal("2.0"))
    assert compile_schema({"type": "integer"})(2)
