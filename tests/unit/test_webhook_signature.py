"""The webhook signature a receiver checks: exact body, right secret, recent."""

from __future__ import annotations

from meterlake.integrations.signature import sign, verify_signature

BODY = b'{"type": "billing.period.closed", "total": "11.00"}'


def test_a_signed_body_verifies_and_any_change_does_not() -> None:
    header = sign("whsec", BODY, 1_700_000_000)
    assert verify_signature("whsec", header, BODY, now=1_700_000_100)
    assert not verify_signature("other", header, BODY, now=1_700_000_100)
    assert not verify_signature("whsec", header, BODY.replace(b"11", b"12"), now=1_700_000_100)
    assert not verify_signature("whsec", header, BODY, now=1_700_000_000 + 301)  # replayed
    assert not verify_signature("whsec", "t=abc,v1=00", BODY)
    assert not verify_signature("whsec", "", BODY)


def test_several_v1_values_allow_secret_rotation() -> None:
    old, new = sign("old", BODY, 1_700_000_000), sign("new", BODY, 1_700_000_000)
    both = old + "," + new.split(",")[1]
    assert verify_signature("new", both, BODY, now=1_700_000_000)
    assert verify_signature("old", both, BODY, now=1_700_000_000)
