"""SIGKILL of ``meterlake pipeline run`` at random points, ``size.kills`` times, while new
landing batches keep arriving; after a last run, bronze, silver and the invoices equal
those of a clean run over the same landing batches."""

from __future__ import annotations

import random
import signal
import time
from datetime import timedelta
from pathlib import Path

from meterlake import tables
from meterlake.config import Settings
from tests.chaos.conftest import (
    RECEIVED,
    Size,
    bill,
    invoices,
    land,
    make_events,
    new_warehouse,
)
from tests.e2e.cli import cli_env, meterlake_here, spawn

BILLED_AT = RECEIVED + timedelta(days=40)
BRONZE = ("tenant_id", "event_id", "customer_id", "quantity", "event_time", "batch_id")


def _activity(settings: Settings) -> int:
    """Files bronze, silver and gold have written so far (data and commits)."""
    return sum(
        1
        for spec in (tables.BRONZE_EVENTS, tables.SILVER_USAGE_MINUTE, tables.GOLD_PERIOD_USAGE)
        for _ in Path(spec.path(settings)).rglob("*")
    )


def _kill_at_random(env: dict[str, str], settings: Settings, rng: random.Random) -> bool:
    """Start a run; SIGKILL it once it has written 1-40 more files plus up to a second.
    False when the run finished first."""
    start = _activity(settings)
    wanted = start + rng.randint(1, 40)
    victim = spawn("pipeline", "run", env=env)
    deadline = time.monotonic() + 300
    while victim.poll() is None and _activity(settings) < wanted:
        assert time.monotonic() < deadline, "the run wrote nothing for five minutes"
        time.sleep(0.02)
    time.sleep(rng.random())
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    return victim.returncode == -signal.SIGKILL


def _rows(spark, settings: Settings, spec: tables.TableSpec, columns: tuple[str, ...]) -> list:
    return sorted(
        tuple(r) for r in tables.read(spark, settings, spec).selectExpr(*columns).collect()
    )


# A distinct-count sketch lists its first values in the order it saw them, so two equal
# sketches may differ in bytes: compared by their estimate (the exact count is compared too).
SILVER = tuple(
    "hll_sketch_estimate(unique_sketch)" if f.name == "unique_sketch" else f.name
    for f in tables.SILVER_USAGE_DAY.schema
)


def test_sigkill_anywhere_then_rerun_equals_a_clean_run(
    spark, settings: Settings, tmp_path: Path, size: Size
) -> None:
    killed = new_warehouse(spark, settings, "killed")
    reference = new_warehouse(spark, settings, "reference")
    events = make_events(size.events, seed=61)
    rounds = size.kills + 2  # a run can finish before its kill point: spare rounds
    rng = random.Random(17)
    env = cli_env(killed.warehouse, METERLAKE_MANIFESTS_PER_BATCH="2")
    kills = 0
    for n in range(rounds):
        share = events[n::rounds]
        for part in (0, 1):  # two landing batches arrive before each run
            at = RECEIVED + timedelta(minutes=2 * n + part)
            for target in (killed, reference):
                land(target, tmp_path, f"round{n}-{part}", share[part::2], at)
        if kills < size.kills:
            kills += _kill_at_random(env, killed, rng)
    assert kills == size.kills, f"only {kills} of {size.kills} runs were killed midway"
    last = meterlake_here("pipeline", "run", env=env)  # the kills needed processes; this not
    assert last.returncode == 0, last.stderr

    want = bill(spark, reference, BILLED_AT)
    got = bill(spark, killed, BILLED_AT)
    assert _rows(spark, killed, tables.BRONZE_EVENTS, BRONZE) == _rows(
        spark, reference, tables.BRONZE_EVENTS, BRONZE
    )
    assert len(_rows(spark, killed, tables.BRONZE_EVENTS, BRONZE)) == len(events)
    for spec in (tables.SILVER_USAGE_MINUTE, tables.SILVER_USAGE_DAY):
        assert _rows(spark, killed, spec, SILVER) == _rows(spark, reference, spec, SILVER)
    assert got == want == invoices(spark, reference)
