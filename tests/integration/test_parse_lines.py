"""Validation and time rules of `parse_lines`, one Spark job for the whole table."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from meterlake.config import Settings
from tests.helpers import event, lines_frame, parse

RECEIVED = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

CASES = [
    (event(), None),
    (event(quantity="12.5"), None),
    (event(quantity=...), None),
    (event(quantity=1e3), None),
    (event(quantity="0.000000001"), None),
    (event(timestamp="2026-03-02T06:00:00-05:00"), None),
    (event(timestamp="2026-03-02T11:00:00.123456+0100"), None),
    (event(properties={"route": "/x", "n": [1, 2]}, sdk={"name": "py", "version": "1"}), None),
    (event(resource_id=None, schema_version="1"), None),
    ("{not json", "malformed_json"),
    ('{"a":1,"a":2}', "malformed_json"),
    ("[1, 2]", "not_an_object"),
    (b'{"event_id": "caf\xe9"}', "invalid_utf8"),
    (event(event_id=...), "missing_field"),
    (event(customer_id=42), "wrong_type"),
    (event(event_id=""), "invalid_value"),
    (event(properties=[1]), "wrong_type"),
    (event(tenant_id="other"), "unknown_field"),
    (event(sdk={"name": "py", "os": "linux"}), "unknown_field"),
    (event(schema_version="9"), "unknown_schema_version"),
    (event(quantity=-3), "negative_quantity"),
    (event(quantity="-0.5"), "negative_quantity"),
    (event(quantity="ten"), "invalid_quantity"),
    (event(quantity="1.0000000001"), "invalid_quantity"),
    (event(quantity=True), "wrong_type"),
    (event(quantity=None), "wrong_type"),
    (event(timestamp="2026-03-02T11:00:00"), "timestamp_without_offset"),
    (event(timestamp="yesterday"), "invalid_timestamp"),
    (event(timestamp="2026-02-30T00:00:00Z"), "invalid_timestamp"),
    (event(timestamp="2026-01-25T11:59:59Z"), "too_old"),
    (event(timestamp="2026-01-26T12:00:00Z"), None),
]


def test_each_line_gets_its_reason(spark, settings: Settings) -> None:
    rows = parse(spark, settings, [case for case, _ in CASES], RECEIVED)
    got = [(row.line_number, row.reason) for row in rows]
    assert got == [(i + 1, reason) for i, (_, reason) in enumerate(CASES)]
    for row in rows:
        assert (row.detail is None) == (row.reason is None)


def test_details_name_the_field(spark, settings: Settings) -> None:
    rows = parse(
        spark,
        settings,
        [event(customer_id=42), event(event_id=...), event(tenant_id="x"), event(quantity=-2)],
        RECEIVED,
    )
    assert [r.detail for r in rows] == [
        "customer_id: expected string, got number",
        "event_id: is required",
        "tenant_id: unknown field",
        "quantity: -2 is negative",
    ]


def test_valid_event_fields_are_typed_and_exact(spark, settings: Settings) -> None:
    rows = parse(
        spark,
        settings,
        [
            event(quantity="12.50", region="eu", properties={"b": 1, "a": "x"}),
            event(quantity=...),
            event(quantity=0.1),
            event(timestamp="2026-03-02T06:00:00-05:00"),
            event(timestamp="2026-03-02T06:00-0500"),  # no seconds, as ISO 8601 allows
        ],
        RECEIVED,
    )
    first = rows[0]
    assert first.quantity == Decimal("12.500000000")
    assert first.region == "eu"
    assert json.loads(first.properties) == {"a": "x", "b": 1}
    assert first.billing_time == datetime(2026, 3, 2, 11, 0)
    assert first.billing_date.isoformat() == "2026-03-02"
    assert first.clock_skew is False
    assert rows[1].quantity == Decimal("1.000000000")
    assert rows[2].quantity == Decimal("0.100000000")
    assert rows[3].event_time == datetime(2026, 3, 2, 11, 0)
    assert rows[4].event_time == datetime(2026, 3, 2, 11, 0)


def test_clock_skew_clamps_to_receipt_beyond_five_minutes(spark, settings: Settings) -> None:
    rows = parse(
        spark,
        settings,
        [
            event(timestamp="2026-03-02T12:05:00Z"),
            event(timestamp="2026-03-02T12:05:00.000001Z"),
            event(timestamp="2026-03-03T00:00:00Z"),
        ],
        RECEIVED,
    )
    assert [(r.reason, r.clock_skew, r.billing_time) for r in rows] == [
        (None, False, datetime(2026, 3, 2, 12, 5)),
        (None, True, datetime(2026, 3, 2, 12, 0)),
        (None, True, datetime(2026, 3, 2, 12, 0)),
    ]
    assert rows[2].event_time == datetime(2026, 3, 3, 0, 0)


def test_payload_hash_ignores_key_order_and_whitespace(spark, settings: Settings) -> None:
    a = json.dumps(event(), indent=2).replace("\n", " ")
    b = json.dumps(dict(reversed(list(event().items()))))
    c = json.dumps(event(quantity=4))
    rows = parse(spark, settings, [a, b, c], RECEIVED)
    assert rows[0].payload_sha256 == rows[1].payload_sha256 != rows[2].payload_sha256


def test_over_long_line_is_quarantined_with_its_bytes(spark, settings: Settings) -> None:
    long_line = json.dumps(event(properties={"blob": "x" * (1024 * 1024)}))
    rows = parse(spark, settings, [long_line], RECEIVED)
    assert rows[0].reason == "line_too_long"
    assert bytes(rows[0].raw) == long_line.encode()


def test_a_new_schema_version_needs_no_code_change(spark, settings: Settings, tmp_path) -> None:
    from meterlake.ingest.event_schema import load_event_schemas
    from meterlake.ingest.parse import parse_lines
    from meterlake.paths import schemas_dir
    from tests.helpers import lines_frame

    folder = tmp_path / "events"
    folder.mkdir()
    v1 = json.loads((schemas_dir() / "events/v1.json").read_text())
    (folder / "v1.json").write_text(json.dumps(v1))
    v2 = json.loads(json.dumps(v1))
    v2["properties"]["schema_version"]["enum"] = ["2"]
    v2["properties"]["cost_center"] = {"type": "string", "pattern": "^cc-[0-9]+$"}
    v2["required"] = [*v1["required"], "cost_center"]
    (folder / "v2.json").write_text(json.dumps(v2))
    schemas = load_event_schemas(folder)
    assert sorted(schemas) == ["1", "2"]
    lines = [
        event(schema_version="2", cost_center="cc-7"),
        event(schema_version="2"),
        event(schema_version="2", cost_center="sales"),
        event(cost_center="cc-7"),
    ]
    frame = lines_frame(spark, lines, RECEIVED)
    rows = parse_lines(frame, settings, schemas).orderBy("line_number").collect()
    assert [r.reason for r in rows] == [None, "missing_field", "invalid_value", "unknown_field"]
    assert json.loads(rows[0].extra) == {"cost_center": "cc-7"}
    assert rows[0].schema_version == "2"


def test_schema_with_unsupported_keyword_is_refused(tmp_path) -> None:
    import pytest

    from meterlake.errors import ConfigError
    from meterlake.ingest.event_schema import load_event_schemas

    (tmp_path / "v1.json").write_text(
        json.dumps({"type": "object", "properties": {"a": {"oneOf": [{"type": "string"}]}}})
    )
    with pytest.raises(ConfigError, match=r"properties\.a\.oneOf: keyword not supported"):
        load_event_schemas(tmp_path)


def _variants(seed: int) -> list[tuple[str, str]]:
    """Pairs of valid lines: the same event re-serialised, or with one field changed."""
    import random

    rng = random.Random(seed)
    changes = [
        {"quantity": "3.0"}, {"quantity": 4}, {"timestamp": "2026-03-02T11:00:00.000Z"},
        {"user_id": "u2"}, {"user_id": None}, {"region": "eu"}, {"resource_id": "r"},
        {"properties": {"route": "/y"}}, {"properties": {"route": "/x", "n": 1}},
        {"sdk": {"name": "py", "version": "2"}}, {"event_type": "other"}, {"session_id": "s"},
        {"properties": {}},
    ]  # fmt: skip
    pairs = []
    for n in range(300):
        base = event(event_id=f"e-{n}", user_id="u1", properties={"route": "/x", "n": [1, 2]},
                     sdk={"name": "py", "version": "1"})  # fmt: skip
        other = dict(base)
        if rng.random() < 0.5:
            other.update(rng.choice(changes))
            other = {k: v for k, v in other.items() if v is not None}
        keys = list(other)
        rng.shuffle(keys)
        resent = json.dumps({k: other[k] for k in keys}, indent=rng.choice([None, 1]))
        pairs.append((json.dumps(base), resent.replace("\n", " ")))
    return pairs


def test_the_v2_payload_hash_tells_resends_from_changes_as_the_whole_document_did(
    spark, settings: Settings
) -> None:
    """Differential: over 300 pairs (re-serialised, or one field changed) the cheap v2 hash
    says "same payload" exactly where the v1 hash of the whole canonical document does,
    but for one spelling v1 told apart."""
    from meterlake.ingest.identity import HASH_V2, legacy_payload_hash

    pairs = _variants(seed=7)
    rows = parse(spark, settings, [line for pair in pairs for line in pair], RECEIVED)
    assert all(r.reason is None for r in rows), [r.detail for r in rows if r.reason][:3]
    legacy = (
        lines_frame(spark, [line for pair in pairs for line in pair], RECEIVED)
        .select(legacy_payload_hash().alias("v1"))
        .collect()
    )
    assert all(r.payload_sha256.startswith(HASH_V2) for r in rows)
    v2_same = [rows[i].payload_sha256 == rows[i + 1].payload_sha256 for i in range(0, len(rows), 2)]
    v1_same = [legacy[i].v1 == legacy[i + 1].v1 for i in range(0, len(legacy), 2)]
    assert v2_same == v1_same and 50 < sum(v2_same) < 250
    # Where v2 differs on purpose: the default schema version, sent or left out, is one
    # payload (v1 called a resend that started naming it a conflict).
    implicit, explicit = json.dumps(event()), json.dumps(event(schema_version="1"))
    hashes = [r.payload_sha256 for r in parse(spark, settings, [implicit, explicit], RECEIVED)]
    assert hashes[0] == hashes[1]


def test_a_resend_meeting_a_row_of_the_old_hash_version_is_judged_by_it(
    spark, settings: Settings
) -> None:
    """Bronze rows written before v2 hold the v1 hash: a resend of the same payload is a
    duplicate, a changed one a conflict, as before."""
    from pyspark.sql import functions as F

    from meterlake.ingest.event_schema import load_event_schemas
    from meterlake.ingest.identity import classify, legacy_payload_hash, repeats
    from meterlake.ingest.parse import parse_lines

    original = json.dumps(event(event_id="old-1", quantity="2"))
    prior = lines_frame(spark, [original], RECEIVED).select(
        F.col("tenant_id"),
        F.lit("old-1").alias("event_id"),
        legacy_payload_hash().alias("payload_sha256"),
    )
    resent = json.dumps(dict(reversed(list(event(event_id="old-1", quantity="2").items()))))
    changed = json.dumps(event(event_id="old-1", quantity="3"))
    frame = parse_lines(
        lines_frame(spark, [resent, changed], RECEIVED), settings, load_event_schemas()
    )
    judged = classify(frame, repeats(frame, prior)).orderBy("line_number").collect()
    outcomes = [(r.outcome, r.reason) for r in judged]
    assert outcomes == [("duplicate", None), ("rejected", "duplicate_conflict")]
