"""The landing zone: raw NDJSON batches exactly as received, immutable, sha256 in a manifest.

A batch is committed in two atomic steps (through `meterlake.storage`, on a local disk
or an S3 bucket): the data file is written whole into ``landing/events/`` under a name
no other writer uses; then its manifest entry is created exclusively in
``landing/_manifest/``. The manifest entry is the commit point: the landing → bronze
stream reads manifest entries, never bare data files, so a half-written batch is
invisible. Manifest entries are named ``<tenant>.<sha256>.json``, which makes "these exact
bytes were already loaded for this tenant" a single existence check; a writer that loses
that race deletes only its own data file.

``received_at`` is the commit time: stamped once the data file is durable, just before
the manifest entry is created. While a writer is between its start and its commit it
keeps an *in-flight* marker in ``landing/_inflight/``, so a final invoice run can wait
until no batch can still commit with a receipt time at or before its ``as_of``
(`landing_watermark`); a marker counts for ``METERLAKE_LANDING_COMMIT_SECONDS`` (60 s) and
its writer refreshes it before stamping when half of that has gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from meterlake.clock import format_instant, parse_instant
from meterlake.config import Settings
from meterlake.errors import ConfigError, InputFileError
from meterlake.storage import Storage, storage_for

TENANT_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MANIFEST_DIR = "landing/_manifest"
EVENTS_DIR = "landing/events"
BLANK = b" \t\r\n"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class LandingBatch:
    """One manifest entry: what was received, when, for which tenant, and its checksum."""

    batch_id: str
    tenant_id: str
    sha256: str
    bytes: int
    lines: int
    blank_lines: int
    received_at: str
    landing_file: str
    original_name: str
    source: str
    source_time: str | None = None  # when the source received it (Kafka: newest record)

    @property
    def received(self) -> datetime:
        return parse_instant(self.received_at)


@dataclass(frozen=True)
class LandResult:
    batch: LandingBatch
    already_loaded: bool


def validate_tenant(tenant: str) -> str:
    if not TENANT_PATTERN.match(tenant):
        raise ConfigError(f"--tenant: {tenant!r} must be 1-64 letters, digits, '_' or '-'")
    return tenant


def manifest_location(settings: Settings) -> str:
    """The manifest folder as Spark addresses it (a local path or an s3a:// URL)."""
    return f"{settings.warehouse}/{MANIFEST_DIR}"


def ensure_landing(settings: Settings) -> None:
    """Create the landing folders (part of ``meterlake init``; object stores need none)."""
    if not settings.is_object_store:
        for sub in (MANIFEST_DIR, EVENTS_DIR, "landing/.tmp"):
            (Path(settings.warehouse) / sub).mkdir(parents=True, exist_ok=True)


def manifest_key(tenant: str, sha256: str) -> str:
    """Where the manifest entry of these bytes for this tenant is (or would be)."""
    return f"{MANIFEST_DIR}/{tenant}.{sha256}.json"


def batch_id_for(tenant: str, sha256: str, started: datetime) -> str:
    """Sortable by when its writer started and deterministic, so a pinned ``--now`` gives
    stable ids."""
    suffix = hashlib.sha256(f"{tenant}/{sha256}".encode()).hexdigest()[:16]
    return f"{started:%Y%m%dT%H%M%S%f}Z-{suffix}"


def land_file(settings: Settings, source: str | Path, tenant: str) -> LandResult:
    """Copy a JSONL file into landing as one immutable batch received now.

    Raises `InputFileError` (one clear line) for a missing file, a directory, an empty
    file, or a file in which no line holds a JSON object.
    """
    path = Path(source)
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory, expected a JSONL file")
    with path.open("rb") as handle:
        return land_stream(settings, handle, tenant, original_name=path.name, source="file")


def land_stream(
    settings: Settings,
    handle: BinaryIO,
    tenant: str,
    *,
    original_name: str,
    source: str,
    refuse_non_jsonl: bool = True,
    source_time: datetime | None = None,
) -> LandResult:
    """Land bytes read from ``handle``; the general form of `land_file` (used by the API too).

    A file that is empty or holds no JSON object is refused whole; records taken from a
    topic (``refuse_non_jsonl=False``) are landed whatever they hold, and bronze
    quarantines their bad lines one by one. ``source_time`` is when the source itself
    received the bytes (a topic's newest record timestamp), kept beside ``received_at``."""
    validate_tenant(tenant)
    storage = storage_for(settings)
    with _in_flight(settings, storage) as marker:
        scan = _Scan()
        with tempfile.NamedTemporaryFile(dir=storage.spool_dir(), delete=False) as tmp:
            try:
                for chunk in iter(lambda: handle.read(_CHUNK), b""):
                    scan.feed(chunk)
                    tmp.write(chunk)
                scan.finish()
                tmp.flush()
            except BaseException:
                os.unlink(tmp.name)
                raise
        spooled = Path(tmp.name)
        try:
            if refuse_non_jsonl:
                scan.check(original_name)
            existing = _read_entry(storage, manifest_key(tenant, scan.sha256))
            if existing:
                return LandResult(existing, already_loaded=True)
            batch_id = batch_id_for(tenant, scan.sha256, marker.started)
            # Unique to this writer: a second writer of the same bytes never shares it.
            relative = (
                f"{EVENTS_DIR}/{tenant}/{marker.started:%Y-%m-%d}/{batch_id}.{marker.writer[:12]}"
                ".jsonl"
            )
            storage.put_file(spooled, relative)  # durable before it can be referenced
        finally:
            spooled.unlink(missing_ok=True)
        received = marker.stamp()
        batch = LandingBatch(
            batch_id=batch_id,
            tenant_id=tenant,
            sha256=scan.sha256,
            bytes=scan.size,
            lines=scan.lines,
            blank_lines=scan.blank_lines,
            received_at=format_instant(received),
            landing_file=relative,
            original_name=original_name,
            source=source,
            source_time=format_instant(source_time) if source_time else None,
        )
        return _commit_manifest(storage, batch)


def _commit_manifest(storage: Storage, batch: LandingBatch) -> LandResult:
    """Create the manifest entry exclusively; a concurrent identical load wins or loses
    cleanly, and the loser removes only the data file it wrote itself."""
    key = manifest_key(batch.tenant_id, batch.sha256)
    entry = (json.dumps(asdict(batch), sort_keys=True) + "\n").encode()
    if storage.create(key, entry):
        return LandResult(batch, already_loaded=False)
    storage.delete(batch.landing_file)  # this writer's own file: its name is unique
    return LandResult(_read_entry(storage, key), already_loaded=True)


def _read_entry(storage: Storage, key: str) -> LandingBatch | None:
    data = storage.read(key)
    return LandingBatch(**json.loads(data)) if data is not None else None


INFLIGHT_DIR = "landing/_inflight"


@dataclass
class _Marker:
    """A landing writer's in-flight marker: it started at ``started`` (the settings'
    clock) and counts until ``deadline`` (wall clock) unless refreshed."""

    settings: Settings
    storage: Storage
    writer: str
    started: datetime
    deadline: float

    @property
    def key(self) -> str:
        return f"{INFLIGHT_DIR}/{self.writer}.json"

    def write(self, create: bool) -> None:
        body = json.dumps(
            {"started_at": format_instant(self.started), "deadline": self.deadline}
        ).encode()
        if create:
            self.storage.create(self.key, body)
        else:
            self.storage.write(self.key, body)

    def stamp(self) -> datetime:
        """The receipt time to commit with; the marker first moves up to it when half of
        its validity has gone, so it keeps counting until the commit."""
        bound = self.settings.lease.landing_commit_seconds
        if self.deadline - time.time() < bound / 2:
            self.started = self.settings.now()
            self.deadline = time.time() + bound
            self.write(create=False)
        return self.settings.now()


@contextlib.contextmanager
def _in_flight(settings: Settings, storage: Storage) -> Iterator[_Marker]:
    marker = _Marker(
        settings,
        storage,
        uuid.uuid4().hex,
        settings.now(),
        time.time() + settings.lease.landing_commit_seconds,
    )
    marker.write(create=True)
    try:
        yield marker
    finally:
        storage.delete(marker.key)


def landing_watermark(settings: Settings) -> tuple[datetime | None, float]:
    """(the earliest start of a landing writer still in flight, or None; seconds until its
    marker stops counting). No batch can commit with a receipt time before that start."""
    storage = storage_for(settings)
    now = time.time()
    earliest: tuple[datetime, float] | None = None
    for key in storage.keys(INFLIGHT_DIR + "/"):
        data = storage.read(key)
        try:
            marker = json.loads(data) if data else None
            started, deadline = parse_instant(marker["started_at"]), float(marker["deadline"])
        except (ValueError, TypeError, KeyError):
            continue  # a torn or foreign object
        if deadline <= now:
            if deadline < now - 10 * settings.lease.landing_commit_seconds:
                storage.delete(key)  # left by a writer that died long ago
            continue
        if earliest is None or started < earliest[0]:
            earliest = (started, deadline - now)
    return (earliest[0], earliest[1]) if earliest else (None, 0.0)


def manifest_entries(settings: Settings) -> Iterator[LandingBatch]:
    """Every committed landing batch, in receipt order."""
    storage = storage_for(settings)
    keys = (k for k in storage.keys(MANIFEST_DIR + "/") if k.endswith(".json"))
    entries = (_read_entry(storage, k) for k in keys)
    yield from sorted((e for e in entries if e), key=lambda e: (e.received_at, e.batch_id))


class _Scan:
    """Streams over a batch once: sha256, size, line and blank-line counts, JSONL sniffing.

    Lines end at ``\\n`` only, exactly as the bronze reader splits them.
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0
        self.lines = 0
        self.blank_lines = 0
        self._partial = b""
        self._first_line: bytes | None = None
        self._found_object = False
        self.sha256 = ""

    def feed(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)
        pieces = (self._partial + chunk).split(b"\n")
        self._partial = pieces.pop()
        for line in pieces:
            self._line(line)

    def finish(self) -> None:
        if self._partial:
            self._line(self._partial)
        self.sha256 = self._hash.hexdigest()

    def _line(self, line: bytes) -> None:
        self.lines += 1
        if not line.strip(BLANK):
            self.blank_lines += 1
            return
        if self._first_line is None:
            self._first_line = line
        if not self._found_object and line.lstrip(BLANK).startswith(b"{"):
            with contextlib.suppress(ValueError):
                self._found_object = isinstance(json.loads(line), dict)

    def check(self, name: str) -> None:
        if self.size == 0:
            raise InputFileError(f"{name}: file is empty")
        if self.lines == self.blank_lines:
            raise InputFileError(f"{name}: file holds only blank lines, no events")
        if not self._found_object:
            sample = (self._first_line or b"")[:40].decode("utf-8", "replace")
            raise InputFileError(
                f"{name}: not JSONL (one JSON object per line); no line holds a JSON object "
                f"(first line starts {sample!r})"
            )
