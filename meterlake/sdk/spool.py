"""The SDK's disk spool: tracked events wait here, one JSON line each, until delivered.

``track`` appends to the active segment and hands the line to the OS at once (a crash of
the process loses nothing; ``fsync=True`` also survives a power cut at the cost of a disk
flush per seal). A segment is sealed (renamed ``<seq>.batch``) when it reaches the batch
size or age; sealed segments are sent oldest first and deleted only after the API
answered for every event in them. A segment left active by a dead process is sealed at
the next start (a torn last line, cut mid-write, is dropped: it was never fully tracked).
One process owns a spool directory at a time (an ``flock`` on ``.lock``).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from pathlib import Path

DEAD_LETTER = "dead-letter.jsonl"


class SpoolBusy(RuntimeError):
    """Another process holds this spool directory."""


class DiskSpool:
    def __init__(self, directory: str | Path, *, fsync: bool = False) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._lock_file = (self.dir / ".lock").open("a")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise SpoolBusy(f"{self.dir} is used by another process") from None
        self._mutex = threading.Lock()
        self._seq = max((self._seq_of(p) for p in self.dir.glob("*.*")), default=0)
        for stale in sorted(self.dir.glob("active-*.jsonl")):
            self._seal_file(stale, drop_torn=True)
        self._active: Path | None = None
        self._handle = None
        self.active_events = 0
        self.active_bytes = 0
        self.active_since = 0.0

    @staticmethod
    def _seq_of(path: Path) -> int:
        digits = path.name.removeprefix("active-").split(".")[0]
        return int(digits) if digits.isdigit() else 0

    def append(self, line: bytes) -> None:
        """Add one event line (no newline in it) to the active segment."""
        with self._mutex:
            if self._handle is None:
                self._seq += 1
                self._active = self.dir / f"active-{self._seq:012d}.jsonl"
                self._handle = self._active.open("ab")
                self.active_since = time.monotonic()
            self._handle.write(line + b"\n")
            self._handle.flush()
            self.active_events += 1
            self.active_bytes += len(line) + 1

    def seal(self) -> None:
        """Make the active segment sendable (no-op when it is empty)."""
        with self._mutex:
            if self._handle is None:
                return
            if self._fsync:
                os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None
            self._seal_file(self._active, drop_torn=False)
            self.active_events = self.active_bytes = 0

    def _seal_file(self, path: Path, *, drop_torn: bool) -> None:
        if drop_torn:
            data = path.read_bytes()
            whole = data[: data.rfind(b"\n") + 1]
            if whole != data:
                path.write_bytes(whole)
        target = self.dir / f"{self._seq_of(path):012d}.batch"
        if path.stat().st_size == 0:
            path.unlink()
        else:
            os.replace(path, target)

    def sealed(self) -> list[Path]:
        """Sendable segments, oldest first."""
        return sorted(self.dir.glob("*.batch"))

    @staticmethod
    def read(segment: Path) -> list[bytes]:
        return [line for line in segment.read_bytes().split(b"\n") if line.strip()]

    def split(self, segment: Path) -> None:
        """Replace ``segment`` by two halves that keep its place in the order (HTTP 413)."""
        lines = self.read(segment)
        half = len(lines) // 2
        stem = segment.name.removesuffix(".batch")
        for index, part in enumerate((lines[:half], lines[half:])):
            piece = self.dir / f"{stem}.{index}.batch"
            tmp = piece.with_suffix(".tmp")
            tmp.write_bytes(b"".join(line + b"\n" for line in part))
            os.replace(tmp, piece)
        segment.unlink()

    def dead_letter(self, line: bytes, reason: str, detail: str) -> None:
        """Keep an event the API refused for good, with why (never silently dropped)."""
        record = {"reason": reason, "detail": detail, "event": line.decode("utf-8", "replace")}
        with (self.dir / DEAD_LETTER).open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def pending(self) -> int:
        """Events not yet delivered (sealed and active)."""
        return sum(len(self.read(p)) for p in self.sealed()) + self.active_events

    def close(self) -> None:
        self.seal()
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()
