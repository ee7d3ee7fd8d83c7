"""How far the landing → bronze stream has got, for readers without a JVM (the API).

After each micro-batch the stream records the newest ``received_at`` it has taken into
bronze; the API compares the batches it landed with it to know its backlog and lag.
Batches are taken oldest first, so the mark only moves forward.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime

from meterlake.clock import format_instant, parse_instant
from meterlake.config import Settings
from meterlake.storage import storage_for

PROGRESS_KEY = "landing/_progress.json"


@dataclass(frozen=True)
class StreamProgress:
    received_through: str  # newest receipt time of a landing batch now in bronze
    updated_at: str

    @property
    def through(self) -> datetime:
        return parse_instant(self.received_through)


def record_progress(settings: Settings, newest_received: datetime) -> None:
    previous = read_progress(settings)
    if previous is not None and previous.through >= newest_received:
        newest_received = previous.through
    progress = StreamProgress(format_instant(newest_received), format_instant(settings.now()))
    storage_for(settings).write(PROGRESS_KEY, json.dumps(asdict(progress)).encode())


def read_progress(settings: Settings) -> StreamProgress | None:
    data = storage_for(settings).read(PROGRESS_KEY)
    return StreamProgress(**json.loads(data)) if data is not None else None
