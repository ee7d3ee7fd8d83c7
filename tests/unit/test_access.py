"""Roles, tenant scope and keys (no Spark: keys live in the warehouse's storage)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from meterlake.audit.access import (
    LOCAL_OPERATOR,
    PERMISSIONS,
    AccessDenied,
    authenticate,
    authorize,
    create_key,
)
from meterlake.config import Settings
from meterlake.errors import ConfigError


@pytest.fixture
def enforced(settings: Settings) -> Settings:
    return replace(settings, access_control=True)


def test_keys_are_stored_hashed_and_authenticate(enforced: Settings, tmp_path) -> None:
    secret, principal = create_key(enforced, "acme", "finance")
    assert authenticate(enforced, secret) == principal
    stored = b"".join(p.read_bytes() for p in tmp_path.rglob("_access/keys/*.json"))
    assert secret.encode() not in stored and b"finance" in stored
    with pytest.raises(AccessDenied, match="not known"):
        authenticate(enforced, secret + "x")
    with pytest.raises(AccessDenied, match="METERLAKE_KEY"):
        authenticate(enforced, None)
    with pytest.raises(ConfigError, match="--role"):
        create_key(enforced, "acme", "admin")


def test_without_access_control_the_local_operator_runs_everything(settings: Settings) -> None:
    assert authenticate(settings, None) == LOCAL_OPERATOR
    assert all(authorize(LOCAL_OPERATOR, a, None, scopable=False) is None for a in PERMISSIONS)


@pytest.mark.parametrize(
    ("role", "action", "allowed"),
    [
        ("analyst", "invoices.run", False),
        ("analyst", "usage.read", True),
        ("finance", "events.write", False),
        ("finance", "invoices.run", True),
        ("auditor", "lineage.read", True),
        ("auditor", "invoices.run", False),
        ("engineer", "events.write", True),
        ("engineer", "invoices.run", False),
    ],
)
def test_roles(enforced: Settings, role: str, action: str, allowed: bool) -> None:
    secret, _ = create_key(enforced, "*", role)
    principal = authenticate(enforced, secret)
    if allowed:
        assert authorize(principal, action, None, scopable=False) is None
    else:
        with pytest.raises(AccessDenied, match=f"role {role} may not {action}"):
            authorize(principal, action, None, scopable=False)


def test_a_tenant_key_sees_only_its_tenant(enforced: Settings) -> None:
    secret, _ = create_key(enforced, "acme", "analyst")
    analyst = authenticate(enforced, secret)
    assert authorize(analyst, "usage.read", None, scopable=True) == "acme"
    assert authorize(analyst, "usage.read", "acme", scopable=True) == "acme"
    with pytest.raises(AccessDenied, match="scoped to tenant acme"):
        authorize(analyst, "usage.read", "globex", scopable=True)
    with pytest.raises(AccessDenied, match="spans every tenant"):
        authorize(analyst, "usage.read", None, scopable=False)
