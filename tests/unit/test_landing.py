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
