"""Publishing current usage beside the stream, not inside it.

``pipeline stream`` used to re-price the customers a micro-batch touched on the stream's
own thread, so the next micro-batch waited for the pricing (2-4 s of every cycle). The
`Publisher` takes the requests instead and publishes on a thread of its own; requests made
while a publication runs are merged into the next one, so a burst of micro-batches costs
one re-pricing, not one each. It is also the one thread that writes the usage documents,
so two publications never read-modify-write one document at once in this process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection

from meterlake.errors import root_cause

Keys = Collection[tuple[str, str]] | None  # (tenant, customer)s; None: every customer


class Publisher:
    """Runs ``publish(keys)`` on one worker thread for every key requested, merging the
    requests that arrive while it is busy. A failed publication keeps its keys pending
    and is tried again ``retry_seconds`` later (``report`` gets the error's first line)."""

    def __init__(
        self,
        publish: Callable[[Keys], None],
        report: Callable[[str], None],
        *,
        retry_seconds: float = 5.0,
    ) -> None:
        self._publish = publish
        self._report = report
        self._retry_seconds = retry_seconds
        self._changed = threading.Condition()
        self._pending: set[tuple[str, str]] = set()
        self._everyone = False  # a request for every customer is pending
        self._closing = False
        self._worker = threading.Thread(target=self._run, name="meterlake-usage", daemon=True)
        self._worker.start()

    def request(self, keys: Keys) -> None:
        """Ask for ``keys`` to be published (soon, on the worker); returns at once."""
        with self._changed:
            if keys is None:
                self._everyone = True
            else:
                self._pending.update(keys)
            self._changed.notify()

    def close(self) -> None:
        """Publish what is still pending (one try), then stop the worker."""
        with self._changed:
            self._closing = True
            self._changed.notify()
        self._worker.join()

    def _take(self) -> Keys:
        keys: Keys = None if self._everyone else frozenset(self._pending)
        self._everyone = False
        self._pending = set()
        return keys

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._closing or self._everyone or self._pending)
                if not (self._everyone or self._pending):
                    return  # closing with nothing left
                closing = self._closing
                keys = self._take()
            try:
                self._publish(keys)
            except Exception as exc:  # a long-running service: report, try again later
                self._report(f"usage: publishing failed ({root_cause(exc)}); retrying")
                self.request(keys)
                if closing:
                    return
                with self._changed:
                    self._changed.wait_for(lambda: self._closing, timeout=self._retry_seconds)
