"""Writer leases: at most one process writes a warehouse in each role at a time.

Airflow retries beside zombie tasks, a DAG runs while ``pipeline stream`` is up, two finance
runs overlap: every writer money depends on first takes the lease of its role (`ROLES`).
A lease is the highest-numbered object under ``_leases/<role>/`` in the warehouse's own
storage; its number is the *fencing token*. Taking the lease is creating the next number
exclusively (`meterlake.storage.Storage.create`: a hard link on a local disk, a PUT with
``If-None-Match: *`` on S3), so of two writers racing for it exactly one wins, and each
holder's token is greater than every earlier holder's.

The object names its holder (host, pid, command), since when, and until when it is valid
(``expires_at``, wall clock). The holder renews it every ``ttl / 3`` from a background
thread; a holder that dies stops renewing, and the lease is free ``ttl`` seconds after its
last renewal (30 s by default). A clean exit releases it at once. A holder killed on the
same machine (same kernel boot and PID namespace) is known dead at once: its processes
(the Python process and the JVM it drives, each by pid and start time, so a reused pid
does not count) are gone, so a rerun after a crash need not wait out the ttl.

Every commit a holder makes first calls `Lease.check`: the holder must have renewed within
``ttl - margin`` seconds (it stops itself before anyone else may take over, so a paused
process that wakes up after another took over cannot commit) and no higher token may
exist. The writes themselves are idempotent or serialised by Delta as well
(`meterlake.delta_io.insert_missing`), so even a commit racing a takeover inside that
margin cannot double anything.

Example::

    with hold(settings, INGEST) as lease:
        ...
        lease.check()  # before each commit
"""

from __future__ import annotations

import functools
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from meterlake.clock import format_instant
from meterlake.config import Settings
from meterlake.errors import LeaseHeldError, LeaseLostError
from meterlake.storage import Storage, storage_for

INGEST = "ingest"  # landing → bronze, quarantine replay and repair
ROLLUPS = "rollups"  # silver and gold
BILLING = "billing"  # invoices, period close, the outbox
STRIPE = "stripe"  # stripe sync
TIERING = "tiering"  # hot → cold moves, retention, vacuum
ERASURE = "erasure"  # GDPR erasure
CATALOG = "catalog"  # catalog and exchange-rate versions
ROLES = (INGEST, ROLLUPS, BILLING, STRIPE, TIERING, ERASURE, CATALOG)

LEASES_DIR = "_leases"
KEEP_TOKENS = 8  # older lease objects of a role are pruned by the next holder
_POLL_SECONDS = 0.5


def _wall() -> float:
    return time.time()


def _instant(seconds: float) -> str:
    return format_instant(datetime.fromtimestamp(seconds, UTC))


def lease_key(role: str, token: int) -> str:
    return f"{LEASES_DIR}/{role}/{token:012d}.json"


@dataclass(frozen=True)
class LeaseRecord:
    """What a lease object says."""

    role: str
    token: int
    holder: str  # "host pid=123 meterlake pipeline run"
    holder_id: str  # unique per acquisition
    acquired_at: str
    renewed_at: str
    expires_at: float  # wall-clock seconds
    released: bool = False
    machine: str = ""  # `_machine()`: where `processes` can be looked up ("": unknown)
    processes: tuple[tuple[int, int], ...] = ()  # (pid, start ticks) of each process

    def live(self, at: float) -> bool:
        """Held at ``at``: not released, not expired, and not known dead."""
        if self.released or self.expires_at <= at:
            return False
        if not self._local():
            return True  # another machine: only expiry frees it
        return any(_running(pid, start) for pid, start in self.processes)

    def dying(self) -> bool:
        """The holder's own process is gone but its JVM is not (yet): it cannot renew, so
        the lease is free when the JVM exits or at expiry, whichever comes first."""
        return self._local() and not _running(*self.processes[0])

    def _local(self) -> bool:
        return bool(self.processes) and self.machine == _machine()

    def encode(self) -> bytes:
        return (json.dumps(asdict(self), sort_keys=True) + "\n").encode()


