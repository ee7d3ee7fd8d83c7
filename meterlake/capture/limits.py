"""Admission control: a token bucket per tenant (429) and landing backpressure (503).

Both answer with ``Retry-After`` so a well-behaved client (the SDK) slows down instead of
hammering; neither ever drops an event the client believes was accepted.
"""

from __future__ import annotations

import math
import shutil
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from meterlake.config import Settings
from meterlake.ingest.progress import read_progress
from meterlake.storage import storage_for


class TokenBucket:
    """``rate`` events per second, up to ``burst`` at once; thread-safe."""

    def __init__(self, rate: float, burst: float, clock=time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._clock = clock
        self._at = clock()
        self._lock = threading.Lock()

    def take(self, count: int) -> float:
        """Take ``count`` tokens: 0 when granted, else the seconds to wait before retrying."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if count <= self._tokens:
                self._tokens -= count
                return 0.0
            return (min(count, self.burst) - self._tokens) / self.rate


class RateLimits:
    """One bucket per tenant, made on first use."""

    def __init__(self, rate: int, burst: int) -> None:
        self._rate, self._burst = rate, burst
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def retry_after(self, tenant: str, events: int) -> int:
        """0 if ``tenant`` may send ``events`` now, else whole seconds to wait (≥ 1)."""
        with self._lock:
            bucket = self._buckets.setdefault(tenant, TokenBucket(self._rate, self._burst))
        wait = bucket.take(events)
        return 0 if wait == 0 else max(1, math.ceil(wait))


@dataclass(frozen=True)
class Pressure:
    reason: str
    retry_after: int


class Backlog:
    """Events this server landed that the stream has not yet taken into bronze.

    The stream's progress mark (`meterlake.ingest.progress`) is re-read at most once a
    second. Batches landed by an earlier server process are not counted (documented).
    """

    RECHECK_SECONDS = 1.0

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._landed: deque[tuple[datetime, int]] = deque()
        self._waiting = 0  # the events in _landed, kept as they come and go
        self._spool = storage_for(settings).spool_dir()  # where landing writes first
        self._through: datetime | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def landed(self, received: datetime, events: int) -> None:
        with self._lock:
            self._landed.append((received, events))
            self._waiting += events

    def _refresh(self) -> None:
        if time.monotonic() - self._checked < self.RECHECK_SECONDS:
            return
        self._checked = time.monotonic()
        progress = read_progress(self._settings)
        if progress is not None:
            self._through = progress.through
        while self._landed and self._through is not None and self._landed[0][0] <= self._through:
            self._waiting -= self._landed.popleft()[1]

    def state(self) -> tuple[int, datetime | None, datetime | None]:
        """(events waiting, receipt time of the oldest waiting, stream's progress mark)."""
        with self._lock:
            self._refresh()
            oldest = self._landed[0][0] if self._landed else None
            return self._waiting, oldest, self._through

    def pressure(self) -> Pressure | None:
        """Why landing must refuse new events now, if it must."""
        api = self._settings.api
        waiting, _, _ = self.state()
        if waiting > api.max_backlog_events:
            return Pressure(
                f"landing backlog of {waiting} events exceeds {api.max_backlog_events}",
                max(1, self._settings.stream_interval_seconds * 5),
            )
        free_mb = shutil.disk_usage(self._spool).free // (1024 * 1024)
        if free_mb < api.min_free_mb:
            return Pressure(f"landing disk has {free_mb} MiB free, below {api.min_free_mb} MiB", 30)
        return None
