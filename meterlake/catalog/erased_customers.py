"""The customers GDPR erasure has removed, kept so that no catalog brings one back.

An erased customer's invoices, rollups and events carry a pseudonym instead of its id. A
catalog that lists the id again would bill the customer's past periods a second time
(its invoices are no longer under the id), so `store_catalog` refuses it. The list holds
no id: one marker per erasure, ``_audit/erased_customers/<erasure_id>.json``, with a
random salt and sha256(salt, tenant, id), written before the erasure rewrites anything
(an erasure killed midway is resumed with the same pseudonym, and the id stays refused
meanwhile). Telling whether an id was erased takes that id; nothing lists the ids.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from meterlake.errors import CatalogError
from meterlake.storage import storage_for

if TYPE_CHECKING:
    from meterlake.config import Settings

MARKERS = "_audit/erased_customers"


@dataclass(frozen=True)
class Marker:
    erasure_id: str
    tenant_id: str
    salt: str
    digest: str
    pseudonym: str

    def names(self, tenant: str, customer: str) -> bool:
        return tenant == self.tenant_id and _digest(self.salt, tenant, customer) == self.digest


def _digest(salt: str, tenant: str, customer: str) -> str:
    return hashlib.sha256(f"{salt}\x00{tenant}\x00{customer}".encode()).hexdigest()


def markers(settings: Settings) -> list[Marker]:
    storage = storage_for(settings)
    found = []
    for key in storage.keys(MARKERS + "/"):
        if key.endswith(".files.json"):  # an erasure's journal of landing files rewritten
            continue
        body = storage.read(key)
        if body:
            found.append(Marker(**json.loads(body)))
    return found


def marker_for(settings: Settings, tenant: str, customer: str) -> Marker | None:
    return next((m for m in markers(settings) if m.names(tenant, customer)), None)


def mark_erased(settings: Settings, tenant: str, customer: str) -> Marker:
    """A new marker for (tenant, customer), with the erasure's id and pseudonym."""
    salt = secrets.token_hex(16)
    marker = Marker(
        erasure_id=secrets.token_hex(8),
        tenant_id=tenant,
        salt=salt,
        digest=_digest(salt, tenant, customer),
        pseudonym=f"erased-{secrets.token_hex(12)}",
    )
    body = json.dumps(asdict(marker), sort_keys=True).encode()
    if not storage_for(settings).create(f"{MARKERS}/{marker.erasure_id}.json", body):
        raise RuntimeError(f"erasure id {marker.erasure_id} exists already")  # 64 random bits
    return marker


def refuse_erased(settings: Settings, customers: Iterable[tuple[int, str, str]]) -> None:
    """Raise for the first (index, tenant, id) of ``customers`` an erasure removed."""
    known = markers(settings)
    if not known:
        return
    for index, tenant, customer in customers:
        marker = next((m for m in known if m.names(tenant, customer)), None)
        if marker is not None:
            raise CatalogError(
                f"customers[{index}].id",
                f"customer {customer!r} of tenant {tenant!r} was erased (GDPR erasure"
                f" {marker.erasure_id}); an erased customer is never billed again under"
                " its old id: give it a new one",
            )
