"""The API's counters and gauges in the Prometheus text format (``GET /metrics``).

Hand-written rather than a client library: a handful of counters, one histogram and
gauges computed at scrape time are all the API has.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import ClassVar

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


class Metrics:
    """Counters by name and labels; a request-latency histogram; gauges by callback."""

    HELP: ClassVar[dict[str, str]] = {
        "meterlake_api_requests_total": "HTTP requests answered, by status code",
        "meterlake_events_accepted_total": "events durably landed, by tenant",
        "meterlake_events_duplicate_total": "events answered duplicate (already landed), by tenant",
        "meterlake_events_rejected_total": "events rejected, by tenant and reason",
        "meterlake_landing_batches_total": "landing batches committed by this server",
    }

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
        self._buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self._latency_sum = 0.0
        self._lock = threading.Lock()
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def inc(self, name: str, amount: int = 1, **labels: str) -> None:
        with self._lock:
            self._counts[name, tuple(sorted(labels.items()))] += amount

    def observe(self, seconds: float) -> None:
        with self._lock:
            index = next((i for i, b in enumerate(LATENCY_BUCKETS) if seconds <= b), -1)
            self._buckets[index] += 1
            self._latency_sum += seconds

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self._gauges[name] = (help_text, read)

    def render(self, *, tenants: bool) -> str:
        """The text format; without ``tenants`` the tenant label is summed away, so a
        scrape names no customer of the service (``METERLAKE_API_METRICS_TENANTS``)."""
        out: list[str] = []
        with self._lock:
            merged: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
            for (name, labels), value in self._counts.items():
                kept = labels if tenants else tuple(p for p in labels if p[0] != "tenant")
                merged[name, kept] += value
            counts = sorted(merged.items())
            buckets, total_sum = list(self._buckets), self._latency_sum
        for name, help_text in self.HELP.items():
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
            out += [f"{name}{_labels(lb)} {v}" for (n, lb), v in counts if n == name]
        name = "meterlake_api_request_seconds"
        out += [f"# HELP {name} POST /v1/events latency", f"# TYPE {name} histogram"]
        running = 0
        for bound, count in zip((*LATENCY_BUCKETS, "+Inf"), buckets, strict=True):
            running += count
            out.append(f'{name}_bucket{{le="{bound}"}} {running}')
        out += [f"{name}_sum {total_sum:.6f}", f"{name}_count {running}"]
        for name, (help_text, read) in self._gauges.items():
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {read():g}"]
        return "\n".join(out) + "\n"
