"""Group commit of accepted events into landing.

Every acknowledged event must be on disk (fsync) first, and an fsync costs milliseconds;
one landing batch per request would cap throughput at a few hundred requests a second and
flood the stream with tiny files. So requests for the same tenant that arrive while a
batch is being written wait together and go into the next batch: one file, one fsync,
one manifest entry for all of them; each request is answered once its batch committed.
No timer delays a lone request.
"""

from __future__ import annotations

import asyncio
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from meterlake.capture.limits import Backlog
from meterlake.config import Settings
from meterlake.ingest.landing import LandingBatch, land_stream


@dataclass
class _Waiting:
    lines: list[bytes]
    received: datetime  # when the API took the request: its events were checked as of then
    done: asyncio.Future[LandingBatch]


class LandingWriter:
    def __init__(self, settings: Settings, backlog: Backlog) -> None:
        self._settings = settings
        self._backlog = backlog
        self._queues: dict[str, list[_Waiting]] = defaultdict(list)
        self._draining: dict[str, asyncio.Task] = {}  # held so a running drain is not collected

    async def land(self, tenant: str, lines: list[bytes], received: datetime) -> LandingBatch:
        """Return once ``lines`` (of a request taken at ``received``) are durably in a
        committed landing batch of ``tenant``."""
        waiting = _Waiting(lines, received, asyncio.get_running_loop().create_future())
        self._queues[tenant].append(waiting)
        if tenant not in self._draining:
            self._draining[tenant] = asyncio.create_task(self._drain(tenant))
        return await waiting.done

    async def _drain(self, tenant: str) -> None:
        try:
            while self._queues[tenant]:
                group = self._queues.pop(tenant)
                try:
                    batch = await asyncio.to_thread(self._write, tenant, group)
                except Exception as exc:  # every waiter hears it; none is told "accepted"
                    for waiting in group:
                        if not waiting.done.done():  # a cancelled request is gone already
                            waiting.done.set_exception(exc)
                    continue
                for waiting in group:
                    if not waiting.done.done():
                        waiting.done.set_result(batch)
        finally:
            self._draining.pop(tenant, None)

    def _write(self, tenant: str, group: list[_Waiting]) -> LandingBatch:
        data = b"".join(line + b"\n" for waiting in group for line in waiting.lines)
        result = land_stream(
            self._settings,
            io.BytesIO(data),
            tenant,
            original_name="api",
            source="api",
            # The batch commits a moment after its requests were taken; bronze judges the
            # backfill limit from the oldest of them, as the API did when it accepted them.
            source_time=min(waiting.received for waiting in group),
        )
        if not result.already_loaded:
            self._backlog.landed(result.batch.received, result.batch.lines)
        return result.batch
