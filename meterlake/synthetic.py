"""Deterministic synthetic usage events for the demo, tests and benchmarks.

Events look like what the SDK sends (about 350 bytes each): a UUID, a customer, one of
the demo meters' event types, a decimal quantity, an ISO timestamp with ``Z``, context
fields and a small ``properties`` object.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from meterlake.clock import format_instant

EVENT_TYPES = ("api_call", "seat", "storage_gb")
REGIONS = ("us-east-1", "eu-west-1", "ap-south-1")


def events(
    count: int, customers: Sequence[str], start: datetime, span: timedelta, seed: int = 7
) -> Iterator[dict]:
    """``count`` events spread evenly at random over ``[start, start + span)``."""
    rng = random.Random(seed)
    seconds = max(1, int(span.total_seconds()))
    for _ in range(count):
        kind = rng.choice(EVENT_TYPES)
        quantity = {"api_call": rng.randint(1, 20), "seat": 1}.get(kind)
        yield {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "customer_id": rng.choice(customers),
            "event_type": kind,
            "quantity": quantity if quantity is not None else f"{rng.randint(1, 5000) / 100:.2f}",
            "timestamp": format_instant(start + timedelta(seconds=rng.randrange(seconds))),
            "resource_id": f"res-{rng.randint(1, 50):03d}",
            "user_id": f"user-{rng.randint(1, 40):03d}",
            "session_id": f"sess-{rng.getrandbits(32):08x}",
            "region": rng.choice(REGIONS),
            "properties": {
                "route": rng.choice(("/v1/search", "/v1/items", "/v1/export")),
                "status": rng.choice((200, 200, 200, 201, 404)),
                "duration_ms": rng.randint(3, 900),
            },
            "schema_version": "1",
            "sdk": {"name": "meterlake-python", "version": "0.1.0"},
        }


def dump(event: dict) -> str:
    return json.dumps(event, separators=(",", ":"))


def write_jsonl(path: Path, lines: Iterator[str] | Sequence[str]) -> int:
    """Write lines (already serialised) to ``path``; returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line + "\n")
            count += 1
    return count
