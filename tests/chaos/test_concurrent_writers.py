"""Two writers of one warehouse at once: ``pipeline run`` and ``pipeline stream`` processes
started together over the same landing zone, ``size.writer_rounds`` times, with random
SIGKILLs in the full size. The writer lease lets one work at a time (a second one without
``--wait`` exits 75 naming the holder); afterwards bronze holds every accepted event once
and the invoices equal those of a single writer, to the cent."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

from meterlake import tables
from meterlake.config import Settings
from tests.chaos.conftest import RECEIVED, Size, bill, land, make_events, new_warehouse
from tests.e2e.cli import cli_env, meterlake_here, spawn

BILLED_AT = RECEIVED + timedelta(days=40)
IDENTITY = ("tenant_id", "event_id", "customer_id", "quantity", "event_time", "batch_id")


def _rows(spark, settings: Settings) -> list:
    frame = tables.read(spark, settings, tables.BRONZE_EVENTS).selectExpr(*IDENTITY)
    return sorted(tuple(r) for r in frame.collect())


def _bronze_rows(settings: Settings) -> int:
    """Data files bronze has so far: a cheap sign that a writer is at work."""
    return sum(1 for _ in Path(tables.BRONZE_EVENTS.path(settings)).rglob("*.parquet"))


def _finish(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


def _stop_stream(stream: subprocess.Popen, settings: Settings, expected_files: int) -> None:
    """SIGTERM the stream once bronze has grown past ``expected_files`` (or it died)."""
    deadline = time.monotonic() + 300
    while stream.poll() is None and _bronze_rows(settings) <= expected_files:
        assert time.monotonic() < deadline, "the stream wrote nothing for five minutes"
        time.sleep(0.2)
    stream.send_signal(signal.SIGTERM)


def test_second_writer_is_refused_or_waits_and_nothing_is_doubled(
    spark, settings: Settings, tmp_path: Path, size: Size
) -> None:
    racing = new_warehouse(spark, settings, "racing")
    reference = new_warehouse(spark, settings, "reference")
    events = make_events(size.events, seed=71)
    rng = random.Random(29)
    env = cli_env(
        racing.warehouse,
        METERLAKE_MANIFESTS_PER_BATCH="2",
        METERLAKE_LEASE_TTL_SECONDS="5",  # a holder that stops renewing loses it in 5 s
        METERLAKE_ROLLUP_INTERVAL_SECONDS="3600",
        METERLAKE_NOW=(RECEIVED + timedelta(hours=1)).isoformat(),
    )
    rounds = size.writer_rounds
    for n in range(rounds):
        share = events[n::rounds]
        for part in (0, 1):
            at = RECEIVED + timedelta(minutes=2 * n + part)
            for target in (racing, reference):
                land(target, tmp_path, f"round{n}-{part}", share[part::2], at)
        before = _bronze_rows(racing)
        stream = spawn("pipeline", "stream", env=env)
        deadline = time.monotonic() + 120
        while _lease_is_free(racing):
            assert stream.poll() is None, stream.communicate()[1]
            assert time.monotonic() < deadline, "the stream did not take the ingest lease"
            time.sleep(0.1)
        if n == 0:  # without --wait: refused at once, one line naming the holder
            refused = meterlake_here("pipeline", "run", env=env)
            assert refused.returncode == 75, refused.stderr
            (message,) = refused.stderr.splitlines()
            assert f"pid={stream.pid} (meterlake pipeline stream)" in message
        second = rng.choice(["run", "stream"]) if rounds > 1 else "run"
        waiting = spawn("pipeline", second, "--wait", "600", env=env)
        if size.writer_rounds > 1 and rng.random() < 0.5:  # kill the holder at a random point
            time.sleep(rng.uniform(0, 8))
            stream.send_signal(signal.SIGKILL)
        else:
            _stop_stream(stream, racing, before)
        stream.wait(timeout=120)
        if second == "stream":
            _stop_stream(waiting, racing, -1)
        code, err = _finish(waiting)
        assert code == 0, err
    last = meterlake_here("pipeline", "run", env=env)
    assert last.returncode == 0, last.stderr

    got = bill(spark, racing, BILLED_AT)
    want = bill(spark, reference, BILLED_AT)
    assert _rows(spark, racing) == _rows(spark, reference)
    assert len(_rows(spark, racing)) == len(events)
    assert got == want


def _lease_is_free(settings: Settings) -> bool:
    from meterlake.lease import INGEST, current_lease
    from meterlake.storage import storage_for

    _, record = current_lease(storage_for(settings), INGEST)
    return record is None or not record.live(time.time())
