"""Accepted event ids per tenant: one verdict for concurrent requests, and ``duplicate``
for a retry.

Two requests carrying the same ``event_id`` with different payloads can arrive at the
same moment; both must not be told ``accepted`` (bronze would keep one and quarantine the
other, and one client would have been lied to). So an id is *claimed* when a request
accepts it, before its batch is written: a concurrent request with another payload gets
``duplicate_conflict`` at once, one with the same payload is accepted too (the copies are
identical, and bronze drops the later one as a duplicate). A claim whose batch then fails
to be written is released; one whose batch committed is confirmed, and from then on a
retry of it is answered ``duplicate`` (so "duplicate" always means the first copy is
durable).

Bounded (least recently seen forgotten first) and per process: bronze's identity rule
stays the guarantee across processes and restarts.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

ACCEPTED, DUPLICATE, CONFLICT = "accepted", "duplicate", "conflict"


class SeenEvents:
    def __init__(self, capacity: int = 500_000) -> None:
        self._capacity = capacity
        # (tenant, id) → (fingerprint, durable)
        self._ids: OrderedDict[tuple[str, str], tuple[bytes, bool]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def fingerprint(line: bytes) -> bytes:
        return hashlib.blake2b(line, digest_size=16).digest()

    def claim(self, tenant: str, event_id: str, fingerprint: bytes) -> str:
        """accepted (new, now claimed; or the same payload claimed and not yet durable),
        duplicate (the same payload is durable), or conflict (another payload holds it)."""
        key = (tenant, event_id)
        with self._lock:
            known = self._ids.get(key)
            if known is None:
                self._ids[key] = (fingerprint, False)
                self._trim()
                return ACCEPTED
            self._ids.move_to_end(key)
        held, durable = known
        if held != fingerprint:
            return CONFLICT
        return DUPLICATE if durable else ACCEPTED

    def confirm(self, tenant: str, events: list[tuple[str, bytes]]) -> None:
        """The batch holding ``events`` committed: retries are duplicates from now on."""
        with self._lock:
            for event_id, fingerprint in events:
                self._ids[tenant, event_id] = (fingerprint, True)
                self._ids.move_to_end((tenant, event_id))
            self._trim()

    def release(self, tenant: str, events: list[tuple[str, bytes]]) -> None:
        """The batch holding ``events`` was not written: free the claims still pending."""
        with self._lock:
            for event_id, fingerprint in events:
                if self._ids.get((tenant, event_id)) == (fingerprint, False):
                    del self._ids[tenant, event_id]

    def _trim(self) -> None:
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
