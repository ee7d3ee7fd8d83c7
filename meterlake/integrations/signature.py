"""Webhook signatures: HMAC-SHA256 over the timestamp and the exact body.

meterlake sends ``Meterlake-Signature: t=<unix seconds>,v1=<hex digest>`` where the
digest is ``HMAC-SHA256(secret, f"{t}.{body}")``. A receiver checks it with
`verify_signature` (standard library only, so it can be copied into any service): the
digest must match in constant time and ``t`` must be recent, which stops a replayed old
delivery. Example (any web framework)::

    from meterlake.integrations.signature import verify_signature

    if not verify_signature(secret, request.headers["Meterlake-Signature"], raw_body):
        return 400
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "Meterlake-Signature"
TOLERANCE_SECONDS = 300


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance: int = TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """True when ``header`` signs exactly ``body`` with ``secret`` within ``tolerance`` s."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, given) for given in parts.get("v1", []))
