"""Request bodies: events out of one event or a batch, written back with exact numbers."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterlake.capture.body import BadBody, dump_line, parse_body

numbers = st.one_of(
    st.integers(-(10**30), 10**30),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=False, allow_infinity=False, places=9),
)
documents = st.recursive(
    st.one_of(numbers, st.text(max_size=4), st.booleans(), st.none()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(st.dictionaries(st.text(max_size=3), documents, max_size=4))
def test_dump_line_keeps_every_value_exactly(event) -> None:
    line = dump_line(event)
    assert b"\n" not in line
    assert json.loads(line, parse_float=Decimal) == event


def test_body_keeps_numbers_exactly_and_refuses_non_events() -> None:
    body = b'{"events": [{"quantity": 0.1}, {"quantity": 12345678901234567890.123456789}]}'
    assert [dump_line(e) for e in parse_body(body)] == [
        b'{"quantity":0.1}',
        b'{"quantity":12345678901234567890.123456789}',
    ]
    assert dump_line(parse_body('{"é": "ü"}'.encode())[0]) == '{"é":"ü"}'.encode()
    for bad in (b"", b"[]", b"1", b'{"events": {}}', b'{"events": [], "x": 1}', b"Infinity"):
        with pytest.raises(BadBody):
            parse_body(bad)
