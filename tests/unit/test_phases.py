"""Phase timings: recorded only while a record is open, from any thread, summed per name."""

from __future__ import annotations

import threading
import time

from meterlake.phases import phase, timed


def test_a_phase_outside_any_record_is_not_kept() -> None:
    with phase("alone"):
        pass
    with timed() as record:
        pass
    assert record == {}


def test_repeats_add_up_in_first_entered_order() -> None:
    with timed() as record:
        for name in ("plan", "run", "plan"):
            with phase(name):
                time.sleep(0.02)
    assert list(record) == ["plan", "run"]
    assert record["plan"] >= 0.04 > record["run"] >= 0.02


def test_a_phase_on_another_thread_counts_and_nested_records_both_see_it() -> None:
    def work() -> None:
        with phase("callback"):
            time.sleep(0.01)

    with timed() as outer:
        with timed() as inner:
            thread = threading.Thread(target=work)
            thread.start()
            thread.join()
        with phase("after"):
            pass
    assert set(inner) == {"callback"} and set(outer) == {"callback", "after"}
    assert inner["callback"] == outer["callback"] >= 0.01


def test_a_phase_that_raises_is_still_counted() -> None:
    with timed() as record:
        try:
            with phase("failed"):
                raise ValueError("boom")
        except ValueError:
            pass
    assert "failed" in record
