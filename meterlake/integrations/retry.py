"""Retrying a delivery with exponential backoff and jitter, counting the attempts.

Stripe pushes and webhook deliveries share it: each attempt that fails with an error the
caller calls transient waits ``base × 2^(n-1)`` (± 50 % jitter, so retries from many
workers do not arrive together) and tries again, up to ``attempts``; the last error is
raised with the number of attempts made, which the callers record.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class GaveUp(Exception):
    """Every attempt failed (or one failed with an error that retrying cannot fix)."""

    def __init__(self, attempts: int, error: BaseException) -> None:
        super().__init__(f"after {attempts} attempt(s): {error}")
        self.attempts = attempts
        self.error = error


def backoff_seconds(attempt: int, base_ms: int, rng: random.Random) -> float:
    """Wait before attempt ``attempt + 1`` (attempt counts from 1)."""
    return base_ms / 1000 * 2 ** (attempt - 1) * rng.uniform(0.5, 1.5)


def with_retries(
    call: Callable[[], T],
    *,
    attempts: int,
    base_ms: int,
    transient: Callable[[BaseException], bool],
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    on_failure: Callable[[int, BaseException], None] = lambda attempt, exc: None,
) -> tuple[T, int]:
    """``(call(), attempts used)``; raises `GaveUp` when it never succeeded. ``on_failure``
    hears of every failed attempt (for a delivery log)."""
    rng = rng or random.Random()
    for attempt in range(1, attempts + 1):
        try:
            return call(), attempt
        except Exception as exc:  # classified by ``transient``
            on_failure(attempt, exc)
            if attempt == attempts or not transient(exc):
                raise GaveUp(attempt, exc) from exc
            sleep(backoff_seconds(attempt, base_ms, rng))
    raise AssertionError("unreachable")
