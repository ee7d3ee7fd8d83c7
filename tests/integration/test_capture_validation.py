"""The API's early verdict equals bronze's for the same line: one contract, two readers."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from meterlake.capture.body import dump_line
from meterlake.capture.validate import EventValidator
from tests.helpers import event, parse

RECEIVED = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

CASES = [
    event(),
    event(quantity="12.5"),
    event(quantity=0),
    event(quantity=-1),
    event(quantity="1.0000000001"),
    event(quantity="abc"),
    event(quantity=True),
    event(quantity=None),
    event(quantity=...),
    event(timestamp="2026-03-02T11:00:00"),
    event(timestamp="2026-03-02T11:00:00+0530"),
    event(timestamp="2026-03-02T11:00:00.123456789-05"),
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
