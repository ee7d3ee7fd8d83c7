"""Property: the fast path changes no output. Every line, valid or strange, parses to the
same row (verdict, detail, typed fields, hash) as when the full checks run on every line."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pyspark.testing import assertDataFrameEqual

from meterlake.config import Settings
from meterlake.ingest.event_schema import load_event_schemas
from meterlake.ingest.parse import parse_lines
from tests.helpers import event, lines_frame

RECEIVED = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
RAW = "@raw@"  # a value spliced into the line as written, not as json.dumps would write it

# Quantities as the line spells them: JSON numbers of every kind the variant reads, strings.
QUANTITIES = [
    "3", "0", "12.50", "1.0000000000", "0.123456789", "0.1234567891", "1e3", "-5", "-0",
    "123456789012345678901234567890", "99999999999999999999999999999.999999999",
    '"12.5"', '" 7 "', '"1e2"', '"-1"', '""', '"abc"', "null", "true", '{"a": 1}', "1.5",
]  # fmt: skip
TIMESTAMPS = [
    "2026-03-02T11:00:00Z", "2026-03-02t11:00:00z", "2026-03-02T11:00Z",
    "2026-03-02T11:00:00,5Z", "2026-03-02T11:00:00+0100", "2026-03-02T11:00:00+01",
    "2026-03-02T11:00:00", "2020-01-01T00:00:00Z", "2026-03-02T11:00:00.123456789Z",
    "2026-03-02T11:00:00+05:30", " 2026-03-02T11:00:00Z ", "2026-02-30T11:00:00Z",
    "2026-03-02 11:00:00Z", "2026-03-02T12:30:00Z", "2026-03-02T11:00:00.5-02:00", "",
]  # fmt: skip
FIELD_VALUES = {
    "sdk": [
        {"name": "py", "version": "1"}, {"name": "py"}, {}, {"name": None},
        {"name": "py", "extra": 1}, {"name": 5}, "x", None, {"name": "a" * 200},
        {"version": "2", "name": "go"}, {"name": {"deep": 1}},
    ],
    "schema_version": ["1", 1, "2", None, ...],
    "properties": [{"a": 1, "b": [1, 2]}, "s", [1], None, {}, ...],
    "event_id": ["e-2", "", 5, None, "x" * 300, ...],
    "customer_id": ["c-9", 42, "", ...],
    "region": ["eu", None, "x" * 200, 7],
    "user_id": ["u1", None, True],
    "tenant_id": ["t"],
}  # fmt: skip
LINE_EDITS = [
    "none", "crlf", "trailing", "single_quotes", "duplicate_key", "escaped_key", "tab_first",
    "array", "invalid_utf8", "truncated", "padding",
]  # fmt: skip


def _edit(text: str, how: str) -> bytes:
    edits = {
        "none": text,
        "crlf": text + "\r",
        "trailing": text + " x",
        "single_quotes": text.replace('"', "'"),
        "duplicate_key": '{"event_id": "z", ' + text[1:],
        "escaped_key": text.replace('"event_id"', '"\\u0065vent_id"'),
        "tab_first": "\t" + text,
        "array": f"[{text}]",
        "truncated": text[:-3],
        "padding": text[:-1] + ', "resource_id": "' + "p" * 400 + '"}',
    }
    if how == "invalid_utf8":
        return text.replace("acme", "ac\udcffme").encode("utf-8", "surrogateescape")
    return edits[how].encode()


def _line(
    quantity: str = "3",
    timestamp: str = TIMESTAMPS[0],
    fields: dict | None = None,
    how: str = "none",
    event_id: str = "e-1",
) -> bytes:
    """A valid v1 event but for what is given: quantity as spelled, a timestamp, fields
    replaced (``...`` removes one) and the line perhaps edited."""
    value = event(event_id=event_id, timestamp=timestamp, sdk={"name": "py", "version": "1"})
    value["quantity"] = RAW
    value.update(fields or {})
    text = json.dumps({k: v for k, v in value.items() if v is not ...})
    spelled = f'"quantity": "{RAW}", ' if quantity == "absent" else f'"{RAW}"'
    return _edit(text.replace(spelled, "" if quantity == "absent" else quantity), how)


ONE_CHANGE = [
    *(_line(quantity=q) for q in [*QUANTITIES, "absent"]),
    *(_line(timestamp=t) for t in TIMESTAMPS),
    *(_line(fields={f: v}) for f, values in FIELD_VALUES.items() for v in values),
    *(_line(how=how) for how in LINE_EDITS),
]


@st.composite
def lines(draw) -> bytes:
    """Lines with a few changes at once, for the combinations `ONE_CHANGE` leaves out."""
    fields = {
        name: draw(st.sampled_from(FIELD_VALUES[name]))
        for name in draw(st.lists(st.sampled_from(sorted(FIELD_VALUES)), max_size=2, unique=True))
    }
    return _line(
        quantity=draw(st.sampled_from([*QUANTITIES, "absent"])),
        timestamp=draw(st.sampled_from(TIMESTAMPS[:1] * 8 + TIMESTAMPS)),
        fields=fields,
        how=draw(st.sampled_from(LINE_EDITS[:1] * 8 + LINE_EDITS)),
        event_id=f"e-{draw(st.integers(0, 5))}",
    )


def _both(spark, settings: Settings, batch: list[bytes]):
    frame = lines_frame(spark, batch, RECEIVED).cache()
    schemas = load_event_schemas()
    return (
        parse_lines(frame, settings, schemas),
        parse_lines(frame, settings, schemas, fast=False),
    )


def test_each_kind_of_line_gets_the_full_checks_verdict(spark, settings: Settings) -> None:
    fast, full = _both(spark, replace(settings, max_line_bytes=600), ONE_CHANGE)
    assertDataFrameEqual(fast, full, checkRowOrder=False)


@hsettings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(lines(), min_size=60, max_size=60))
def test_lines_with_several_changes_get_the_full_checks_verdict(
    spark, settings: Settings, batch
) -> None:
    fast, full = _both(spark, replace(settings, max_line_bytes=600), batch)
    assertDataFrameEqual(fast, full, checkRowOrder=False)


def test_plain_valid_lines_skip_the_full_checks(spark, settings: Settings, monkeypatch) -> None:
    """With the schema checks made to fail on evaluation, plain valid lines of each
    quantity and SDK shape still parse (they never reach them) and a strange one does not."""
    import pytest
    from pyspark.errors import PySparkException
    from pyspark.sql import functions as F

    from meterlake.ingest import parse

    def exploding(schemas):
        fired = F.raise_error(F.lit("the full checks ran"))
        return F.when(
            fired.isNull(), F.struct(F.lit("x").alias("reason"), F.lit("y").alias("detail"))
        )

    monkeypatch.setattr(parse, "_schema_checks", exploding)
    shapes = [(3, {"name": "py"}), ("12.5", {}), (0.25, ...), (..., {"version": "1"})]
    valid = [event(quantity=q, event_id=f"e-{i}", sdk=sdk) for i, (q, sdk) in enumerate(shapes)]
    rows = parse_lines(lines_frame(spark, valid, RECEIVED), settings, load_event_schemas())
    assert [row.reason for row in rows.collect()] == [None] * len(valid)
    strange = lines_frame(spark, [event(timestamp="2026-03-02T11:00Z")], RECEIVED)
    with pytest.raises(PySparkException, match="the full checks ran"):
        parse_lines(strange, settings, load_event_schemas()).collect()
