from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from meterlake.config import Settings
from meterlake.errors import ConfigError, InputFileError
from meterlake.ingest.landing import land_file, manifest_entries


def test_landing_copies_bytes_with_checksum_and_counts(settings: Settings, tmp_path: Path) -> None:
    data = b'{"a": 1}\n\n{"b": 2}\r\n   \n{"c": 3}'
    source = tmp_path / "in.jsonl"
    source.write_bytes(data)
    result = land_file(settings, source, "acme-corp")
    batch = result.batch
    assert not result.already_loaded
    assert batch.sha256 == hashlib.sha256(data).hexdigest()
    assert (batch.lines, batch.blank_lines, batch.bytes) == (5, 2, len(data))
    assert batch.received_at == "2026-03-02T12:00:00Z"
    assert batch.tenant_id == "acme-corp"
    landed = Path(settings.warehouse) / batch.landing_file
    assert landed.read_bytes() == data
    assert batch.landing_file.startswith("landing/events/acme-corp/2026-03-02/")
    assert list(manifest_entries(settings)) == [batch]


def test_same_bytes_twice_are_skipped_per_tenant(settings: Settings, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"a": 1}\n')
    first = land_file(settings, source, "default")
    later = replace(settings, pinned_now=datetime(2026, 3, 3, tzinfo=UTC))
    again = land_file(later, source, "default")
    assert again.already_loaded and again.batch == first.batch
    other_tenant = land_file(later, source, "other")
    assert not other_tenant.already_loaded
    assert len(list(manifest_entries(settings))) == 2
    landed = list((Path(settings.warehouse) / "landing/events").rglob("*.jsonl"))
    assert len(landed) == 2
    assert not any((Path(settings.warehouse) / "landing/.tmp").iterdir())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file is empty"),
        (b"\n  \n", "only blank lines"),
        (b"[1, 2, 3]\n", "not JSONL"),
        (b"a,b,c\n1,2,3\n", "not JSONL"),
        (b"\x1f\x8b\x08\x00binary", "not JSONL"),
    ],
)
def test_whole_file_errors(
    settings: Settings, tmp_path: Path, content: bytes, message: str
) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_bytes(content)
    with pytest.raises(InputFileError, match=message):
        land_file(settings, source, "default")
    assert list(manifest_entries(settings)) == []


def test_file_with_some_bad_lines_is_landed(settings: Settings, tmp_path: Path) -> None:
    source = tmp_path / "mixed.jsonl"
    source.write_bytes(b"not json\n" + json.dumps({"event_id": "1"}).encode() + b"\n\xff\n")
    assert land_file(settings, source, "default").batch.lines == 3


def test_missing_file_directory_and_bad_tenant(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such file"):
        land_file(settings, tmp_path / "missing.jsonl", "default")
    with pytest.raises(InputFileError, match="is a directory"):
        land_file(settings, tmp_path, "default")
    source = tmp_path / "in.jsonl"
    source.write_text('{"a": 1}\n')
    with pytest.raises(ConfigError, match="--tenant"):
        land_file(settings, source, "../etc")


def test_same_bytes_landed_by_two_writers_at_once_keep_the_winners_file(
    settings: Settings, tmp_path: Path, monkeypatch
) -> None:
    """30 rounds of two writers landing the same bytes with the same receipt time (a pinned
    clock, or two archivers of one Kafka epoch), both reaching the manifest commit together:
    every committed entry's file is there with its checksum (today's main: the loser
    deleted the file it shared with the winner)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from meterlake.ingest import landing

    real = landing._commit_manifest
    gate = threading.Barrier(2, timeout=30)

    def commit_together(storage, batch):
        gate.wait()
        return real(storage, batch)

    monkeypatch.setattr(landing, "_commit_manifest", commit_together)
    for round_ in range(30):
        source = tmp_path / f"in-{round_}.jsonl"
        source.write_text(f'{{"event_id": "e{round_}"}}\n')
        with ThreadPoolExecutor(2) as pool:
            results = list(
                pool.map(lambda path: land_file(settings, path, "default"), [source] * 2)
            )
        assert sorted(r.already_loaded for r in results) == [False, True]
        assert results[0].batch == results[1].batch
    entries = list(manifest_entries(settings))
    assert len(entries) == 30
    for entry in entries:
        landed = Path(settings.warehouse) / entry.landing_file
        assert hashlib.sha256(landed.read_bytes()).hexdigest() == entry.sha256
    assert len(list((Path(settings.warehouse) / "landing/events").rglob("*.jsonl"))) == 30
    assert not any((Path(settings.warehouse) / "landing/_inflight").iterdir())


def test_received_at_is_the_commit_time_and_a_writer_in_flight_holds_back_final_runs(
    settings: Settings, tmp_path: Path, monkeypatch
) -> None:
    """A batch is received when its manifest commits (not when its writer started), and
    while a writer is between the two, `wait_for_landing` for any instant after its start
    waits for it; for an instant before its start it does not."""
    import threading
    import time
    from datetime import timedelta

    from meterlake.billing.run import wait_for_landing
    from meterlake.ingest import landing

    started = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    clock = iter([started, started + timedelta(seconds=40)])  # writer start, then commit
    moving = replace(settings, pinned_now=None)
    monkeypatch.setattr(type(moving), "now", lambda self: next(clock, started))
    real = landing._commit_manifest
    committing, released = threading.Event(), threading.Event()

    def held_commit(storage, batch):
        committing.set()
        released.wait(30)
        return real(storage, batch)

    monkeypatch.setattr(landing, "_commit_manifest", held_commit)
    source = tmp_path / "slow.jsonl"
    source.write_text('{"event_id": "slow"}\n')
    writer = threading.Thread(target=lambda: land_file(moving, source, "default"))
    writer.start()
    assert committing.wait(10)
    wait_for_landing(settings, started - timedelta(seconds=1))  # before its start: no wait
    waited = threading.Thread(target=wait_for_landing, args=(settings, started))
    waited.start()
    time.sleep(0.5)
    assert waited.is_alive()  # a batch received by `started` may still commit
    released.set()
    writer.join(10)
    waited.join(10)
    assert not waited.is_alive()
    (entry,) = manifest_entries(settings)
    assert entry.received_at == "2026-03-02T12:00:40Z"  # the commit, not the start
    assert entry.batch_id.startswith("20260302T120000")  # named when its writer started