def _decode(data: bytes | None) -> LeaseRecord | None:
    if data is None:
        return None
    try:  # a torn or foreign object: treat as free, never as held
        fields = json.loads(data)
        fields["processes"] = tuple((int(p), int(t)) for p, t in fields.get("processes", ()))
        return LeaseRecord(**fields)
    except (ValueError, TypeError, AttributeError):
        return None


@functools.cache
def _machine() -> str:
    """Host, kernel boot and PID namespace: where a pid names the same process as here."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:  # no /proc (macOS): liveness is known by expiry only
        return ""
    return f"{socket.gethostname()} {boot} {namespace}"


def _start_ticks(pid: int) -> int | None:
    """The start time of a running ``pid`` in clock ticks since boot; None when it is not
    running (gone, or a zombie that only waits to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # after "pid (command)", which may hold spaces
    return None if fields[0] in ("Z", "X") else int(fields[19])


def _running(pid: int, start: int) -> bool:
    return _start_ticks(pid) == start


_companions: list[int] = []


def add_companion(pid: int) -> None:
    """Count ``pid`` (the JVM this process drives) as part of every lease it holds: a
    commit the JVM still runs after Python died keeps the lease held until it exits."""
    if pid not in _companions:
        _companions.append(pid)


def _processes() -> tuple[tuple[int, int], ...]:
    found = ((pid, _start_ticks(pid)) for pid in (os.getpid(), *_companions))
    return tuple((pid, start) for pid, start in found if start is not None)


def current_lease(storage: Storage, role: str) -> tuple[int, LeaseRecord | None]:
    """The highest token of ``role`` (0: never taken) and what its object says."""
    tokens = [
        int(name.rsplit("/", 1)[-1].removesuffix(".json"))
        for name in storage.keys(f"{LEASES_DIR}/{role}/")
        if name.endswith(".json") and name.rsplit("/", 1)[-1][:-5].isdigit()
    ]
    if not tokens:
        return 0, None
    top = max(tokens)
    return top, _decode(storage.read(lease_key(role, top)))


def _describe_holder() -> str:
    """``host pid=123 (meterlake pipeline stream)``: who to look for on which machine."""
    program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    if program in ("cli.py", "__main__.py") or program.startswith("meterlake"):
        program = "meterlake"
    words, args = [], iter(sys.argv[1:])
    for arg in args:
        if arg.startswith("-"):
            if "=" not in arg:
                next(args, None)  # the option's value
        elif len(words) < 2:
            words.append(arg)
    return f"{socket.gethostname()} pid={os.getpid()} ({' '.join([program, *words])})"


class Lease:
    """A held lease: renewed in the background until `release`; `check` before commits."""

    def __init__(self, settings: Settings, storage: Storage, record: LeaseRecord) -> None:
        self.settings = settings
        self.role = record.role
        self.token = record.token
        self._storage = storage
        self._record = record
        self._ttl = settings.lease.ttl_seconds
        self._confirmed = time.monotonic()
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._renew_loop, name=f"meterlake-lease-{self.role}", daemon=True
        )
        self._thread.start()

    @property
    def holder(self) -> str:
        return self._record.holder

    def _successor_exists(self) -> bool:
        return self._storage.read(lease_key(self.role, self.token + 1)) is not None

    def _renew_loop(self) -> None:
        while not self._stop.wait(self._ttl / 3):
            try:
                self.renew()
            except LeaseLostError:
                return
            except Exception:  # storage unreachable: keep trying; `check` expires us
                continue

    def renew(self) -> None:
        """Extend the lease by ``ttl`` from now, unless another holder took over."""
        if self._lost:
            raise LeaseLostError(self._lost)
        if self._successor_exists():
            self._lost = f"the {self.role} lease was taken over (token {self.token + 1})"
            raise LeaseLostError(self._lost)
        began = time.monotonic()
        now = _wall()
        self._record = replace(
            self._record,
            renewed_at=_instant(now),
            expires_at=now + self._ttl,
            processes=_processes(),  # the JVM may have started since the last renewal
        )
        self._storage.write(lease_key(self.role, self.token), self._record.encode())
        self._confirmed = began

    def check(self) -> None:
        """Raise `LeaseLostError` unless this process may still commit as the holder: it
        renewed within ``ttl - margin`` seconds and no later token exists."""
        if self._lost:
            raise LeaseLostError(self._lost)
        margin = self.settings.lease.margin_seconds
        age = time.monotonic() - self._confirmed
        if age > self._ttl - margin:
            self._lost = (
                f"the {self.role} lease (token {self.token}) was last renewed {age:.0f}s ago;"
                f" another writer may take it {self._ttl}s after that"
            )
            raise LeaseLostError(self._lost)
        if self._successor_exists():
            self._lost = f"the {self.role} lease was taken over (token {self.token + 1})"
            raise LeaseLostError(self._lost)

    def release(self) -> None:
        """Stop renewing and free the lease for the next writer (unless it was lost)."""
        self._stop.set()
        self._thread.join()
        if self._lost or self._successor_exists():
            return
        released = replace(self._record, released=True)
        self._storage.write(lease_key(self.role, self.token), released.encode())


