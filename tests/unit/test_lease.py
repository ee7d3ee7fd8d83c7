"""Writer leases on a local warehouse: one holder, a clear refusal, takeover at expiry,
fencing after a takeover, re-entrancy within a process (no JVM)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from meterlake.config import LeaseSettings, Settings
from meterlake.errors import LeaseHeldError, LeaseLostError
from meterlake.lease import BILLING, INGEST, KEEP_TOKENS, acquire, current_lease, hold, lease_key
from meterlake.storage import storage_for


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    base = Settings.load(env={}).with_warehouse(str(tmp_path / "wh"))
    return replace(base, lease=LeaseSettings(ttl_seconds=3))


def test_second_writer_is_refused_naming_the_holder_then_gets_it(settings) -> None:
    first = acquire(settings, INGEST)
    with pytest.raises(LeaseHeldError) as refused:
        acquire(settings, INGEST)
    message = str(refused.value)
    assert f"pid={os.getpid()}" in message and "since" in message and "--wait" in message
    assert refused.value.exit_code == 75 and refused.value.retryable
    acquire(settings, BILLING).release()  # other roles are independent
    first.release()
    second = acquire(settings, INGEST)
    assert (first.token, second.token) == (1, 2)  # tokens only grow
    second.release()


def test_waiting_writer_gets_the_lease_when_it_is_released(settings) -> None:
    first = acquire(settings, INGEST)
    threading.Timer(0.6, first.release).start()
    began = time.monotonic()
    second = acquire(settings, INGEST, wait=10)
    assert 0.5 < time.monotonic() - began < 5 and second.token == first.token + 1
    second.release()


def test_a_dead_holder_loses_the_lease_at_expiry_and_is_fenced(settings) -> None:
    stale = acquire(settings, INGEST)
    stale._stop.set()  # a holder that stopped renewing (paused, or about to die)
    stale._thread.join()
    began = time.monotonic()
    taker = acquire(settings, INGEST, wait=10)
    assert time.monotonic() - began < 4  # within the ttl of its last renewal
    with pytest.raises(LeaseLostError):
        stale.check()  # it may not commit any more
    with pytest.raises(LeaseLostError):
        stale.renew()
    stale.release()  # releasing a lost lease leaves the new holder's alone
    taker.check()
    token, record = current_lease(storage_for(settings), INGEST)
    assert token == taker.token and record is not None and not record.released
    taker.release()


def test_holder_stops_itself_before_anyone_may_take_over(settings) -> None:
    lease = acquire(settings, INGEST)
    lease._stop.set()
    lease._thread.join()
    lease.check()
    time.sleep(settings.lease.ttl_seconds - settings.lease.margin_seconds + 0.2)
    with pytest.raises(LeaseLostError, match="last renewed"):
        lease.check()  # the lease itself is still valid for ~1 s more: nobody else has it
    token, record = current_lease(storage_for(settings), INGEST)
    assert token == lease.token and record.live(time.time())


def test_renewal_keeps_a_live_holder(settings) -> None:
    lease = acquire(settings, INGEST)
    time.sleep(settings.lease.ttl_seconds * 1.5)  # renewed every ttl/3 in the background
    lease.check()
    with pytest.raises(LeaseHeldError):
        acquire(settings, INGEST)
    lease.release()


def test_hold_is_reentrant_and_shared_by_threads(settings) -> None:
    with hold(settings, INGEST) as outer:
        with hold(settings, INGEST) as inner:
            assert inner is outer
        seen = []
        worker = threading.Thread(target=lambda: seen.append(_hold_token(settings)))
        worker.start()
        worker.join()
        assert seen == [outer.token]
        outer.check()  # the inner exit did not release it
    _, record = current_lease(storage_for(settings), INGEST)
    assert record.released


def _hold_token(settings: Settings) -> int:
    with hold(settings, INGEST) as lease:
        return lease.token


def test_old_lease_objects_are_pruned(settings) -> None:
    for _ in range(KEEP_TOKENS + 5):
        acquire(settings, INGEST).release()
    storage = storage_for(settings)
    kept = sorted(storage.keys("_leases/ingest/"))
    assert len(kept) == KEEP_TOKENS
    assert kept[-1] == lease_key(INGEST, KEEP_TOKENS + 5)


def test_a_torn_lease_object_counts_as_free(settings) -> None:
    storage = storage_for(settings)
    storage.write(lease_key(INGEST, 7), b"{not json")
    lease = acquire(settings, INGEST)
    assert lease.token == 8
    lease.release()


HOLD_THEN_WAIT = """
import subprocess, sys, time
from dataclasses import replace
from meterlake.config import LeaseSettings, Settings
from meterlake.lease import INGEST, acquire, add_companion
base = Settings.load(env={}).with_warehouse(sys.argv[1])
settings = replace(base, lease=LeaseSettings(ttl_seconds=int(sys.argv[2])))
if sys.argv[3] == "companion":  # stands for the JVM a Spark driver starts
    add_companion(subprocess.Popen(["sleep", "600"]).pid)
lease = acquire(settings, INGEST)
print(lease.token, lease._record.processes[-1][0], flush=True)
time.sleep(600)
"""


def _holder(settings: Settings, ttl: int, companion: bool) -> tuple[subprocess.Popen, int, int]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THEN_WAIT, settings.warehouse, str(ttl),
         "companion" if companion else "alone"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    token, last_pid = holder.stdout.readline().split()
    return holder, int(token), int(last_pid)


def test_two_processes_one_holder_and_takeover_at_once_after_sigkill(settings) -> None:
    holder, token, _ = _holder(settings, 600, companion=False)
    try:
        with pytest.raises(LeaseHeldError, match=f"pid={holder.pid}"):
            acquire(settings, INGEST)
        holder.kill()  # SIGKILL: no release, and 10 minutes of validity left
        holder.wait()
        taken = acquire(settings, INGEST)  # no wait: the holder is known dead on this host
        assert taken.token == token + 1
        record = json.loads(storage_for(settings).read(lease_key(INGEST, taken.token)))
        assert record["holder"].split()[1] == f"pid={os.getpid()}"
        taken.release()
    finally:
        holder.kill()


def test_a_dead_holders_jvm_keeps_the_lease_until_it_exits_too(settings) -> None:
    holder, token, companion = _holder(settings, 600, companion=True)
    taken: list = []
    try:
        holder.kill()
        holder.wait()
        waiter = threading.Thread(target=lambda: taken.append(acquire(settings, INGEST)))
        waiter.start()  # no --wait, yet it waits: the JVM may still be finishing a commit
        time.sleep(1.5)
        assert not taken
        os.kill(companion, signal.SIGKILL)  # the orphan is reaped by init, not by us
        waiter.join(timeout=10)
        assert [lease.token for lease in taken] == [token + 1]
        taken[0].release()
    finally:
        holder.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(companion, signal.SIGKILL)


def test_a_holder_elsewhere_is_freed_by_expiry_only(settings) -> None:
    holder, token, _ = _holder(settings, 3, companion=False)
    storage = storage_for(settings)
    try:
        holder.kill()
        holder.wait()
        record = json.loads(storage.read(lease_key(INGEST, token)))
        record["machine"] = "another-host boot pid:[1]"  # its pids mean nothing here
        storage.write(lease_key(INGEST, token), json.dumps(record).encode())
        with pytest.raises(LeaseHeldError):
            acquire(settings, INGEST)
        began = time.monotonic()
        taken = acquire(settings, INGEST, wait=10)
        assert time.monotonic() - began < settings.lease.ttl_seconds + 1
        taken.release()
    finally:
        holder.kill()
