"""The API's early verdict equals bronze's for the same line: one contract, two readers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from meterlake.capture.body import dump_line
from meterlake.capture.validate import EventValidator
from tests.helpers import event, parse

RECEIVED = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SCHEMA_REASONS = {"missing_field", "wrong_type", "invalid_value", "unknown_field"}

CASES = [
    event(),
    event(quantity="12.5"),
    event(quantity=0),
    event(quantity=-1),
    event(quantity="1.0000000001"),
    event(quantity="abc"),
    event(quantity="1e999999999999"),  # overflowed the API's Decimal arithmetic (a 500)
    event(quantity="-1e-999999999999"),
    event(quantity=True),
    event(quantity=None),
    event(quantity=...),
    event(timestamp="2026-03-02T11:00:00"),
    event(timestamp="2026-03-02T11:00:00+0530"),
    event(timestamp="2026-03-02T11:00:00.123456789-05"),
    event(timestamp="2026-03-02T11:00Z"),  # ISO 8601 without seconds: Spark alone refuses it
    event(timestamp="2026-03-02 11:00+0100"),
    event(timestamp="yesterday"),
    event(timestamp="2026-13-02T11:00:00Z"),
    event(timestamp="2025-01-01T00:00:00Z"),  # more than 35 days before receipt
    event(customer_id=...),
    event(customer_id=""),
    event(event_id=7),
    event(region="x" * 129),
    event(schema_version="9"),
    event(schema_version="1", sdk={"name": "x", "version": "1", "extra": 1}),
    event(tenant_id="other"),
    event(properties="not an object"),
    event(properties={"route": "/a"}, user_id=None, resource_id="r"),
    [1, 2],
]


def test_api_and_bronze_give_every_line_the_same_verdict(spark, settings) -> None:
    validator = EventValidator(settings.backfill_days, settings.max_line_bytes)
    lines = [dump_line(json.loads(json.dumps(case))) for case in CASES]
    bronze = parse(spark, settings, lines, RECEIVED)
    for case, line, row in zip(CASES, lines, bronze, strict=True):
        api = validator.check(json.loads(line), line, RECEIVED)
        assert (api.reason if api else None) == row.reason, (case, api, row.detail)


# Generated raw lines, written as JSON text so numbers, offsets and repeated keys reach
# both readers exactly as a client wrote them.
OFFSETS = ["Z", "z", "+00:00", "-00:00", "+01:00", "-05:00", "+0530", "+05", "-1200", "",
           "-23:59", "+18:00", "-18:00", "+18:01", "+14:45", "+05:75", "+24:00",
           "+5:00"]  # fmt: skip
QUANTITIES = ["1", "0", "-0", "12.5", "\"12.5\"", "\" 7 \"", "1e3", "1E-9", "1e-10", "-1",
              "1e28", "1e29", "9.999999999e28", "1e9999999999", "1e-9999999999", "0.1234567891",
              "\".5\"", "\"5.\"", "\"+3\"", "\"1_000\"", "\"0x10\"", "true", "null", "\"\"",
              "123456789012345678901234567890"]  # fmt: skip


@st.composite
def raw_lines(draw) -> bytes:
    day = draw(st.integers(-40, 3))
    stamp = RECEIVED.replace(tzinfo=None) + timedelta(days=day, seconds=draw(st.integers(0, 86399)))
    date = draw(st.sampled_from([stamp.strftime("%Y-%m-%d"), "2026-02-30", "2026-13-01"]))
    clock = (
        stamp.strftime("%H:%M:%S")
        if draw(st.booleans())
        else draw(st.sampled_from(["24:00:00", "23:59:60", "12:00", "7:00:00"]))
    )
    fraction = draw(st.sampled_from(["", ".5", ",25", ".123456789", ".1234567891", "."]))
    separator = draw(st.sampled_from(["T", "t", " "]))
    timestamp = f"{date}{separator}{clock}{fraction}{draw(st.sampled_from(OFFSETS))}"
    fields = [
        ("event_id", json.dumps(draw(st.sampled_from(["e1", "", "ü-1", "e\\u0001"])))),
        ("customer_id", '"acme"'),
        ("event_type", '"api_call"'),
        ("timestamp", json.dumps(timestamp)),
    ]
    if draw(st.booleans()):
        fields.append(("quantity", draw(st.sampled_from(QUANTITIES))))
    if draw(st.booleans()):
        inner = draw(st.sampled_from(['{"a": 1}', '{"a": 1, "a": 2}', '{"b": {"c": 1, "c": 1}}']))
        fields.append(("properties", inner))
    if draw(st.integers(0, 4)) == 0:
        fields.append(draw(st.sampled_from(fields)))  # a key named twice
    return ("{" + ", ".join(f'"{k}": {v}' for k, v in fields) + "}").encode()


def api_verdict(validator: EventValidator, raw: bytes) -> tuple[str | None, bytes | None]:
    """The API's reason for a one-event body (None: accepted) and the line it would land."""
    from meterlake.capture.body import BadBody, parse_body

    try:
        (parsed,) = parse_body(raw)
    except BadBody:
        return "malformed_json", None
    landed = dump_line(parsed)
    rejection = validator.check(parsed, landed, RECEIVED)
    return (rejection.reason if rejection else None), landed


def _rule(reason: str | None) -> str | None:
    return "schema" if reason in SCHEMA_REASONS else reason


@hsettings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(raw_lines(), min_size=40, max_size=40))
def test_api_accepts_exactly_what_bronze_admits(spark, settings, batch) -> None:
    """Property over generated lines: the API's verdict on a line is bronze's verdict on
    the same bytes, and what the API accepts and lands, bronze admits."""
    validator = EventValidator(settings.backfill_days, settings.max_line_bytes)
    verdicts = [api_verdict(validator, raw) for raw in batch]
    landed = [line for _, line in verdicts if line is not None]
    rows = parse(spark, settings, [*batch, *landed], RECEIVED)
    on_raw, on_landed = rows[: len(batch)], iter(rows[len(batch) :])
    for raw, (reason, line), row in zip(batch, verdicts, on_raw, strict=True):
        # A line breaking several schema rules may be named by either (the two readers walk
        # the schema in different orders); every other reason is the same rule first.
        assert _rule(reason) == _rule(row.reason), (raw, reason, row.reason, row.detail)
        if line is not None:
            admitted = next(on_landed)
            assert reason is not None or admitted.reason is None, (raw, line, admitted.detail)
