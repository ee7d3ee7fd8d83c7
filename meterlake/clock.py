"""The one source of "now", and the parser for every instant a user types.

Everything that stamps a time (``received_at``, ``ingested_at``) asks `now(settings)`,
so tests and reruns can pin it with ``--now`` / ``METERLAKE_NOW``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from meterlake.errors import ConfigError


def parse_instant(text: str, field: str = "time") -> datetime:
    """Parse an ISO 8601 instant that carries an offset (or ``Z``) into an aware UTC datetime.

    >>> parse_instant("2026-03-01T00:00:00-05:00").isoformat()
    '2026-03-01T05:00:00+00:00'

    A time without an offset is refused: it would be read in some machine's zone.
    """
    try:
        value = datetime.fromisoformat(text.strip())
    except (ValueError, AttributeError) as exc:
        raise ConfigError(f"{field}: {text!r} is not an ISO 8601 instant") from exc
    if value.tzinfo is None:
        raise ConfigError(f"{field}: {text!r} has no UTC offset; add Z or +HH:MM")
    return value.astimezone(UTC)


def format_instant(value: datetime) -> str:
    """UTC ISO 8601 with a ``Z``, microseconds only when present."""
    text = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return text


def now(pinned: datetime | None = None) -> datetime:
    """The current UTC instant, or the pinned one when ``--now`` / ``METERLAKE_NOW`` is set."""
    return pinned if pinned is not None else datetime.now(UTC)


def audit_now() -> datetime:
    """The real UTC instant, whatever ``--now`` says: audit records (reads, erasures,
    exports) say when they happened, and a caller's test clock must not forge that."""
    return datetime.now(UTC)


def hour_floor(instant: datetime) -> datetime:
    """The start of the hour ``instant`` falls in."""
    return instant.replace(minute=0, second=0, microsecond=0)


def from_table(value: datetime | None) -> datetime | None:
    """A TIMESTAMP read back from a table: the Spark factory pins the process zone to UTC,
    so the naive datetime PySpark returns is the UTC instant; make it aware again."""
    return None if value is None else value.replace(tzinfo=UTC)
