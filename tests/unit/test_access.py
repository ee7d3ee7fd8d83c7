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


def test_a_key_mints_no_more_than_it_can_do_in_its_tenant(enforced: Settings) -> None:
    from datetime import timedelta

    from meterlake.clock import audit_now

    until = audit_now() + timedelta(days=1)
    _, engineer = create_key(enforced, "acme", "engineer", expires_at=until)
    for role, tenant, message in (
        ("finance", "acme", "may not mint a finance key"),
        ("auditor", "acme", "may not mint a auditor key"),
        ("analyst", "globex", "scoped to tenant acme"),
        ("engineer", "*", "scoped to tenant acme"),
    ):
        with pytest.raises(AccessDenied, match=message):
            create_key(enforced, tenant, role, by=engineer)
    secret, analyst = create_key(enforced, "acme", "analyst", by=engineer)
    assert analyst.expires_at == until  # not outliving the key that made it
    assert authenticate(enforced, secret) == analyst


def test_expired_and_revoked_keys_are_refused(enforced: Settings, monkeypatch) -> None:
    from concurrent.futures import ThreadPoolExecutor
    from datetime import timedelta

    from meterlake.audit import access
    from meterlake.clock import audit_now

    start = audit_now()
    secret, principal = create_key(
        enforced, "acme", "analyst", expires_at=start + timedelta(hours=1)
    )
    assert authenticate(enforced, secret) == principal
    monkeypatch.setattr(access, "audit_now", lambda: start + timedelta(hours=2))
    with pytest.raises(AccessDenied, match="expired at"):
        authenticate(enforced, secret)
    assert access.lookup_key(enforced, secret) is None
    monkeypatch.undo()

    secret, principal = create_key(enforced, "acme", "analyst")
    with ThreadPoolExecutor(2) as pool:  # two revocations at once: one outcome
        operator = access.LOCAL_OPERATOR
        revoke = lambda _: access.revoke_key(enforced, principal.key_id, operator)  # noqa: E731
        records = list(pool.map(revoke, range(2)))
    assert all(r.revoked_at is not None for r in records)
    with pytest.raises(AccessDenied, match=f"key {principal.key_id} was revoked"):
        authenticate(enforced, secret)
    (listed,) = [r for r in access.list_keys(enforced, access.LOCAL_OPERATOR)
                 if r.principal == principal]  # fmt: skip
    assert listed.status == "revoked"
    with pytest.raises(ConfigError, match="key_id"):
        access.revoke_key(enforced, principal.key_id[:6], access.LOCAL_OPERATOR)  # ambiguous


def test_a_tenant_key_cannot_revoke_another_tenants_key(enforced: Settings) -> None:
    from meterlake.audit.access import revoke_key

    _, engineer = create_key(enforced, "acme", "engineer")
    _, other = create_key(enforced, "globex", "analyst")
    with pytest.raises(ConfigError, match="no key"):
        revoke_key(enforced, other.key_id, engineer)
