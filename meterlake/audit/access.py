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

Keys have a life: one may carry an expiry, ``keys revoke`` ends it (the record is kept,
marked revoked, so ``keys list`` and an auditor still see it), and a key mints only keys
that can do no more than it can, in its own tenant (`create_key`).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from meterlake.clock import audit_now, format_instant, parse_instant
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
    expires_at: datetime | None = None  # refused from then on (None: never)

    def can_see(self, tenant: str) -> bool:
        return self.tenant in (ALL_TENANTS, tenant)

    def expired(self) -> bool:
        return self.expires_at is not None and audit_now() >= self.expires_at


LOCAL_OPERATOR = Principal(key_id="local", tenant=ALL_TENANTS, role="operator")


@dataclass(frozen=True)
class KeyRecord:
    """What ``_access/keys/<sha256>.json`` holds about a key (never the secret)."""

    principal: Principal
    created_at: datetime
    created_by: str  # the minting key's id, or "local" for the operator
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.principal.expired() else "active"

    def to_json(self) -> bytes:
        p = self.principal
        fields = {
            "key_id": p.key_id, "tenant": p.tenant, "role": p.role,
            "expires_at": _text(p.expires_at), "created_at": _text(self.created_at),
            "created_by": self.created_by, "revoked_at": _text(self.revoked_at),
            "revoked_by": self.revoked_by,
        }  # fmt: skip
        return json.dumps(fields, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> KeyRecord:
        f = json.loads(data)
        principal = Principal(f["key_id"], f["tenant"], f["role"], _instant(f.get("expires_at")))
        return cls(
            principal,
            _instant(f.get("created_at")) or datetime.fromtimestamp(0, UTC),
            f.get("created_by") or "local",
            _instant(f.get("revoked_at")),
            f.get("revoked_by"),
        )


def _text(value: datetime | None) -> str | None:
    return format_instant(value) if value is not None else None


def _instant(text: str | None) -> datetime | None:
    return parse_instant(text) if text else None


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _store(settings: Settings):
    return storage_for(settings, spool="_access/.tmp")


def create_key(
    settings: Settings,
    tenant: str,
    role: str,
    *,
    by: Principal = LOCAL_OPERATOR,
    expires_at: datetime | None = None,
) -> tuple[str, Principal]:
    """A new key for ``tenant`` and ``role``, minted by ``by``; returns the secret (shown
    once) and its principal.

    No escalation: a key mints only keys whose role may do no more than its own (every
    permission of the new role is one of its role's), within the tenants it sees, expiring
    no later than it does. Only the local operator mints above that."""
    if role not in ROLES:
        raise ConfigError(f"--role: {role!r} is not one of {', '.join(ROLES)}")
    if role == "ingest" and tenant == ALL_TENANTS:
        raise ConfigError("--tenant: an ingest key sends one tenant's events; name the tenant")
    if tenant != ALL_TENANTS:
        validate_tenant(tenant)
    if expires_at is not None and expires_at <= audit_now():
        raise ConfigError(f"--expires: {format_instant(expires_at)} has passed")
    if by != LOCAL_OPERATOR:
        beyond = sorted(a for a, may in PERMISSIONS.items() if role in may and by.role not in may)
        if beyond:
            raise AccessDenied(
                f"key {by.key_id} ({by.role}) may not mint a {role} key: it could {beyond[0]}"
            )
        if not by.can_see(tenant):  # an all-tenant key only from an all-tenant key
            raise AccessDenied(f"key {by.key_id} is scoped to tenant {by.tenant}")
        if by.expires_at is not None and (expires_at is None or expires_at > by.expires_at):
            expires_at = by.expires_at  # a key cannot outlive the key that made it
    secret = "mlk_" + secrets.token_urlsafe(32)
    digest = _digest(secret)
    principal = Principal(digest[:12], tenant, role, expires_at)
    record = KeyRecord(principal, audit_now(), by.key_id)
    _store(settings).create(f"{KEYS_DIR}/{digest}.json", record.to_json())
    return secret, principal


def authenticate(settings: Settings, key: str | None) -> Principal:
    """The principal of ``key``; the local operator when access control is off."""
    if not settings.access_control:
        return LOCAL_OPERATOR
    if not key:
        raise AccessDenied("access control is on: set METERLAKE_KEY (or --key) to a key")
    record = key_record(settings, key)
    if record is None:
        raise AccessDenied("the key is not known to this warehouse")
    refusal = refused(record)
    if refusal:
        raise AccessDenied(refusal)
    return record.principal


def refused(record: KeyRecord) -> str | None:
    """Why a known key may not be used now (None: it may)."""
    p = record.principal
    if record.revoked_at is not None:
        return f"key {p.key_id} was revoked at {format_instant(record.revoked_at)}"
    if p.expired():
        return f"key {p.key_id} expired at {format_instant(p.expires_at)}"
    return None


def key_record(settings: Settings, key: str) -> KeyRecord | None:
    """The record of a key, or None for an unknown key (one storage read)."""
    found = _store(settings).read(f"{KEYS_DIR}/{_digest(key)}.json")
    return KeyRecord.from_json(found) if found is not None else None


def lookup_key(settings: Settings, key: str) -> Principal | None:
    """The principal of a key that may be used now; None for an unknown, revoked or
    expired key."""
    record = key_record(settings, key)
    return record.principal if record is not None and refused(record) is None else None


def list_keys(settings: Settings, by: Principal, tenant: str | None = None) -> list[KeyRecord]:
    """Every key ``by`` sees (its tenant's; all for an all-tenant key), or only
    ``tenant``'s, oldest first."""
    store = _store(settings)
    records = []
    for name in store.keys(KEYS_DIR):
        data = store.read(name)
        if name.endswith(".json") and data is not None:
            record = KeyRecord.from_json(data)
            if by.can_see(record.principal.tenant) and tenant in (None, record.principal.tenant):
                records.append(record)
    return sorted(records, key=lambda r: (r.created_at, r.principal.key_id))


def revoke_key(
    settings: Settings, key_id: str, by: Principal, tenant: str | None = None
) -> KeyRecord:
    """Revoke the key whose id is ``key_id`` (as ``keys list`` prints it), one ``by`` sees
    (in ``tenant``, when given). Terminal and idempotent: a second revocation keeps the
    first one's time."""
    unknown = f"key_id: no key {key_id!r} (keys list shows the ids)"
    if len(key_id) < 12:
        raise ConfigError(unknown)
    store = _store(settings)
    matches = [n for n in store.keys(KEYS_DIR) if n.rsplit("/", 1)[-1].startswith(key_id)]
    if len(matches) != 1:
        raise ConfigError(unknown)
    data = store.read(matches[0])
    record = KeyRecord.from_json(data) if data is not None else None
    visible = record is not None and by.can_see(record.principal.tenant)
    if record is None or not visible or tenant not in (None, record.principal.tenant):
        raise ConfigError(unknown)
    if record.revoked_at is None:
        record = replace(record, revoked_at=audit_now(), revoked_by=by.key_id)
        store.write(matches[0], record.to_json())
    return record


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
