"""Roles, tenant scope and keys: who may run which command on which tenant's data.

A key is a random secret bound to one tenant and one role; only its sha256 is stored
(``_access/keys/<sha256>.json`` in the warehouse, through `meterlake.storage`, so checking
a key needs no JVM). Access control is on when ``METERLAKE_ACCESS_CONTROL=on``: every
command then needs ``METERLAKE_KEY`` (or ``--key``), and `authorize` refuses what the key's
role may not do and any tenant but the key's own. Off (the embedded default), commands run
as the local operator, as before.

Roles (the seed's users): ``engineer`` runs the pipeline and repairs data; ``analyst``
reads usage; ``auditor`` reads usage, invoices, lineage and reconciliations;
``finance`` runs and reads invoices and reconciliations; ``ingest`` is what a product's
servers hold to send events to the capture API (and read their customers' usage). A key
sees its one tenant; a key made with tenant ``*`` (the platform's own staff) sees every
tenant. Commands that cannot be limited to one tenant (``pipeline run``, ``reconcile``...)
need such a key.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass

from meterlake.config import Settings
from meterlake.errors import ConfigError, MeterlakeError
from meterlake.ingest.landing import validate_tenant
from meterlake.storage import storage_for

ROLES = ("engineer", "analyst", "auditor", "finance", "ingest")
ALL_TENANTS = "*"
KEYS_DIR = "_access/keys"

# action → the roles that may perform it
PERMISSIONS: dict[str, frozenset[str]] = {
    "warehouse.admin": frozenset({"engineer"}),  # init, catalog load, keys
    "events.write": frozenset({"engineer"}),  # events load, pipeline, quarantine, replay
    "events.send": frozenset({"ingest", "engineer"}),  # POST /v1/events
    "usage.read": frozenset(ROLES),
    "invoices.run": frozenset({"finance"}),
    "invoices.read": frozenset({"finance", "auditor"}),
    "lineage.read": frozenset({"auditor", "finance"}),
    "reconcile.run": frozenset({"finance", "auditor", "engineer"}),
    "billing.sync": frozenset({"finance", "engineer"}),  # stripe sync, webhooks deliver
    "fx.load": frozenset({"finance", "engineer"}),
    "gdpr.export": frozenset({"engineer", "auditor"}),  # a data subject's request
    "gdpr.erase": frozenset({"engineer"}),  # rewrites raw data: never finance or analysts
    "warehouse.recover": frozenset({"engineer"}),  # replay, backup create
    "backup.verify": frozenset({"engineer", "auditor"}),
    "status.read": frozenset({"engineer", "auditor", "finance"}),  # spans every tenant
    "sql.query": frozenset({"analyst", "auditor", "finance", "engineer"}),  # sql, anomalies
}


class AccessDenied(MeterlakeError):
    """The key is missing, unknown, or its role or tenant does not allow this."""

    exit_code = 4


@dataclass(frozen=True)
class Principal:
    key_id: str  # the first 12 hex digits of the key's sha256: safe to log
    tenant: str
    role: str

    def can_see(self, tenant: str) -> bool:
        return self.tenant in (ALL_TENANTS, tenant)


LOCAL_OPERATOR = Principal(key_id="local", tenant=ALL_TENANTS, role="operator")


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(settings: Settings, tenant: str, role: str) -> tuple[str, Principal]:
    """A new key for ``tenant`` and ``role``; returns the secret (shown once) and its
    principal."""
    if role not in ROLES:
        raise ConfigError(f"--role: {role!r} is not one of {', '.join(ROLES)}")
    if role == "ingest" and tenant == ALL_TENANTS:
        raise ConfigError("--tenant: an ingest key sends one tenant's events; name the tenant")
    if tenant != ALL_TENANTS:
        validate_tenant(tenant)
    secret = "mlk_" + secrets.token_urlsafe(32)
    digest = _digest(secret)
    principal = Principal(digest[:12], tenant, role)
    entry = json.dumps(asdict(principal), sort_keys=True).encode()
    storage_for(settings, spool="_access/.tmp").create(f"{KEYS_DIR}/{digest}.json", entry)
    return secret, principal


def authenticate(settings: Settings, key: str | None) -> Principal:
    """The principal of ``key``; the local operator when access control is off."""
    if not settings.access_control:
        return LOCAL_OPERATOR
    if not key:
        raise AccessDenied("access control is on: set METERLAKE_KEY (or --key) to a key")
    principal = lookup_key(settings, key)
    if principal is None:
        raise AccessDenied("the key is not known to this warehouse")
    return principal


def lookup_key(settings: Settings, key: str) -> Principal | None:
    """The principal a key was made for, or None for an unknown key (one storage read)."""
    found = storage_for(settings, spool="_access/.tmp").read(f"{KEYS_DIR}/{_digest(key)}.json")
    return Principal(**json.loads(found)) if found is not None else None


def authorize(
    principal: Principal, action: str, tenant: str | None, *, scopable: bool
) -> str | None:
    """Allow ``action`` on ``tenant`` or raise `AccessDenied` saying why. ``tenant`` None
    means every tenant the principal sees: a command that can be limited to one tenant
    (``scopable``) is limited to the key's; one that cannot needs an all-tenant key.
    Returns the tenant the work must be limited to (None: no limit)."""
    if principal == LOCAL_OPERATOR:  # access control off: the warehouse's owner
        return tenant
    if principal.role not in PERMISSIONS[action]:
        raise AccessDenied(f"role {principal.role} may not {action}")
    if tenant is not None and not principal.can_see(tenant):
        raise AccessDenied(f"key {principal.key_id} is scoped to tenant {principal.tenant}")
    if tenant is None and principal.tenant != ALL_TENANTS:
        if not scopable:
            raise AccessDenied(
                f"{action} spans every tenant; key {principal.key_id} sees only {principal.tenant}"
            )
        return principal.tenant
    return tenant
