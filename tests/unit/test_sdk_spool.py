"""The SDK's spool and the API's token bucket: the pieces that decide what is kept and when."""

from __future__ import annotations

from pathlib import Path

import pytest

from meterlake.capture.limits import TokenBucket
from meterlake.sdk.spool import DiskSpool, SpoolBusy


def test_spool_survives_a_dead_process_and_drops_only_a_torn_line(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path)
    spool.append(b'{"n":1}')
    spool.seal()
    spool.append(b'{"n":2}')
    spool.append(b'{"n":3}')
    active = next(tmp_path.glob("active-*.jsonl"))
    with active.open("ab") as handle:
        handle.write(b'{"n":4')  # the process died mid-write
    with pytest.raises(SpoolBusy):
        DiskSpool(tmp_path)  # one owner at a time
    spool._lock_file.close()  # the owner is gone (its lock with it)

    restarted = DiskSpool(tmp_path)
    batches = restarted.sealed()
    assert [DiskSpool.read(b) for b in batches] == [[b'{"n":1}'], [b'{"n":2}', b'{"n":3}']]
    restarted.append(b'{"n":5}')
    restarted.seal()
    assert DiskSpool.read(restarted.sealed()[-1]) == [b'{"n":5}']  # numbering continues


def test_split_keeps_the_order(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path)
    for n in range(5):
        spool.append(f'{{"n":{n}}}'.encode())
    spool.seal()
    spool.append(b'{"n":9}')
    spool.seal()
    spool.split(spool.sealed()[0])
    order = [line for batch in spool.sealed() for line in DiskSpool.read(batch)]
    assert order == [f'{{"n":{n}}}'.encode() for n in (0, 1, 2, 3, 4, 9)]
    assert len(spool.sealed()) == 3


def test_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=10, burst=20, clock=lambda: now[0])
    assert bucket.take(20) == 0
    assert bucket.take(5) == pytest.approx(0.5)  # 5 tokens at 10/s
    now[0] = 0.5
    assert bucket.take(5) == 0
    assert bucket.take(100) == pytest.approx(2.0)  # never more than the burst is waited for