def acquire(settings: Settings, role: str, *, wait: float | None = None) -> Lease:
    """Take ``role``'s lease, waiting up to ``wait`` seconds (default
    ``settings.lease.wait_seconds``) while another live holder has it, and as long as it
    takes a dead holder's JVM to exit; raises `LeaseHeldError` naming the holder when it
    is still held."""
    if role not in ROLES:
        raise ValueError(f"unknown lease role {role!r}")
    storage = storage_for(settings)
    wait = settings.lease.wait_seconds if wait is None else wait
    deadline = time.monotonic() + wait
    holder, holder_id = _describe_holder(), uuid.uuid4().hex
    while True:
        token, record = current_lease(storage, role)
        now = _wall()
        if record is None or not record.live(now):
            mine = LeaseRecord(
                role, token + 1, holder, holder_id, _instant(now), _instant(now),
                now + settings.lease.ttl_seconds, False, _machine(), _processes(),
            )  # fmt: skip
            if storage.create(lease_key(role, token + 1), mine.encode()):
                _prune(storage, role, token + 1)
                return Lease(settings, storage, mine)
            continue  # another writer took this token first: look again
        # A crashed holder's JVM exits within seconds of it: a rerun waits for that.
        if time.monotonic() >= deadline and not record.dying():
            raise LeaseHeldError(
                f"the {role} lease of {settings.warehouse} is held by {record.holder}"
                f" since {record.acquired_at} (renewed {record.renewed_at}; free at"
                f" {_instant(record.expires_at)} unless renewed); retry later or pass"
                " --wait SECONDS"
            )
        time.sleep(min(_POLL_SECONDS, max(0.05, deadline - time.monotonic())))


def _prune(storage: Storage, role: str, token: int) -> None:
    """Each new holder deletes the object that just left the last `KEEP_TOKENS`."""
    if token > KEEP_TOKENS:
        storage.delete(lease_key(role, token - KEEP_TOKENS))


@dataclass
class _Held:
    lease: Lease | None = None
    users: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)  # one acquirer at a time


_held: dict[tuple[str, str], _Held] = {}
_registry = threading.Lock()


@contextmanager
def hold(settings: Settings, role: str, *, wait: float | None = None) -> Iterator[Lease]:
    """The lease of ``role`` for the duration of the block. Re-entrant within a process
    (a period close's invoice run, the threads of one stream share the one lease), so
    each library function takes the lease it needs whoever calls it."""
    with _registry:
        entry = _held.setdefault((settings.warehouse, role), _Held())
    with entry.lock:
        if entry.lease is None:
            entry.lease = acquire(settings, role, wait=wait)
        entry.users += 1
        lease = entry.lease
    try:
        yield lease
    finally:
        with entry.lock:
            entry.users -= 1
            if entry.users == 0:
                entry.lease = None
                lease.release()
