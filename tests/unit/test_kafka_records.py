"""How Kafka records are keyed and which tenant an archived record belongs to."""

from __future__ import annotations

import pytest

from meterlake.ingest.kafka_topic import UNKEYED, record_key, tenant_of


def test_key_round_trip_keeps_slashes_in_the_customer() -> None:
    assert record_key("t-1", "org/acme") == b"t-1/org/acme"
    assert tenant_of(record_key("t-1", "org/acme")) == "t-1"


@pytest.mark.parametrize(
    "key", [None, b"", b"acme", b"/acme", b"bad tenant/acme", b"\xff\xfe/acme", b"a" * 65 + b"/c"]
)
def test_a_record_without_a_usable_tenant_is_unkeyed(key: bytes | None) -> None:
    assert tenant_of(key) == UNKEYED
