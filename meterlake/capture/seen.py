"""Recently accepted event ids per tenant, so a retried event is answered ``duplicate``.

Bounded (least recently seen forgotten first) and per process: bronze's deduplication
stays the guarantee; this only spares a client from wondering. An id is remembered only
after its batch committed, so "duplicate" always means the first copy is durable.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

ACCEPTED, DUPLICATE, CONFLICT = "accepted", "duplicate", "conflict"


class SeenEvents:
    def __init__(self, capacity: int = 500_000) -> None:
        self._capacity = capacity
        self._ids: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def fingerprint(line: bytes) -> bytes:
        return hashlib.blake2b(line, digest_size=16).digest()

    def verdict(self, tenant: str, event_id: str, fingerprint: bytes) -> str:
        """accepted (new), duplicate (same payload seen), or conflict (same id, other payload)."""
        with self._lock:
            known = self._ids.get((tenant, event_id))
        if known is None:
            return ACCEPTED
        return DUPLICATE if known == fingerprint else CONFLICT

    def remember(self, tenant: str, events: list[tuple[str, bytes]]) -> None:
        with self._lock:
            for event_id, fingerprint in events:
                self._ids[tenant, event_id] = fingerprint
                self._ids.move_to_end((tenant, event_id))
            while len(self._ids) > self._capacity:
                self._ids.popitem(last=False)
