"""Erasure touches the subject in the field that names it, and nothing else."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from meterlake.audit.customer_erasure import catalog_names, erase_in_catalog
from meterlake.audit.subject_fields import CUSTOMER, USER, erase_in_line, holds_subject


def test_a_customer_is_erased_in_its_field_only_and_every_other_byte_is_kept() -> None:
    line = (
        b'{"customer_id":  "m\\u00fcller", "user_id": "m\xc3\xbcller",'
        b' "properties": {"x": "m\xc3\xbcller"}}'
    )
    erased = erase_in_line(line, "müller", "erased-1", CUSTOMER)
    assert erased == line.replace(b'"m\\u00fcller"', b'"erased-1"', 1)
    assert not holds_subject(erased, "müller", CUSTOMER)
    assert holds_subject(erased, "müller", USER)  # the user of the same value stays
    user_erased = erase_in_line(line, "müller", "erased-2", USER)
    assert json.loads(user_erased)["customer_id"] == "müller"


def test_a_nested_customer_id_key_is_not_the_customer() -> None:
    line = b'{"customer_id": "acme", "properties": {"customer_id": "bob"}}'
    assert erase_in_line(line, "bob", "erased-1", CUSTOMER) == line


@given(st.text(min_size=1), st.text(min_size=1))
def test_erasing_a_customer_changes_exactly_that_field(customer: str, other: str) -> None:
    event = {"customer_id": customer, "user_id": customer, "properties": {"who": other}}
    line = json.dumps(event, ensure_ascii=len(customer) % 2 == 0).encode()
    erased = json.loads(erase_in_line(line, customer, "erased-x", CUSTOMER))
    assert erased == {**event, "customer_id": "erased-x"}


CATALOG = """customers:
  - {id: acme, timezone: UTC}   # the default tenant
  - id: "acme"
    tenant: t2
  - {id: acme-eu, tenant: default}
plans: [{id: acme}]
"""


def test_the_catalog_text_loses_only_the_tenants_customer_id() -> None:
    erased = erase_in_catalog(CATALOG, "default", "acme", "erased-9")
    assert erased == CATALOG.replace("{id: acme,", "{id: erased-9,", 1)
    assert catalog_names(CATALOG, "t2", "acme") and not catalog_names(erased, "default", "acme")
    assert erase_in_catalog("customers: [", "default", "acme", "x") == "customers: ["
