"""``Client``: non-blocking ``track``, background batching and delivery with backoff.

Delivery is at-least-once and the event id is made here, so a retry after a lost answer
is recognised as the same event by the API and by bronze: exactly once in the end.
"""

from __future__ import annotations

import atexit
import json
import logging
import random
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from meterlake import __version__
from meterlake.sdk.spool import DEAD_LETTER, DiskSpool

SDK = {"name": "meterlake-python", "version": __version__}
TRANSIENT = (502, 503, 504)  # the API or its proxy is unavailable: wait, never isolate
log = logging.getLogger("meterlake.sdk")


@dataclass
class Stats:
    delivered: int = 0  # accepted by the API
    duplicates: int = 0  # the API already had them (a retry after a lost answer)
    rejected: int = 0  # refused for good, kept in the spool's dead-letter file
    retries: int = 0  # failed attempts (network, 5xx, 429/503)
    isolated: int = 0  # of the rejected: dead-lettered alone after repeated server errors
    last_error: str | None = None


class Client:
    """Send usage events to a meterlake capture API.

    ``track`` writes the event to the disk spool and returns its id; a background thread
    seals a batch every ``batch_size`` events or ``flush_interval`` seconds and sends it,
    retrying with exponential backoff and jitter (and ``Retry-After`` when the API gives
    one) for as long as it takes: offline, events wait on disk. ``flush`` waits for
    delivery; ``close`` (also run at exit) flushes for up to ``close_timeout`` seconds and
    leaves the rest on disk for the next start.

    A segment the API answers with a server error (500, 501, 505...; not 502/503/504,
    which say "unavailable, come back") ``poison_attempts`` times in a row is split in
    halves, and a single event still refused that way is moved to the spool's dead-letter
    file (named in the log; ``stats.isolated``), so one event the server cannot take does
    not hold back every event after it.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str = "http://127.0.0.1:8080",
        *,
        spool_dir: str | Path | None = None,
        batch_size: int = 100,
        max_batch_bytes: int = 512 * 1024,
        flush_interval: float = 1.0,
        timeout: float = 10.0,
        max_backoff: float = 30.0,
        close_timeout: float = 5.0,
        fsync: bool = False,
        poison_attempts: int = 3,
    ) -> None:
        import httpx

        self._url = base_url.rstrip("/") + "/v1/events"
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        folder = spool_dir or Path(tempfile.gettempdir()) / "meterlake-spool"
        self.spool = DiskSpool(folder, fsync=fsync)
        self.batch_size = batch_size
        self.max_batch_bytes = max_batch_bytes
        self.flush_interval = flush_interval
        self.max_backoff = max_backoff
        self.close_timeout = close_timeout
        self.poison_attempts = max(1, poison_attempts)
        self._server_errors: dict[str, int] = {}  # segment name → server errors in a row
        self.stats = Stats()
        self._http = httpx.Client(timeout=timeout)
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._stop = threading.Event()
        self._failures = 0
        self._worker = threading.Thread(target=self._run, name="meterlake-sdk", daemon=True)
        self._worker.start()
        atexit.register(self.close)

    def track(
        self,
        customer_id: str,
        event_type: str,
        quantity: int | float | Decimal | str | None = None,
        *,
        timestamp: datetime | None = None,
        event_id: str | None = None,
        properties: dict[str, Any] | None = None,
        **dimensions: str | None,
    ) -> str:
        """Record one event (``dimensions``: resource_id, user_id, session_id, region);
        returns its id. Raises ValueError at once for an event the API would refuse."""
        if not customer_id or not isinstance(customer_id, str):
            raise ValueError("customer_id must be a non-empty string")
        if not event_type or not isinstance(event_type, str):
            raise ValueError("event_type must be a non-empty string")
        unknown = set(dimensions) - {"resource_id", "user_id", "session_id", "region"}
        if unknown:
            raise ValueError(f"unknown event fields: {', '.join(sorted(unknown))}")
        when = timestamp or datetime.now(UTC)
        if when.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")
        event: dict[str, Any] = {
            "event_id": event_id or str(uuid.uuid4()),
            "customer_id": customer_id,
            "event_type": event_type,
            "timestamp": when.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "schema_version": "1",
            "sdk": SDK,
        }
        if quantity is not None:
            event["quantity"] = str(quantity) if isinstance(quantity, Decimal) else quantity
        if properties is not None:
            event["properties"] = properties
        event.update({k: v for k, v in dimensions.items() if v is not None})
        self.spool.append(json.dumps(event, separators=(",", ":")).encode())
        if (
            self.spool.active_events >= self.batch_size
            or self.spool.active_bytes >= self.max_batch_bytes
        ):
            self.spool.seal()
            self._wake.set()
        return event["event_id"]

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything tracked so far; True when the spool is empty in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.spool.active_events or self.spool.sealed():
            self.spool.seal()
            self._idle.clear()
            self._wake.set()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self._idle.wait(0.5 if left is None else min(0.5, left))
        return True

    def close(self) -> None:
        """Flush for up to ``close_timeout`` seconds, then stop; what is left stays spooled."""
        if self._stop.is_set():
            return
        self.flush(self.close_timeout)
        self._stop.set()
        self._wake.set()
        self._worker.join(timeout=self.close_timeout + 5)
        self.spool.close()
        self._http.close()
        atexit.unregister(self.close)

    # The delivery thread.

    def _run(self) -> None:
        retry_at = 0.0
        while not self._stop.is_set():
            aged = time.monotonic() - self.spool.active_since >= self.flush_interval
            if self.spool.active_events and aged:
                self.spool.seal()
            batches = self.spool.sealed()
            if batches and time.monotonic() >= retry_at:
                try:
                    wait = self._deliver(batches[0])
                except Exception as exc:  # a garbled answer or a full disk: retry, never die
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
                    wait = self._backoff()
                if wait:
                    self.stats.retries += 1
                    retry_at = time.monotonic() + wait
                continue
            if not batches:
                self._idle.set()
            pause = self.flush_interval / 2 if not batches else retry_at - time.monotonic()
            self._wake.wait(max(0.01, min(pause, self.flush_interval)))
            self._wake.clear()

    def _backoff(self, retry_after: str | None = None) -> float:
        self._failures += 1
        if retry_after and retry_after.isdigit():
            return min(float(retry_after), 300.0)
        ceiling = min(self.max_backoff, 0.25 * 2 ** min(self._failures, 16))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _deliver(self, segment: Path) -> float:
        """Send one sealed segment; 0 when it is done with, else seconds to wait."""
        import httpx

        lines = DiskSpool.read(segment)
        if not lines:
            segment.unlink()
            return 0.0
        body = b'{"events":[' + b",".join(lines) + b"]}"
        try:
            answer = self._http.post(self._url, content=body, headers=self._headers)
        except httpx.HTTPError as exc:
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            return self._backoff()
        status = answer.status_code
        if status in (202, 422):
            self._settle(segment, lines, answer.json()["results"])
            return 0.0
        self.stats.last_error = f"HTTP {status}: {answer.text[:200]}"
        if status == 413 and len(lines) > 1:
            self.spool.split(segment)
            return 0.0
        if status in (400, 413):  # this batch can never be accepted as it is
            for line in lines:
                self.spool.dead_letter(line, f"http_{status}", answer.text[:500])
            self.stats.rejected += len(lines)
            segment.unlink()
            return 0.0
        if status in (401, 403):  # a key problem: keep the events, retry slowly
            log.error("meterlake API refused the key (%s); events stay spooled", status)
            return 60.0
        if status >= 500 and status not in TRANSIENT:
            return self._server_error(segment, lines, status, answer.text[:500])
        return self._backoff(answer.headers.get("retry-after"))

    def _server_error(self, segment: Path, lines: list[bytes], status: int, detail: str) -> float:
        """Retry a segment the server fails on, then isolate what it keeps failing on."""
        failures = self._server_errors.get(segment.name, 0) + 1
        if failures < self.poison_attempts:
            self._server_errors[segment.name] = failures
            return self._backoff()
        self._server_errors.pop(segment.name, None)
        self._failures = 0  # the halves (or the events after) are tried at once
        if len(lines) > 1:
            log.warning("meterlake API fails on a batch of %d (HTTP %d): splitting it",
                        len(lines), status)  # fmt: skip
            self.spool.split(segment)
            return 0.0
        self.spool.dead_letter(lines[0], f"http_{status}", detail)
        self.stats.rejected += 1
        self.stats.isolated += 1
        segment.unlink()
        log.error(
            "meterlake API failed on one event %d times (HTTP %d): moved to %s",
            self.poison_attempts, status, self.spool.dir / DEAD_LETTER,
        )  # fmt: skip
        return 0.0

    def _settle(self, segment: Path, lines: list[bytes], results: list[dict]) -> None:
        for result in results:
            if result["status"] == "accepted":
                self.stats.delivered += 1
            elif result["status"] == "duplicate":
                self.stats.duplicates += 1
            else:
                self.stats.rejected += 1
                self.spool.dead_letter(lines[result["index"]], result["reason"], result["detail"])
        segment.unlink()
        self._server_errors.pop(segment.name, None)
        self._failures = 0
