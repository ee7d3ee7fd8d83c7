"""The usage publisher: every requested key published after its request, bursts merged,
one publication at a time, failures retried, close drains."""

from __future__ import annotations

import threading
import time

from meterlake.billing.usage_publisher import Keys, Publisher


class Recorder:
    """A publish function that records its calls and whether two ever overlapped; while
    ``gate`` is clear, a call waits on it (holding the worker busy)."""

    def __init__(self, fail: int = 0) -> None:
        self.calls: list[Keys] = []
        self.running = 0
        self.overlapped = False
        self.started = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, keys: Keys) -> None:
        with self.lock:
            self.running += 1
            self.overlapped |= self.running > 1
        self.started.set()
        self.gate.wait(10)
        with self.lock:
            self.running -= 1
            self.calls.append(keys)
            if self.fail:
                self.fail -= 1
                raise RuntimeError("storage unavailable\nsecond line")


def test_requests_made_while_publishing_are_merged_into_the_next_publication() -> None:
    record = Recorder()
    record.gate.clear()
    publisher = Publisher(record, print)
    publisher.request({("t", "a")})
    assert record.started.wait(10)  # the worker is busy with a
    for key in ("b", "c", "b"):
        publisher.request({("t", key)})
    record.gate.set()
    publisher.close()
    assert record.calls == [frozenset({("t", "a")}), frozenset({("t", "b"), ("t", "c")})]


def test_a_request_for_everyone_absorbs_the_single_keys_pending_with_it() -> None:
    record = Recorder()
    record.gate.clear()
    publisher = Publisher(record, print)
    publisher.request({("t", "a")})
    assert record.started.wait(10)
    publisher.request({("t", "b")})
    publisher.request(None)
    record.gate.set()
    publisher.close()
    assert record.calls == [frozenset({("t", "a")}), None]


def test_a_failed_publication_is_reported_in_one_line_and_tried_again() -> None:
    record = Recorder(fail=1)
    reports: list[str] = []
    publisher = Publisher(record, reports.append, retry_seconds=0.01)
    publisher.request({("t", "a")})
    deadline = time.monotonic() + 10
    while len(record.calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    publisher.close()
    assert record.calls == [frozenset({("t", "a")})] * 2
    assert reports == ["usage: publishing failed (storage unavailable); retrying"]


def test_concurrent_requesters_get_every_key_published_one_publication_at_a_time() -> None:
    record = Recorder()
    publisher = Publisher(record, print)
    wanted = {(f"t{n}", f"c{i}") for n in range(8) for i in range(50)}

    def requester(tenant: str) -> None:
        for i in range(50):
            publisher.request({(tenant, f"c{i}")})

    threads = [threading.Thread(target=requester, args=(f"t{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    publisher.close()
    published = set().union(*record.calls)
    assert published == wanted and not record.overlapped
    assert len(record.calls) <= len(wanted)


def test_close_with_nothing_pending_returns_without_publishing() -> None:
    record = Recorder()
    publisher = Publisher(record, print)
    publisher.close()
    assert record.calls == []
