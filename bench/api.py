"""Capture API benchmark: sustained events/s through ``meterlake serve`` vs ``events load``.

    .venv/bin/python bench/api.py [--events 200000] [--batch 100] [--clients 4]

Starts the API on 127.0.0.1 over a fresh warehouse and sends the events in batches of
``--batch`` from ``--clients`` concurrent connections (each answer means the events are
fsync'd in landing). Prints the accepted rate, p50/p99 request latency, and the rate at
which ``events load`` (`land_file`) lands the same events as one file in this process,
with the ratio API / events load, and what ``Client.track`` costs the caller per event.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from results import record

from meterlake.audit.access import create_key
from meterlake.config import Settings
from meterlake.ingest.landing import land_file
from meterlake.sdk import Client
from tests.capture_server import ApiServer


def make_events(count: int) -> list[dict]:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return [
        {
            "event_id": str(uuid.uuid4()),
            "customer_id": f"cust-{i % 200:04d}",
            "event_type": "api_call",
            "quantity": i % 7,
            "timestamp": now,
            "region": "eu-west-1",
            "properties": {"route": "/v1/items", "status": 200},
            "sdk": {"name": "bench", "version": "1"},
        }
        for i in range(count)
    ]


def send_all(url: str, key: str, bodies: list[bytes], clients: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()
    queue = list(reversed(bodies))

    def worker() -> None:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        with httpx.Client(timeout=60) as http:
            while True:
                with lock:
                    if not queue:
                        return
                    body = queue.pop()
                began = time.perf_counter()
                answer = http.post(f"{url}/v1/events", content=body, headers=headers)
                spent = time.perf_counter() - began
                assert answer.status_code == 202, answer.text
                with lock:
                    latencies.append(spent)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="meterlake-bench-api-"))
    settings = Settings.load(env={}).with_warehouse(str(folder / "warehouse"))
    key, _ = create_key(settings, "bench", "ingest")
    events = make_events(args.events)
    bodies = [
        json.dumps({"events": events[i : i + args.batch]}).encode()
        for i in range(0, len(events), args.batch)
    ]
    server = ApiServer(
        settings.warehouse, METERLAKE_API_RATE="10000000", METERLAKE_API_BURST="10000000"
    ).start()
    try:
        send_all(server.url, key, bodies[: max(1, len(bodies) // 50)], args.clients)  # warm-up
        elapsed, latencies = send_all(server.url, key, bodies, args.clients)
        client = Client(key, server.url, spool_dir=folder / "spool")
        began = time.perf_counter()
        for i in range(20_000):
            client.track(f"cust-{i % 200:04d}", "api_call", 1, properties={"route": "/x"})
        track_us = (time.perf_counter() - began) / 20_000 * 1e6
        client.close()
    finally:
        server.stop()
    api_rate = args.events / elapsed
    # Inclusive: never past the slowest request (the default method extrapolates).
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    source = folder / "events.jsonl"
    source.write_text("".join(json.dumps(e) + "\n" for e in make_events(args.events)))
    began = time.perf_counter()
    land_file(settings.with_warehouse(str(folder / "load")), source, "bench")
    load_rate = args.events / (time.perf_counter() - began)
    record(
        "api",
        "Capture API throughput",
        [
            ("events", f"{args.events:,} in batches of {args.batch}, {args.clients} clients"),
            ("accepted", f"{api_rate:,.0f} events/s"),
            ("requests", f"{len(bodies) / elapsed:,.0f} requests/s"),
            ("request latency p50", f"{quantiles[49] * 1000:.1f} ms"),
            ("request latency p99", f"{quantiles[98] * 1000:.1f} ms"),
            ("events load (one file)", f"{load_rate:,.0f} events/s"),
            ("ratio API / events load", f"{api_rate / load_rate:.3f}"),
            ("SDK track() on the caller's thread", f"{track_us:.1f} µs per event"),
        ],
    )


if __name__ == "__main__":
    main()
