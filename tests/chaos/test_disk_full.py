"""A landing disk that fills up: the API refuses with 503 (and Retry-After) instead of
acknowledging what it cannot store, and every event it did acknowledge is in landing.

The warehouse lives on a real 8 MiB tmpfs, so both defences meet a real full disk: the
free-space reserve (``METERLAKE_API_MIN_FREE_MB``) and, with no reserve, the write that
fails with ENOSPC."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from meterlake.audit.access import create_key
from meterlake.config import Settings
from tests.capture_server import ApiServer, landed_lines


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def _send(server: ApiServer, key: str, first: int, count: int = 100) -> httpx.Response:
    events = [
        {
            "event_id": f"e{n}",
            "customer_id": "acme",
            "event_type": "api_call",
            "timestamp": "2026-11-26T01:00:00Z",
            "properties": {"padding": "x" * 300},
        }
        for n in range(first, first + count)
    ]
    return httpx.post(
        f"{server.url}/v1/events",
        content=json.dumps({"events": events}).encode(),
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def _landed_ids(warehouse: Path) -> list[str]:
    return sorted(json.loads(line)["event_id"] for line in landed_lines(warehouse, "acme"))


def test_a_full_landing_disk_gets_503_and_loses_nothing_acknowledged(small_disk: Path) -> None:
    warehouse = small_disk / "warehouse"
    key = create_key(Settings.load(env={}).with_warehouse(str(warehouse)), "acme", "ingest")[0]
    acknowledged: list[str] = []

    # 1. The reserve: filling the disk through the API stops at 2 MiB free with 503s.
    server = ApiServer(warehouse, METERLAKE_API_MIN_FREE_MB="2").start()
    try:
        refused = None
        for batch in range(1000):
            answer = _send(server, key, batch * 100)
            if answer.status_code == 503:
                refused = answer
                break
            assert answer.status_code == 202, answer.text
            acknowledged += [r["event_id"] for r in answer.json()["results"]]
        assert refused is not None, "the disk never reached the reserve"
        assert "landing disk has" in refused.json()["error"] and refused.headers["retry-after"]
        assert _send(server, key, 10**6).status_code == 503  # still refusing, still alive
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    finally:
        server.stop()
    assert len(acknowledged) > 1000
    assert _landed_ids(warehouse) == sorted(acknowledged)

    # 2. No reserve and only a few KiB left: the write itself fails (ENOSPC) → 503, no
    # partial batch, no spooled leftovers; once space is freed the retry is accepted.
    ballast = small_disk / "ballast"
    with contextlib.suppress(OSError), ballast.open("wb") as handle:
        while True:
            handle.write(b"\0" * 4096)
            handle.flush()
    ballast.write_bytes(ballast.read_bytes()[: -16 * 1024])  # leave 16 KiB: less than a batch
    server = ApiServer(warehouse, METERLAKE_API_MIN_FREE_MB="0").start()
    try:
        failed = _send(server, key, 2 * 10**6)
        assert failed.status_code == 503, failed.text
        assert "landing failed" in failed.json()["error"] and failed.headers["retry-after"]
        assert list((warehouse / "landing/.tmp").iterdir()) == []
        ballast.unlink()
        retried = _send(server, key, 2 * 10**6)
        assert retried.status_code == 202 and retried.json()["accepted"] == 100
        acknowledged += [r["event_id"] for r in retried.json()["results"]]
    finally:
        server.stop()
    assert _landed_ids(warehouse) == sorted(acknowledged)
